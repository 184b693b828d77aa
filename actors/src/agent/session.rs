//! `WsSession`: one actor per WebSocket on `/` (PROTOCOL 1.1, 1.2, 1.5).
//!
//! Owns the socket: parses text frames into packets, writes packets out
//! (stamping `router_outgoing_timestamp`), answers bad input with a JSON
//! error, keeps the connection alive with protocol pings, and closes with
//! the codes PROTOCOL names (1001 on shutdown, 1008 for a refused backend).
//! Routes each packet straight to its `Agent` when it knows it, otherwise
//! asks `AgentDirectory` once and caches the answer (`AgentBound`).
//! The socket that says `alive` as `mephisto` talks to `BackendLink`.
//!
//! Every packet is checked against the socket's `Claims` first (PROTOCOL
//! 1.5): its role, the agent ids it bound, backend-only types; the backend
//! claim itself against the switch's `BackendGate`. An `Agent` whose
//! socket this is may ask for a sign of life (`ProbeLiveness`) when another
//! socket claims it: the next frame from the peer answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws;
use bytestring::ByteString;
use serde_json::json;

use super::claims::{ClaimError, Claims, Role};
use super::delivery::Socket;
use super::{
    Agent, AgentAlive, AgentDetails, AgentHeartbeat, BackendAlive, BackendClosed, Detour,
    OwnerShortcut, Relay, RouterContext, SocketClosed,
};
use crate::directory::{BindAgent, RequestStatuses, RouteHeartbeat, RouteToAgent};
use crate::flow::Flow;
use crate::log_limit::{held_note, LogLimit};
use crate::mailbox::Mailbox;
use crate::metrics::ActorProbe;
use crate::wire::{Packet, PacketType};

/// Link label of `switchyard_connections_open` for router sockets.
pub const LINK_ROUTER: &str = "router";

/// What the upgrade request said about the peer.
#[derive(Debug, Clone, Default)]
pub struct SessionOrigin {
    /// The peer presented the configured backend token (or none is set).
    pub token_ok: bool,
    pub peer: String,
    /// The peer's address, for the backend gate (PROTOCOL 1.5).
    pub ip: Option<std::net::IpAddr>,
}

/// A map by agent id, looked up up to three times per packet: foldhash,
/// seeded per process, hashes an id several times faster than the default
/// SipHash and still keeps a peer from choosing colliding ids.
type AgentMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

