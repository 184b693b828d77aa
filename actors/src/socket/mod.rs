//! `SocketManager`: the client socket's TCP listener (PROTOCOL 3).
//!
//! Owns the listener and the set of listening connections. Accepts each
//! connection into its own `ClientConnection` actor, subscribes to
//! `NetworkManager`'s events, and fans the ones clients care about (node
//! messages, data updates, results of tracked sends) out to every
//! listening connection, encoded once. Handles `SwitchEvent`,
//! `Listening`, `ConnectionClosed`.

mod connection;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use connection::{ClientConnection, Push};

use crate::metrics::{ActorProbe, Mailbox, Metrics};
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

pub struct SocketManager {
    config: SocketConfig,
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
            crate::until_shutdown(self.shutdown.clone())
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        );
        let Some(std_listener) = self.listener.take() else {
            return;
        };
        match tokio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => {
                let accepts = futures_util::stream::unfold(listener, |l| async move {
                    let r = l.accept().await;
                    Some((Accepted(r), l))
                });
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
            // next accept may succeed.
            Err(e) => log::warn!("client socket: accept failed: {e}"),
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        log::error!("client socket: listener closed");
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
