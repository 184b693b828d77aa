//! The WebSocket transport: the handshake of an upgrade request (`accept`),
//! then a session's frames between its actor and the bare TCP stream, once
//! the HTTP/1 dispatcher has let go (`Outlet::run`).
//!
//! actix-http's dispatcher keeps an 8 KiB read and an 8 KiB write buffer for
//! the life of every connection, upgraded or not; with thousands of idle
//! agents those buffers were most of the switch's memory. Here an idle
//! socket keeps none: reads go into a buffer that is let go once its bytes
//! are handed on, and writes go out vectored, straight from the frames the
//! session's context encoded.
//!
//! The pump pulls the session's output only while less than `OUT_HIGH` bytes
//! wait for the socket, and counts what it pulls in the socket's `Flow`. A
//! peer that stops reading therefore freezes its session's actor, and its
//! senders see the bytes in flight grow and keep what they have in their own
//! bounded queues (see `switchyard_actors::flow`).
//!
//! Limits before bytes (PROTOCOL 1.5 "Bounds"): every frame header is read
//! before its payload, and a frame (or the sum of a fragmented message's
//! frames so far) announcing more than the endpoint's limit ends the
//! connection with a close frame 1009 at once: not one byte of that payload
//! is read. And because a frozen session cannot keep its own deadlines, the
//! pump keeps one for it: when bytes wait for the socket and none could be
//! written for the stall timeout, the pump ends the connection itself.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::{Framed, FramedParts};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::{h1, ws, ConnectionType, Request, Response, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use actix_web_actors::ws::WebsocketContext;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, Stream};
use switchyard_actors::flow::Flow;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Bytes of encoded frames the pump holds for the socket before it stops
/// pulling from the session (the dispatcher's default high-water mark).
pub const OUT_HIGH: usize = 32 * 1024;

/// The most one read takes from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// Frames handed to one vectored write.
const MAX_SLICES: usize = 64;

/// How long a closed session waits for its peer's end of the stream before
/// the socket is dropped (so the peer reads the close frame, not a reset).
const LINGER: Duration = Duration::from_secs(2);

/// What a session's context produces: its encoded frames.
pub type Outbound = Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>;

/// A session as the pump runs it: its context's output and, when its
/// senders watch the socket's bytes in flight, its `Flow`.
pub struct Session {
    pub out: Outbound,
    pub flow: Option<Arc<Flow>>,
}

impl Session {
    /// Starts `actor` in a WebSocket context reading `inbound` with `codec`
    /// (which sets its frame limit).
    pub fn start<A>(actor: A, inbound: Inbound, codec: ws::Codec, flow: Option<Arc<Flow>>) -> Self
    where
        A: actix::Actor<Context = WebsocketContext<A>>
            + actix::StreamHandler<Result<ws::Message, ws::ProtocolError>>,
    {
        Session {
            out: Box::pin(WebsocketContext::with_codec(actor, inbound, codec)),
            flow,
        }
    }
}

/// Frames longer than this are handed on in pieces as they arrive (the
/// session's codec holds them, up to its own frame limit).
const PIECE: usize = 64 * 1024;

/// The socket's incoming bytes, as the session's context reads them: one
/// whole frame per turn of its reader.
///
/// The reader (actix-web-actors' `WsStream`) takes every chunk it is given
/// before it decodes one frame, so a stream that handed it all the socket
/// had would let a peer that sends faster than its session works grow that
/// buffer without end. Handing it one frame per turn leaves the rest in the
/// kernel's buffers, and TCP's window slows the peer down.
pub struct Inbound {
    io: Rc<TcpStream>,
    /// Bytes read and not handed on yet (first, those that came with the
    /// upgrade request): at most one read past the frame being handed on.
    /// Emptied, it lets its allocation go, so an idle socket keeps none.
    buf: BytesMut,
    /// Bytes still to hand on of a frame longer than `PIECE`.
    owed: usize,
    /// A frame was handed on in this turn of the reader.
    handed: bool,
    eof: bool,
    /// The frame at the start of `buf` (or being handed on) was admitted.
    admitted: bool,
    gate: FrameGate,
    /// Shared with the outlet: set when a frame is refused, after which
    /// nothing more is read.
    cut: Rc<Cell<Option<Cut>>>,
    /// The switch-wide budget for large or fragmented messages being read.
    budget: Option<Arc<FrameBudget>>,
    /// Bytes of the current message taken from the budget.
    held: usize,
    /// The admitted frame's bytes count against the budget.
    charged: bool,
    /// The admitted frame ends a data message (its held bytes go back).
    ends_message: bool,
}

/// Bytes of large or fragmented messages that the sessions of the whole
/// switch may be holding while they arrive. A frame of a few kilobytes is
/// read and handled at once, but one of several megabytes (or a message cut
/// into many frames) sits in memory while its peer takes its time: many
/// sockets doing that at once would add up to more than the switch has.
/// Past the budget a socket is closed with 1013 (try again later).
#[derive(Debug)]
pub struct FrameBudget {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

impl FrameBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(FrameBudget {
            limit,
            used: Default::default(),
        })
    }

    /// Takes `n` bytes if they fit.
    pub fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    pub fn give(&self, n: usize) {
        use std::sync::atomic::Ordering;
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(n))
            });
    }

    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.held);
        }
    }
}

impl Inbound {
    fn new(io: Rc<TcpStream>, early: Bytes, cut: Rc<Cell<Option<Cut>>>) -> Self {
        Inbound {
            io,
            buf: BytesMut::from(&early[..]),
            owed: 0,
            handed: false,
            eof: false,
            admitted: false,
            gate: FrameGate::new(usize::MAX),
            cut,
            budget: None,
            held: 0,
            charged: false,
            ends_message: false,
        }
    }