pub struct WsSession {
    rctx: Arc<RouterContext>,
    origin: SessionOrigin,
    probe: Arc<ActorProbe>,
    me: Option<Mailbox<WsSession>>,
    /// Its role and the agent ids it bound (PROTOCOL 1.5).
    claims: Claims,
    /// Agents this socket speaks for (an agent socket: its own; the backend
    /// socket: every agent it has written to), so steady-state packets go
    /// straight to the `Agent`, or past it by its shortcut.
    agents: AgentMap<BoundAgent>,
    /// What this socket handed to `BackendLink` and it has not passed on.
    backend_detour: Detour,
    /// What this socket sent, through the directory, to agents it has not
    /// been told of yet (`AgentBound`), by agent id.
    unbound: AgentMap<Detour>,
    last_heard: Instant,
    /// A fragmented message being reassembled: (is text, bytes so far).
    partial: Option<(bool, Vec<u8>)>,
    /// Bytes written to this socket and not yet taken by the transport.
    flow: Arc<Flow>,
    /// `packets_forwarded` by direction, looked up once (a label lookup
    /// per packet costs a lock and two hashes).
    forwarded: [(&'static str, prometheus::IntCounter); 2],
    /// Bad input and refusals are logged at most once a second per socket
    /// (each is counted in the metrics and answered all the same).
    reject_log: LogLimit,
    /// The backend-full episode in which this socket stopped reading for
    /// `MAX_PAUSE` in vain (see `Shortcut::until_room`).
    gave_up_waiting: u64,
    /// Agents asking for a sign of life from this socket's peer (another
    /// socket claims them): answered by the next frame that arrives.
    probes: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl WsSession {
    pub fn new(rctx: Arc<RouterContext>, origin: SessionOrigin, flow: Arc<Flow>) -> Self {
        let probe = rctx.metrics.probe("WsSession", origin.peer.clone());
        let counter = |d| (d, rctx.metrics.packets_forwarded.with_label_values(&[d]));
        let forwarded = [counter(TO_AGENT), counter(TO_BACKEND)];
        let claims = Claims::new(
            rctx.config.session.max_agents_per_socket,
            rctx.config.session.max_agent_id_bytes,
        );
        WsSession {
            forwarded,
            rctx,
            origin,
            probe,
            me: None,
            claims,
            agents: AgentMap::default(),
            backend_detour: Detour::default(),
            unbound: AgentMap::default(),
            last_heard: Instant::now(),
            partial: None,
            flow,
            reject_log: LogLimit::per_second(),
            gave_up_waiting: 0,
            probes: Vec::new(),
        }
    }

    fn write(&self, text: String, ctx: &mut ws::WebsocketContext<Self>) {
        self.flow.wrote(text.len());
        ctx.text(text);
    }

    fn me(&self) -> Mailbox<WsSession> {
        // Set in `started`, before any frame or message is handled.
        self.me
            .clone()
            .expect("session mailbox is set when started")
    }

    /// Tells the sender what was wrong with its input, counts it, logs it.
    /// The socket stays open.
    fn reject(&mut self, kind: &'static str, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        self.rctx.metrics.malformed(kind);
        if let Some(held) = self.reject_log.admit(Instant::now()) {
            log::warn!(
                "socket {}: {} ({}){}",
                self.origin.peer,
                text,
                kind,
                held_note(held)
            );
        }
        self.write(json!({ "error": text, "kind": kind }).to_string(), ctx);
    }

    fn on_text(&mut self, text: ByteString, ctx: &mut ws::WebsocketContext<Self>) {
        let limit = self.rctx.config.session.max_frame_bytes;
        if text.len() > limit {
            let msg = format!(
                "message of {} bytes is over the limit of {limit}",
                text.len()
            );
            self.reject("oversize_frame", &msg, ctx);
            return;
        }
        let max_fields = self.rctx.config.session.max_packet_fields;
        let packet = match Packet::parse_limited(text, crate::clock::now_secs(), max_fields) {
            Ok(p) => p,
            Err(e) => {
                self.reject(e.kind(), &e.to_string(), ctx);
                return;
            }
        };
        self.route(packet, ctx);
    }

    /// A claim this socket may not make: the sender is told why, the
    /// refusal counted and logged (at most once a second per socket). The
    /// socket stays open.
    fn refuse(&mut self, e: ClaimError, ctx: &mut ws::WebsocketContext<Self>) {
        self.refuse_text(e.reason(), &e.to_string(), ctx);
    }

    fn refuse_text(&mut self, reason: &str, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        self.rctx.metrics.refused(reason);
        if let Some(held) = self.reject_log.admit(Instant::now()) {
            log::warn!(
                "socket {}: refused: {} ({}){}",
                self.origin.peer,
                text,
                reason,
                held_note(held)
            );
        }
        self.write(json!({ "error": text, "kind": reason }).to_string(), ctx);
    }

    /// The claim PROTOCOL 1.5 asks of each packet type: None when the
    /// socket may send it.
    fn check_claim(&mut self, packet: &Packet) -> Option<ClaimError> {
        let c = &mut self.claims;
        match &packet.packet_type {
            PacketType::Alive if packet.is_backend() => None,
            PacketType::Alive | PacketType::Heartbeat => c.claim_agent(&packet.subject_id).err(),
            PacketType::MephistoBoundLiveUpdate | PacketType::LogError => {
                c.speak_for(&packet.subject_id).err()
            }
            PacketType::ClientBoundLiveUpdate
            | PacketType::UpdateStatus
            | PacketType::RequestStatuses
            | PacketType::AgentDetails => c.backend_only(packet.packet_type.as_str()).err(),
            _ => None,
        }
    }

    /// True (and the sender told, the drop counted) when the actors this
    /// packet would go through are too far behind: their mailboxes must not
    /// grow without bound under overload.
    fn overloaded(&mut self, packet: &Packet, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        let limit = self.rctx.config.session.max_mailbox_depth;
        let agent_depth = self
            .agents
            .get(&packet.subject_id)
            .map_or(0, |a| a.agent.depth());
        let depth = agent_depth.max(self.rctx.backend.depth());
        if depth <= limit {
            return false;
        }
        self.rctx
            .metrics
            .dropped(crate::metrics::drop_reason::OVERLOADED, 1);
        let msg = format!(
            "switch overloaded ({depth} messages waiting): `{}` packet dropped; send it again",
            packet.packet_type.as_str()
        );
        if let Some(held) = self.reject_log.admit(Instant::now()) {
            log::warn!("socket {}: {msg}{}", self.origin.peer, held_note(held));
        }
        self.write(
            json!({ "error": msg, "kind": "overloaded" }).to_string(),
            ctx,
        );
        true
    }

    fn route(&mut self, packet: Packet, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(e) = self.check_claim(&packet) {
            self.refuse(e, ctx);
            return;
        }
        if matches!(
            packet.packet_type,
            PacketType::MephistoBoundLiveUpdate
                | PacketType::ClientBoundLiveUpdate
                | PacketType::UpdateStatus
                | PacketType::LogError
        ) && self.overloaded(&packet, ctx)
        {
            return;
        }
        match &packet.packet_type {
            PacketType::Alive if packet.is_backend() => self.backend_alive(ctx),
            PacketType::Alive => self.agent_alive(packet),
            PacketType::Heartbeat => self.heartbeat(packet),
            PacketType::MephistoBoundLiveUpdate | PacketType::LogError => {
                self.route_to_backend(packet, ctx);
                #[cfg(feature = "cluster")]
                self.wait_for_window(ctx);
            }
            PacketType::ClientBoundLiveUpdate | PacketType::UpdateStatus => {
                self.route_to_agent(packet);
                #[cfg(feature = "cluster")]
                self.wait_for_window(ctx);
            }
            PacketType::RequestStatuses => self.rctx.directory.do_send(RequestStatuses(packet)),
            PacketType::AgentDetails => self.rctx.backend.do_send(AgentDetails(packet)),
            // Known types that only the switch sends, and anything else.
            other => {
                let from = if self.claims.role() == Role::Backend {
                    "backend"
                } else {
                    "agent"
                };
                self.rctx
                    .metrics
                    .packets_unknown
                    .with_label_values(&[from])
                    .inc();
                log::debug!(
                    "socket {}: ignored a `{}` packet",
                    self.origin.peer,
                    other.as_str()
                );
            }
        }
    }

    /// A socket says `alive` as `mephisto`: it becomes the backend if it
    /// is no agent's socket and the gate admits it (token, allow list or
    /// pinned address); else it is closed with 1008, after the upgrade
    /// (PROTOCOL 1.5, 1.6: an HTTP error would make a backend retry in a
    /// tight loop).
    fn backend_alive(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let refusal = match self.claims.role() {
            Role::Agent => Some(ClaimError::RoleChange.to_string()),
            Role::Backend => None,
            Role::Unknown => self
                .rctx
                .admit_backend(self.origin.ip, self.origin.token_ok)
                .err()
                .map(|e| e.to_string()),
        };
        if let Some(why) = refusal {
            self.rctx.metrics.backend_refused.inc();
            // Once per refused socket: it is closed at once.
            log::warn!("socket {}: refused as backend: {why}", self.origin.peer);
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Policy,
                description: Some(why),
            }));
            ctx.stop();
            return;
        }
        if self.claims.claim_backend().is_err() {
            return;
        }
        self.rctx
            .backend
            .do_send(BackendAlive { session: self.me() });
    }

