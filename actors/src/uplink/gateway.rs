//! `GatewayServer`: the central switch's side of the uplinks (PROTOCOL 5,
//! 1.5).
//!
//! Owns the known gateways (each bound to at most one live
//! `GatewaySession`), each gateway's sequence gate (kept across its
//! reconnections, reset when the edge restarts: a new epoch), the node
//! addresses each gateway has spoken for, and the commands waiting for a
//! gateway's result. Applies each gateway event once, in order, after the
//! serial link's own checks, by handing it to `NetworkManager` keyed by
//! gateway id. Handles `GatewayHello`, `GatewayEvent`, `GatewayResult`,
//! `GatewayGone`, `GatewayCommand`.
//!
//! The decisions (who may claim a name, how many gateways and nodes, which
//! commands have waited too long) live in `GatewayTable` and
//! `PendingCommands`, plain structs tested without a runtime.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::session::{CloseGateway, GatewaySession, SendEnvelope};
use crate::log_limit::{held_note, LogLimit};
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{ForgetGateway, GatewayMessage, GatewayUpdate, NetworkManager, Publish};
use crate::uart::{CommandError, RootReply};
use crate::wire::mesh::NodeAddr;
use crate::wire::uplink::{
    is_valid_gateway_name, Envelope, RemoteCommand, SeqGate, SeqVerdict, UplinkEvent,
};

/// The central side's gateway settings (`[gateway]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Largest WebSocket frame on `/gateway`; a frame header announcing
    /// more closes the session with 1009. Envelopes are decoded with a byte
    /// limit not above it.
    pub max_frame_bytes: usize,
    /// Gateways known at once (connected or remembered); a new name past it
    /// is refused.
    pub max_gateways: usize,
    /// Node addresses one gateway may speak for; events for more are
    /// dropped and counted.
    pub max_nodes_per_gateway: usize,
    /// Seconds a command waits for its gateway's answer.
    pub command_timeout_secs: f64,
    /// Commands waiting for gateways' answers at once; more are refused.
    pub max_pending_commands: usize,
    /// Seconds a new session has to say `Hello` before it is closed.
    pub hello_timeout_secs: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_frame_bytes: crate::wire::uplink::DEFAULT_MAX_FRAME_BYTES,
            max_gateways: 64,
            max_nodes_per_gateway: 1024,
            command_timeout_secs: 10.0,
            max_pending_commands: 256,
            hello_timeout_secs: 10.0,
        }
    }
}

impl GatewayConfig {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.command_timeout_secs.max(0.01))
    }
}

/// Why a gateway's claim of a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloRefused {
    #[error("gateway name must be 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadName,
    #[error("gateway name is connected on another session")]
    NameTaken,
    #[error("too many gateways")]
    TooMany,
}

impl HelloRefused {
    pub fn kind(&self) -> &'static str {
        match self {
            HelloRefused::BadName => "bad_name",
            HelloRefused::NameTaken => "name_taken",
            HelloRefused::TooMany => "too_many_gateways",
        }
    }
}

/// One known gateway.
#[derive(Debug)]
pub struct GatewayEntry<S> {
    pub session: Option<(u64, S)>,
    pub epoch: u64,
    pub gate: SeqGate,
    nodes: HashSet<NodeAddr>,
    last_seen: Instant,
}

/// The known gateways and the rules for claiming a name: one live session
/// per name, a bounded number of names (a disconnected one is forgotten to
/// make room), a bounded number of nodes per gateway.
#[derive(Debug)]
pub struct GatewayTable<S> {
    gateways: HashMap<String, GatewayEntry<S>>,
    max_gateways: usize,
    max_nodes: usize,
}

impl<S: Clone> GatewayTable<S> {
    pub fn new(max_gateways: usize, max_nodes: usize) -> Self {
        GatewayTable {
            gateways: HashMap::new(),
            max_gateways: max_gateways.max(1),
            max_nodes,
        }
    }

