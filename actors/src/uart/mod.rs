//! `UartManager`: the serial link to the mesh network's root node
//! (PROTOCOL 2).
//!
//! Owns the port, the reader and writer threads, the frame codec state, the
//! link state and the commands waiting for the root's answer (bounded in
//! number, forgotten on a timer). Blocking serial reads live on their own
//! thread (DESIGN house rule 5), which hands bytes to this actor and waits
//! for each hand-off; the next chunk is taken once the last one's frames
//! are with its owner, so a chatty root fills no mailbox. Blocking
//! serial writes live on a writer thread behind a bounded queue, so a
//! stalled adapter never stalls the actors that serve agents. Losing the
//! port is never fatal: the owner is told (`Lost`), and the port is
//! reopened with capped exponential backoff. Handles `UartBytes`,
//! `UartLost`, `SendCommand`, `GetLinkInfo`.
//!
//! It keeps the Channel contract (`crate::channel`): `OpenChannel`,
//! `CloseChannel`, `ChannelSend` (raw frame content to the root; kept,
//! bounded, while the port is away), `IsAlive`, `IsClosed`, and it reports
//! through the `ChannelNotice`s alone, to the one owner it is made with
//! (`NetworkManager` in the switch): `Opened`/`Reconnected` and `Lost` are
//! the link going up and down, and every frame from the root is an
//! `Inbound`. It parses frames too, but only to count the bad ones and to
//! pair the root's answers with the commands waiting for them. The switch
//! opens it at start.

pub mod sim;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::codec::Decoder;

use crate::channel::{
    ChannelConfig, ChannelNotice, ChannelSend, CloseChannel, IsAlive, IsClosed, Lifecycle, Next,
    OpenChannel, SendOutcome,
};
use crate::mailbox::{CountedRecipient, Mailbox};
use crate::metrics::{ActorProbe, Metrics};
use crate::outbox::Outbox;
use crate::wire::frame::{encode_frame, FrameCodec, FrameItem};
use crate::wire::mesh::{Command, NodeAddr, RootMessage};

/// Serial link settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UartConfig {
    /// Baud rate (8N1).
    pub baud: u32,
    /// Longest decoded frame; longer ones are dropped and counted.
    pub max_frame_bytes: usize,
    /// First reconnect delay in seconds; doubles up to the maximum.
    pub reconnect_min_secs: f64,
    pub reconnect_max_secs: f64,
    /// Seconds a command waits for the root's answer.
    pub command_timeout_secs: f64,
    /// Commands waiting for the root's answer at once; more are refused.
    pub max_pending_commands: usize,
    /// Frames waiting for the serial writer thread; past it new ones are
    /// dropped (a command is refused) and counted.
    pub write_queue_limit: usize,
}

impl Default for UartConfig {
    fn default() -> Self {
        UartConfig {
            baud: 115_200,
            max_frame_bytes: crate::wire::frame::DEFAULT_MAX_FRAME,
            reconnect_min_secs: 0.5,
            reconnect_max_secs: 30.0,
            command_timeout_secs: 3.0,
            max_pending_commands: 64,
            write_queue_limit: 256,
        }
    }
}

/// Why a command to the root did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("mesh link down")]
    LinkDown,
    #[error("message too long ({0} bytes, at most 255)")]
    TooLong(usize),
    #[error("root answered: {0}")]
    Root(String),
    #[error("root did not answer within {0:?}")]
    Timeout(Duration),
    #[error("node 0x{0:04x} unknown")]
    UnknownNode(NodeAddr),
    #[error("no mesh link on this switch")]
    NoMesh,
    /// Too many commands wait for an answer already.
    #[error("too many commands waiting for an answer; try again")]
    Busy,
}

/// The root's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootReply {
    Ok,
    NetworkInfo(Vec<NodeAddr>),
}

/// Where the port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortPath {
    /// A device path (or a symlink to one).
    Path(String),
    /// The first USB serial port that `serialport::available_ports` lists.
    Auto,
}