    /// Counts large or fragmented messages against `budget` as they are
    /// read.
    pub fn share_budget(mut self, budget: Arc<FrameBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Takes `n` bytes of the current frame from the budget, if it is
    /// charged; `false` (and the connection cut) if they do not fit.
    fn charge(&mut self, n: usize, cx: &mut Context<'_>) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if !self.charged {
            return true;
        }
        if budget.take(n) {
            self.held += n;
            return true;
        }
        self.cut.set(Some(Cut::Busy {
            budget: budget.limit,
        }));
        self.buf = BytesMut::new();
        cx.waker().wake_by_ref();
        false
    }

    /// The current frame was handed on whole: a message it ended gives its
    /// bytes back.
    fn frame_done(&mut self) {
        if self.ends_message && self.held > 0 {
            if let Some(b) = &self.budget {
                b.give(self.held);
            }
            self.held = 0;
        }
    }

    /// Refuses frames (and fragmented messages) over `limit` bytes of
    /// payload before their payload is read.
    pub fn limit_frames(mut self, limit: usize) -> Self {
        self.gate = FrameGate::new(limit);
        self
    }

    /// Hands on the first `n` buffered bytes.
    fn hand(&mut self, n: usize) -> Poll<Option<Result<Bytes, PayloadError>>> {
        let out = self.buf.split_to(n).freeze();
        if self.buf.is_empty() {
            // Let the allocation go with what was handed on: an idle socket
            // keeps no buffer.
            self.buf = BytesMut::new();
        }
        Poll::Ready(Some(Ok(out)))
    }
}

/// The length of the WebSocket frame (RFC 6455 5.2) at the start of `buf`,
/// header included, once its header is complete.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    frame_header(buf)?.total()
}

/// A WebSocket frame's header (RFC 6455 5.2), as far as the limits need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The header's own length (extended length and mask key included).
    pub head: usize,
    pub opcode: u8,
    pub fin: bool,
    /// The payload length it announces: a peer's claim, not yet a size.
    pub payload: u64,
}

impl Header {
    /// The whole frame's length, when it fits in memory at all.
    pub fn total(&self) -> Option<usize> {
        usize::try_from(self.payload).ok()?.checked_add(self.head)
    }
}

/// The header at the start of `buf`, once it is complete.
pub fn frame_header(buf: &[u8]) -> Option<Header> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let (ext, payload) = match b1 & 0x7f {
        126 => (
            2,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as u64,
        ),
        127 => (8, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => (0, n as u64),
    };
    Some(Header {
        head: 2 + ext + mask,
        opcode: b0 & 0x0f,
        fin: b0 & 0x80 != 0,
        payload,
    })
}

/// The frame limit of one connection, checked on each header before its
/// payload is read. A fragmented message counts as the sum of its frames:
/// a message cut into many small frames is refused like one large frame
/// as soon as the announced sum passes the limit.
#[derive(Debug, Clone)]
pub struct FrameGate {
    limit: u64,
    /// Payload announced so far by the data frames of an unfinished message.
    message: u64,
}

impl FrameGate {
    pub fn new(limit: usize) -> Self {
        FrameGate {
            limit: limit as u64,
            message: 0,
        }
    }

    /// Admits the frame `h` announces, or refuses it with the size that
    /// passed the limit (the frame's, or its message's so far).
    pub fn admit(&mut self, h: &Header) -> Result<(), u64> {
        let size = match h.opcode {
            // Continuation: counts toward the message it continues.
            0x0 => self.message.saturating_add(h.payload),
            // Text or binary: a new message.
            0x1 | 0x2 => h.payload,
            // Control frames (and reserved opcodes, which the codec
            // refuses) stand alone.
            _ => {
                return if h.payload > self.limit {
                    Err(h.payload)
                } else {
                    Ok(())
                };
            }
        };
        if size > self.limit {
            return Err(size);
        }
        self.message = if h.fin { 0 } else { size };
        Ok(())
    }
}

/// Why the transport itself ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A frame, or a fragmented message, announced `announced` bytes, over
    /// the `limit`: closed with 1009 before its payload was read.
    Oversize { announced: u64, limit: usize },
    /// Bytes waited for the socket and none could be written for `after`:
    /// the peer stopped reading.
    Stalled { after: Duration },
    /// The switch-wide budget for large messages being read was spent:
    /// closed with 1013 (try again later).
    Busy { budget: usize },
}

/// The close frame (server side, unmasked) the pump writes for an
/// oversized frame: 1009 "message too big" (RFC 6455 7.4.1).
fn close_frame_1009(limit: usize) -> Bytes {
    close_frame(1009, &format!("message over {limit} bytes"))
}

/// A close frame (server side, unmasked) with `code` and `reason` (cut to
/// the 123 bytes a control frame has room for).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    let mut f = Vec::with_capacity(4 + reason.len());
    f.push(0x88);
    f.push((2 + reason.len()) as u8);
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    Bytes::from(f)
}

/// The write deadline of a connection's pump: when bytes wait for the
/// socket, the last time any of them could be written. Decisions only; the
/// pump keeps the timer.
#[derive(Debug, Clone)]
pub struct Stall {
    after: Duration,
    /// Since when bytes have waited with no progress; `None` while nothing
    /// waits.
    since: Option<Instant>,
}

impl Stall {
    pub fn new(after: Duration) -> Self {
        Stall { after, since: None }
    }

    /// Bytes were written, or nothing waits: the clock starts again.
    pub fn progressed(&mut self) {
        self.since = None;
    }

    /// Bytes wait and none could be written now: the deadline by which
    /// some must be.
    pub fn blocked(&mut self, now: Instant) -> Instant {
        *self.since.get_or_insert(now) + self.after
    }

    /// Whether the peer has been stalled for the whole timeout at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|s| now.saturating_duration_since(s) >= self.after)
    }
}

