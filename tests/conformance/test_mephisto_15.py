#!/usr/bin/env python3
"""Conformance: the Mephisto 1.5 line (tag v1.5.2) against switchyard.

The agent side sends, byte for byte in field names, order and encoding, the
requests the 1.5 line's frontend `mephisto-core` 1.5.1 makes
(`packages/mephisto-core/src/utils.js`): `GET /task_config.json` with its
own version, JSON `/request_agent`, `/submit_onboarding`, `/submit_metadata`
and `/log_error`, and the multipart submits of `mephisto-addons`: the
worker-opinion form (`WorkerOpinion/Functions.js` createWorkerOpinion, sent
by `postMetadata(..., multipart=true)`) and the FormComposer task form
(`FormComposer/validation/helpers.js` prepareFormDataForSubmit, sent by
`postCompleteTask(..., multipart=true)`), each with and without files.

The backend side is Mephisto's own `WebsocketChannel` and `Packet` (the
1.1.1 wheel, set up by test_mephisto_router; `Packet.from_dict` of v1.5.2
reads the same fields). On each packet the test then does what the v1.5.2
backend's handlers read (`mephisto/operations/client_io_handler.py`,
`mephisto/utils/agent_metadata.py`, `mephisto/abstractions/architects/
local_architect.py`), transcribed below as `backend_*` functions: a field
they read that is missing, or of the wrong type, fails the test the way it
would raise in the backend.

Run through run_15.sh (same environment as run.sh):

    SWITCHYARD_BIN      the switch binary
    MEPHISTO_WHEEL_DIR  the unpacked mephisto-1.1.1 wheel

Every wait has a deadline; nothing sleeps for a fixed time.
"""

import concurrent.futures
import json
import logging
import os
import sys
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mephisto_loader  # noqa: E402
import test_mephisto_router as base  # noqa: E402  (switch, backend, HTTP helpers)

WAIT = base.WAIT
CORE_VERSION = "1.5.1"  # packages/mephisto-core/package.json at v1.5.2


# --------------------------------------------------------------------------
# what mephisto-core 1.5.1 sends


def python_time():
    """utils.js pythonTime(): Date.now() / 1000."""
    return int(time.time() * 1000) / 1000