    /// A session says it is `name`: bind it, or say why not. Returns how
    /// many event numbers the edge no longer holds (skipped).
    pub fn hello(
        &mut self,
        name: &str,
        epoch: u64,
        resume: u64,
        session_id: u64,
        session: S,
        now: Instant,
    ) -> Result<u64, HelloRefused> {
        self.hello_evicting(name, epoch, resume, session_id, session, now)
            .map(|(lost, _)| lost)
    }

    /// [`GatewayTable::hello`], also naming the gateway forgotten to make
    /// room, if one was.
    pub fn hello_evicting(
        &mut self,
        name: &str,
        epoch: u64,
        resume: u64,
        session_id: u64,
        session: S,
        now: Instant,
    ) -> Result<(u64, Option<String>), HelloRefused> {
        let mut evicted = None;
        if !is_valid_gateway_name(name) {
            return Err(HelloRefused::BadName);
        }
        if let Some(g) = self.gateways.get(name) {
            if g.session.as_ref().is_some_and(|(id, _)| *id != session_id) {
                return Err(HelloRefused::NameTaken);
            }
        } else if self.gateways.len() >= self.max_gateways {
            // Forget the gateway disconnected the longest, if any.
            let oldest = self
                .gateways
                .iter()
                .filter(|(_, g)| g.session.is_none())
                .min_by_key(|(_, g)| g.last_seen)
                .map(|(n, _)| n.clone());
            match oldest {
                Some(n) => {
                    self.gateways.remove(&n);
                    evicted = Some(n);
                }
                None => return Err(HelloRefused::TooMany),
            }
        }
        let g = self
            .gateways
            .entry(name.to_string())
            .or_insert_with(|| GatewayEntry {
                session: None,
                epoch,
                gate: SeqGate::resuming_at(resume),
                nodes: HashSet::new(),
                last_seen: now,
            });
        if g.epoch != epoch {
            // The edge restarted: its numbering starts again.
            g.epoch = epoch;
            g.gate = SeqGate::resuming_at(resume);
        }
        g.last_seen = now;
        g.session = Some((session_id, session));
        Ok((g.gate.skip_to(resume), evicted))
    }

    /// The gateway bound to `session_id` under `name`, if it still is.
    pub fn bound(&mut self, name: &str, session_id: u64) -> Option<&mut GatewayEntry<S>> {
        self.gateways
            .get_mut(name)
            .filter(|g| g.session.as_ref().is_some_and(|(id, _)| *id == session_id))
    }

    /// The live session of `name`.
    pub fn session(&self, name: &str) -> Option<S> {
        self.gateways
            .get(name)
            .and_then(|g| g.session.as_ref().map(|(_, s)| s.clone()))
    }