impl PortPath {
    fn resolve(&self) -> Result<String, String> {
        match self {
            PortPath::Path(p) => Ok(p.clone()),
            PortPath::Auto => serialport::available_ports()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|p| matches!(p.port_type, serialport::SerialPortType::UsbPort(_)))
                .map(|p| p.port_name)
                .ok_or_else(|| "no USB serial port found".to_string()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            PortPath::Path(p) => p.clone(),
            PortPath::Auto => "auto".into(),
        }
    }
}

struct Pending {
    sent: Instant,
    reply: oneshot::Sender<Result<RootReply, CommandError>>,
    /// The command's name and destination, told to the owner with its
    /// answer (`ChannelNotice::Answered`).
    command: &'static str,
    dst: Option<NodeAddr>,
}

pub struct UartManager {
    path: PortPath,
    config: UartConfig,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    port: Option<serialport::TTYPort>,
    /// Bumped on every (re)open: bytes or loss reports from an older
    /// reader thread are ignored.
    generation: u64,
    reader_stop: Option<Arc<AtomicBool>>,
    /// Framed bytes for the writer thread (blocking serial writes never run
    /// on the actor's thread: a stalled adapter must not stall the switch).
    writer: Option<std::sync::mpsc::SyncSender<bytes::Bytes>>,
    codec: FrameCodec,
    buf: BytesMut,
    life: Lifecycle,
    /// Frames handed to `ChannelSend` while the port was away.
    kept: Outbox<bytes::Bytes>,
    /// Told every `ChannelNotice`.
    owner: CountedRecipient<ChannelNotice>,
    /// Open at start (the switch) or on `OpenChannel` (the contract).
    open_at_start: bool,
    up_since: Option<Instant>,
    opened_path: Option<String>,
    results: VecDeque<Pending>,
    ninfo: VecDeque<Pending>,
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// A root can send bad frames in a loop: one log line a second.
    reject_log: crate::log_limit::LogLimit,
}

impl UartManager {
    pub fn new(
        path: PortPath,
        config: UartConfig,
        metrics: Arc<Metrics>,
        owner: impl Into<CountedRecipient<ChannelNotice>>,
    ) -> Self {
        let probe = metrics.probe("UartManager", path.describe());
        UartManager {
            codec: FrameCodec::new(config.max_frame_bytes),
            life: Lifecycle::new(
                &ChannelConfig {
                    reconnect_min_secs: config.reconnect_min_secs,
                    reconnect_max_secs: config.reconnect_max_secs,
                    retry_budget: 0,
                    buffer_limit: 1000,
                },
                0x5e71a1,
            ),
            kept: Outbox::new(1000),
            owner: owner.into(),
            open_at_start: false,
            path,
            config,
            metrics,
            probe,
            port: None,
            generation: 0,
            reader_stop: None,
            writer: None,
            buf: BytesMut::new(),
            up_since: None,
            opened_path: None,
            results: VecDeque::new(),
            ninfo: VecDeque::new(),
            shutdown: None,
            reject_log: crate::log_limit::LogLimit::per_second(),
        }
    }

    /// Opens the port as soon as the actor starts, without waiting for
    /// `OpenChannel` (the switch's own link).
    pub fn open_at_start(mut self) -> Self {
        self.open_at_start = true;
        self
    }

    fn notify(&self, n: ChannelNotice) {
        self.owner.do_send(n);
    }