impl Stream for Inbound {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.cut.get().is_some() {
            // Refused: the outlet closes the connection; nothing more is
            // read.
            return Poll::Pending;
        }
        if this.handed {
            // The reader asks again in the turn it got a whole frame: it
            // decodes that frame and comes back for the next.
            this.handed = false;
            return Poll::Pending;
        }
        loop {
            if this.owed > 0 {
                if !this.buf.is_empty() {
                    let n = this.owed.min(this.buf.len());
                    if !this.charge(n, cx) {
                        return Poll::Pending;
                    }
                    this.owed -= n;
                    this.handed = this.owed == 0;
                    this.admitted = !this.handed;
                    if this.handed {
                        this.frame_done();
                    }
                    return this.hand(n);
                }
            } else if let Some(h) = frame_header(&this.buf) {
                if !this.admitted {
                    if let Err(announced) = this.gate.admit(&h) {
                        this.cut.set(Some(Cut::Oversize {
                            announced,
                            limit: this.gate.limit as usize,
                        }));
                        this.buf = BytesMut::new();
                        // The outlet, polling this session, sees the cut
                        // when the session's turn ends.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.admitted = true;
                    let data = h.opcode < 0x8;
                    this.ends_message = data && h.fin;
                    // Small whole messages, nearly all of them, cost the
                    // budget nothing.
                    this.charged =
                        data && (!h.fin || this.held > 0 || h.total().is_none_or(|l| l > PIECE));
                }
                // Admitted, so within a limit that fits in memory.
                let len = h.total().unwrap_or(usize::MAX);
                if len <= this.buf.len() {
                    if !this.charge(len, cx) {
                        return Poll::Pending;
                    }
                    this.handed = true;
                    this.admitted = false;
                    this.frame_done();
                    return this.hand(len);
                }
                if len > PIECE {
                    this.owed = len;
                    continue;
                }
            }
            if this.eof {
                // A truncated frame goes on as it is: the codec sees it end.
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                let n = this.buf.len();
                return this.hand(n);
            }
            if let Err(e) = ready!(this.io.poll_read_ready(cx)) {
                this.eof = true;
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            // Straight into the buffer's spare room: no copy, no zeroing.
            this.buf.reserve(READ_CHUNK);
            match this.io.try_read_buf(&mut (&mut this.buf).limit(READ_CHUNK)) {
                Ok(0) => this.eof = true,
                Ok(_) => {}
                // Readiness was stale; `poll_read_ready` registers again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if this.buf.is_empty() {
                        this.buf = BytesMut::new();
                    }
                }
                Err(e) => {
                    this.eof = true;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
    }
}

/// An upgrade request's connection, as actix-http's upgrade service gets
/// it: the HTTP/1 codec on the TCP stream, with the dispatcher's buffers.
pub type Upgrading = Framed<TcpStream, h1::Codec>;

/// Answers the WebSocket handshake of `req`. Returns the status answered
/// (101, or the refusal's) and, when the session can start, the connection
/// opened for it: the dispatcher's buffers are dropped here.
pub async fn accept(
    req: &Request,
    mut framed: Upgrading,
) -> (StatusCode, Option<(Inbound, Outlet)>) {
    let mut res = match ws::handshake(req.head()) {
        Ok(res) => res,
        Err(e) => {
            log::info!("websocket: refused a handshake on {}: {e}", req.path());
            let res = refusal(&e);
            let status = res.status();
            refuse(framed, res.into()).await;
            return (status, None);
        }
    };
    let res = res.finish().drop_body();
    if let Err(e) = framed.send((res, BodySize::None).into()).await {
        log::debug!("websocket: the handshake's answer was not sent: {e}");
        return (StatusCode::SWITCHING_PROTOCOLS, None);
    }
    let FramedParts { io, read_buf, .. } = framed.into_parts();
    (
        StatusCode::SWITCHING_PROTOCOLS,
        Some(open(io, read_buf.freeze())),
    )
}

/// A refused handshake: the status (and `Allow`) actix-http gives it, with
/// the reason in the body, where every client shows it.
pub fn refusal(e: &ws::HandshakeError) -> HttpResponse {
    e.error_response().set_body(BoxBody::new(e.to_string()))
}

/// Answers with `res` and closes the connection.
pub async fn refuse(mut framed: Upgrading, res: Response<BoxBody>) {
    let (mut res, body) = res.into_parts();
    res.head_mut().set_connection_type(ConnectionType::Close);
    let body = body.try_into_bytes().unwrap_or_default();
    let sent = async {
        framed
            .send((res, BodySize::Sized(body.len() as u64)).into())
            .await?;
        framed.send(h1::Message::Chunk(Some(body))).await?;
        framed.send(h1::Message::Chunk(None)).await?;
        framed.close().await
    };
    if let Err(e) = sent.await {
        log::debug!("websocket: a refusal was not sent: {e}");
    }
}

/// The socket's writing end: runs a session until it stops and its last
/// frame is written.
pub struct Outlet {
    io: Rc<TcpStream>,
    cut: Rc<Cell<Option<Cut>>>,
    stall: Option<Duration>,
}

/// Splits an upgraded connection into the session's incoming bytes and the
/// outlet that will run it; `early` are bytes read past the upgrade
/// request's head.
fn open(io: TcpStream, early: Bytes) -> (Inbound, Outlet) {
    // Nagle stays on, as on the HTTP dispatcher: with it off, every frame is
    // a packet of its own and a round trip costs a third more CPU at 25 000
    // round trips/s, for a lower median latency only.
    let io = Rc::new(io);
    let cut = Rc::new(Cell::new(None));
    (
        Inbound::new(Rc::clone(&io), early, Rc::clone(&cut)),
        Outlet {
            io,
            cut,
            stall: None,
        },
    )
}

impl Outlet {
    /// Ends the connection when bytes wait for the socket and none could
    /// be written for `after` (a peer that stopped reading), whatever its
    /// session is doing: a session whose output is not taken is frozen and
    /// cannot keep a deadline of its own.
    pub fn stall_after(mut self, after: Duration) -> Self {
        self.stall = Some(after);
        self
    }

    /// Closes a connection no session will run on (the switch refuses it
    /// after the upgrade, e.g. 1013 past a connection limit): writes the
    /// close frame, then lets the peer close its end.
    pub async fn refuse(self, inbound: Inbound, code: u16, reason: &str) {
        drop(inbound);
        let close = close_frame(code, reason);
        let sent = tokio::time::timeout(LINGER, async {
            let mut at = 0;
            while at < close.len() {
                self.io.writable().await?;
                match self.io.try_write(&close[at..]) {
                    Ok(n) => at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        if let Ok(mut io) = Rc::try_unwrap(self.io) {
            Box::pin(linger(&mut io)).await;
        }
    }

    /// Runs the session until it stops; returns why the transport ended
    /// the connection itself, if it did.
    pub async fn run(self, session: Session) -> Option<Cut> {
        let Session { out, flow } = session;
        // In a block of its own, so that the task keeps the pump or the
        // linger after it, never both: every open socket's task is this
        // future, and its size is paid per connection.
        let stalled = {
            let mut pump = Pump {
                io: Rc::clone(&self.io),
                out: Some(out),
                queue: VecDeque::new(),
                queued: 0,
                front_started: false,
                flow,
                broken: false,
                cut: Rc::clone(&self.cut),
                closing: false,
                stall: self.stall.map(Stall::new),
                timer: None,
                stalled: false,
            };
            (&mut pump).await;
            // The session, and its `Inbound` with it, is gone at the end of
            // this block: the stream is ours.
            pump.stalled
        };
        if let Ok(mut io) = Rc::try_unwrap(self.io) {
            if stalled {
                // The peer reads nothing: reset rather than leave the
                // kernel holding what it never takes. A zero linger does
                // not block the thread on drop (only a positive one does).
                #[allow(deprecated)]
                let _ = io.set_linger(Some(Duration::ZERO));
            } else {
                // Boxed: its timer is large, and only a closing socket
                // needs it.
                Box::pin(linger(&mut io)).await;
            }
        }
        self.cut.get()
    }
}

/// Sends our end of the stream and reads until the peer's, for `LINGER` at
/// most: closing with unread bytes would send a reset, which may make the
/// peer's kernel drop the close frame we just wrote.
async fn linger(io: &mut TcpStream) {
    if io.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        // On the heap: a buffer held across an await would make every
        // connection's task larger, lingering or not.
        let mut buf = vec![0u8; 4096];
        loop {
            io.readable().await?;
            match io.try_read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err::<(), _>(e),
            }
        }
    })
    .await;
}

struct Pump {
    io: Rc<TcpStream>,
    /// The session's frames; `None` once the session has stopped.
    out: Option<Outbound>,
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Some of the queue's first frames were written: they must be
    /// finished before anything else goes out.
    front_started: bool,
    flow: Option<Arc<Flow>>,
    /// The socket failed for writing: output is pulled and dropped until
    /// the session, reading the same failure, stops.
    broken: bool,
    cut: Rc<Cell<Option<Cut>>>,
    /// A close frame of the transport's own is queued: the session is gone.
    closing: bool,
    stall: Option<Stall>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Ended for a peer that stopped reading.
    stalled: bool,
}

impl Pump {
    /// Pulls frames while there is room; `true` if the session has nothing
    /// ready now (its waker is registered).
    fn pull(&mut self, cx: &mut Context<'_>) -> bool {
        while self.queued < OUT_HIGH {
            let Some(out) = self.out.as_mut() else {
                return true;
            };
            match out.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(frames))) => {
                    if let Some(flow) = &self.flow {
                        // Control frames (pings, pongs, close) are not
                        // counted as written by the senders: counting them
                        // as taken would give the senders credit past the
                        // bound with every pong a peer's ping asked for.
                        flow.took(data_frame_bytes(&frames));
                    }
                    if !self.broken && !frames.is_empty() {
                        self.queued += frames.len();
                        self.queue.push_back(frames);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    log::warn!("websocket: the session's output failed: {e}");
                    self.out = None;
                }
                Poll::Ready(None) => self.out = None,
                Poll::Pending => return true,
            }
        }
        false
    }

    /// Writes what is queued; `Pending` when the socket is full.
    fn write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.queue.is_empty() {
            if let Err(e) = ready!(self.io.poll_write_ready(cx)) {
                self.fail(e);
                return Poll::Ready(());
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut k = 0;
            for (slice, frames) in slices.iter_mut().zip(&self.queue) {
                *slice = IoSlice::new(frames);
                k += 1;
            }
            match self.io.try_write_vectored(&slices[..k]) {
                Ok(0) => {
                    self.fail(io::ErrorKind::WriteZero.into());
                    return Poll::Ready(());
                }
                Ok(n) => {
                    self.advance(n);
                    if let Some(stall) = &mut self.stall {
                        stall.progressed();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.fail(e);
                    return Poll::Ready(());
                }
            }
        }
        Poll::Ready(())
    }

    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if n < front.len() {
                front.advance(n);
                self.front_started = true;
                return;
            }
            n -= front.len();
            self.queue.pop_front();
            self.front_started = false;
        }
    }

