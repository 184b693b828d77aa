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

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

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
}

impl Inbound {
    fn new(io: Rc<TcpStream>, early: Bytes) -> Self {
        Inbound {
            io,
            buf: BytesMut::from(&early[..]),
            owed: 0,
            handed: false,
            eof: false,
        }
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
    usize::try_from(payload).ok()?.checked_add(2 + ext + mask)
}

impl Stream for Inbound {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
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
                    this.owed -= n;
                    this.handed = this.owed == 0;
                    return this.hand(n);
                }
            } else if let Some(len) = frame_len(&this.buf) {
                if len <= this.buf.len() {
                    this.handed = true;
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
}

/// Splits an upgraded connection into the session's incoming bytes and the
/// outlet that will run it; `early` are bytes read past the upgrade
/// request's head.
fn open(io: TcpStream, early: Bytes) -> (Inbound, Outlet) {
    // Nagle stays on, as on the HTTP dispatcher: with it off, every frame is
    // a packet of its own and a round trip costs a third more CPU at 25 000
    // round trips/s, for a lower median latency only.
    let io = Rc::new(io);
    (Inbound::new(Rc::clone(&io), early), Outlet { io })
}

impl Outlet {
    pub async fn run(self, session: Session) {
        let Session { out, flow } = session;
        let mut pump = Pump {
            io: Rc::clone(&self.io),
            out: Some(out),
            queue: VecDeque::new(),
            queued: 0,
            flow,
            broken: false,
        };
        (&mut pump).await;
        // The session, and its `Inbound` with it, is gone: the stream is ours.
        drop(pump);
        if let Ok(mut io) = Rc::try_unwrap(self.io) {
            linger(&mut io).await;
        }
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
    flow: Option<Arc<Flow>>,
    /// The socket failed for writing: output is pulled and dropped until
    /// the session, reading the same failure, stops.
    broken: bool,
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
                        flow.took(frames.len());
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
                Ok(n) => self.advance(n),
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
            let front = self.queue.front_mut().expect("wrote more than queued");
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.queue.pop_front();
        }
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
            if this.queue.is_empty() {
                if this.out.is_none() {
                    return Poll::Ready(());
                }
                if idle {
                    return Poll::Pending;
                }
                continue;
            }
            ready!(this.write(cx));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    /// A masked client frame of `payload` (RFC 6455 5.2).
    fn client_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65_536 => {
                f.push(0x80 | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [1u8, 2, 3, 4];
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
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
}