def js_number_text(x):
    """How FormData.set turns pythonTime()'s number into text."""
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def post_form(path, parts):
    """A multipart/form-data POST as a browser sends a FormData: parts in
    order, `(name, value)` text fields and `(name, filename, bytes, type)`
    files."""
    boundary = "----WebKitFormBoundary" + uuid.uuid4().hex[:16]
    body = []
    for part in parts:
        if len(part) == 2:
            name, value = part
            body.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                .encode() + value.encode() + b"\r\n")
        else:
            name, filename, content, ctype = part
            body.append(
                (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                 f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n').encode()
                + content + b"\r\n")
    data = b"".join(body) + f"--{boundary}--\r\n".encode()
    req = base.urllib.request.Request(
        base.SWITCH.http + path, data=data, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return base._do(req, WAIT)


def worker_opinion_form(agent_id, text, attachments):
    """createWorkerOpinion (mephisto-addons) then postMetadata(multipart):
    files first (field `attachments`), then `data`, `files` (the browser's
    own file list), `type`; postMetadata sets USED_AGENT_ID, `metadata`
    (= `data`) and client_timestamp."""
    data = json.dumps({"worker_opinion": {"questions": [
        {"question": "General Worker Opinion", "text": text}]}},
        separators=(",", ":"))
    parts = [("attachments", name, content, ctype)
             for name, content, ctype in attachments]
    files_info = [{"lastModified": 1733000000000, "name": name,
                   "size": len(content), "type": ctype}
                  for name, content, ctype in attachments]
    ts = python_time()
    parts += [
        ("data", data),
        ("files", json.dumps(files_info, separators=(",", ":"))),
        ("type", "worker_opinion"),
        ("USED_AGENT_ID", agent_id),
        ("metadata", data),
        ("client_timestamp", js_number_text(ts)),
    ]
    return parts, json.loads(data), ts


def form_composer_submit(agent_id, final_data, files):
    """prepareFormDataForSubmit (mephisto-addons) then
    postCompleteTask(multipart): `final_data` appended as an object (a
    FormData makes it "[object Object]"), `final_string_data`, the files
    of each file input, then USED_AGENT_ID and client_timestamp."""
    ts = python_time()
    parts = [("final_data", "[object Object]"),
             ("final_string_data", json.dumps(final_data, separators=(",", ":")))]
    parts += [(field, name, content, ctype) for field, name, content, ctype in files]
    parts += [("USED_AGENT_ID", agent_id), ("client_timestamp", js_number_text(ts))]
    return parts, ts


# --------------------------------------------------------------------------
# what the v1.5.2 backend reads


def backend_log_metrics(packet):
    """ClientIOHandler.log_metrics_for_packet: arithmetic on the timestamps
    (run for register_agent, submit_onboarding, submit_unit, log_error)."""
    router_outgoing = packet.router_outgoing_timestamp
    if router_outgoing is None:
        router_outgoing = packet.server_timestamp
    router_incoming = packet.router_incoming_timestamp
    if router_incoming is None:
        router_incoming = router_outgoing
    client = packet.client_timestamp
    if client is None:
        client = router_incoming
    return (max(0, router_incoming - client), max(0, router_outgoing - router_incoming),
            max(0, time.time() - client))


def backend_save_files(packet, upload_dir):
    """ClientIOHandler._save_files, with the architects' download_file:
    LocalArchitect copies `<upload dir>/<filename>`; the hosted architects
    GET `/download_file/<filename>`. Returns the bytes of each file."""
    out = []
    if isinstance(packet.data, dict):
        data_files = packet.data.get("files")
        if data_files is not None:
            for f_obj in data_files:
                filename = f_obj["filename"]
                with open(os.path.join(upload_dir, filename), "rb") as f:
                    local = f.read()
                status, _, remote = base.http_get(
                    base.SWITCH.http + "/download_file/" + filename)
                assert status == 200, f"/download_file/{filename}: {status}"
                assert remote == local
                out.append(local)
    return out


def backend_save_agent_metadata(data):
    """agent_metadata.save_agent_metadata: what each kind of metadata reads;
    returns the property name and value the agent state would store."""
    if "tips" in data:
        return "tips", {"header": data["tips"]["header"], "text": data["tips"]["text"]}
    if "feedback" in data:
        return "feedback", [{"question": q["question"], "text": q["text"]}
                            for q in data["feedback"]["data"]]
    if "worker_opinion" in data:
        # _save_worker_opinion reads both keys unconditionally
        attachments = data["files"]
        attachments_by_fields = data["filesByFields"]
        questions = [{"question": q["question"], "answer": q["text"]}
                     for q in data["worker_opinion"]["questions"]]
        return "worker_opinion", {"attachments": attachments,
                                  "attachments_by_fields": attachments_by_fields,
                                  "questions": questions}
    return "default", data


def backend_log_frontend_error(packet):
    """ClientIOHandler._log_frontend_error."""
    error = packet.data
    if "error_type" in error and error["error_type"] == "version-mismatch":
        return "version-mismatch", error["text"]
    return "error", error


# --------------------------------------------------------------------------
# the cases (run in name order)


class Mephisto15Conformance(unittest.TestCase):
    maxDiff = None

    @property
    def upload_dir(self):
        return base.SWITCH.upload_dir

    def wait(self, what, packet_type, subject_id):
        return base.BACKEND.wait_for(
            what, lambda p: p.type == packet_type and p.subject_id == subject_id)

    def test_00_task_config_for_both_frontends(self):
        # getTaskConfig(): axios GET with params {mephisto_task_version}
        for version in (CORE_VERSION, "2.0.4"):
            status, headers, body = base.http_get(
                base.SWITCH.http + f"/task_config.json?mephisto_task_version={version}")
            self.assertEqual(status, 200, body)
            self.assertIn("application/json", headers.get("Content-Type", ""))
            self.assertIsInstance(json.loads(body), dict)
        # An unknown version is still reported; being the first log_error
        # from `mephisto` after the two above, it shows they made none.
        status, _, _ = base.http_get(
            base.SWITCH.http + "/task_config.json?mephisto_task_version=1.4.0")
        self.assertEqual(status, 200)
        got = self.wait("version-mismatch log_error", "log_error", "mephisto")
        kind, text = backend_log_frontend_error(got)
        self.assertEqual(kind, "version-mismatch")
        self.assertIn("1.4.0", text)
        self.assertNotIn("using 1.5.1", text)
        backend_log_metrics(got)

    def test_01_request_agent(self):
        agent_id, reg, provider_data, details, status, _, body = base.register_agent()
        self.assertEqual(status, 200, body)
        # ClientIOHandler._register_agent
        self.assertEqual(reg.data["request_id"], reg.subject_id)
        self.assertEqual(reg.data["provider_data"]["agent_registration_id"],
                         provider_data["agent_registration_id"])
        backend_log_metrics(reg)
        self.assertEqual(json.loads(body)["data"]["agent_id"], agent_id)

    def test_02_submit_onboarding(self):
        agent_id, *_, status, _, _ = base.register_agent()
        self.assertEqual(status, 200)
        onboarding = {"answer": "yes"}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # postCompleteOnboarding -> postProviderRequest
            future = pool.submit(
                base.http_post_json, base.SWITCH.http + "/submit_onboarding",
                {"provider_data": {"USED_AGENT_ID": agent_id,
                                   "onboarding_data": onboarding},
                 "client_timestamp": python_time()}, WAIT * 2)
            got = self.wait("submit_onboarding", "submit_onboarding", agent_id)
            # ClientIOHandler._on_submit_onboarding
            self.assertIn("onboarding_data", got.data)
            self.assertEqual(got.data["onboarding_data"], onboarding)
            request_id = got.data["request_id"]
            backend_log_metrics(got)
            details = {"request_id": request_id, "agent_id": agent_id + "-task"}
            base.BACKEND.send("agent_details", base.Backend.CHANNEL_ID, details)
            status, _, body = future.result(WAIT * 2)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["data"], details)

    def test_03_submit_metadata_json(self):
        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        metadata = {"tips": {"header": "A tip", "text": "Read twice"}}
        ts = python_time()
        status, headers, body = base.http_post_json(
            base.SWITCH.http + "/submit_metadata",
            {"USED_AGENT_ID": agent_id, "metadata": metadata, "client_timestamp": ts})
        self.assertEqual(status, 200, body)
        self.assertIn("application/json", headers.get("Content-Type", ""))
        self.assertEqual(json.loads(body), {"status": "Submitted metadata"})
        got = self.wait("JSON submit_metadata", "submit_metadata", agent_id)
        # a JSON submit is forwarded as sent: no file keys are added
        self.assertEqual(got.data, metadata)
        self.assertEqual(backend_save_files(got, self.upload_dir), [])
        self.assertEqual(backend_save_agent_metadata(got.data),
                         ("tips", metadata["tips"]))
        self.assertEqual(got.client_timestamp, ts)

    def test_04_worker_opinion_with_files(self):
        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        shots = [("screen shot.png", b"\x89PNG\r\n\x1a\n" + os.urandom(300), "image/png"),
                 ("log.txt", b"worker log\n", "text/plain")]
        parts, data, ts = worker_opinion_form(agent_id, "Too long", shots)
        status, _, body = post_form("/submit_metadata", parts)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "Submitted metadata"})
        got = self.wait("multipart submit_metadata", "submit_metadata", agent_id)
        # ClientIOHandler._on_submit_metadata -> _save_files
        self.assertEqual(backend_save_files(got, self.upload_dir),
                         [content for _, content, _ in shots])
        # -> agent.handle_metadata_submit -> _save_worker_opinion
        kind, saved = backend_save_agent_metadata(got.data)
        self.assertEqual(kind, "worker_opinion")
        self.assertEqual(saved["questions"],
                         [{"question": "General Worker Opinion", "answer": "Too long"}])
        files = saved["attachments"]
        self.assertEqual([f["originalname"] for f in files], [n for n, _, _ in shots])
        self.assertEqual([f["mimetype"] for f in files], [t for _, _, t in shots])
        self.assertEqual([f["size"] for f in files], [len(c) for _, c, _ in shots])
        self.assertTrue(all(f["fieldname"] == "attachments" for f in files))
        by_field = saved["attachments_by_fields"]
        self.assertEqual(list(by_field), ["attachments"])
        self.assertEqual(by_field["attachments"],
                         [{k: v for k, v in f.items() if k != "fieldname"} for f in files])
        # the rest of the metadata is what the form's `data` held
        self.assertEqual(got.data["worker_opinion"], data["worker_opinion"])
        self.assertEqual(set(got.data), {"worker_opinion", "files", "filesByFields"})
        # /submit_metadata keeps client_timestamp as sent (the form's text)
        self.assertEqual(got.client_timestamp, js_number_text(ts))
        self.assertIsInstance(got.router_incoming_timestamp, float)

    def test_05_worker_opinion_without_files(self):
        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        parts, data, _ = worker_opinion_form(agent_id, "All good", [])
        status, _, body = post_form("/submit_metadata", parts)
        self.assertEqual(status, 200, body)
        got = self.wait("multipart submit_metadata", "submit_metadata", agent_id)
        self.assertEqual(got.data["files"], [])
        self.assertEqual(got.data["filesByFields"], {})
        self.assertEqual(backend_save_files(got, self.upload_dir), [])
        kind, saved = backend_save_agent_metadata(got.data)
        self.assertEqual(kind, "worker_opinion")
        self.assertEqual(saved["questions"][0]["answer"], "All good")
        self.assertEqual((saved["attachments"], saved["attachments_by_fields"]), ([], {}))

    def test_06_form_composer_submit_with_files(self):
        agent_id, *_, status, _, _ = base.register_agent()
        self.assertEqual(status, 200)
        final_data = {"name": "Ada", "photo": "me.jpg", "consent": True}
        photo = os.urandom(1024)
        parts, ts = form_composer_submit(
            agent_id, final_data, [("photo", "me.jpg", photo, "image/jpeg")])
        status, _, body = post_form("/submit_task", parts)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "Submitted!"})
        got = self.wait("multipart submit_unit", "submit_unit", agent_id)
        # ClientIOHandler._on_submit_unit: _save_files, handle_submit(data),
        # log_metrics_for_packet
        self.assertEqual(backend_save_files(got, self.upload_dir), [photo])
        for k, v in final_data.items():
            self.assertEqual(got.data[k], v)
        self.assertEqual(got.data["filesByFields"]["photo"][0]["filename"],
                         got.data["files"][0]["filename"])
        self.assertNotIn("fieldname", got.data["filesByFields"]["photo"][0])
        self.assertAlmostEqual(got.client_timestamp, ts, places=3)
        backend_log_metrics(got)

    def test_07_form_composer_submit_without_files(self):
        agent_id, *_, status, _, _ = base.register_agent()
        self.assertEqual(status, 200)
        final_data = {"name": "Bob"}
        parts, _ = form_composer_submit(agent_id, final_data, [])
        status, _, body = post_form("/submit_task", parts)
        self.assertEqual(status, 200, body)
        got = self.wait("multipart submit_unit", "submit_unit", agent_id)
        self.assertEqual(got.data, {"name": "Bob", "files": [], "filesByFields": {}})
        self.assertEqual(backend_save_files(got, self.upload_dir), [])
        backend_log_metrics(got)

    def test_08_log_error(self):
        agent_id = f"agent-{uuid.uuid4().hex[:8]}"
        error = {"error": "Cannot read properties of undefined", "errorInfo": {}}
        status, _, body = base.http_post_json(
            base.SWITCH.http + "/log_error",
            {"USED_AGENT_ID": agent_id, "error_data": error,
             "client_timestamp": python_time()})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "Error log sent!"})
        got = self.wait("log_error", "log_error", agent_id)
        self.assertEqual(backend_log_frontend_error(got), ("error", error))
        backend_log_metrics(got)

    def test_99_channel_stayed_healthy(self):
        self.assertTrue(base.SWITCH.alive(), "switchyard exited")
        self.assertTrue(base.BACKEND.channel.is_alive())
        self.assertEqual(base.BACKEND.open_count, 1, "the channel reconnected")
        self.assertEqual(base.BACKEND.catastrophic, [])
        self.assertEqual(base.LOGS.problems(), [], "Mephisto/websockets logged trouble")
        self.assertEqual(base.THREAD_EXCEPTIONS, [])
        with base.BACKEND.cond:
            types = [p.type for p in base.BACKEND.received]
        self.assertEqual([t for t in types if t not in base.CLIENT_IO_ACCEPTED], [])