    /// Bytes wait and the socket takes none: `Ready` once they have waited
    /// for the whole stall timeout (the peer stopped reading).
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(stall) = &mut self.stall else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(stall.blocked(Instant::now()));
        // The timer is set once and moved only when it fires early: a
        // socket that is full for a moment many times a second (a busy
        // backend's) costs no timer update each time.
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if stall.expired(Instant::now()) {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
    }

    /// Replaces the session with a close frame of the transport's own:
    /// what was queued goes (but a frame already begun is finished, so the
    /// close frame is read as one), and the session stops.
    fn close_with(&mut self, close: Bytes) {
        self.closing = true;
        // Dropping the session's context stops its actor (its `stopped`
        // runs: it leaves its agent, its subscriber slot, its gateway).
        self.out = None;
        if self.broken {
            return;
        }
        let keep = usize::from(self.front_started && !self.queue.is_empty());
        self.queue.truncate(keep);
        self.queued = self.queue.iter().map(Bytes::len).sum();
        self.queued += close.len();
        self.queue.push_back(close);
    }

    fn fail(&mut self, e: io::Error) {
        log::debug!("websocket: write failed: {e}");
        self.broken = true;
        self.queue.clear();
        self.queued = 0;
    }
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let idle = this.pull(cx);
            if !this.closing {
                match this.cut.get() {
                    Some(Cut::Oversize { limit, .. }) => this.close_with(close_frame_1009(limit)),
                    Some(Cut::Busy { .. }) => this.close_with(close_frame(
                        1013,
                        "too many large messages in progress, try again later",
                    )),
                    _ => {}
                }
            }
            if this.queue.is_empty() {
                if let Some(stall) = &mut this.stall {
                    stall.progressed();
                }
                if this.out.is_none() {
                    return Poll::Ready(());
                }
                if idle {
                    return Poll::Pending;
                }
                continue;
            }
            if this.write(cx).is_pending() {
                ready!(this.poll_stalled(cx));
                // Nothing written for the whole timeout: the peer stopped
                // reading. The session goes with the connection.
                this.out = None;
                this.queue.clear();
                this.queued = 0;
                this.stalled = true;
                if this.cut.get().is_none() {
                    if let Some(stall) = &this.stall {
                        this.cut.set(Some(Cut::Stalled { after: stall.after }));
                    }
                }
                return Poll::Ready(());
            }
        }
    }
}