    /// Stops the link (and its reader thread) when the switch shuts down.
    pub fn stop_on(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    pub fn start_link(self) -> Mailbox<UartManager> {
        let probe = Arc::clone(&self.probe);
        Mailbox::new(self.start(), probe)
    }

    fn try_open(&mut self, ctx: &mut Context<Self>) {
        if self.life.is_closed() {
            return;
        }
        let path = match self.path.resolve() {
            Ok(p) => p,
            Err(e) => return self.retry_later(&e, ctx),
        };
        let opened = serialport::new(&path, self.config.baud)
            .timeout(Duration::from_millis(200))
            .open_native();
        let port = match opened {
            Ok(p) => p,
            Err(e) => return self.retry_later(&format!("{path}: {e}"), ctx),
        };
        let reader = match port.try_clone_native() {
            Ok(r) => r,
            Err(e) => return self.retry_later(&format!("{path}: {e}"), ctx),
        };
        let writer_port = match port.try_clone_native() {
            Ok(w) => w,
            Err(e) => return self.retry_later(&format!("{path}: {e}"), ctx),
        };
        self.generation += 1;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_reader(reader, ctx.address(), self.generation, Arc::clone(&stop));
        self.writer = spawn_writer(
            writer_port,
            ctx.address(),
            self.generation,
            self.config.write_queue_limit,
            Arc::clone(&self.metrics),
        );
        self.reader_stop = Some(stop);
        self.port = Some(port);
        self.buf.clear();
        self.codec = FrameCodec::new(self.config.max_frame_bytes);
        self.up_since = Some(Instant::now());
        self.opened_path = Some(path.clone());
        self.metrics.mesh_link_up.set(1);
        log::info!("mesh link up on {path} at {} baud", self.config.baud);
        let notice = self.life.connected();
        self.notify(notice);
        while let Some(content) = self.kept.pop() {
            match self.write(&content) {
                Ok(()) => {}
                // Dropped and counted: the writer's queue is full.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.kept.push_front(content);
                    self.link_lost(&format!("write failed: {e}"), ctx);
                    return;
                }
            }
        }
    }

    fn retry_later(&mut self, why: &str, ctx: &mut Context<Self>) {
        match self.life.failed() {
            Next::RetryIn(delay) => {
                log::warn!("mesh link: cannot open the port ({why}); retrying in {delay:?}");
                ctx.run_later(delay, |act, ctx| {
                    act.metrics.uart_reconnects.inc();
                    act.try_open(ctx);
                });
            }
            // Only with a retry budget, which the switch does not set.
            Next::GiveUp => self.notify(ChannelNotice::CatastrophicDisconnect {
                reason: why.to_string(),
            }),
        }
    }

    fn link_lost(&mut self, why: &str, ctx: &mut Context<Self>) {
        if let Some(stop) = self.reader_stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
        // Ends the writer thread once it has done with its current frame.
        self.writer = None;
        if let Some(mut port) = self.port.take() {
            // Let the next open of the same device succeed.
            let _ = port.set_exclusive(false);
        }
        self.up_since = None;
        self.metrics.mesh_link_up.set(0);
        log::warn!("mesh link down: {why}");
        self.notify(ChannelNotice::Lost {
            reason: why.to_string(),
        });
        for p in self.results.drain(..).chain(self.ninfo.drain(..)) {
            let _ = p.reply.send(Err(CommandError::LinkDown));
        }
        self.retry_later(why, ctx);
    }

    /// One frame from the root: counted if it cannot be read, paired with
    /// the command it answers if it is an answer.
    fn on_frame(&mut self, content: &[u8]) -> Option<ChannelNotice> {
        let message = match RootMessage::parse(content) {
            Ok(m) => m,
            Err(e) => {
                self.metrics
                    .mesh_frames_rejected
                    .with_label_values(&[e.kind()])
                    .inc();
                if let Some(held) = self.reject_log.admit(Instant::now()) {
                    log::warn!(
                        "mesh link: rejected a frame of {} bytes: {e}{}",
                        content.len(),
                        crate::log_limit::held_note(held)
                    );
                }
                return None;
            }
        };
        self.metrics.uart_frames.with_label_values(&["in"]).inc();
        match message {
            RootMessage::Result { outcome, .. } => return self.resolve(outcome),
            RootMessage::NetworkInfo { nodes, .. } => {
                self.expire_stale();
                if let Some(p) = self.ninfo.pop_front() {
                    let _ = p.reply.send(Ok(RootReply::NetworkInfo(nodes)));
                }
            }
            _ => {}
        }
        None
    }

