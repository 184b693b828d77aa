"""A client for switchyard's client socket (PROTOCOL 3), standard library only.

The client socket is a TCP port (``--tcp``, default ``127.0.0.1:5000``) whose
messages are framed like the mesh link (PROTOCOL 2.1): ``0xFF`` starts a
frame, ``0xFE`` ends it, and any content byte in ``0xFA..=0xFF`` travels as
``0xFA, byte ^ 0xFA``.

Two kinds of connection:

* :class:`Client` -- a *sending* connection. Each request frame (a 5-byte
  command and its arguments) gets exactly one answer frame, in order:
  ``S`` + payload, or ``F`` + len (1) + reason, which raises
  :class:`SwitchError`.
* :class:`Listener` -- a *listening* connection. It sends ``LISTN``, expects
  ``S``, then a daemon thread reads the pushes and calls the callbacks
  registered with :meth:`Listener.on`::

      M | src (2) | message          -> fn(src, message)
      D | src (2) | [D] payload      -> fn(src, [(type, raw, value), ...])
      R | node (2) | S or F|len|text -> fn(node, ok, error)

Example::

    from switchyard_client import Client, Listener, decode_value

    with Client(port=5000) as c:
        print(c.node_status())
        for node, raw in c.get("TMP").items():
            print(node, decode_value("TMP", raw))

    with Listener(port=5000) as ls:
        ls.on("M", lambda src, msg: print(hex(src), msg))
        c = Client(port=5000); c.send(3, "hi"); c.close()
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

__all__ = [
    "START",
    "END",
    "ESC",
    "MAX_FRAME",
    "MAX_MESSAGE",
    "encode_frame",
    "FrameDecoder",
    "FrameDropped",
    "SwitchError",
    "ProtocolError",
    "Client",
    "Listener",
    "Readings",
    "DATA_TYPES",
    "register_data_type",
    "decode_value",
    "parse_data_payload",
    "parse_get_answer",
]

log = logging.getLogger("switchyard_client")

START = 0xFF
END = 0xFE
ESC = 0xFA
#: Largest decoded frame content the switch (and this decoder) accepts.
MAX_FRAME = 1024
#: Largest message the mesh carries (the switch refuses longer ones).
MAX_MESSAGE = 255

Data = Union[bytes, bytearray, memoryview, str]


# --------------------------------------------------------------------------
# Framing (PROTOCOL 2.1)
# --------------------------------------------------------------------------


def encode_frame(content: bytes) -> bytes:
    """One frame on the wire: START, escaped content, END."""
    out = bytearray([START])
    for b in bytes(content):
        if b >= ESC:
            out.append(ESC)
            out.append(b ^ ESC)
        else:
            out.append(b)
    out.append(END)
    return bytes(out)


class FrameDecoder:
    """Incremental frame decoder: :meth:`feed` bytes in any chunks, get the
    frames completed so far (iterating the returned list yields them).

    Rules (the switch's own decoder, PROTOCOL 2.1):

    * bytes outside a frame are discarded;
    * ``0xFF`` inside a frame drops the partial frame and starts a new one;
    * escape followed by ``0xFE`` or ``0xFF`` drops the frame and resyncs on
      that byte (``0xFF`` opens a new frame, ``0xFE`` ends the dropped one);
      escape followed by any other byte ``b`` decodes to ``b ^ 0xFA``;
    * a frame whose decoded content passes ``max_len`` bytes is dropped and
      everything up to the next ``0xFE`` is skipped (a ``0xFF`` resyncs);
    * raw reserved bytes ``0xFB..0xFD`` inside a frame are kept as content.

    Dropped things are counted in :attr:`dropped` (keys ``outside_bytes``,
    ``restarted``, ``bad_escape``, ``too_long``).
    """

    _OUTSIDE, _IN, _ESCAPED, _SKIPPING = range(4)

    def __init__(self, max_len: int = MAX_FRAME) -> None:
        self.max_len = max(1, int(max_len))
        self._state = self._OUTSIDE
        self._buf = bytearray()
        self.dropped: Dict[str, int] = {
            "outside_bytes": 0,
            "restarted": 0,
            "bad_escape": 0,
            "too_long": 0,
        }

    @property
    def idle(self) -> bool:
        """True between frames (no partial frame held)."""
        return self._state == self._OUTSIDE

    def _push(self, b: int, items: list) -> None:
        if len(self._buf) >= self.max_len:
            self._buf.clear()
            self.dropped["too_long"] += 1
            self._state = self._SKIPPING
            items.append(FrameDropped(self.max_len))
        else:
            self._buf.append(b)
            self._state = self._IN

    def _start(self) -> None:
        self._buf.clear()
        self._state = self._IN

    def feed(self, data: bytes) -> List[bytes]:
        """Consume ``data``; return the frames it completed, in order."""
        return [f for f in self.feed_items(data) if isinstance(f, bytes)]

    def feed_items(self, data: bytes) -> List[Union[bytes, "FrameDropped"]]:
        """Like :meth:`feed`, but a frame dropped for being too long also
        takes its place in the list, as a :class:`FrameDropped`. (A reader
        that pairs frames with requests needs to know one went by.)"""
        items: List[Union[bytes, FrameDropped]] = []
        for b in bytes(data):
            st = self._state
            if st == self._OUTSIDE:
                if b == START:
                    self._start()
                else:
                    self.dropped["outside_bytes"] += 1
            elif st == self._IN:
                if b == END:
                    items.append(bytes(self._buf))
                    self._buf.clear()
                    self._state = self._OUTSIDE
                elif b == START:
                    self.dropped["restarted"] += 1
                    self._start()
                elif b == ESC:
                    self._state = self._ESCAPED
                else:
                    self._push(b, items)
            elif st == self._ESCAPED:
                if b == START:
                    self.dropped["bad_escape"] += 1
                    self._start()
                elif b == END:
                    self.dropped["bad_escape"] += 1
                    self._buf.clear()
                    self._state = self._OUTSIDE
                else:
                    self._push(b ^ ESC, items)
            else:  # skipping a too-long frame
                if b == START:
                    self._start()
                elif b == END:
                    self._state = self._OUTSIDE
        return items


class FrameDropped:
    """In :meth:`FrameDecoder.feed_items`: a frame over ``max_len`` bytes
    went by and was dropped."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def __repr__(self) -> str:
        return f"FrameDropped(max_len={self.max_len})"


# --------------------------------------------------------------------------
# Data types (PROTOCOL 2.4) and payload parsers
# --------------------------------------------------------------------------


def _i24(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


#: data type -> (length in bytes, decoder of exactly that many bytes).
DATA_TYPES: Dict[str, Tuple[int, Callable[[bytes], Any]]] = {
    "GPS": (6, lambda b: {"lon": _i24(b[0:3]) / 1e4, "lat": _i24(b[3:6]) / 1e4}),
    "TMP": (2, lambda b: {"celsius": struct.unpack(">h", b)[0] / 100}),
    "HUM": (1, lambda b: {"percent": b[0]}),
    "BAT": (2, lambda b: {"millivolts": struct.unpack(">H", b)[0]}),
}


def register_data_type(name: str, length: int, decoder: Callable[[bytes], Any]) -> None:
    """Teach :func:`decode_value` a type your edge nodes and programs agree on."""
    if len(name) != 3 or not name.isascii():
        raise ValueError("a data type is 3 ASCII characters")
    DATA_TYPES[name] = (int(length), decoder)


def decode_value(data_type: str, raw: bytes) -> Optional[Any]:
    """The decoded value of one entry, or None for an unknown type or a
    length that disagrees with the type."""
    spec = DATA_TYPES.get(data_type)
    if spec is None or len(raw) != spec[0]:
        return None
    return spec[1](bytes(raw))


def parse_data_payload(payload: bytes) -> List[Tuple[str, bytes, Optional[Any]]]:
    """A ``[D]`` payload -- count (1), then count x type (3 ASCII) | len (1)
    | data -- as a list of ``(type, raw, decoded value or None)``.

    Raises ValueError when a count or length runs past the end, or bytes
    are left over."""
    payload = bytes(payload)
    if not payload:
        raise ValueError("empty [D] payload")
    count, i = payload[0], 1
    entries = []
    for n in range(count):
        if i + 4 > len(payload):
            raise ValueError(f"[D] payload truncated in entry {n + 1} of {count}")
        data_type = payload[i : i + 3].decode("ascii", "replace")
        length = payload[i + 3]
        i += 4
        if i + length > len(payload):
            raise ValueError(f"[D] entry {data_type} runs past the end")
        raw = payload[i : i + length]
        i += length
        entries.append((data_type, raw, decode_value(data_type, raw)))
    if i != len(payload):
        raise ValueError(f"{len(payload) - i} byte(s) after the last [D] entry")
    return entries


class Readings(dict):
    """The answer to ``[GET]``: ``{node_addr: raw bytes}`` plus
    :attr:`data_type`. :meth:`decoded` gives ``{node_addr: value}``."""

    def __init__(self, data_type: str, items: Iterable[Tuple[int, bytes]] = ()) -> None:
        super().__init__(items)
        self.data_type = data_type

    def decoded(self) -> Dict[int, Optional[Any]]:
        return {a: decode_value(self.data_type, raw) for a, raw in self.items()}

    def __repr__(self) -> str:
        return f"Readings({self.data_type!r}, {dict.__repr__(self)})"


def parse_get_answer(payload: bytes) -> Readings:
    """A ``[GET]`` answer's payload (after ``S``): type (3) | len (1) |
    count (1) | (node (2) | data (len))..."""
    payload = bytes(payload)
    if len(payload) < 5:
        raise ProtocolError(f"[GET] answer too short: {payload!r}")
    data_type = payload[:3].decode("ascii", "replace")
    length, count = payload[3], payload[4]
    body = payload[5:]
    if len(body) != count * (2 + length):
        raise ProtocolError(
            f"[GET] answer: {count} node(s) of {length} byte(s) announced, "
            f"{len(body)} byte(s) follow"
        )
    step = 2 + length
    return Readings(
        data_type,
        (
            (int.from_bytes(body[k : k + 2], "big"), body[k + 2 : k + step])
            for k in range(0, len(body), step)
        ),
    )


# --------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------


class SwitchError(Exception):
    """The switch answered ``F``; :attr:`reason` is its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(Exception):
    """The switch sent something this client cannot parse."""


def _as_bytes(data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def _addr(addr: int) -> bytes:
    if not 0 <= int(addr) <= 0xFFFF:
        raise ValueError(f"node address {addr!r} is not 0..0xFFFF")
    return int(addr).to_bytes(2, "big")


def _fail_reason(rest: bytes) -> str:
    """``len (1) | reason`` of an ``F``."""
    if not rest or len(rest) != 1 + rest[0]:
        raise ProtocolError(f"malformed F answer: {rest!r}")
    return rest[1:].decode("utf-8", "replace")


def _connect(host: str, port: int, timeout: Optional[float]) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError as e:
        raise ConnectionError(f"no switch listening on {host}:{port}") from e
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Connection:
    """A framed TCP connection: write frames, read frames."""

    def __init__(self, host: str, port: int, timeout: Optional[float], max_frame: int) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_frame = max_frame
        self._sock: Optional[socket.socket] = None
        self._decoder = FrameDecoder(max_frame)
        self._frames: List[Union[bytes, FrameDropped]] = []

    def _open(self) -> socket.socket:
        if self._sock is None:
            self._sock = _connect(self.host, self.port, self.timeout)
            self._decoder = FrameDecoder(self.max_frame)
            self._frames = []
        return self._sock

    def _send_frames(self, contents: Iterable[bytes]) -> None:
        sock = self._open()
        sock.sendall(b"".join(encode_frame(c) for c in contents))

    def _read_frame(self) -> Union[bytes, FrameDropped]:
        """The next frame (or a too-long frame's FrameDropped). Raises
        socket.timeout / ConnectionError."""
        while not self._frames:
            sock = self._sock
            if sock is None:
                raise ConnectionError("connection closed")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(
                    f"switch at {self.host}:{self.port} closed the connection"
                )
            self._frames.extend(self._decoder.feed_items(chunk))
        return self._frames.pop(0)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Client(_Connection):
    """A sending connection: one answer per request, in order.

    Connects at once (``ConnectionError("no switch listening on HOST:PORT")``
    when refused). If a request times out or the switch drops the
    connection, the connection is closed (a late answer would pair with the
    wrong request) and the next request opens a new one. Safe to share
    between threads: requests are serialized.

    ``max_frame`` is the largest answer accepted (PROTOCOL 2.1: 1024 bytes);
    a longer answer is dropped and its request raises ProtocolError (the
    connection stays usable).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        timeout: Optional[float] = 5.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        super().__init__(host, port, timeout, max_frame)
        self._lock = threading.Lock()
        self._open()

    # -- generic -----------------------------------------------------------

    def request(self, content: bytes) -> bytes:
        """Send one request frame; return the ``S`` answer's payload or
        raise SwitchError on ``F``."""
        result = self.pipeline([content])[0]
        if isinstance(result, SwitchError):
            raise result
        return result

    def pipeline(self, contents: List[bytes]) -> List[Union[bytes, SwitchError]]:
        """Send several request frames at once, then read their answers (in
        order). Each result is the ``S`` payload or a SwitchError (returned,
        not raised). Raises ProtocolError if an answer was dropped for
        being longer than ``max_frame``."""
        with self._lock:
            try:
                self._send_frames(contents)
                results = [self._answer() for _ in contents]
            except socket.timeout as e:
                self.close()
                raise TimeoutError(
                    f"no answer from the switch at {self.host}:{self.port} "
                    f"within {self.timeout} s"
                ) from e
            except (OSError, ProtocolError):
                self.close()
                raise
        for r in results:
            if isinstance(r, FrameDropped):
                raise ProtocolError(
                    f"the switch's answer was longer than {r.max_len} bytes "
                    f"(the frame limit of PROTOCOL 2.1) and was dropped; "
                    f"Client(max_frame=...) accepts longer answers"
                )
        return results  # type: ignore[return-value]

    def _answer(self) -> Union[bytes, SwitchError, FrameDropped]:
        while True:
            frame = self._read_frame()
            if isinstance(frame, FrameDropped):
                return frame
            if not frame:
                raise ProtocolError("empty answer frame")
            tag, rest = frame[0:1], frame[1:]
            if tag == b"S":
                return rest
            if tag == b"F":
                return SwitchError(_fail_reason(rest))
            if tag in (b"M", b"D", b"R"):
                # A push on a sending connection: not ours to answer.
                log.debug("ignoring push %r on a sending connection", frame[:16])
                continue
            raise ProtocolError(f"unexpected answer frame {frame[:32]!r}")

    # -- the commands --------------------------------------------------------

    def send(self, addr: int, data: Data, tracked: bool = False) -> None:
        """``SEND-`` (or ``SENDI`` when tracked: the root's result is then
        pushed to listeners as ``R``) a message of at most 255 bytes."""
        cmd = b"SENDI" if tracked else b"SEND-"
        self.request(cmd + _addr(addr) + _as_bytes(data))

    def broadcast(self, data: Data) -> None:
        """``BCAST`` a message to every node."""
        self.request(b"BCAST\x00\x00" + _as_bytes(data))

    def restart_root(self) -> None:
        """``RST-R``: restart the root module."""
        self.request(b"RST-R")

    def clean(self) -> None:
        """``CLEAN``: reset the network in the root's persistent memory."""
        self.request(b"CLEAN")

    def node_status(self) -> Dict[str, Any]:
        """``NSTAT``: ``{"node_amount", "node_addr_list", "node_status_list"}``."""
        return self._json(self.request(b"NSTAT"))

    def network_info(self) -> Dict[str, Any]:
        """``NINFO``: nodes, link state, uptime, frame counters."""
        return self._json(self.request(b"NINFO"))

    def get(self, data_type: str, addr: int = 0) -> Readings:
        """``[GET]``: the latest ``data_type`` value of node ``addr`` (0: of
        every node) as :class:`Readings` ``{addr: raw bytes}``."""
        t = data_type.encode("ascii") if data_type.isascii() else b""
        if len(t) != 3 or not all(0x21 <= c <= 0x7E for c in t):
            raise ValueError(f"data type must be 3 ASCII characters, not {data_type!r}")
        return parse_get_answer(self.request(b"[GET]" + t + _addr(addr)))

    def active_count(self) -> int:
        """``ACT-C``: how many nodes are active."""
        p = self.request(b"ACT-C")
        if len(p) != 2:
            raise ProtocolError(f"ACT-C answer is not 2 bytes: {p!r}")
        return int.from_bytes(p, "big")

    def write_log(self, text: str) -> None:
        """``W-LOG``: a log line for the switch's monitor subscribers."""
        self.request(b"W-LOG" + text.encode("utf-8"))

    def write_robots(self, robots: Union[List[Dict[str, Any]], bytes, str]) -> None:
        """``W-RBT``: the robots' status, a list of ``{id, name, state,
        node}``. A ``bytes``/``str`` argument is sent as is (already JSON)."""
        if isinstance(robots, (bytes, bytearray, str)):
            body = _as_bytes(robots)
        else:
            body = json.dumps(list(robots), separators=(",", ":")).encode("utf-8")
        self.request(b"W-RBT" + body)

    @staticmethod
    def _json(payload: bytes) -> Dict[str, Any]:
        try:
            return json.loads(payload.decode("utf-8"))
        except ValueError as e:
            raise ProtocolError(f"answer is not JSON: {payload[:64]!r}") from e


PushCallback = Callable[..., Any]


class Listener(_Connection):
    """A listening connection with observer-style callbacks.

    ``on("M", fn)``: fn(src_addr, message: bytes)
    ``on("D", fn)``: fn(src_addr, [(type, raw, value or None), ...])
    ``on("R", fn)``: fn(node, ok: bool, error: str or None)

    Callbacks run on the listener's daemon thread, in arrival order; an
    exception in one is logged and the others still run. :meth:`start`
    connects, says ``LISTN`` and waits for ``S``; :meth:`stop` closes the
    socket and joins the thread. If the switch goes away the thread ends
    (see :attr:`running`); :meth:`start` again to reconnect.
    """

    EVENTS = ("M", "D", "R")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        timeout: Optional[float] = 5.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        super().__init__(host, port, timeout, max_frame)
        self._callbacks: Dict[str, List[PushCallback]] = {e: [] for e in self.EVENTS}
        self._cb_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    def on(self, event: str, fn: Optional[PushCallback] = None):
        """Register ``fn`` for ``event`` ("M", "D" or "R"); returns fn, so it
        also works as a decorator: ``@listener.on("M")``."""
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; expected one of {self.EVENTS}")
        if fn is None:
            return lambda f: self.on(event, f)
        with self._cb_lock:
            self._callbacks[event].append(fn)
        return fn

    def off(self, event: str, fn: PushCallback) -> None:
        """Unregister a callback (no error if it was not registered)."""
        with self._cb_lock:
            try:
                self._callbacks[event].remove(fn)
            except (KeyError, ValueError):
                pass

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Listener":
        if self.running:
            return self
        self._stopping.clear()
        sock = self._open()
        early: List[Union[bytes, FrameDropped]] = []
        try:
            sock.sendall(encode_frame(b"LISTN"))
            while True:
                frame = self._read_frame()
                if isinstance(frame, FrameDropped):
                    raise ProtocolError("answer to LISTN too long")
                if frame[:1] == b"S":
                    break
                if frame[:1] == b"F":
                    raise SwitchError(_fail_reason(frame[1:]))
                early.append(frame)  # a push that overtook the answer
        except socket.timeout as e:
            self.close()
            raise TimeoutError(f"no answer to LISTN within {self.timeout} s") from e
        except BaseException:
            self.close()
            raise
        # Reads block until data, stop() or the switch closing.
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._frames[:0] = early
        self._thread = threading.Thread(
            target=self._run, name=f"switchyard-listener-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        self._stopping.set()
        self.close()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    def __enter__(self) -> "Listener":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while True:
                frame = self._read_frame()
                if isinstance(frame, FrameDropped):
                    log.warning("listener: a push over %d bytes was dropped", frame.max_len)
                    continue
                self._dispatch(frame)
        except (OSError, ValueError) as e:
            if not self._stopping.is_set():
                log.warning("listener %s:%s: %s", self.host, self.port, e)
        finally:
            if not self._stopping.is_set():
                self.close()

    def _dispatch(self, frame: bytes) -> None:
        tag = frame[:1].decode("latin-1")
        if tag not in self._callbacks or len(frame) < 3:
            log.warning("listener: unexpected frame %r", frame[:32])
            return
        src = int.from_bytes(frame[1:3], "big")
        body = frame[3:]
        try:
            if tag == "M":
                args: Tuple[Any, ...] = (src, body)
            elif tag == "D":
                args = (src, parse_data_payload(body))
            elif body == b"S":
                args = (src, True, None)
            elif body[:1] == b"F":
                args = (src, False, _fail_reason(body[1:]))
            else:
                raise ProtocolError(f"malformed R push {frame[:32]!r}")
        except (ValueError, ProtocolError) as e:
            log.warning("listener: dropping %s push from 0x%04x: %s", tag, src, e)
            return
        with self._cb_lock:
            callbacks = list(self._callbacks[tag])
        for fn in callbacks:
            try:
                fn(*args)
            except Exception:
                log.exception("listener: %s callback %r failed", tag, fn)