    fn agent_alive(&mut self, packet: Packet) {
        let me = self.me();
        if let Some(bound) = self.agents.get(&packet.subject_id) {
            if bound
                .agent
                .try_send(AgentAlive {
                    session: me.clone(),
                })
                .is_ok()
            {
                return;
            }
            self.agents.remove(&packet.subject_id);
        }
        self.rctx.directory.do_send(BindAgent {
            agent_id: packet.subject_id,
            session: me,
        });
    }

    fn heartbeat(&mut self, packet: Packet) {
        let me = self.me();
        let packet = match self.agents.get(&packet.subject_id) {
            Some(bound) => match bound.agent.try_send(AgentHeartbeat {
                session: me.clone(),
                packet,
            }) {
                Ok(()) => return,
                Err(m) => {
                    self.agents.remove(&m.packet.subject_id);
                    m.packet
                }
            },
            None => packet,
        };
        self.rctx.directory.do_send(RouteHeartbeat {
            session: me,
            packet,
        });
    }

    fn route_to_backend(&mut self, packet: Packet, ctx: &mut ws::WebsocketContext<Self>) {
        // Cluster mode: straight to the backend stream, serialised on this
        // socket's thread (a live update or a log_error is no HTTP
        // request: no origin to remember).
        #[cfg(feature = "cluster")]
        if let Some(c) = self.rctx.cluster() {
            c.to_backend(packet, false);
            return;
        }
        let backend = &self.rctx.backend;
        let packet = match backend.shortcut() {
            Some(sc) => match sc.send(&self.backend_detour, packet) {
                Ok(()) => return,
                Err(p) => p,
            },
            None => packet,
        };
        backend.do_send(Relay {
            packet,
            ticket: self.backend_detour.ticket(),
        });
        // The backend socket is full: read nothing more from this socket
        // until it has taken what waits for it (or `MAX_PAUSE` passed).
        // Never the backend's own socket: waiting blocks this session's
        // mailbox, and what would give the backend room goes through it.
        if self.claims.role() == Role::Backend {
            return;
        }
        let Some(room) = OwnerShortcut::shortcut_shared(backend)
            .and_then(|sc| sc.until_room(self.gave_up_waiting))
        else {
            return;
        };
        self.rctx.metrics.sender_pauses.inc();
        ctx.wait(room.into_actor(self).map(|room, act, _| {
            if room {
                return;
            }
            log::info!(
                "socket {}: the backend took nothing for {:?}; reading on, its packets wait in the outbox",
                act.origin.peer,
                super::shortcut::MAX_PAUSE
            );
            // The episode as it is now: not the one the wait began in,
            // which may have ended and started again meanwhile.
            if let Some(sc) = act.rctx.backend.shortcut() {
                act.gave_up_waiting = sc.episode();
            }
        }));
    }

