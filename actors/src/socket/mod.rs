//! `SocketManager`: the client socket's TCP listener (PROTOCOL 3).
//!
//! Owns the listener and the set of listening connections. Accepts each
//! connection into its own `ClientConnection` actor, subscribes to
//! `NetworkManager`'s events, and fans the ones clients care about (node
//! messages, data updates, results of tracked sends) out to every
//! listening connection, encoded once. Handles `SwitchEvent`,
//! `Listening`, `ConnectionClosed`.
//!
//! Bounds (PROTOCOL 1.5): at most `max_connections` open connections (a
//! connection past it gets `F` and is closed), and a failing accept (out
//! of descriptors, typically) backs off exponentially instead of spinning
//! on a listener that stays readable; each failure is counted and the log
//! gets at most a line a second.

mod connection;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use connection::{ClientConnection, Push};

use crate::log_limit::{held_note, LogLimit};
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{NetworkManager, Subscribe};
use crate::wire::client_api::ClientMessage;

/// Link label of `switchyard_connections_open` for client connections.
pub const LINK_CLIENT: &str = "client";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SocketConfig {
    /// Pushes kept per listening connection that reads slower than the
    /// mesh talks; past it the oldest is dropped and counted.
    pub push_queue_limit: usize,
    /// Answers a connection may leave unread before it is cut off.
    pub answer_backlog_limit: usize,
    /// Longest request frame.
    pub max_frame_bytes: usize,
    /// Open connections; past it a new one gets `F` and is closed.
    pub max_connections: usize,
    /// Seconds a connection that has not said `LISTN` may send nothing
    /// before it is told `F` and closed (0: never).
    pub idle_timeout_secs: f64,
    /// Seconds a write may wait for the client to read before the
    /// connection is cut (a client that stopped reading, listening or not).
    pub write_timeout_secs: f64,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            push_queue_limit: 10_000,
            answer_backlog_limit: 1024,
            max_frame_bytes: crate::wire::frame::DEFAULT_MAX_FRAME,
            max_connections: 256,
            idle_timeout_secs: 300.0,
            write_timeout_secs: 30.0,
        }
    }
}

