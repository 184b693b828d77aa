//! The uplink (PROTOCOL 5): an edge switch forwards its mesh to a central
//! switch, which shows and commands the nodes of every gateway.
//!
//! `Uplink` (edge side, this file) owns the numbered events not yet
//! acknowledged by the central switch and a `WebsocketChannel` to it. It
//! subscribes to `NetworkManager`'s events, numbers each mesh event, keeps
//! it until the central switch acknowledges it (bounded, oldest dropped and
//! counted), and after every (re)connection replays what is unacknowledged,
//! in order; the central side applies each number once. Commands from the
//! central switch go to the local mesh through `NetworkManager` and are
//! answered with their result. Handles `SwitchEvent`, `ChannelNotice`.
//!
//! `GatewayServer` and `GatewaySession` are the central side.

pub mod gateway;
mod session;

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use gateway::{GatewayCommand, GatewayConfig, GatewayServer};
pub use session::{GatewaySession, GatewayToken, SessionLimits};

use crate::channel::websocket::WebsocketChannel;
use crate::channel::{ChannelConfig, ChannelNotice, ChannelSend, CloseChannel, OpenChannel};
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::node_cache::NodeStatus;
use crate::network::{MeshCommand, NetworkManager, Subscribe};
use crate::uart::RootReply;
use crate::wire::mesh::Command;
use crate::wire::uplink::{Envelope, RemoteCommand, UplinkEvent};

/// The edge's uplink settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UplinkConfig {
    /// The central switch's gateway endpoint, e.g. `ws://central:3000/gateway`.
    pub url: Option<String>,
    /// This edge's name at the central switch.
    pub gateway_id: Option<String>,
    /// Presented to the central switch as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Bytes of events kept while the central switch is unreachable or has
    /// not acknowledged them (besides `channel.buffer_limit` events); past
    /// it the oldest are dropped and counted.
    pub buffer_bytes_limit: usize,
    pub channel: ChannelConfig,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            url: None,
            gateway_id: None,
            token: None,
            buffer_bytes_limit: 32 * 1024 * 1024,
            channel: ChannelConfig::default(),
        }
    }
}

/// The numbered events not yet acknowledged, oldest first, bounded in
/// number and in bytes: past either bound the oldest are dropped.
#[derive(Debug)]
pub struct EventBuffer {
    events: std::collections::VecDeque<(u64, Bytes)>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
}