    /// Cluster mode: while the publish window is full, read nothing more
    /// from this socket until it has room (or `MAX_PAUSE` passed: then
    /// the window's own bound counts what does not fit).
    #[cfg(feature = "cluster")]
    fn wait_for_window(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(room) = self
            .rctx
            .cluster()
            .map(|c| &c.room)
            .filter(|r| r.is_full())
            .cloned()
        else {
            return;
        };
        self.rctx.metrics.sender_pauses.inc();
        ctx.wait(
            async move { room.until_room(super::shortcut::MAX_PAUSE).await }
                .into_actor(self)
                .map(|room, act, _| {
                    if !room {
                        log::info!(
                            "socket {}: the cluster's publish window stayed full for {:?}; reading on",
                            act.origin.peer,
                            super::shortcut::MAX_PAUSE
                        );
                    }
                }),
        );
    }

    fn route_to_agent(&mut self, packet: Packet) {
        // Cluster mode: straight to the agent's mailbox stream, whichever
        // switch holds the agent (every packet of this socket takes this
        // one way, so their order holds).
        #[cfg(feature = "cluster")]
        if let Some(c) = self.rctx.cluster() {
            c.to_mailbox(packet);
            return;
        }
        // While packets for this agent are still on their way through the
        // directory, the next ones follow them there: straight to the agent
        // (or past it) they could overtake them.
        let via_directory = match self.unbound.get(&packet.subject_id) {
            Some(d) if d.pending() > 0 => true,
            Some(_) => {
                self.unbound.remove(&packet.subject_id);
                false
            }
            None => false,
        };
        let known = if via_directory {
            None
        } else {
            self.agents.get(&packet.subject_id)
        };
        let packet = match known {
            Some(bound) => {
                // Only live updates may pass the agent: a status change is
                // the agent's to see.
                let packet = match bound.agent.shortcut() {
                    Some(sc) if packet.packet_type == PacketType::ClientBoundLiveUpdate => {
                        match sc.send(&bound.detour, packet) {
                            Ok(()) => return,
                            Err(p) => p,
                        }
                    }
                    _ => packet,
                };
                let relay = Relay {
                    packet,
                    ticket: bound.detour.ticket(),
                };
                match bound.agent.try_send(relay) {
                    Ok(()) => return,
                    Err(Relay { packet, .. }) => {
                        self.agents.remove(&packet.subject_id);
                        packet
                    }
                }
            }
            None => packet,
        };
        // Packets for an agent this socket does not know yet go through the
        // directory, each holding this agent's detour (one per agent id) until
        // the agent has passed it on.
        let ticket = self
            .unbound
            .entry(packet.subject_id.clone())
            .or_default()
            .ticket();
        self.rctx.directory.do_send(RouteToAgent {
            packet,
            reply_to: Some(self.me()),
            ticket: Some(ticket),
        });
    }