/// The wait after a failed accept: doubles from `MIN` up to `MAX` while
/// accepts keep failing, back to nothing after one succeeds. A listener out
/// of descriptors stays readable, so without a wait the accept loop would
/// spin on the same error.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub const MIN: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    /// An accept failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let d = Self::MIN
            .saturating_mul(1u32 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

pub struct SocketManager {
    config: SocketConfig,
    /// Connections accepted and not yet closed.
    open: usize,
    accept_log: LogLimit,
    refuse_log: LogLimit,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    listener: Option<std::net::TcpListener>,
    me: Option<Mailbox<SocketManager>>,
    next_id: u64,
    listeners: HashMap<u64, Mailbox<ClientConnection>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl SocketManager {
    /// Binds the listener now (so the caller learns the address) and starts
    /// the actor that accepts on it.
    pub fn bind(
        addr: SocketAddr,
        config: SocketConfig,
        metrics: Arc<Metrics>,
        network: Mailbox<NetworkManager>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<(Mailbox<SocketManager>, SocketAddr)> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let probe = metrics.probe("SocketManager", local.to_string());
        let manager = SocketManager {
            config,
            open: 0,
            accept_log: LogLimit::per_second(),
            refuse_log: LogLimit::per_second(),
            metrics,
            probe: Arc::clone(&probe),
            network,
            listener: Some(listener),
            me: None,
            next_id: 1,
            listeners: HashMap::new(),
            shutdown,
        };
        Ok((Mailbox::new(manager.start(), probe), local))
    }

    fn fan_out(&mut self, frame: Bytes) {
        self.listeners.retain(|_, c| c.connected());
        self.metrics
            .client_pushes
            .inc_by(self.listeners.len() as u64);
        for c in self.listeners.values() {
            c.do_send(Push(frame.clone()));
        }
    }
}

/// A connection accepted by the listener.
#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(std::io::Result<(tokio::net::TcpStream, SocketAddr)>);

impl Actor for SocketManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(Mailbox::new(ctx.address(), Arc::clone(&self.probe)));
        self.network
            .do_send(Subscribe(ctx.address().recipient::<SwitchEvent>()));
        // On shutdown the listener closes with this actor.
        ctx.spawn(
            crate::shutdown::until_shutdown(self.shutdown.clone())
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        );
        let Some(std_listener) = self.listener.take() else {
            return;
        };
        match tokio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => {
                let accepts = futures_util::stream::unfold(
                    (listener, Backoff::default()),
                    |(l, mut backoff)| async move {
                        let r = l.accept().await;
                        match &r {
                            Ok(_) => backoff.succeeded(),
                            Err(_) => tokio::time::sleep(backoff.failed()).await,
                        }
                        Some((Accepted(r), (l, backoff)))
                    },
                );
                ctx.add_stream(accepts);
            }
            Err(e) => log::error!("client socket: cannot listen: {e}"),
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

impl StreamHandler<Accepted> for SocketManager {
    fn handle(&mut self, msg: Accepted, _: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("Accepted");
        match msg.0 {
            Ok((stream, peer)) => {
                if self.open >= self.config.max_connections {
                    self.refuse(stream, peer);
                    return;
                }
                self.open += 1;
                let id = self.next_id;
                self.next_id += 1;
                let _ = stream.set_nodelay(true);
                let manager = self.me.clone().expect("set when started");
                ClientConnection::spawn(
                    id,
                    stream,
                    peer,
                    self.config.clone(),
                    Arc::clone(&self.metrics),
                    self.network.clone(),
                    manager,
                    self.shutdown.clone(),
                );
            }
            // Out of descriptors and the like: the listener stays, the
            // next accept may succeed (after the backoff).
            Err(e) => {
                self.metrics
                    .accept_errors
                    .with_label_values(&[LINK_CLIENT])
                    .inc();
                if let Some(held) = self.accept_log.admit(Instant::now()) {
                    log::warn!("client socket: accept failed: {e}{}", held_note(held));
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        log::error!("client socket: listener closed");
    }
}

impl SocketManager {
    /// Past `max_connections`: the connection is told why (`F`) and closed.
    fn refuse(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        self.metrics
            .connections_refused
            .with_label_values(&[LINK_CLIENT, "total"])
            .inc();
        if let Some(held) = self.refuse_log.admit(Instant::now()) {
            log::warn!(
                "client socket: refused {peer}: {} connections open{}",
                self.open,
                held_note(held)
            );
        }
        let reason = format!("too many connections ({}), try again later", self.open);
        let frame = crate::wire::frame::encode_to_vec(&crate::wire::client_api::fail(&reason));
        // A fresh socket's send buffer takes these few bytes at once; if it
        // does not, the peer learns it from the close alone.
        let _ = stream.try_write(&frame);
    }
}

/// A connection said `LISTN`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Listening {
    pub id: u64,
    pub connection: Mailbox<ClientConnection>,
}

impl Handler<Listening> for SocketManager {
    type Result = ();
    fn handle(&mut self, msg: Listening, _: &mut Context<Self>) {
        let _h = self.probe.handling("Listening");
        self.listeners.insert(msg.id, msg.connection);
        self.metrics
            .client_listeners
            .set(self.listeners.len() as i64);
    }
}

/// A connection closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionClosed {
    pub id: u64,
}

impl Handler<ConnectionClosed> for SocketManager {
    type Result = ();
    fn handle(&mut self, msg: ConnectionClosed, _: &mut Context<Self>) {
        let _h = self.probe.handling("ConnectionClosed");
        self.open = self.open.saturating_sub(1);
        self.listeners.remove(&msg.id);
        self.metrics
            .client_listeners
            .set(self.listeners.len() as i64);
    }
}

impl Handler<SwitchEvent> for SocketManager {
    type Result = ();
    fn handle(&mut self, event: SwitchEvent, _: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("SwitchEvent");
        // Nodes behind gateways (on a central switch) are pushed like the
        // switch's own; `NSTAT`'s `gateway_list` tells them apart.
        let push = match event {
            SwitchEvent::NodeData(d) => ClientMessage::PushData {
                src: d.key.addr,
                payload: d.payload.clone(),
            },
            SwitchEvent::NodeMessage { key, message, .. } => ClientMessage::PushMessage {
                src: key.addr,
                message: message.to_vec(),
            },
            SwitchEvent::CommandResult { key, outcome, .. } => ClientMessage::PushResult {
                node: key.addr,
                outcome,
            },
            _ => return,
        };
        if !self.listeners.is_empty() {
            self.fan_out(Bytes::from(crate::wire::frame::encode_to_vec(
                &push.encode(),
            )));
        }
    }
}

impl SocketConfig {
    /// `None`: connections are never idle-timed-out.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0.0)
            .then(|| Duration::try_from_secs_f64(self.idle_timeout_secs).ok())
            .flatten()
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.write_timeout_secs.max(0.01)).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL 1.5 "Bounds": failing accepts back off, doubling to a cap,
    // and start again from nothing after one succeeds.
    #[test]
    fn accept_failures_back_off_exponentially_to_a_cap() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.failed()).collect();
        assert_eq!(waits[0], Backoff::MIN);
        assert_eq!(waits[1], Backoff::MIN * 2);
        assert_eq!(waits[2], Backoff::MIN * 4);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(waits[9], Backoff::MAX);
        for _ in 0..100 {
            assert_eq!(b.failed(), Backoff::MAX, "capped, no overflow");
        }
        b.succeeded();
        assert_eq!(b.failed(), Backoff::MIN);
    }

    #[test]
    fn an_idle_timeout_of_zero_is_none() {
        let mut c = SocketConfig::default();
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(300)));
        c.idle_timeout_secs = 0.0;
        assert_eq!(c.idle_timeout(), None);
        c.idle_timeout_secs = -1.0;
        assert_eq!(c.idle_timeout(), None);
    }
}