    /// The session `session_id` of `name` ended; true if it was the bound one.
    pub fn gone(&mut self, name: &str, session_id: u64, now: Instant) -> bool {
        match self.gateways.get_mut(name) {
            Some(g) if g.session.as_ref().is_some_and(|(id, _)| *id == session_id) => {
                g.session = None;
                g.last_seen = now;
                true
            }
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// Whether session `session_id`, bound to `name`, may speak for `node`
    /// (known, or room for one more), remembering it.
    pub fn admit_node(&mut self, name: &str, session_id: u64, node: NodeAddr) -> bool {
        let max = self.max_nodes;
        let Some(g) = self.bound(name, session_id) else {
            return false;
        };
        if g.nodes.contains(&node) {
            return true;
        }
        if g.nodes.len() >= max {
            return false;
        }
        g.nodes.insert(node);
        true
    }
}

/// A command waiting for a gateway's answer.
struct Waiting {
    gateway: String,
    deadline: Instant,
    reply: oneshot::Sender<Result<RootReply, CommandError>>,
}

/// The commands waiting for gateways' answers: bounded in number, each
/// answered exactly once (by its gateway, by the timeout, or by its
/// gateway leaving).
pub struct PendingCommands {
    waiting: HashMap<u64, Waiting>,
    limit: usize,
    timeout: Duration,
    next_id: u64,
}

impl PendingCommands {
    pub fn new(limit: usize, timeout: Duration) -> Self {
        PendingCommands {
            waiting: HashMap::new(),
            limit: limit.max(1),
            timeout,
            next_id: 1,
        }
    }

    /// Registers a command for `gateway`; None when too many wait already.
    pub fn add(
        &mut self,
        gateway: &str,
        now: Instant,
    ) -> Option<(u64, oneshot::Receiver<Result<RootReply, CommandError>>)> {
        if self.waiting.len() >= self.limit {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(
            id,
            Waiting {
                gateway: gateway.to_string(),
                deadline: now + self.timeout,
                reply: tx,
            },
        );
        Some((id, rx))
    }

    /// `gateway`'s answer to command `id`; false if no such command of
    /// that gateway waits (late, or another gateway's number).
    pub fn resolve(&mut self, gateway: &str, id: u64, r: Result<RootReply, CommandError>) -> bool {
        if self.waiting.get(&id).is_none_or(|w| w.gateway != gateway) {
            return false;
        }
        if let Some(w) = self.waiting.remove(&id) {
            let _ = w.reply.send(r);
        }
        true
    }

    /// Answers every command past its deadline with a timeout; returns how
    /// many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.timeout;
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            if let Some(w) = self.waiting.remove(id) {
                let _ = w.reply.send(Err(CommandError::Timeout(timeout)));
            }
        }
        expired.len()
    }

    /// Answers every command of `gateway` with "link down".
    pub fn gateway_left(&mut self, gateway: &str) {
        let ids: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.gateway == gateway)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(w) = self.waiting.remove(&id) {
                let _ = w.reply.send(Err(CommandError::LinkDown));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

pub struct GatewayServer {
    config: GatewayConfig,
    /// The serial link's frame limit: gateway data is held to it too.
    mesh_frame_bytes: usize,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    table: GatewayTable<Mailbox<GatewaySession>>,
    pending: PendingCommands,
    refusals_log: LogLimit,
    rejects_log: LogLimit,
}

impl GatewayServer {
    pub fn start_link(
        config: GatewayConfig,
        mesh_frame_bytes: usize,
        metrics: Arc<Metrics>,
        network: Mailbox<NetworkManager>,
    ) -> Mailbox<GatewayServer> {
        let probe = metrics.probe("GatewayServer", "central");
        let g = GatewayServer {
            table: GatewayTable::new(config.max_gateways, config.max_nodes_per_gateway),
            pending: PendingCommands::new(config.max_pending_commands, config.command_timeout()),
            config,
            mesh_frame_bytes,
            metrics,
            probe: Arc::clone(&probe),
            network,
            refusals_log: LogLimit::per_second(),
            rejects_log: LogLimit::per_second(),
        };
        Mailbox::new(g.start(), probe)
    }

    fn link_event(&self, gateway: &str, state: &str) {
        self.network.do_send(Publish(SwitchEvent::Link {
            ts: crate::clock::now_secs(),
            link: format!("gateway:{gateway}"),
            state: state.into(),
        }));
    }

    fn reject_event(&mut self, gateway: &str, kind: &str, why: &str) {
        self.metrics
            .gateway_events_rejected
            .with_label_values(&[kind])
            .inc();
        if let Some(held) = self.rejects_log.admit(Instant::now()) {
            log::warn!(
                "gateway {gateway}: event rejected: {why}{}",
                held_note(held)
            );
        }
    }

    /// The checked form of a gateway's event, or None (counted) when it
    /// fails the serial link's checks or the node bound.
    fn checked(
        &mut self,
        gateway: &str,
        session_id: u64,
        event: UplinkEvent,
    ) -> Option<GatewayUpdate> {
        let max_nodes = self.config.max_nodes_per_gateway;
        let node = match &event {
            UplinkEvent::NodeData { node, .. }
            | UplinkEvent::NodeMessage { node, .. }
            | UplinkEvent::NodeStatus { node, .. } => Some(*node),
            UplinkEvent::Link { .. } => None,
        };
        if let Some(node) = node {
            if !self.table.admit_node(gateway, session_id, node) {
                self.reject_event(
                    gateway,
                    "too_many_nodes",
                    &format!("more than {max_nodes} nodes; node 0x{node:04x} ignored"),
                );
                return None;
            }
        }
        match event.to_root_message(self.mesh_frame_bytes) {
            Some(Ok(m)) => Some(GatewayUpdate::Root(m)),
            Some(Err(e)) => {
                self.reject_event(gateway, e.kind(), &e.to_string());
                None
            }
            None => match event {
                UplinkEvent::NodeStatus { node, active } => {
                    Some(GatewayUpdate::NodeStatus { node, active })
                }
                UplinkEvent::Link { up } => Some(GatewayUpdate::Link { up }),
                // Data and messages always have a frame form.
                _ => None,
            },
        }
    }
}

impl Actor for GatewayServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Commands whose gateway never answers are answered with a timeout
        // and forgotten, whatever the gateway does.
        let every = (self.config.command_timeout() / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        ctx.run_interval(every, |act, _| {
            let n = act.pending.expire(Instant::now());
            if n > 0 {
                act.metrics
                    .pending_commands_expired
                    .with_label_values(&["gateway"])
                    .inc_by(n as u64);
                log::warn!("gateway commands: {n} got no answer in time");
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

/// A gateway said who it is on session `session_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayHello {
    pub gateway: String,
    pub epoch: u64,
    pub resume: u64,
    pub session_id: u64,
    pub session: Mailbox<GatewaySession>,
}

impl Handler<GatewayHello> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayHello, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayHello");
        let hello = self.table.hello_evicting(
            &msg.gateway,
            msg.epoch,
            msg.resume,
            msg.session_id,
            msg.session.clone(),
            Instant::now(),
        );
        let lost = match hello {
            Ok((lost, evicted)) => {
                if let Some(old) = evicted {
                    log::info!("gateway {old}: forgotten to make room for {}", msg.gateway);
                    self.network.do_send(ForgetGateway(old));
                }
                lost
            }
            Err(e) => {
                self.metrics
                    .gateway_rejected
                    .with_label_values(&[e.kind()])
                    .inc();
                if let Some(held) = self.refusals_log.admit(Instant::now()) {
                    log::warn!(
                        "gateway {:?} refused: {e}{}",
                        msg.gateway.escape_debug().to_string(),
                        held_note(held)
                    );
                }
                msg.session.do_send(CloseGateway(e.to_string()));
                return;
            }
        };
        if lost > 0 {
            log::warn!(
                "gateway {}: {lost} events were dropped by the edge before they reached us",
                msg.gateway
            );
        }
        let applied = self
            .table
            .bound(&msg.gateway, msg.session_id)
            .map_or(0, |g| g.gate.applied());
        msg.session
            .do_send(SendEnvelope(Envelope::Ack { seq: applied }));
        self.metrics
            .gateway_connected
            .with_label_values(&[&msg.gateway])
            .set(1);
        log::info!("gateway {} connected", msg.gateway);
        self.link_event(&msg.gateway, "up");
    }
}

/// A session was refused before any name (no token set, wrong token, a
/// second name): counted and logged here, where the log is rate-limited
/// across sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayRefused {
    pub reason: &'static str,
    pub peer: String,
}

impl Handler<GatewayRefused> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayRefused, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayRefused");
        self.metrics.gateway_refused.inc();
        self.metrics
            .gateway_rejected
            .with_label_values(&[msg.reason])
            .inc();
        if let Some(held) = self.refusals_log.admit(Instant::now()) {
            let why = match msg.reason {
                "token_not_set" => {
                    "this switch has no gateway token set (--gateway-token), so /gateway takes no one"
                }
                "bad_token" => "gateway token missing or wrong",
                "no_hello" => "no hello in time",
                _ => "a session tried to speak for a second gateway name",
            };
            log::warn!(
                "gateway from {} refused: {why}{}",
                msg.peer,
                held_note(held)
            );
        }
    }
}

/// A numbered event from a gateway's session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayEvent {
    pub gateway: String,
    pub session_id: u64,
    pub seq: u64,
    pub event: UplinkEvent,
}