    fn on_binary(&mut self, len: usize, ctx: &mut ws::WebsocketContext<Self>) {
        let msg = format!("binary frames are not packets ({len} bytes ignored); send JSON text");
        self.reject("binary_frame", &msg, ctx);
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (chunk, last) = match item {
            Item::FirstText(b) => {
                self.partial = Some((true, Vec::new()));
                (b, false)
            }
            Item::FirstBinary(b) => {
                self.partial = Some((false, Vec::new()));
                (b, false)
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let hard = self.rctx.config.session.hard_frame_bytes();
        let Some((_, buf)) = self.partial.as_mut() else {
            self.reject(
                "bad_continuation",
                "continuation frame without a first frame",
                ctx,
            );
            return;
        };
        buf.extend_from_slice(&chunk);
        if buf.len() > hard {
            self.partial = None;
            self.close_oversize(hard, ctx);
            return;
        }
        if last {
            if let Some((is_text, buf)) = self.partial.take() {
                if !is_text {
                    self.on_binary(buf.len(), ctx);
                } else {
                    match String::from_utf8(buf) {
                        Ok(text) => self.on_text(text.into(), ctx),
                        Err(_) => self.reject("invalid_utf8", "text message is not UTF-8", ctx),
                    }
                }
            }
        }
    }

    fn close_oversize(&mut self, hard: usize, ctx: &mut ws::WebsocketContext<Self>) {
        self.rctx.metrics.malformed("oversize_frame");
        log::warn!(
            "socket {}: message over the transport limit of {hard} bytes, closing with 1009",
            self.origin.peer
        );
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Size,
            description: Some(format!("message over {hard} bytes")),
        }));
        ctx.stop();
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.me = Some(
            Mailbox::new(ctx.address(), Arc::clone(&self.probe)).with_flow(Arc::clone(&self.flow)),
        );
        self.rctx
            .metrics
            .connections_open
            .with_label_values(&[LINK_ROUTER])
            .inc();
        log::debug!("socket {}: connected", self.origin.peer);

        // Shutdown: every socket is told 1001 (going away).
        crate::shutdown::close_on_shutdown(self, ctx, self.rctx.shutdown.clone());

