#!/usr/bin/env python3
"""Conformance: Mephisto 1.1.1's own backend channel against switchyard.

The backend side is Mephisto's real, unmodified `WebsocketChannel` and
`Packet` (loaded from the PyPI wheel by mephisto_loader), driven the way
Mephisto's `ClientIOHandler` drives it (an `alive` from `mephisto` on open,
`agent_details` answers with `subject_id` = channel id, `update_status`,
`request_statuses`, ...).  The agent side is a plain WebSocket client speaking
what the `mephisto-task` frontend speaks, plus HTTP requests made with
urllib.  Run through run.sh, which provides the environment:

    SWITCHYARD_BIN      the switch binary
    MEPHISTO_WHEEL_DIR  the unpacked mephisto-1.1.1 wheel
    CONFORMANCE_CLUSTER optional: a NATS URL; two switches of one cluster
                        are started, the backend on one, agents and HTTP on
                        the other (cluster mode, `--cluster`)
    SWITCHYARD_LAUNCHER optional: a Mephisto launcher `server.js`; the switch
                        is then started as Mephisto's local architect starts
                        its router (the launcher's folder copied, `node
                        server.js` in the copy with PORT set, in a process
                        group of its own, stopped with SIGTERM), and the
                        launcher finds the binary itself (SWITCHYARD_BIN if
                        set, else PATH)

Every wait has a deadline; nothing sleeps for a fixed time.
"""

import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import websockets  # noqa: E402  (the venv's websockets, as Mephisto uses)

import mephisto_loader  # noqa: E402

WAIT = 5.0  # seconds: deadline of every single wait in the tests
STARTUP = 30.0  # seconds: deadline for the switch to answer /is_alive
REQUEST_TIMEOUT = 3  # the switch's --request-timeout, for the 408 case

# What Mephisto's ClientIOHandler._on_message accepts from the router; any
# other packet type makes it raise "Unexpected packet type".
CLIENT_IO_ACCEPTED = {
    "submit_onboarding",
    "submit_unit",
    "submit_metadata",
    "mephisto_bound_live_update",
    "register_agent",
    "return_statuses",
    "log_error",
}

M = None  # the mephisto namespace (Packet, WebsocketChannel, ...)
SWITCH = None
BACKEND = None
# The switch the backend connects to: SWITCH itself, or in cluster mode
# (CONFORMANCE_CLUSTER) another switch of the same cluster.
BACKEND_SWITCH = None
LOGS = None


# --------------------------------------------------------------------------
# log capture: everything Mephisto (and websockets, asyncio) logs


class CaptureHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []
        self._records_lock = threading.Lock()

    def emit(self, record):
        with self._records_lock:
            self.records.append(record)

    def problems(self):
        """Records showing the channel had trouble: WARNING and above from
        any logger, and the channel's own `Socket logged error` (logged at
        INFO before it closes the socket to reconnect)."""
        with self._records_lock:
            out = []
            for r in self.records:
                msg = r.getMessage()
                if r.levelno >= logging.WARNING or "Socket logged error" in msg:
                    out.append(f"{r.name} {r.levelname}: {msg}")
            return out

    def messages(self, logger_name):
        with self._records_lock:
            return [r.getMessage() for r in self.records if r.name == logger_name]


THREAD_EXCEPTIONS = []


def _thread_excepthook(args):
    THREAD_EXCEPTIONS.append(f"{args.thread.name if args.thread else '?'}: "
                             f"{args.exc_type.__name__}: {args.exc_value}")
    sys.__excepthook__(args.exc_type, args.exc_value, args.exc_traceback)


# --------------------------------------------------------------------------
# the switch process