/// The bytes of data frames (text, binary, continuation) in `frames`, a run
/// of whole frames a session's context encoded (server frames, unmasked).
fn data_frame_bytes(frames: &[u8]) -> usize {
    let mut at = 0;
    let mut data = 0;
    while let Some(h) = frames.get(at..).and_then(frame_header) {
        let Some(len) = h.total() else { break };
        if h.opcode < 0x8 {
            data += len.min(frames.len() - at);
        }
        at = at.saturating_add(len);
    }
    if at < frames.len() {
        // Not whole frames after all: count the rest as data, as before.
        data += frames.len() - at;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    /// A masked final text frame of `payload` (RFC 6455 5.2).
    fn client_frame(payload: &[u8]) -> Vec<u8> {
        switchyard_actors::testing::client_frame(0x81, payload)
    }

    #[test]
    fn frame_len_reads_every_header_form() {
        assert_eq!(frame_len(&[]), None);
        assert_eq!(frame_len(&[0x81]), None);
        assert_eq!(frame_len(&[0x81, 5]), Some(7));
        assert_eq!(frame_len(&[0x81, 0x85]), Some(11), "mask key");
        assert_eq!(frame_len(&[0x81, 126, 1]), None, "extended length cut");
        assert_eq!(frame_len(&[0x81, 126, 1, 0]), Some(4 + 256));
        assert_eq!(frame_len(&client_frame(&[7; 300])), Some(300 + 8));
        assert_eq!(frame_len(&client_frame(&[7; 70_000])), Some(70_000 + 14));
        assert_eq!(frame_len(&[0x81, 127, 0, 0, 0, 0, 0, 1]), None);
    }

    fn header(opcode: u8, fin: bool, payload: u64) -> Header {
        Header {
            head: 14,
            opcode,
            fin,
            payload,
        }
    }

    #[test]
    fn frame_header_reads_opcode_fin_and_the_announced_length() {
        let h = frame_header(&[0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
        assert_eq!((h.opcode, h.fin, h.payload, h.head), (2, true, 1 << 32, 14));
        let h = frame_header(&[0x00, 0x85]).unwrap();
        assert_eq!((h.opcode, h.fin, h.payload, h.head), (0, false, 5, 6));
        // A length no memory holds is a header all the same.
        let h =
            frame_header(&[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(h.payload, u64::MAX);
        assert_eq!(h.total(), None);
    }

    // PROTOCOL 1.5 "Bounds": a frame over the limit is refused on its header.
    #[test]
    fn the_gate_refuses_a_frame_over_the_limit() {
        let mut g = FrameGate::new(1000);
        assert_eq!(g.admit(&header(1, true, 1000)), Ok(()));
        assert_eq!(g.admit(&header(2, true, 1001)), Err(1001));
        assert_eq!(g.admit(&header(1, true, 1 << 32)), Err(1 << 32));
        assert_eq!(g.admit(&header(9, true, 125)), Ok(()), "a ping");
        assert_eq!(g.admit(&header(9, true, 5000)), Err(5000));
    }

    // Continuation frames count toward their message's limit.
    #[test]
    fn the_gate_sums_a_fragmented_message() {
        let mut g = FrameGate::new(1000);
        assert_eq!(g.admit(&header(1, false, 400)), Ok(()));
        assert_eq!(g.admit(&header(0, false, 400)), Ok(()));
        // A ping between fragments does not count toward the message.
        assert_eq!(g.admit(&header(9, true, 100)), Ok(()));
        assert_eq!(g.admit(&header(0, true, 201)), Err(1001));

        let mut g = FrameGate::new(1000);
        assert_eq!(g.admit(&header(2, false, 600)), Ok(()));
        assert_eq!(g.admit(&header(0, true, 400)), Ok(()));
        // The message ended: the next starts from nothing.
        assert_eq!(g.admit(&header(1, false, 900)), Ok(()));
        for _ in 0..10 {
            assert_eq!(g.admit(&header(0, false, 10)), Ok(()));
        }
        assert_eq!(g.admit(&header(0, false, 1)), Err(1001));
        // Many empty fragments are free; an overflowing sum saturates.
        let mut g = FrameGate::new(10);
        assert_eq!(g.admit(&header(1, false, 10)), Ok(()));
        assert_eq!(g.admit(&header(0, false, u64::MAX)), Err(u64::MAX));
    }

    #[test]
    fn the_stall_clock_runs_only_while_nothing_can_be_written() {
        let t0 = Instant::now();
        let s10 = Duration::from_secs(10);
        let mut s = Stall::new(s10);
        assert!(!s.expired(t0 + s10 * 100), "nothing waits");
        assert_eq!(s.blocked(t0), t0 + s10);
        // Blocked again later: the deadline stays the first one.
        assert_eq!(s.blocked(t0 + Duration::from_secs(4)), t0 + s10);
        assert!(!s.expired(t0 + Duration::from_secs(9)));
        assert!(s.expired(t0 + s10));
        // Progress starts the clock again.
        s.progressed();
        assert!(!s.expired(t0 + s10 * 2));
        assert_eq!(s.blocked(t0 + s10 * 2), t0 + s10 * 3);
    }

    #[test]
    fn only_data_frames_count_as_taken() {
        let text = |n: usize| {
            let mut f = vec![0x81, n as u8];
            f.extend(std::iter::repeat_n(b'x', n));
            f
        };
        let pong = [0x8a, 3, 1, 2, 3];
        let close = close_frame(1000, "bye");
        let frames = [text(10), pong.to_vec(), text(20), close.to_vec()].concat();
        assert_eq!(data_frame_bytes(&frames), 12 + 22);
        assert_eq!(data_frame_bytes(&pong), 0);
        assert_eq!(data_frame_bytes(&text(100)), 102);
    }

    #[test]
    fn the_budget_takes_what_fits_and_gets_it_back() {
        let b = FrameBudget::new(1000);
        assert!(b.take(600));
        assert!(!b.take(401), "past the limit");
        assert!(b.take(400));
        assert_eq!(b.used(), 1000);
        b.give(600);
        assert!(b.take(usize::MAX).then_some(()).is_none(), "no overflow");
        assert_eq!(b.used(), 400);
        b.give(10_000);
        assert_eq!(b.used(), 0, "never below nothing");
    }

    #[test]
    fn close_frames_carry_the_code_and_a_cut_reason() {
        let f = close_frame(1009, "message over 10 bytes");
        assert_eq!(&f[..4], &[0x88, 2 + 21, 0x03, 0xf1]);
        let long = close_frame(1013, &"é".repeat(100));
        assert!(long.len() <= 2 + 125);
        assert!(
            std::str::from_utf8(&long[4..]).is_ok(),
            "cut on a char boundary"
        );
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    /// One poll, outside any task: the reader's second call in a turn.
    fn poll_once(inbound: &mut Inbound) -> Poll<Option<Result<Bytes, PayloadError>>> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        inbound.poll_next_unpin(&mut cx)
    }

    // A peer that sends far more than its session has read keeps the rest
    // in the kernel: the reader gets one whole frame per turn, and the
    // transport holds at most one read past it.
    #[actix_web::test]
    async fn the_reader_gets_one_whole_frame_per_turn() {
        let (mut client, server) = pair().await;
        let frames: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| client_frame(format!("frame {i} {}", "x".repeat(i as usize % 200)).as_bytes()))
            .collect();
        // Two frames came with the upgrade request.
        let early = Bytes::from([frames[0].clone(), frames[1].clone()].concat());
        let writer = actix_web::rt::spawn({
            let rest = frames[2..].concat();
            async move { client.write_all(&rest).await.map(|_| client) }
        });
        let (mut inbound, _outlet) = open(server, early);
        for (i, frame) in frames.iter().enumerate() {
            let got = inbound.next().await.expect("a frame").expect("no error");
            assert_eq!(&got[..], &frame[..], "frame {i} whole and in order");
            assert!(poll_once(&mut inbound).is_pending(), "one frame per turn");
            // One read past a frame of at most 215 bytes.
            assert!(
                inbound.buf.len() <= READ_CHUNK + 215,
                "{}",
                inbound.buf.len()
            );
        }
        drop(writer.await.unwrap().unwrap());
        assert!(inbound.next().await.is_none(), "the peer's end");
    }

    // PROTOCOL 1.5 "Bounds": a header announcing more than the limit is
    // refused before any of its payload is read, and nothing after it is.
    #[actix_web::test]
    async fn a_header_over_the_limit_is_refused_before_its_payload() {
        let (mut client, server) = pair().await;
        let ok = client_frame(b"fine");
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend((4u64 << 30).to_be_bytes());
        huge.extend([1, 2, 3, 4]);
        client
            .write_all(&[ok.clone(), huge].concat())
            .await
            .unwrap();
        let writer = actix_web::rt::spawn(async move {
            // The payload streams on; the reader must take none of it.
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..64 {
                if client.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            client
        });
        let (inbound, _outlet) = open(server, Bytes::new());
        let mut inbound = inbound.limit_frames(1000);
        assert_eq!(&inbound.next().await.unwrap().unwrap()[..], &ok[..]);
        let _ = poll_once(&mut inbound);
        assert!(
            poll_once(&mut inbound).is_pending(),
            "refused, not handed on"
        );
        assert_eq!(
            inbound.cut.get(),
            Some(Cut::Oversize {
                announced: 4 << 30,
                limit: 1000
            })
        );
        assert_eq!(inbound.buf.len(), 0, "nothing kept");
        assert!(
            poll_once(&mut inbound).is_pending(),
            "and nothing more read"
        );
        writer.abort();
    }

    // A frame longer than PIECE goes on in pieces that add up to it.
    #[actix_web::test]
    async fn a_long_frame_goes_on_in_pieces() {
        let (mut client, server) = pair().await;
        let long = client_frame(&vec![9u8; 300_000]);
        let short = client_frame(b"after");
        let bytes = [long.clone(), short.clone()].concat();
        let writer =
            actix_web::rt::spawn(async move { client.write_all(&bytes).await.map(|_| client) });
        let (mut inbound, _outlet) = open(server, Bytes::new());
        let mut got = Vec::new();
        while got.len() < long.len() {
            let piece = inbound.next().await.unwrap().unwrap();
            assert!(
                piece.len() <= long.len() - got.len(),
                "no byte of the next frame"
            );
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, long);
        assert!(
            poll_once(&mut inbound).is_pending(),
            "the turn ends with the frame"
        );
        assert_eq!(&inbound.next().await.unwrap().unwrap()[..], &short[..]);
        drop(writer.await.unwrap().unwrap());
    }

    /// PROTOCOL 1.5 "Bounds" (the senders' bytes in flight): a run that
    /// ends in a cut-off frame or header counts only the bytes it has, and
    /// counts a rest it cannot read as data.
    #[test]
    fn a_cut_off_run_counts_what_it_has() {
        let text = |n: usize| {
            let mut f = vec![0x81, n as u8];
            f.extend(std::iter::repeat_n(b'x', n));
            f
        };
        // A frame announcing 22 bytes of which 5 are there.
        let cut_frame = [text(10), text(20)[..5].to_vec()].concat();
        assert_eq!(data_frame_bytes(&cut_frame), 12 + 5);
        // A header cut inside its extended length.
        let cut_header = [text(10), vec![0x81, 126]].concat();
        assert_eq!(data_frame_bytes(&cut_header), 12 + 2);
    }

    /// How long a test waits for what must come; the wait ends as soon as
    /// it does.
    const WAIT: Duration = Duration::from_secs(10);

    /// The next item, or the cut that stopped the reading.
    async fn next_or_cut(inbound: &mut Inbound) -> Result<Bytes, Cut> {
        let next = std::future::poll_fn(|cx| match inbound.poll_next_unpin(cx) {
            Poll::Ready(item) => Poll::Ready(Ok(item)),
            Poll::Pending => inbound
                .cut
                .get()
                .map_or(Poll::Pending, |c| Poll::Ready(Err(c))),
        });
        let item = tokio::time::timeout(WAIT, next)
            .await
            .expect("a piece or a cut in time")?;
        Ok(item.expect("no end").expect("no error"))
    }

    /// Takes the pieces of one frame of `len` bytes (or of its first `len`
    /// bytes).
    async fn read_pieces(inbound: &mut Inbound, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            let piece = next_or_cut(inbound).await.expect("not cut");
            got.extend_from_slice(&piece);
        }
        assert_eq!(got.len(), len, "no byte past the frame");
        got
    }

    /// Writes `bytes` to `client` while the test reads.
    fn write_on(
        mut client: TcpStream,
        bytes: Vec<u8>,
    ) -> actix_web::rt::task::JoinHandle<TcpStream> {
        actix_web::rt::spawn(async move {
            let _ = client.write_all(&bytes).await;
            client
        })
    }

    /// PROTOCOL 1.5 "Bounds": a large message is charged to the switch-wide
    /// budget as it arrives, and past the budget the connection is cut
    /// (1013) before more of it is taken.
    #[actix_web::test]
    async fn a_large_message_past_the_budget_is_cut() {
        let (client, server) = pair().await;
        let budget = FrameBudget::new(100_000);
        let mut bytes = switchyard_actors::testing::client_frame_header(0x81, 200_000);
        bytes.extend(vec![b'z'; 150_000]);
        let writer = write_on(client, bytes);
        let (inbound, _outlet) = open(server, Bytes::new());
        let mut inbound = inbound.share_budget(Arc::clone(&budget));
        let mut taken = 0;
        let cut = loop {
            match next_or_cut(&mut inbound).await {
                Ok(piece) => taken += piece.len(),
                Err(cut) => break cut,
            }
        };
        assert_eq!(cut, Cut::Busy { budget: 100_000 });
        assert!(taken <= 100_000, "{taken} handed on past the budget");
        assert_eq!(budget.used(), taken, "what was handed on is held");
        drop(inbound);
        assert_eq!(budget.used(), 0, "given back with the connection");
        writer.abort();
    }

    /// PROTOCOL 1.5 "Bounds": a large message holds budget only while it
    /// is read: a whole one gives it back, and so does a connection that
    /// goes mid-message.
    #[actix_web::test]
    async fn the_budget_is_given_back_when_a_message_ends_or_its_reader_goes() {
        let (client, server) = pair().await;
        let budget = FrameBudget::new(1 << 20);
        let whole = switchyard_actors::testing::client_frame(0x81, &[7; 100_000]);
        let mut part = switchyard_actors::testing::client_frame_header(0x81, 100_000);
        let head = part.len();
        part.extend(vec![b'z'; 50_000]);
        let writer = write_on(client, [whole.clone(), part].concat());
        let (inbound, _outlet) = open(server, Bytes::new());
        let mut inbound = inbound.share_budget(Arc::clone(&budget));

        assert_eq!(read_pieces(&mut inbound, whole.len()).await, whole);
        assert!(poll_once(&mut inbound).is_pending(), "the turn ends");
        assert_eq!(budget.used(), 0, "a whole message gives its bytes back");

        read_pieces(&mut inbound, head + 50_000).await;
        assert!(poll_once(&mut inbound).is_pending(), "the rest is not sent");
        assert_eq!(inbound.cut.get(), None);
        assert_eq!(budget.used(), head + 50_000, "a message in progress holds");

        drop(inbound);
        assert_eq!(budget.used(), 0, "its reader gone, the bytes go back");
        writer.abort();
    }

    /// PROTOCOL 1.5 "Bounds": small whole messages cost the budget nothing,
    /// and a fragmented message holds its fragments until its final one.
    #[actix_web::test]
    async fn small_messages_are_free_and_fragments_hold_until_the_last() {
        let (client, server) = pair().await;
        let small = switchyard_actors::testing::client_frame(0x81, &[b'a'; 50]);
        let writer = write_on(client, small.clone());
        let (inbound, _outlet) = open(server, Bytes::new());
        let mut inbound = inbound.share_budget(FrameBudget::new(10));
        assert_eq!(next_or_cut(&mut inbound).await.as_deref(), Ok(&small[..]));
        assert_eq!(inbound.cut.get(), None, "not charged");
        drop(writer.await.unwrap());

        let (client, server) = pair().await;
        let budget = FrameBudget::new(1 << 20);
        let first = switchyard_actors::testing::client_frame(0x01, &[b' '; 1000]);
        let last = switchyard_actors::testing::client_frame(0x80, &[b' '; 1000]);
        let writer = write_on(client, [first.clone(), last.clone()].concat());
        let (inbound, _outlet) = open(server, Bytes::new());
        let mut inbound = inbound.share_budget(Arc::clone(&budget));
        assert_eq!(next_or_cut(&mut inbound).await.as_deref(), Ok(&first[..]));
        assert_eq!(budget.used(), first.len(), "a fragment holds");
        assert!(poll_once(&mut inbound).is_pending(), "the turn ends");
        assert_eq!(next_or_cut(&mut inbound).await.as_deref(), Ok(&last[..]));
        assert_eq!(budget.used(), 0, "the final fragment gives all back");
        assert_eq!(inbound.cut.get(), None);
        drop(writer.await.unwrap());
    }

    /// PROTOCOL 1.5 "Bounds": after a frame handed on in pieces, the next
    /// frame's header still meets the size gate and closes with 1009 at
    /// once.
    #[actix_web::test]
    async fn after_a_long_frame_the_next_header_meets_the_gate() {
        let (client, server) = pair().await;
        let long = switchyard_actors::testing::client_frame(0x81, &[b'a'; 70_000]);
        let mut bytes = long.clone();
        bytes.extend(switchyard_actors::testing::client_frame_header(
            0x82,
            4 << 30,
        ));
        bytes.extend(vec![0u8; 100_000]);
        let writer = write_on(client, bytes);
        let (inbound, _outlet) = open(server, Bytes::new());
        let mut inbound = inbound.limit_frames(100_000);
        assert_eq!(read_pieces(&mut inbound, long.len()).await, long);
        assert!(poll_once(&mut inbound).is_pending(), "the turn ends");
        assert_eq!(
            next_or_cut(&mut inbound).await.map(|piece| piece.len()),
            Err(Cut::Oversize {
                announced: 4 << 30,
                limit: 100_000
            }),
            "refused on its header, no piece of it handed on"
        );
        writer.abort();
    }

    fn pump(io: TcpStream, out: Option<Outbound>, cut: Option<Cut>) -> Pump {
        Pump {
            io: Rc::new(io),
            out,
            queue: VecDeque::new(),
            queued: 0,
            front_started: false,
            flow: None,
            broken: false,
            cut: Rc::new(Cell::new(cut)),
            closing: false,
            stall: None,
            timer: None,
            stalled: false,
        }
    }

    /// PROTOCOL 1.5 "Bounds": the pump counts what waits for the socket
    /// exactly (its pulls stop at a bound), and its own close frame never
    /// lands inside a half-written frame, nor behind whole ones.
    #[actix_web::test]
    async fn the_pump_counts_what_waits_and_closes_between_frames() {
        let (_client, server) = pair().await;
        let mut p = pump(server, None, None);
        for f in ["0123456789", "abcdefghij", "XY"] {
            p.queue.push_back(Bytes::from_static(f.as_bytes()));
        }
        p.queued = 22;
        p.advance(15);
        assert_eq!(p.queued, 7);
        assert_eq!(p.queue.len(), 2);
        assert_eq!(&p.queue[0][..], b"fghij");
        assert!(p.front_started);
        p.advance(5);
        assert_eq!(p.queued, 2);
        assert_eq!(p.queue.len(), 1);
        assert_eq!(&p.queue[0][..], b"XY");
        assert!(!p.front_started, "the next frame is not begun");

        // A begun frame is finished before the close frame.
        let close = close_frame(1009, "x");
        p.queue.push_back(Bytes::from_static(b"more"));
        p.queued += 4;
        p.advance(1);
        p.close_with(close.clone());
        assert_eq!(
            p.queue.iter().map(|f| f.to_vec()).collect::<Vec<_>>(),
            [b"Y".to_vec(), close.to_vec()]
        );
        assert_eq!(p.queued, 1 + close.len());

        // Whole frames not begun go.
        let (_client, server) = pair().await;
        let mut p = pump(server, None, None);
        p.queue.push_back(Bytes::from_static(b"one"));
        p.queue.push_back(Bytes::from_static(b"two"));
        p.queued = 6;
        p.close_with(close.clone());
        assert_eq!(
            p.queue.iter().map(|f| f.to_vec()).collect::<Vec<_>>(),
            [close.to_vec()]
        );
        assert_eq!(p.queued, close.len());
    }

    /// PROTOCOL 1.5 "Bounds": a connection cut for the budget of large
    /// messages is closed with 1013 at once, its session stopped.
    #[actix_web::test]
    async fn a_cut_for_the_budget_closes_with_1013() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = pair().await;
        let out: Outbound = Box::pin(futures_util::stream::pending());
        let mut p = pump(server, Some(out), Some(Cut::Busy { budget: 10 }));
        tokio::time::timeout(WAIT, &mut p)
            .await
            .expect("the pump ends with its close frame");
        assert!(p.out.is_none(), "the session is stopped");
        let mut head = [0u8; 4];
        tokio::time::timeout(WAIT, client.read_exact(&mut head))
            .await
            .expect("a close frame in time")
            .unwrap();
        assert_eq!(head, [0x88, head[1], 0x03, 0xf5], "close 1013");
    }
}