        // Protocol keep-alive: ping, and drop a peer that went silent.
        let cfg = &self.rctx.config.session;
        let timeout = cfg.ping_timeout();
        ctx.run_interval(cfg.ping_interval(), move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                log::info!(
                    "socket {}: silent for {:?}, closing",
                    act.origin.peer,
                    act.last_heard.elapsed()
                );
                act.rctx.metrics.malformed("ping_timeout");
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("ping timeout".into()),
                }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.rctx
            .metrics
            .connections_open
            .with_label_values(&[LINK_ROUTER])
            .dec();
        let me = self.me();
        match self.claims.role() {
            Role::Backend => self.rctx.backend.do_send(BackendClosed { session: me }),
            _ => {
                for bound in self.agents.values() {
                    bound.agent.do_send(SocketClosed {
                        session: me.clone(),
                    });
                }
            }
        }
        log::debug!("socket {}: closed", self.origin.peer);
        self.probe.retire();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let now = Instant::now();
        let _h = self.probe.handling_unqueued_at("Frame", now);
        self.last_heard = now;
        // The peer is alive (a closing or broken peer is not): whoever
        // asked hears it.
        if !self.probes.is_empty()
            && matches!(msg, Ok(ref m) if !matches!(m, ws::Message::Close(_)))
        {
            for p in self.probes.drain(..) {
                let _ = p.send(());
            }
        }
        match msg {
            Ok(ws::Message::Text(text)) => self.on_text(text, ctx),
            Ok(ws::Message::Binary(b)) => self.on_binary(b.len(), ctx),
            Ok(ws::Message::Ping(b)) => ctx.pong(&b),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => {
                let hard = self.rctx.config.session.hard_frame_bytes();
                self.close_oversize(hard, ctx);
            }
            Err(e) => {
                self.rctx.metrics.malformed("ws_protocol");
                log::warn!("socket {}: WebSocket protocol error: {e}", self.origin.peer);
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Protocol,
                    description: Some(e.to_string()),
                }));
                ctx.stop();
            }
        }
    }
}

/// Write a packet, already serialised, to this socket.
///
/// Made by [`deliver`]: the sender serialises and counts the bytes into the
/// socket's `Flow` as it sends, so bytes still in this actor's mailbox
/// count as in flight (a frozen session must look full, not empty).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    text: String,
    direction: &'static str,
}

pub const TO_AGENT: &str = "to_agent";
pub const TO_BACKEND: &str = "to_backend";

/// Sends `packet` to `session`, stamping `router_outgoing_timestamp`; hands
/// the packet back if the session is gone.
pub fn deliver(
    session: &Mailbox<WsSession>,
    mut packet: Packet,
    direction: &'static str,
) -> Result<(), Packet> {
    let text = packet.to_text(crate::clock::now_secs());
    let len = text.len();
    match session.try_send(Deliver { text, direction }) {
        Ok(()) => {
            if let Some(f) = session.flow() {
                f.wrote(len);
            }
            Ok(())
        }
        Err(_) => Err(packet),
    }
}

/// A session's socket as an owner (`Agent`, `BackendLink`) writes to it:
/// its mailbox, with the socket's flow, and the direction its packets are
/// counted under.
#[derive(Clone)]
pub struct PeerSocket {
    pub session: Mailbox<WsSession>,
    /// A flag, not the label: every agent keeps one of these.
    to_backend: bool,
}

impl PeerSocket {
    pub fn to_agent(session: Mailbox<WsSession>) -> Self {
        PeerSocket {
            session,
            to_backend: false,
        }
    }

    pub fn to_backend(session: Mailbox<WsSession>) -> Self {
        PeerSocket {
            session,
            to_backend: true,
        }
    }
}

impl Socket for PeerSocket {
    fn send(&self, packet: Packet) -> Result<(), Packet> {
        let direction = if self.to_backend {
            TO_BACKEND
        } else {
            TO_AGENT
        };
        deliver(&self.session, packet, direction)
    }

    fn in_flight(&self) -> u64 {
        self.session.in_flight()
    }

    fn same(&self, other: &Self) -> bool {
        self.session.same(&other.session)
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let _h = self.probe.handling("Deliver");
        ctx.text(msg.text);
        match self.forwarded.iter().find(|(d, _)| *d == msg.direction) {
            Some((_, c)) => c.inc(),
            None => self
                .rctx
                .metrics
                .packets_forwarded
                .with_label_values(&[msg.direction])
                .inc(),
        }
    }
}