# --------------------------------------------------------------------------


def main():
    wheel_dir = os.environ.get("MEPHISTO_WHEEL_DIR")
    if not wheel_dir:
        print("MEPHISTO_WHEEL_DIR is not set (run tests/conformance/run_15.sh)",
              file=sys.stderr)
        return 2
    threading.excepthook = base._thread_excepthook
    base.M = mephisto_loader.load(wheel_dir)
    base.LOGS = base.CaptureHandler()
    logging.getLogger().addHandler(base.LOGS)

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(Mephisto15Conformance)
    if len(sys.argv) > 1:
        suite = unittest.TestSuite(
            t for t in suite if any(a in t.id() for a in sys.argv[1:]))
    total = suite.countTestCases()
    try:
        base.setUpModule()
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    except Exception as e:  # noqa: BLE001 - the switch or channel did not start
        print(f"conformance 1.5: setup failed: {e}", file=sys.stderr)
        if base.SWITCH is not None:
            print(base.SWITCH.log_tail())
            base.SWITCH.cleanup()
        print(f"0 passed, {total} failed", flush=True)
        return 1
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    try:
        base.tearDownModule()
    finally:
        if failed and base.SWITCH is not None:
            print("---- switchyard log (tail) ----")
            print(base.SWITCH.log_tail())
            print("-------------------------------")
        if base.SWITCH is not None:
            base.SWITCH.cleanup()
    skipped = len(result.skipped)
    if skipped:
        # The test command provides everything these tests need: a skip
        # is a suite that did not run, so the run fails.
        print(f"{skipped} skipped (a skipped test fails the run)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or skipped or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