    /// Drops waiters whose requester has long given up: the root will never
    /// answer them, and keeping them would pair later answers wrongly.
    /// Their requesters were answered with a timeout already (at the
    /// command timeout); the entries stay twice as long so that a late
    /// answer still pairs with its own command, not the next one.
    fn expire_stale(&mut self) {
        let limit = Duration::from_secs_f64(self.config.command_timeout_secs.max(0.0)) * 2;
        let mut n = 0;
        for q in [&mut self.results, &mut self.ninfo] {
            while q.front().is_some_and(|p| p.sent.elapsed() > limit) {
                q.pop_front();
                n += 1;
            }
        }
        if n > 0 {
            self.metrics
                .pending_commands_expired
                .with_label_values(&["uart"])
                .inc_by(n);
        }
    }

    /// An `[R]` answers the oldest command still waiting.
    fn resolve(&mut self, outcome: Result<(), String>) -> Option<ChannelNotice> {
        self.expire_stale();
        let p = self.results.pop_front()?;
        let reply = match &outcome {
            Ok(()) => Ok(RootReply::Ok),
            Err(e) => Err(CommandError::Root(e.clone())),
        };
        let _ = p.reply.send(reply);
        Some(ChannelNotice::Answered {
            command: p.command,
            dst: p.dst,
            outcome,
        })
    }

    /// Hands one frame to the writer thread. Fails when there is no port,
    /// or when the writer's queue is full (the frame is dropped and
    /// counted: the adapter is not taking bytes).
    fn write(&mut self, content: &[u8]) -> std::io::Result<()> {
        use std::sync::mpsc::TrySendError;
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "no port"))?;
        let mut framed = BytesMut::with_capacity(content.len() * 2 + 2);
        encode_frame(content, &mut framed);
        match writer.try_send(framed.freeze()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.metrics.uart_writes_dropped.inc();
                Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "serial writer queue full",
                ))
            }
            Err(TrySendError::Disconnected(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "serial writer stopped",
            )),
        }
    }
}

/// How long one frame may take to leave before the port is deemed lost.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// The serial writer thread: writes each framed command in turn; a frame
/// that cannot be written within `WRITE_DEADLINE` (or an error) reports the
/// port lost and ends the thread.
fn spawn_writer(
    mut port: serialport::TTYPort,
    addr: Addr<UartManager>,
    generation: u64,
    queue_limit: usize,
    metrics: Arc<Metrics>,
) -> Option<std::sync::mpsc::SyncSender<bytes::Bytes>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(queue_limit.max(1));
    let spawned = std::thread::Builder::new()
        .name("uart-writer".into())
        .spawn(move || {
            while let Ok(frame) = rx.recv() {
                if let Err(e) = write_with_deadline(&mut port, &frame) {
                    let _ = addr.try_send(UartLost {
                        generation,
                        error: format!("write failed: {e}"),
                    });
                    return;
                }
                metrics
                    .uart_bytes
                    .with_label_values(&["out"])
                    .inc_by(frame.len() as u64);
                metrics.uart_frames.with_label_values(&["out"]).inc();
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            log::error!("cannot start the serial writer thread: {e}");
            None
        }
    }
}

fn write_with_deadline(port: &mut serialport::TTYPort, mut bytes: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + WRITE_DEADLINE;
    while !bytes.is_empty() {
        match port.write(bytes) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "port took no bytes",
                ))
            }
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => return Err(e),
        }
        if !bytes.is_empty() && Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the port took no bytes for too long",
            ));
        }
    }
    port.flush()
}