impl Handler<GatewayEvent> for GatewayServer {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: GatewayEvent, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GatewayEvent");
        // Only the session bound to the name speaks for it.
        let Some(g) = self.table.bound(&msg.gateway, msg.session_id) else {
            return Box::pin(async {});
        };
        let verdict = g.gate.check(msg.seq);
        let mut applied = None;
        match verdict {
            SeqVerdict::Apply => {
                self.metrics
                    .gateway_events_in
                    .with_label_values(&[&msg.gateway])
                    .inc();
                if let Some(update) = self.checked(&msg.gateway, msg.session_id, msg.event) {
                    applied = Some(self.network.send(GatewayMessage {
                        gateway: msg.gateway.clone(),
                        update,
                    }));
                }
            }
            SeqVerdict::Duplicate | SeqVerdict::Gap => {
                self.metrics
                    .gateway_duplicates
                    .with_label_values(&[&msg.gateway])
                    .inc();
            }
        }
        if let Some(g) = self.table.bound(&msg.gateway, msg.session_id) {
            if let Some((_, s)) = &g.session {
                s.do_send(SendEnvelope(Envelope::Ack {
                    seq: g.gate.applied(),
                }));
            }
        }
        // The session waits for this: the manager's mailbox holds at most
        // one event per gateway session.
        Box::pin(async move {
            if let Some(a) = applied {
                let _ = a.await;
            }
        })
    }
}