def _die_with_parent():
    """Child side of Popen: have the kernel SIGTERM the switch if this test
    process dies without cleaning up (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


def _own_group_and_die_with_parent():
    """Child side of Popen for the launcher: a process group of its own, as
    Mephisto's architect starts `node server.js` (os.setpgrp), and SIGTERM
    when this test process dies."""
    os.setpgrp()
    _die_with_parent()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Switch:
    def __init__(self, binary, launcher=None, extra_args=()):
        # With a launcher, `binary` is only asked for its --help (the
        # launcher starts whichever binary it finds).
        self.binary = binary
        self.launcher = launcher
        self.extra_args = list(extra_args)
        self.launcher_copy = None
        self.tmp = tempfile.mkdtemp(prefix="switchyard-conformance-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.upload_dir = os.path.join(self.tmp, "uploads")
        os.makedirs(self.data_dir)
        os.makedirs(self.upload_dir)
        self.log_path = os.path.join(self.tmp, "switchyard.log")
        self.proc = None
        self.port = None

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self):
        return f"ws://127.0.0.1:{self.port}/"

    def optional_args(self):
        """Links this test does not use, switched off where the binary has the
        flag (so the switch opens no fixed port such as the client socket's
        127.0.0.1:5000 and runs no simulated mesh)."""
        try:
            out = subprocess.run([self.binary, "--help"], capture_output=True,
                                 text=True, timeout=30, cwd=self.tmp).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        args = []
        for flag in ("--tcp", "--uart"):
            if re.search(rf"^\s*{flag}\b", out, re.M):
                args += [flag, "none"]
        return args

    def command(self, extra):
        """(argv, cwd, extra environment) of one start of the switch."""
        args = [
            "--data-dir", self.data_dir,
            "--upload-dir", self.upload_dir,
            "--request-timeout", str(REQUEST_TIMEOUT),
            "--reconnect-grace", "30",
            "--ping-timeout", "30",
            *extra,
            *self.extra_args,
        ]
        if self.launcher is None:
            return [self.binary, "--http", f"127.0.0.1:{self.port}", *args], self.tmp, {}
        # As Mephisto's LocalArchitect: a copy of the launcher's folder,
        # `node server.js` in it with PORT (the launcher binds 0.0.0.0:PORT);
        # this test's own flags go through SWITCHYARD_ARGS, which the
        # launcher documents for extra flags (the temporary paths hold no
        # spaces).
        if self.launcher_copy is None:
            self.launcher_copy = os.path.join(self.tmp, "router")
            shutil.copytree(os.path.dirname(os.path.abspath(self.launcher)),
                            self.launcher_copy)
        env = {"PORT": str(self.port), "SWITCHYARD_ARGS": " ".join(args)}
        return ["node", "server.js"], self.launcher_copy, env

    def start(self):
        last = None
        extra = self.optional_args()
        for _attempt in range(3):  # the chosen port may be taken meanwhile
            self.port = free_port()
            argv, cwd, env = self.command(extra)
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec(),
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), **env},
            )
            log.close()
            deadline = time.monotonic() + STARTUP
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = f"switchyard exited with {self.proc.returncode}"
                    break
                try:
                    status, _, body = http_get(self.http + "/is_alive", timeout=1)
                    if status == 200 and json.loads(body) == {"status": "Alive!"}:
                        return
                    last = f"/is_alive answered {status} {body!r}"
                except OSError as e:
                    last = f"/is_alive: {e}"
                try:
                    self.proc.wait(timeout=0.1)  # a poll step, not a fixed sleep
                except subprocess.TimeoutExpired:
                    pass
            else:
                self.stop()
                raise RuntimeError(f"switchyard did not come up within {STARTUP}s: {last}")
        raise RuntimeError(f"switchyard could not be started: {last}\n{self.log_tail()}")

    def preexec(self):
        if not sys.platform.startswith("linux"):
            return None
        return _die_with_parent if self.launcher is None else _own_group_and_die_with_parent

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.launcher is not None:
                # whatever the launcher left in its group (its switch, if
                # node itself had to be killed)
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# HTTP helpers (urllib only)


def _do(req, timeout):
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def http_get(url, timeout=WAIT):
    return _do(urllib.request.Request(url, method="GET"), timeout)


def http_post_json(url, obj, timeout=WAIT):
    req = urllib.request.Request(
        url, data=json.dumps(obj).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    return _do(req, timeout)


def http_post_multipart(url, fields, files, timeout=WAIT):
    """fields: {name: str}; files: [(field, filename, bytes, content_type)]"""
    boundary = "----conformance" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            .encode() + value.encode() + b"\r\n")
    for field, filename, content, ctype in files:
        parts.append(
            (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
             f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n').encode()
            + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return _do(req, timeout)


def metric_value(text, name):
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)$", line)
        if m:
            return float(m.group(1))
    return None


def wait_until(predicate, what, timeout=WAIT):
    """Poll `predicate` until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        event.wait(0.05)  # poll interval