/// An agent this socket knows, and what it handed that agent and the
/// agent has not passed on yet.
struct BoundAgent {
    agent: Mailbox<Agent>,
    detour: Detour,
}

/// The directory found (or made) the agent a packet was for: remember it so
/// the next packet goes straight there.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentBound {
    pub agent_id: String,
    pub agent: Mailbox<Agent>,
}

impl Handler<AgentBound> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: AgentBound, _: &mut Self::Context) {
        let _h = self.probe.handling("AgentBound");
        // Several answers may come for one agent; packets still on their
        // way through the directory are counted apart (`unbound`).
        match self.agents.get_mut(&msg.agent_id) {
            Some(bound) => bound.agent = msg.agent,
            None => {
                self.agents.insert(
                    msg.agent_id,
                    BoundAgent {
                        agent: msg.agent,
                        detour: Detour::default(),
                    },
                );
            }
        }
    }
}

/// Close this socket with a code and reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSocket {
    pub code: ws::CloseCode,
    pub reason: String,
}

impl CloseSocket {
    pub fn normal(reason: &str) -> Self {
        CloseSocket {
            code: ws::CloseCode::Normal,
            reason: reason.into(),
        }
    }
}

impl Handler<CloseSocket> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: CloseSocket, ctx: &mut Self::Context) {
        let _h = self.probe.handling("CloseSocket");
        // Every agent this socket spoke for hears that it closed (in
        // `stopped`): the one whose takeover closed it ignores the news (it
        // has its new socket), the others start their reconnect grace
        // (PROTOCOL 1.3). A replaced backend's link already has the new one.
        self.claims.drop_backend();
        ctx.close(Some(ws::CloseReason {
            code: msg.code,
            description: Some(msg.reason),
        }));
        ctx.stop();
    }
}

/// A claim this socket made was refused past it (the switch holds as many
/// agents as it may; the agent's socket still answers): the sender is told
/// with a JSON error; the refusal is counted where it was decided.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClaimRefused {
    pub agent_id: String,
    pub kind: &'static str,
    pub text: String,
}

impl ClaimRefused {
    pub fn agent_limit(agent_id: &str, max: usize) -> Self {
        ClaimRefused {
            agent_id: agent_id.to_string(),
            kind: crate::metrics::refusal::AGENT_LIMIT,
            text: format!("the switch holds {max} agents, the most it may; try again later"),
        }
    }
}

impl Handler<ClaimRefused> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: ClaimRefused, ctx: &mut Self::Context) {
        let _h = self.probe.handling("ClaimRefused");
        // It does not speak for that agent.
        self.claims.release(&msg.agent_id);
        self.agents.remove(&msg.agent_id);
        if let Some(held) = self.reject_log.admit(Instant::now()) {
            log::warn!(
                "socket {}: claim on agent {} refused: {}{}",
                self.origin.peer,
                msg.agent_id,
                msg.text,
                held_note(held)
            );
        }
        // The backend is not sent what it cannot parse as a packet (its
        // packet for an agent past the bound is logged and counted only).
        if self.claims.role() == Role::Backend {
            return;
        }
        let text = json!({ "error": msg.text, "kind": msg.kind, "subject_id": msg.agent_id });
        self.write(text.to_string(), ctx);
    }
}

/// An agent bound to this socket asks whether its peer is alive: the
/// socket pings, and the next frame from the peer answers (PROTOCOL 1.5:
/// a live socket is not taken over). The agent waits a bounded time.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeLiveness(pub tokio::sync::oneshot::Sender<()>);

/// Probes one socket may hold (its agents ask; a few at most).
const MAX_PROBES: usize = 16;

impl Handler<ProbeLiveness> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: ProbeLiveness, ctx: &mut Self::Context) {
        let _h = self.probe.handling("ProbeLiveness");
        self.probes.retain(|p| !p.is_closed());
        if self.probes.len() >= MAX_PROBES {
            // Dropped unanswered: that claim is granted.
            return;
        }
        self.probes.push(msg.0);
        ctx.ping(b"");
    }
}