fn spawn_reader(
    mut port: serialport::TTYPort,
    addr: Addr<UartManager>,
    generation: u64,
    stop: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("uart-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                match port.read(&mut buf) {
                    Ok(0) => {
                        let _ = addr.try_send(UartLost {
                            generation,
                            error: "port closed".into(),
                        });
                        return;
                    }
                    Ok(n) => {
                        let bytes = bytes::Bytes::copy_from_slice(&buf[..n]);
                        // Wait for the hand-off: the mailbox never holds more
                        // than one chunk from this thread.
                        if futures_executor::block_on(addr.send(UartBytes { generation, bytes }))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = addr.try_send(UartLost {
                            generation,
                            error: e.to_string(),
                        });
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the serial reader thread: {e}");
    }
}

impl Actor for UartManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.mesh_link_up.set(0);
        // Waiting commands are forgotten on a timer too, not only when the
        // root next answers (it may never).
        let every = Duration::from_secs_f64(self.config.command_timeout_secs.clamp(0.01, 1.0));
        ctx.run_interval(every, |act, _| act.expire_stale());
        if let Some(rx) = self.shutdown.take() {
            ctx.spawn(
                crate::shutdown::until_shutdown(rx)
                    .into_actor(self)
                    .map(|_, _, ctx| ctx.stop()),
            );
        }
        if self.open_at_start && self.life.open() {
            self.try_open(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(stop) = self.reader_stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
        self.writer = None;
        self.probe.retire();
    }
}

/// Bytes read from the port.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UartBytes {
    pub generation: u64,
    pub bytes: bytes::Bytes,
}

impl Handler<UartBytes> for UartManager {
    type Result = ();
    fn handle(&mut self, msg: UartBytes, ctx: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("UartBytes");
        if msg.generation != self.generation {
            return;
        }
        self.metrics
            .uart_bytes
            .with_label_values(&["in"])
            .inc_by(msg.bytes.len() as u64);
        self.buf.extend_from_slice(&msg.bytes);
        let mut heard = Vec::new();
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(FrameItem::Frame(content))) => {
                    if let Some(answered) = self.on_frame(&content) {
                        heard.push(self.owner.send(answered));
                    }
                    heard.push(self.owner.send(ChannelNotice::Inbound(content)));
                }
                Ok(Some(FrameItem::Error(e))) => {
                    self.metrics
                        .uart_frame_errors
                        .with_label_values(&[e.kind()])
                        .inc();
                    log::debug!("mesh link: frame error {e:?}");
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The next chunk is taken once the owner has these frames: its
        // mailbox holds at most one chunk's worth from the root, and
        // the reader thread (which waits for each hand-off) stops reading
        // the port meanwhile.
        if !heard.is_empty() {
            ctx.wait(actix::fut::wrap_future(async move {
                for h in heard {
                    let _ = h.await;
                }
            }));
        }
    }
}

/// The reader thread lost the port.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UartLost {
    pub generation: u64,
    pub error: String,
}

impl Handler<UartLost> for UartManager {
    type Result = ();
    fn handle(&mut self, msg: UartLost, ctx: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("UartLost");
        if msg.generation == self.generation && self.port.is_some() {
            self.link_lost(&msg.error, ctx);
        }
    }
}

/// Send a command to the root and wait for its answer.
#[derive(Message)]
#[rtype(result = "Result<RootReply, CommandError>")]
pub struct SendCommand(pub Command);