/// A gateway's answer to a command.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayResult {
    pub gateway: String,
    pub id: u64,
    pub outcome: Result<Vec<NodeAddr>, String>,
}

impl Handler<GatewayResult> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayResult, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayResult");
        let r = match msg.outcome {
            Ok(nodes) if nodes.is_empty() => Ok(RootReply::Ok),
            Ok(nodes) => Ok(RootReply::NetworkInfo(nodes)),
            Err(e) => Err(CommandError::Root(e)),
        };
        if !self.pending.resolve(&msg.gateway, msg.id, r) {
            log::debug!(
                "gateway {}: result for command {} that no one waits for",
                msg.gateway,
                msg.id
            );
        }
    }
}

/// A gateway's session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayGone {
    pub gateway: String,
    pub session_id: u64,
}

impl Handler<GatewayGone> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayGone, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayGone");
        if self
            .table
            .gone(&msg.gateway, msg.session_id, Instant::now())
        {
            self.pending.gateway_left(&msg.gateway);
            self.metrics
                .gateway_connected
                .with_label_values(&[&msg.gateway])
                .set(0);
            log::warn!("gateway {} disconnected", msg.gateway);
            self.link_event(&msg.gateway, "down");
        }
    }
}

/// A command for a node behind a gateway.
#[derive(Message)]
#[rtype(result = "Result<RootReply, CommandError>")]
pub struct GatewayCommand {
    pub gateway: String,
    pub node: NodeAddr,
    pub command: RemoteCommand,
}