# --------------------------------------------------------------------------
# the backend: Mephisto's own WebsocketChannel, driven like ClientIOHandler


class Backend:
    CHANNEL_ID = "conformance_channel"

    def __init__(self, url):
        self.cond = threading.Condition()
        self.received = []  # every Packet on_message got, in order
        self.taken = set()  # indexes already claimed by a wait_for
        self.opened = threading.Event()
        self.open_count = 0
        self.catastrophic = []
        self.alive_sends = []
        self.channel = M.WebsocketChannel(
            channel_id=self.CHANNEL_ID,
            on_channel_open=self._on_channel_open,
            on_catastrophic_disconnect=self._on_catastrophic_disconnect,
            on_message=self._on_message,
            socket_url=url,
        )

    # ClientIOHandler._on_channel_open: send an alive as `mephisto`
    def _on_channel_open(self, channel_id):
        self.open_count += 1
        self.alive_sends.append(self.send_alive())
        self.opened.set()

    def send_alive(self):
        return self.channel.enqueue_send(
            M.Packet(packet_type=M.packet_module.PACKET_TYPE_ALIVE,
                     subject_id="mephisto"))

    def _on_catastrophic_disconnect(self, channel_id):
        self.catastrophic.append(channel_id)

    def _on_message(self, channel_id, packet):
        with self.cond:
            self.received.append(packet)
            self.cond.notify_all()

    def open(self):
        self.channel.open()
        if not self.opened.wait(WAIT * 2):
            raise RuntimeError("WebsocketChannel never called on_channel_open")

    def send(self, packet_type, subject_id, data):
        packet = M.Packet(packet_type=packet_type, subject_id=subject_id, data=data)
        ok = self.channel.enqueue_send(packet)
        if not ok:
            raise AssertionError(f"WebsocketChannel.enqueue_send refused {packet}")
        return packet

    def wait_for(self, what, predicate, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, p in enumerate(self.received):
                    if i not in self.taken and predicate(p):
                        self.taken.add(i)
                        return p
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [str(p) for p in self.received[-10:]]
                    raise AssertionError(
                        f"backend: no {what} within {timeout}s; last packets: {seen}")
                self.cond.wait(left)

    def close(self):
        self.channel.close()


# --------------------------------------------------------------------------
# an agent: a plain WebSocket client (websockets' asyncio client on its own
# loop thread), speaking what mephisto-task speaks


class AgentSocket:
    def __init__(self, url, agent_id):
        self.agent_id = agent_id
        self.skipped = []
        self.inbox = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       name=f"agent-{agent_id}", daemon=True)
        self.thread.start()

        async def connect():
            return await websockets.connect(url, open_timeout=WAIT)

        self.ws = self._run(connect())
        self.reader = asyncio.run_coroutine_threadsafe(self._read(), self.loop)

    def _run(self, coro, timeout=WAIT):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _read(self):
        try:
            async for message in self.ws:
                self.inbox.put(json.loads(message))
        except websockets.exceptions.ConnectionClosed:
            pass

    def send(self, packet_type, data=None, **extra):
        packet = {
            "packet_type": packet_type,
            "subject_id": self.agent_id,
            "data": {} if data is None else data,
            "client_timestamp": time.time(),
            **extra,
        }
        self._run(self.ws.send(json.dumps(packet)))
        return packet

    def alive(self):
        return self.send("alive")

    def recv(self, packet_type, timeout=WAIT):
        """Next packet of this type (others are kept aside in self.skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"agent {self.agent_id}: no {packet_type} within {timeout}s")
            try:
                packet = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if packet.get("packet_type") == packet_type:
                return packet
            self.skipped.append(packet)

    def close(self):
        try:
            self._run(self.ws.close())
            self.reader.result(WAIT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            if not self.thread.is_alive():
                self.loop.close()


# --------------------------------------------------------------------------
# module fixture


def setUpModule():
    global SWITCH, BACKEND, BACKEND_SWITCH
    binary = os.environ.get("SWITCHYARD_BIN")
    if not binary:
        root = os.path.dirname(os.path.dirname(HERE))
        release = os.path.join(root, "target", "release", "switchyard")
        binary = release if os.path.exists(release) else os.path.join(
            root, "target", "debug", "switchyard")
    launcher = os.environ.get("SWITCHYARD_LAUNCHER") or None
    if launcher is not None and not os.environ.get("SWITCHYARD_BIN"):
        # the binary the launcher will find on PATH
        binary = shutil.which("switchyard") or binary
    cluster = os.environ.get("CONFORMANCE_CLUSTER")
    if cluster:
        SWITCH = Switch(binary, launcher, ["--cluster", cluster, "--node-id", "agents"])
        BACKEND_SWITCH = Switch(binary, None, ["--cluster", cluster, "--node-id", "backend"])
        BACKEND_SWITCH.start()
        print(f"conformance: cluster mode on {cluster}: backend on "
              f"{BACKEND_SWITCH.http}, agents and HTTP on the other switch", flush=True)
    else:
        SWITCH = Switch(binary, launcher)
        BACKEND_SWITCH = SWITCH
    SWITCH.start()
    if launcher is not None:
        started = re.search(r"switchyard launcher: starting (\S+)", SWITCH.log_tail())
        started = started.group(1) if started else None
        print(f"conformance: switch started through {launcher}: {started}", flush=True)
        if started is None or os.path.realpath(started) != os.path.realpath(binary):
            SWITCH.stop()
            raise RuntimeError(f"the launcher started {started}, not {binary}")
    BACKEND = Backend(BACKEND_SWITCH.ws)
    BACKEND.open()


def tearDownModule():
    try:
        if BACKEND is not None:
            BACKEND.close()
    finally:
        if SWITCH is not None:
            SWITCH.stop()
        if BACKEND_SWITCH is not None and BACKEND_SWITCH is not SWITCH:
            BACKEND_SWITCH.stop()


def register_agent(agent_id=None, extra_details=None):
    """The /request_agent round trip; returns (agent_id, register packet,
    HTTP status, HTTP JSON answer)."""
    agent_id = agent_id or f"agent-{uuid.uuid4().hex[:8]}"
    reg_id = f"reg-{uuid.uuid4().hex}"
    provider_data = {
        "worker_name": "conformance_worker",
        "agent_registration_id": reg_id,
        "assignment_id": f"asg-{uuid.uuid4().hex[:6]}",
        "nested": {"list": [1, 2.5, "three", None, True]},
    }
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            http_post_json, SWITCH.http + "/request_agent",
            {"provider_data": provider_data, "client_timestamp": time.time()},
            WAIT * 2)
        reg = BACKEND.wait_for(
            "register_agent",
            lambda p: p.type == "register_agent"
            and isinstance(p.data, dict)
            and p.data.get("provider_data", {}).get("agent_registration_id") == reg_id)
        request_id = reg.data.get("request_id")
        # ClientIOHandler.enqueue_agent_details: subject_id is the channel id
        details = {"request_id": request_id, "agent_id": agent_id,
                   "init_task_data": {"question": "2+2?"}}
        details.update(extra_details or {})
        BACKEND.send("agent_details", Backend.CHANNEL_ID, details)
        status, headers, body = future.result(WAIT * 2)
    return agent_id, reg, provider_data, details, status, headers, body


def connect_agent(agent_id):
    agent = AgentSocket(SWITCH.ws, agent_id)
    agent.alive()
    agent.recv("update_status")  # the switch's answer to an agent's alive
    return agent


# --------------------------------------------------------------------------
# the cases (run in name order)


class MephistoChannelConformance(unittest.TestCase):
    maxDiff = None

    def test_00_wheel_code_is_unmodified(self):
        checked = mephisto_loader.verify_unmodified(M.wheel_dir)
        for rel in ("mephisto/abstractions/architects/channels/websocket_channel.py",
                    "mephisto/abstractions/_subcomponents/channel.py",
                    "mephisto/data_model/packet.py"):
            self.assertIn(rel, checked)
        self.assertTrue(issubclass(M.WebsocketChannel, M.Channel))
        self.assertIsInstance(BACKEND.channel, M.WebsocketChannel)

    def test_01_channel_opens_and_is_alive(self):
        self.assertTrue(BACKEND.opened.is_set(), "on_channel_open never called")
        self.assertTrue(BACKEND.channel.is_alive())
        self.assertEqual(BACKEND.alive_sends, [True],
                         "the alive packet could not be enqueued on open")
        # logged by the channel right after on_channel_open returns
        wait_until(lambda: "channel open" in LOGS.messages(
            "mephisto.abstractions.architects.channels.websocket_channel"),
            "the channel's `channel open` log line")

        def connected():
            status, _, body = http_get(BACKEND_SWITCH.http + "/metrics")
            return status == 200 and metric_value(
                body.decode(), "switchyard_backend_connected") == 1

        wait_until(connected, "/metrics to show switchyard_backend_connected 1")

    def test_02_request_agent_round_trip(self):
        agent_id, reg, provider_data, details, status, headers, body = register_agent()
        # what the backend got
        self.assertEqual(reg.type, "register_agent")
        self.assertEqual(reg.data["provider_data"], provider_data)
        request_id = reg.data.get("request_id")
        self.assertIsInstance(request_id, str)
        self.assertTrue(request_id)
        uuid.UUID(request_id)  # a uuid
        self.assertEqual(reg.subject_id, request_id)
        self.assertIsInstance(reg.router_incoming_timestamp, float)
        # what the HTTP client got: the agent_details packet
        self.assertEqual(status, 200, body)
        self.assertIn("application/json", headers.get("Content-Type", ""))
        answer = json.loads(body)
        self.assertEqual(answer["packet_type"], "agent_details")
        self.assertEqual(answer["subject_id"], Backend.CHANNEL_ID)
        self.assertEqual(answer["data"], details)
        self.assertEqual(answer["data"]["agent_id"], agent_id)

    def test_03_request_agent_without_answer_times_out(self):
        reg_id = f"reg-{uuid.uuid4().hex}"
        started = time.monotonic()
        status, _, body = http_post_json(
            SWITCH.http + "/request_agent",
            {"provider_data": {"agent_registration_id": reg_id},
             "client_timestamp": time.time()},
            timeout=REQUEST_TIMEOUT + WAIT)
        elapsed = time.monotonic() - started
        BACKEND.wait_for("unanswered register_agent",
                         lambda p: p.type == "register_agent"
                         and p.data.get("provider_data", {}).get(
                             "agent_registration_id") == reg_id)
        self.assertEqual(status, 408, body)
        self.assertIn("error", json.loads(body))
        self.assertLess(elapsed, REQUEST_TIMEOUT + WAIT)

    def test_04_heartbeat_answered(self):
        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        agent = connect_agent(agent_id)
        try:
            agent.send("heartbeat", {"anything": 1})
            reply = agent.recv("heartbeat")
            self.assertEqual(reply["subject_id"], agent_id)
            ping = reply["data"]["last_mephisto_ping"]
            self.assertIsInstance(ping, int)
            self.assertEqual(reply["data"]["status"], "none")
            # integer ms since the epoch (what mephisto-task compares with
            # Date.now()), not in the future
            self.assertGreater(ping, 1_000_000_000_000)
            self.assertLessEqual(ping, int(time.time() * 1000) + 1000)
        finally:
            agent.close()

    def test_05_live_updates_both_ways(self):
        agent_id, *_ , status, _, _ = register_agent()
        self.assertEqual(status, 200)
        agent = connect_agent(agent_id)
        try:
            update = {"update_id": str(uuid.uuid4()), "text": "héllo ✓",
                      "numbers": [1, -2, 3.25], "nested": {"a": {"b": None}},
                      "flag": False}
            sent = agent.send("mephisto_bound_live_update", update,
                              extra_field="kept")
            got = BACKEND.wait_for(
                "mephisto_bound_live_update",
                lambda p: p.type == "mephisto_bound_live_update"
                and p.subject_id == agent_id)
            self.assertEqual(got.data, update)
            self.assertAlmostEqual(got.client_timestamp, sent["client_timestamp"],
                                   places=3)
            self.assertIsInstance(got.router_incoming_timestamp, float)
            self.assertIsInstance(got.router_outgoing_timestamp, float)

            down = {"text": "from mephisto", "task_data": {"k": [1, {"x": "y"}]}}
            pkt = BACKEND.send("client_bound_live_update", agent_id, down)
            recv = agent.recv("client_bound_live_update")
            self.assertEqual(recv["subject_id"], agent_id)
            self.assertEqual(recv["data"], down)
            # exactness of forwarded floats is test_12's business
            self.assertAlmostEqual(recv["server_timestamp"], pkt.server_timestamp,
                                   places=5)
            self.assertIsInstance(recv["router_incoming_timestamp"], float)
            self.assertIsInstance(recv["router_outgoing_timestamp"], float)
        finally:
            agent.close()

    def test_06_update_status_and_request_statuses(self):
        agent_id, *_ , status, _, _ = register_agent()
        self.assertEqual(status, 200)
        agent = connect_agent(agent_id)
        try:
            BACKEND.send("update_status", agent_id, {"status": "in task"})
            got = agent.recv("update_status")
            self.assertEqual(got["subject_id"], agent_id)
            self.assertEqual(got["data"]["status"], "in task")

            # like ClientIOHandler._request_status_update; only this test
            # and test_12 request statuses, one at a time
            req = BACKEND.send("request_statuses", "mephisto", {})
            ret = BACKEND.wait_for(
                "return_statuses", lambda p: p.type == "return_statuses")
            self.assertEqual(ret.subject_id, "mephisto")
            # client_timestamp echoes the request's server_timestamp (exactly:
            # see test_12)
            self.assertAlmostEqual(ret.client_timestamp, req.server_timestamp,
                                   places=5)
            self.assertEqual(ret.data.get(agent_id), "in task", ret.data)
            for aid, st in ret.data.items():
                self.assertIsInstance(st, str, aid)
        finally:
            agent.close()

    def test_07_queued_updates_delivered_in_order_after_reconnect(self):
        agent_id, *_ , status, _, _ = register_agent()
        self.assertEqual(status, 200)
        agent = connect_agent(agent_id)
        agent.close()  # waits for the close handshake

        sent = []
        for i in range(3):
            data = {"seq": i, "text": f"queued {i}"}
            BACKEND.send("client_bound_live_update", agent_id, data)
            sent.append(data)

        agent = AgentSocket(SWITCH.ws, agent_id)
        try:
            agent.alive()
            got = [agent.recv("client_bound_live_update")["data"] for _ in sent]
            self.assertEqual(got, sent)
            agent.recv("update_status")
        finally:
            agent.close()

    def test_08_submit_task_json(self):
        agent_id, *_ , status, _, _ = register_agent()
        self.assertEqual(status, 200)
        final_data = {"answer": "4", "choices": [1, 2], "meta": {"t": 1.5}}
        ts = time.time()
        status, headers, body = http_post_json(
            SWITCH.http + "/submit_task",
            {"USED_AGENT_ID": agent_id, "final_data": final_data,
             "client_timestamp": ts})
        self.assertEqual(status, 200, body)
        self.assertIn("application/json", headers.get("Content-Type", ""))
        self.assertEqual(json.loads(body), {"status": "Submitted!"})
        got = BACKEND.wait_for(
            "submit_unit", lambda p: p.type == "submit_unit" and p.subject_id == agent_id)
        self.assertEqual(got.data, final_data)
        self.assertAlmostEqual(got.client_timestamp, ts, places=3)

    def test_09_submit_task_multipart_with_file_and_download(self):
        agent_id, *_ , status, _, _ = register_agent()
        self.assertEqual(status, 200)
        final_data = {"answer": "with file", "n": 7}
        content = b"conformance \x00\xff\xfe bytes\n" + os.urandom(256)
        status, _, body = http_post_multipart(
            SWITCH.http + "/submit_task",
            {"USED_AGENT_ID": agent_id,
             "final_string_data": json.dumps(final_data),
             "client_timestamp": str(time.time())},
            [("upload", "notes.txt", content, "application/octet-stream")])
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "Submitted!"})
        got = BACKEND.wait_for(
            "multipart submit_unit",
            lambda p: p.type == "submit_unit" and p.subject_id == agent_id)
        for k, v in final_data.items():
            self.assertEqual(got.data.get(k), v)
        files = got.data.get("files")
        self.assertIsInstance(files, list, got.data)
        self.assertEqual(len(files), 1, files)
        stored = files[0]["filename"]
        self.assertIsInstance(stored, str)
        self.assertTrue(stored)
        self.assertEqual(files[0].get("originalname"), "notes.txt")
        self.assertEqual(files[0].get("fieldname"), "upload")
        self.assertEqual(files[0].get("size"), len(content))
        # what Mephisto's architects do with it: GET /download_file/<filename>
        status, _, downloaded = http_get(SWITCH.http + "/download_file/" + stored)
        self.assertEqual(status, 200)
        self.assertEqual(downloaded, content)

    def test_10_submit_onboarding_round_trip(self):
        agent_id, *_ , status, _, _ = register_agent()
        self.assertEqual(status, 200)
        onboarding = {"answers": ["a", "b"]}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                http_post_json, SWITCH.http + "/submit_onboarding",
                {"provider_data": {"USED_AGENT_ID": agent_id,
                                   "onboarding_data": onboarding, "extra": 1},
                 "client_timestamp": time.time()}, WAIT * 2)
            got = BACKEND.wait_for(
                "submit_onboarding",
                lambda p: p.type == "submit_onboarding" and p.subject_id == agent_id)
            self.assertEqual(got.data.get("onboarding_data"), onboarding)
            self.assertEqual(got.data.get("extra"), 1)
            self.assertNotIn("USED_AGENT_ID", got.data)
            request_id = got.data.get("request_id")
            self.assertTrue(request_id)
            details = {"request_id": request_id, "agent_id": agent_id + "-task"}
            BACKEND.send("agent_details", Backend.CHANNEL_ID, details)
            status, _, body = future.result(WAIT * 2)
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["packet_type"], "agent_details")
        self.assertEqual(answer["data"], details)

    def test_11_log_error_forwarded(self):
        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        error = {"message": "frontend broke", "stack": "at x"}
        status, _, body = http_post_json(
            SWITCH.http + "/log_error",
            {"USED_AGENT_ID": agent_id, "error_data": error,
             "client_timestamp": time.time()})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "Error log sent!"})
        got = BACKEND.wait_for(
            "log_error", lambda p: p.type == "log_error" and p.subject_id == agent_id)
        self.assertEqual(got.data, error)

    def test_12_floats_forwarded_exactly(self):
        # PROTOCOL 1.1: forwarded packets keep every field they arrived with;
        # the reference router (JSON.parse/JSON.stringify) keeps every double
        # bit for bit.  These values are ordinary time.time() results (and
        # a few plain ones) whose shortest decimal form takes 17 digits:
        # a JSON parser that is not correctly rounded gets them 1 ULP off.
        values = [1795640711.7925239, 1795640710.9995599, 1795640711.8005373,
                  1795640711.4153857, 1795640711.7874305, 0.1, 2.5, 1e-07,
                  123.456]
        wrong = []

        def check(where, got, want):
            if got != want:
                wrong.append(f"{where}: sent {want!r}, got {got!r}")

        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        agent = connect_agent(agent_id)
        try:
            # agent -> backend
            agent.send("mephisto_bound_live_update",
                       {"update_id": str(uuid.uuid4()), "v": values},
                       client_timestamp=values[0])
            up = BACKEND.wait_for(
                "mephisto_bound_live_update",
                lambda p: p.type == "mephisto_bound_live_update"
                and p.subject_id == agent_id)
            check("mephisto_bound_live_update client_timestamp",
                  up.client_timestamp, values[0])
            for i, v in enumerate(values):
                check(f"mephisto_bound_live_update data.v[{i}]", up.data["v"][i], v)

            # backend -> agent
            BACKEND.channel.enqueue_send(M.Packet(
                packet_type="client_bound_live_update", subject_id=agent_id,
                data={"v": values}, server_timestamp=values[1]))
            down = agent.recv("client_bound_live_update")
            check("client_bound_live_update server_timestamp",
                  down["server_timestamp"], values[1])
            for i, v in enumerate(values):
                check(f"client_bound_live_update data.v[{i}]", down["data"]["v"][i], v)

            # request_statuses -> return_statuses echo
            for v in values[2:5]:
                BACKEND.channel.enqueue_send(M.Packet(
                    packet_type="request_statuses", subject_id="mephisto",
                    data={}, server_timestamp=v))
                ret = BACKEND.wait_for(
                    "return_statuses", lambda p: p.type == "return_statuses")
                check("return_statuses client_timestamp (= request's "
                      "server_timestamp)", ret.client_timestamp, v)
        finally:
            agent.close()
        self.assertEqual(wrong, [], "floats changed in transit")

    def test_99_channel_stayed_healthy(self):
        self.assertTrue(SWITCH.alive(), "switchyard exited")
        self.assertTrue(BACKEND.channel.is_alive())
        self.assertFalse(BACKEND.channel.is_closed())
        self.assertEqual(BACKEND.open_count, 1, "the channel reconnected")
        self.assertEqual(BACKEND.catastrophic, [],
                         "on_catastrophic_disconnect was called")
        self.assertEqual(LOGS.problems(), [], "Mephisto/websockets logged trouble")
        self.assertEqual(THREAD_EXCEPTIONS, [])
        with BACKEND.cond:
            types = [p.type for p in BACKEND.received]
        unexpected = [t for t in types if t not in CLIENT_IO_ACCEPTED]
        self.assertEqual(unexpected, [],
                         "packets Mephisto's ClientIOHandler would reject")
        status, _, body = http_get(BACKEND_SWITCH.http + "/metrics")
        self.assertEqual(metric_value(body.decode(), "switchyard_backend_connected"), 1)


# --------------------------------------------------------------------------


def main():
    global M, LOGS
    wheel_dir = os.environ.get("MEPHISTO_WHEEL_DIR")
    if not wheel_dir:
        print("MEPHISTO_WHEEL_DIR is not set (run tests/conformance/run.sh)",
              file=sys.stderr)
        return 2
    threading.excepthook = _thread_excepthook
    M = mephisto_loader.load(wheel_dir)
    # get_logger configured Mephisto's handlers at import; our capture handler
    # goes on the root logger, which every Mephisto logger propagates to.
    LOGS = CaptureHandler()
    logging.getLogger().addHandler(LOGS)

    def on_signal(signum, _frame):
        # unittest would record a SystemExit as one test's error and go on:
        # stop the switch and leave at once instead
        for s in (SWITCH, BACKEND_SWITCH):
            if s is not None:
                s.cleanup()
        print(f"conformance: killed by signal {signum}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(MephistoChannelConformance)
    if len(sys.argv) > 1:
        suite = unittest.TestSuite(
            t for t in suite if any(a in t.id() for a in sys.argv[1:]))
    case_ids = {id(t) for t in suite}  # the suite forgets its tests as it runs
    total = len(case_ids)
    # setUpModule/tearDownModule are run by the suite through this module
    try:
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    finally:
        if SWITCH is not None:
            SWITCH.stop()
        if BACKEND_SWITCH is not None and BACKEND_SWITCH is not SWITCH:
            BACKEND_SWITCH.stop()
    # a test that could not run (setUpModule failed) counts as failed
    bad = {id(t) for t, _ in result.failures + result.errors}
    if SWITCH is not None and SWITCH.launcher is not None and SWITCH.proc is not None \
            and SWITCH.proc.returncode != 0:
        # SIGTERM to node, as Mephisto stops its router: the launcher passes
        # it on and exits with the switch's status, 0 for a clean stop
        print(f"conformance: the launcher exited with {SWITCH.proc.returncode} "
              "after SIGTERM, not 0", flush=True)
        bad.add(id(SWITCH))
    bad.update(id(t) for t in result.unexpectedSuccesses)
    skipped = {id(t) for t, _ in result.skipped} & case_ids
    passed = max(result.testsRun - len(bad & case_ids) - len(skipped), 0)
    failed = max(total - passed - len(skipped), len(bad))
    if failed and SWITCH is not None:
        print("---- switchyard log (tail) ----")
        print(SWITCH.log_tail())
        print("-------------------------------")
    if failed and BACKEND_SWITCH is not None and BACKEND_SWITCH is not SWITCH:
        print("---- backend's switchyard log (tail) ----")
        print(BACKEND_SWITCH.log_tail())
        print("-----------------------------------------")
    for s in {id(x): x for x in (SWITCH, BACKEND_SWITCH) if x is not None}.values():
        s.cleanup()
    sys.stdout.flush()
    sys.stderr.flush()
    if skipped:
        # The test command provides everything these tests need: a skip
        # is a suite that did not run, so the run fails.
        print(f"{len(skipped)} skipped (a skipped test fails the run)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or skipped or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