impl EventBuffer {
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        EventBuffer {
            events: std::collections::VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
        }
    }

    /// Keeps one event; returns how many old ones were dropped for it (an
    /// event larger than the byte bound alone is kept by itself).
    pub fn push(&mut self, seq: u64, frame: Bytes) -> u64 {
        self.bytes += frame.len();
        self.events.push_back((seq, frame));
        let mut dropped = 0;
        while self.events.len() > 1
            && (self.events.len() > self.max_items || self.bytes > self.max_bytes)
        {
            if let Some((_, f)) = self.events.pop_front() {
                self.bytes -= f.len();
                dropped += 1;
            }
        }
        dropped
    }

    /// Forgets every event up to `seq` (acknowledged).
    pub fn ack(&mut self, seq: u64) {
        while self.events.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, f)) = self.events.pop_front() {
                self.bytes -= f.len();
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

pub struct Uplink {
    gateway: String,
    epoch: u64,
    url: String,
    token: Option<String>,
    config: ChannelConfig,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    channel: Option<Addr<WebsocketChannel>>,
    unacked: EventBuffer,
    next_seq: u64,
    alive: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Uplink {
    /// Starts the uplink of gateway `gateway` to `url` with `settings`'
    /// token, channel and buffer bounds.
    pub fn start_link(
        gateway: String,
        url: String,
        settings: &UplinkConfig,
        metrics: Arc<Metrics>,
        network: Mailbox<NetworkManager>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Mailbox<Uplink> {
        let probe = metrics.probe("Uplink", gateway.clone());
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let u = Uplink {
            unacked: EventBuffer::new(settings.channel.buffer_limit, settings.buffer_bytes_limit),
            gateway,
            epoch,
            url,
            token: settings.token.clone(),
            config: settings.channel.clone(),
            metrics,
            probe: Arc::clone(&probe),
            network,
            channel: None,
            next_seq: 1,
            alive: false,
            shutdown,
        };
        Mailbox::new(u.start(), probe)
    }

    fn send(&self, env: &Envelope) {
        if let Some(c) = &self.channel {
            c.do_send(ChannelSend(Bytes::from(env.encode())));
        }
    }

    fn gauges(&self) {
        self.metrics
            .uplink_buffered
            .with_label_values(&[&self.gateway])
            .set(self.unacked.len() as i64);
        self.metrics
            .uplink_buffered_bytes
            .with_label_values(&[&self.gateway])
            .set(self.unacked.bytes() as i64);
        self.metrics
            .uplink_connected
            .with_label_values(&[&self.gateway])
            .set(self.alive as i64);
    }

    fn on_inbound(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        match Envelope::decode(bytes) {
            Ok(Envelope::Ack { seq }) => {
                self.unacked.ack(seq);
                self.gauges();
            }
            Ok(Envelope::Command { id, node, command }) => {
                let (command, check) = match command {
                    RemoteCommand::Send { message } => {
                        (Command::Send { dst: node, message }, Some(node))
                    }
                    RemoteCommand::SendTracked { message } => {
                        (Command::SendTracked { dst: node, message }, Some(node))
                    }
                    RemoteCommand::Broadcast { message } => (Command::Broadcast { message }, None),
                    RemoteCommand::Restart => (Command::Restart, None),
                    RemoteCommand::Clean => (Command::Clean, None),
                    RemoteCommand::NetInfo => (Command::NetInfo, None),
                };
                let req = self.network.send(MeshCommand {
                    command,
                    node: check,
                });
                ctx.spawn(req.into_actor(self).map(move |res, act, _| {
                    let outcome = match res {
                        Ok(Ok(RootReply::Ok)) => Ok(Vec::new()),
                        Ok(Ok(RootReply::NetworkInfo(nodes))) => Ok(nodes),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    act.send(&Envelope::CommandResult { id, outcome });
                }));
            }
            Ok(other) => log::debug!("uplink {}: ignored {other:?}", self.gateway),
            Err(e) => {
                self.metrics
                    .gateway_bad_frames
                    .with_label_values(&[e.kind()])
                    .inc();
                log::warn!(
                    "uplink {}: bad frame from the central switch: {e}",
                    self.gateway
                );
            }
        }
    }
}

fn uplink_event(event: &SwitchEvent) -> Option<(f64, UplinkEvent)> {
    match event {
        SwitchEvent::NodeData(d) if d.key.gateway.is_none() => Some((
            d.ts,
            UplinkEvent::NodeData {
                node: d.key.addr,
                entries: d
                    .items
                    .iter()
                    .map(|i| (i.data_type.clone(), i.raw.clone()))
                    .collect(),
            },
        )),
        SwitchEvent::NodeMessage { ts, key, message } if key.gateway.is_none() => Some((
            *ts,
            UplinkEvent::NodeMessage {
                node: key.addr,
                message: message.to_vec(),
            },
        )),
        SwitchEvent::NodeStatus { ts, key, status } if key.gateway.is_none() => Some((
            *ts,
            UplinkEvent::NodeStatus {
                node: key.addr,
                active: *status == NodeStatus::Active,
            },
        )),
        SwitchEvent::Link { ts, link, state } if link == "mesh" => {
            Some((*ts, UplinkEvent::Link { up: state == "up" }))
        }
        _ => None,
    }
}

impl Actor for Uplink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.network
            .do_send(Subscribe(ctx.address().recipient::<SwitchEvent>()));
        let channel = WebsocketChannel::new(
            self.url.clone(),
            self.token.clone(),
            ctx.address().recipient::<ChannelNotice>(),
            &self.config,
            Arc::clone(&self.metrics),
            self.gateway.clone(),
        )
        .start();
        channel.do_send(OpenChannel);
        self.channel = Some(channel);
        self.gauges();
        ctx.spawn(
            crate::shutdown::until_shutdown(self.shutdown.clone())
                .into_actor(self)
                .map(|_, act, ctx| {
                    if let Some(c) = act.channel.take() {
                        c.do_send(CloseChannel);
                    }
                    ctx.stop();
                }),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

impl Handler<SwitchEvent> for Uplink {
    type Result = ();
    fn handle(&mut self, event: SwitchEvent, _: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("SwitchEvent");
        let Some((ts, event)) = uplink_event(&event) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = Bytes::from(Envelope::Event { seq, ts, event }.encode());
        let dropped = self.unacked.push(seq, bytes.clone());
        if dropped > 0 {
            self.metrics
                .uplink_dropped
                .with_label_values(&[&self.gateway])
                .inc_by(dropped);
        }
        // While down, events wait here (not in the channel): the replay
        // after reconnecting sends them once, in order.
        if self.alive {
            if let Some(c) = &self.channel {
                c.do_send(ChannelSend(bytes));
            }
        }
        self.gauges();
    }
}

impl Handler<ChannelNotice> for Uplink {
    type Result = ();
    fn handle(&mut self, notice: ChannelNotice, ctx: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("ChannelNotice");
        match notice {
            ChannelNotice::Opened | ChannelNotice::Reconnected => {
                self.alive = true;
                log::info!(
                    "uplink {}: connected; replaying {} unacknowledged events",
                    self.gateway,
                    self.unacked.len()
                );
                let resume = self
                    .unacked
                    .iter()
                    .next()
                    .map_or(self.next_seq, |(s, _)| *s);
                self.send(&Envelope::Hello {
                    gateway: self.gateway.clone(),
                    epoch: self.epoch,
                    resume,
                });
                if let Some(c) = &self.channel {
                    for (_, b) in self.unacked.iter() {
                        c.do_send(ChannelSend(b.clone()));
                    }
                }
            }
            ChannelNotice::Lost { .. } => self.alive = false,
            ChannelNotice::CatastrophicDisconnect { reason } => {
                self.alive = false;
                log::error!(
                    "uplink {}: gave up on the central switch: {reason}",
                    self.gateway
                );
            }
            ChannelNotice::Inbound(b) => self.on_inbound(&b, ctx),
            // The uplink sends no commands that are answered this way.
            ChannelNotice::Answered { .. } => {}
        }
        self.gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_buffer_is_bounded_in_items_and_bytes() {
        let mut b = EventBuffer::new(3, 100);
        assert_eq!(b.push(1, Bytes::from(vec![0; 10])), 0);
        assert_eq!(b.push(2, Bytes::from(vec![0; 10])), 0);
        assert_eq!(b.push(3, Bytes::from(vec![0; 10])), 0);
        assert_eq!(b.push(4, Bytes::from(vec![0; 10])), 1);
        assert_eq!(b.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(b.bytes(), 30);
        // 90 bytes more: only the newest two fit in 100 bytes.
        assert_eq!(b.push(5, Bytes::from(vec![0; 90])), 2);
        assert_eq!(b.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(b.bytes(), 100);
        b.ack(4);
        assert_eq!((b.len(), b.bytes()), (1, 90));
        // Larger than the bound alone: kept by itself.
        assert_eq!(b.push(6, Bytes::from(vec![0; 500])), 1);
        assert_eq!((b.len(), b.bytes()), (1, 500));
        b.ack(10);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }
}