impl Handler<GatewayCommand> for GatewayServer {
    type Result = ResponseFuture<Result<RootReply, CommandError>>;
    fn handle(&mut self, msg: GatewayCommand, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GatewayCommand");
        let Some(session) = self.table.session(&msg.gateway) else {
            return Box::pin(async { Err(CommandError::LinkDown) });
        };
        let Some((id, rx)) = self.pending.add(&msg.gateway, Instant::now()) else {
            self.metrics
                .pending_commands_refused
                .with_label_values(&["gateway"])
                .inc();
            return Box::pin(async { Err(CommandError::Busy) });
        };
        session.do_send(SendEnvelope(Envelope::Command {
            id,
            node: msg.node,
            command: msg.command,
        }));
        // The sweep answers a command past its deadline, so `rx` always
        // resolves; a dropped sender means the server stopped.
        Box::pin(async move { rx.await.unwrap_or(Err(CommandError::LinkDown)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_session_per_name() {
        let mut t: GatewayTable<u8> = GatewayTable::new(4, 10);
        let now = Instant::now();
        assert_eq!(t.hello("g", 1, 1, 10, 0, now), Ok(0));
        assert_eq!(t.hello("g", 1, 1, 11, 0, now), Err(HelloRefused::NameTaken));
        // The bound session may say hello again.
        assert_eq!(t.hello("g", 1, 1, 10, 0, now), Ok(0));
        assert!(t.bound("g", 11).is_none());
        assert!(t.bound("g", 10).is_some());
        assert!(!t.gone("g", 11, now));
        assert!(t.gone("g", 10, now));
        assert_eq!(t.hello("g", 1, 1, 11, 0, now), Ok(0));
        assert_eq!(
            t.hello("bad name", 1, 1, 12, 0, now),
            Err(HelloRefused::BadName)
        );
    }

    #[test]
    fn the_number_of_gateways_is_bounded_and_the_longest_gone_is_forgotten() {
        let mut t: GatewayTable<u8> = GatewayTable::new(2, 10);
        let t0 = Instant::now();
        t.hello("a", 1, 1, 1, 0, t0).unwrap();
        t.hello("b", 1, 1, 2, 0, t0).unwrap();
        assert_eq!(t.hello("c", 1, 1, 3, 0, t0), Err(HelloRefused::TooMany));
        t.gone("b", 2, t0 + Duration::from_secs(1));
        t.gone("a", 1, t0 + Duration::from_secs(2));
        assert_eq!(
            t.hello_evicting("c", 1, 1, 3, 0, t0),
            Ok((0, Some("b".to_string())))
        );
        assert_eq!(t.len(), 2);
        assert!(t.session("b").is_none());
        assert!(t.session("a").is_none());
        assert!(t.gateways.contains_key("a"));
    }

    #[test]
    fn nodes_per_gateway_are_bounded() {
        let mut t: GatewayTable<u8> = GatewayTable::new(2, 2);
        t.hello("a", 1, 1, 1, 0, Instant::now()).unwrap();
        assert!(t.admit_node("a", 1, 1));
        assert!(t.admit_node("a", 1, 2));
        assert!(t.admit_node("a", 1, 1));
        assert!(!t.admit_node("a", 1, 3));
        // Only the bound session speaks for the gateway.
        assert!(!t.admit_node("a", 2, 1));
    }

    #[test]
    fn pending_commands_expire_and_are_bounded() {
        let mut p = PendingCommands::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        let (a, mut ra) = p.add("g", t0).unwrap();
        let (b, mut rb) = p.add("h", t0).unwrap();
        assert!(p.add("g", t0).is_none());
        // Another gateway cannot answer g's command.
        assert!(!p.resolve("h", a, Ok(RootReply::Ok)));
        assert!(p.resolve("h", b, Ok(RootReply::Ok)));
        assert_eq!(rb.try_recv().unwrap(), Ok(RootReply::Ok));
        assert_eq!(p.expire(t0 + Duration::from_millis(500)), 0);
        assert_eq!(p.expire(t0 + Duration::from_secs(1)), 1);
        assert!(matches!(
            ra.try_recv().unwrap(),
            Err(CommandError::Timeout(_))
        ));
        assert!(p.is_empty());
        let (_, mut rc) = p.add("g", t0).unwrap();
        p.gateway_left("g");
        assert_eq!(rc.try_recv().unwrap(), Err(CommandError::LinkDown));
    }
}