impl Handler<SendCommand> for UartManager {
    type Result = ResponseFuture<Result<RootReply, CommandError>>;
    fn handle(&mut self, msg: SendCommand, ctx: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("SendCommand");
        let command = msg.0;
        let content = match command.encode() {
            Ok(c) => c,
            Err(_) => {
                let len = match &command {
                    Command::Send { message, .. }
                    | Command::SendTracked { message, .. }
                    | Command::Broadcast { message } => message.len(),
                    _ => 0,
                };
                return Box::pin(async move { Err(CommandError::TooLong(len)) });
            }
        };
        if self.port.is_none() {
            return Box::pin(async { Err(CommandError::LinkDown) });
        }
        self.expire_stale();
        if self.results.len() + self.ninfo.len() >= self.config.max_pending_commands.max(1) {
            self.metrics
                .pending_commands_refused
                .with_label_values(&["uart"])
                .inc();
            return Box::pin(async { Err(CommandError::Busy) });
        }
        match self.write(&content) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Box::pin(async { Err(CommandError::Busy) });
            }
            Err(e) => {
                self.link_lost(&format!("write failed: {e}"), ctx);
                return Box::pin(async { Err(CommandError::LinkDown) });
            }
        }
        let (tx, rx) = oneshot::channel();
        let dst = match &command {
            Command::Send { dst, .. } | Command::SendTracked { dst, .. } => Some(*dst),
            _ => None,
        };
        let pending = Pending {
            sent: Instant::now(),
            reply: tx,
            command: command.name(),
            dst,
        };
        if command == Command::NetInfo {
            self.ninfo.push_back(pending);
        } else {
            self.results.push_back(pending);
        }
        let timeout = Duration::from_secs_f64(self.config.command_timeout_secs.max(0.0));
        Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(CommandError::LinkDown),
                Err(_) => Err(CommandError::Timeout(timeout)),
            }
        })
    }
}

impl Handler<OpenChannel> for UartManager {
    type Result = ();
    fn handle(&mut self, _: OpenChannel, ctx: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("OpenChannel");
        if self.life.open() {
            self.try_open(ctx);
        }
    }
}

impl Handler<CloseChannel> for UartManager {
    type Result = ();
    fn handle(&mut self, _: CloseChannel, _: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("CloseChannel");
        self.life.close();
        self.writer = None;
        if let Some(stop) = self.reader_stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(mut port) = self.port.take() {
            let _ = port.set_exclusive(false);
        }
        self.kept.take_all();
        self.metrics.mesh_link_up.set(0);
    }
}

impl Handler<ChannelSend> for UartManager {
    type Result = MessageResult<ChannelSend>;
    fn handle(&mut self, msg: ChannelSend, ctx: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling_unqueued("ChannelSend");
        if self.life.is_alive() && self.port.is_some() {
            return MessageResult(match self.write(&msg.0) {
                Ok(()) => SendOutcome::Delivered,
                // Dropped and counted: the adapter is not taking bytes.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => SendOutcome::Transient,
                Err(e) => {
                    self.kept.push(msg.0);
                    self.link_lost(&format!("write failed: {e}"), ctx);
                    SendOutcome::Transient
                }
            });
        }
        let outcome = self.life.undeliverable();
        if outcome == SendOutcome::Transient && self.kept.push(msg.0).is_some() {
            self.metrics
                .uplink_dropped
                .with_label_values(&["uart"])
                .inc();
        }
        MessageResult(outcome)
    }
}

impl Handler<IsAlive> for UartManager {
    type Result = bool;
    fn handle(&mut self, _: IsAlive, _: &mut Context<Self>) -> bool {
        self.life.is_alive() && self.port.is_some()
    }
}

impl Handler<IsClosed> for UartManager {
    type Result = bool;
    fn handle(&mut self, _: IsClosed, _: &mut Context<Self>) -> bool {
        self.life.is_closed()
    }
}

/// The link as `NINFO` and dashboards show it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    pub port: String,
    pub up: bool,
    pub uptime_secs: f64,
    pub baud: u32,
}

#[derive(Message)]
#[rtype(result = "LinkInfo")]
pub struct GetLinkInfo;

impl Handler<GetLinkInfo> for UartManager {
    type Result = MessageResult<GetLinkInfo>;
    fn handle(&mut self, _: GetLinkInfo, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetLinkInfo");
        MessageResult(LinkInfo {
            port: self
                .opened_path
                .clone()
                .unwrap_or_else(|| self.path.describe()),
            up: self.port.is_some(),
            uptime_secs: self
                .up_since
                .map(|t| t.elapsed().as_secs_f64())
                .unwrap_or(0.0),
            baud: self.config.baud,
        })
    }
}
