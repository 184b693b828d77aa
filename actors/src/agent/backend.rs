//! `BackendLink`: the one link to the backend (PROTOCOL 1.2, 1.4, 1.5).
//!
//! Owns the backend's socket, the ordered bounded outbox of packets waiting
//! for it, and the HTTP requests waiting for an `agent_details` answer,
//! keyed by `request_id`. Handles `BackendAlive`, `BackendClosed`,
//! `ToBackend`, `RegisterRequest`, `CancelRequest`, `AgentDetails`,
//! `GetBackendInfo`. Talks to the backend `WsSession`; `Agent`s and the
//! HTTP handlers talk to it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::session::{deliver, CloseSocket, WsSession, TO_BACKEND};
use super::shortcut::{Relay, Shortcut};
use super::snapshot::StoredPacket;
use super::BackendConfig;
use super::{resume_when_room, Resume};
use crate::log_limit::{held_note, LogLimit};
use crate::mailbox::Mailbox;
use crate::metrics::{drop_reason, ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{NetworkManager, Publish};
use crate::outbox::Outbox;
use crate::wire::{Packet, PacketType};

/// The share of the backend outbox (1 in N of its items and bytes) that
/// `log_error` reports may hold while the backend is away.
const LOG_ERROR_SHARE: usize = 4;

pub struct BackendLink {
    in_flight_limit: u64,
    /// The outbox waits for the backend socket to take more: its `Flow`
    /// will send `Resume`.
    awaiting_room: bool,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    session: Option<Mailbox<WsSession>>,
    outbox: Outbox<Packet>,
    /// Open while the backend socket is bound, keeps up, and the outbox is
    /// empty: agent sessions then write live updates to it directly.
    shortcut: Arc<Shortcut>,
    pending: HashMap<String, oneshot::Sender<Packet>>,
    /// How often `pending` is swept of requests whose HTTP side is gone.
    request_timeout: std::time::Duration,
    /// Where to announce connects and disconnects (set once the manager
    /// exists: it is started after this link).
    network: Option<Mailbox<NetworkManager>>,
    /// A full outbox drops a packet per packet in: logged once a second.
    overflow_log: LogLimit,
    /// The switch is stopping: HTTP requests waiting for the backend are
    /// answered at once (their reply dropped, which the handler answers
    /// with 503), new ones too.
    closing: bool,
}

impl BackendLink {
    pub fn new(config: BackendConfig, in_flight_limit: usize, metrics: Arc<Metrics>) -> Self {
        let probe = metrics.probe("BackendLink", "backend");
        BackendLink {
            in_flight_limit: in_flight_limit as u64,
            awaiting_room: false,
            // `log_error` reports come from any browser: a flood of them
            // may fill a quarter of the outbox, never push submits out.
            outbox: Outbox::with_bytes(config.outbox_limit, config.outbox_bytes_limit)
                .with_spare_share(LOG_ERROR_SHARE),
            request_timeout: config.request_timeout(),
            metrics,
            probe,
            session: None,
            shortcut: Arc::new(Shortcut::default()),
            pending: HashMap::new(),
            network: None,
            overflow_log: LogLimit::per_second(),
            closing: false,
        }
    }

    pub fn start_link(
        config: BackendConfig,
        in_flight_limit: usize,
        metrics: Arc<Metrics>,
    ) -> Mailbox<BackendLink> {
        let link = BackendLink::new(config, in_flight_limit, metrics);
        let probe = Arc::clone(&link.probe);
        let shortcut = Arc::clone(&link.shortcut);
        Mailbox::new(link.start(), probe).with_shortcut(shortcut)
    }

    fn set_connected(&mut self, session: Option<Mailbox<WsSession>>) {
        let changed = self.session.is_some() != session.is_some();
        // A waiter armed on the old socket's flow no longer matters.
        self.awaiting_room = false;
        self.metrics.backend_connected.set(session.is_some() as i64);
        self.session = session;
        self.refresh_shortcut();
        if let (true, Some(n)) = (changed, &self.network) {
            n.do_send(Publish(SwitchEvent::Backend {
                ts: crate::clock::now_secs(),
                connected: self.session.is_some(),
            }));
        }
    }

    /// Opens the shortcut exactly while a packet for the backend would be
    /// written at once: a socket is bound and the outbox is empty. Called
    /// after every change of either.
    fn refresh_shortcut(&self) {
        match &self.session {
            Some(s) if self.outbox.is_empty() => self.shortcut.open(s),
            _ => self.shortcut.close(),
        }
        // Connected and still keeping packets: the socket was full. Senders
        // hold back until the outbox is empty (see `Shortcut::until_room`).
        self.shortcut
            .set_full(self.session.is_some() && !self.outbox.is_empty());
    }

    /// The backend socket, if it can take more now.
    fn writable(&self) -> Option<Mailbox<WsSession>> {
        self.session
            .as_ref()
            .filter(|s| s.in_flight() < self.in_flight_limit)
            .cloned()
    }

    /// Writes to the backend, or keeps the packet in order until it can
    /// take it (or the next backend connects).
    fn deliver(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        if self.outbox.is_empty() {
            if let Some(s) = self.writable() {
                match deliver(&s, packet, TO_BACKEND) {
                    Ok(()) => return,
                    Err(packet) => {
                        log::warn!("backend socket gone without notice; queueing for the next one");
                        self.set_connected(None);
                        self.keep(packet);
                        return;
                    }
                }
            }
        }
        self.keep(packet);
        self.drain(ctx);
    }

    /// Sends waiting packets, in order, while the backend keeps up.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let mut sent = 0usize;
        while let Some(s) = self.writable() {
            let Some((p, weight)) = self.outbox.pop_weighed() else {
                break;
            };
            if let Err(packet) = deliver(&s, p, TO_BACKEND) {
                self.outbox.push_front_weighed(packet, weight);
                log::warn!("backend socket gone without notice; queueing for the next one");
                self.set_connected(None);
                break;
            }
            sent += 1;
        }
        if sent > 0 {
            self.note_depth();
        }
        self.refresh_shortcut();
        if self.outbox.is_empty() || self.awaiting_room {
            return;
        }
        // The socket is full: go on once it has taken half of its bound,
        // so the outbox drains in batches rather than a packet per pull.
        if let Some(s) = &self.session {
            self.awaiting_room = resume_when_room(s, &self.probe, self.in_flight_limit / 2, ctx);
        }
    }

    fn note_depth(&self) {
        self.metrics
            .backend_outbox_depth
            .set(self.outbox.len() as i64);
        self.metrics
            .backend_outbox_bytes
            .set(self.outbox.bytes() as i64);
    }

    fn keep(&mut self, mut packet: Packet) {
        packet.detach();
        let weight = packet.weight();
        let dropped = if packet.packet_type == PacketType::LogError {
            match self.outbox.push_spare(packet, weight) {
                Ok(dropped) => dropped,
                Err(refused) => {
                    self.metrics.dropped(drop_reason::LOG_ERROR_SHARE, 1);
                    if let Some(held) = self.overflow_log.admit(std::time::Instant::now()) {
                        log::warn!(
                            "backend outbox: `log_error` reports hold their share ({} of {} packets): dropped the newest, for {}{}",
                            self.outbox.spare(),
                            self.outbox.limit(),
                            refused.subject_id,
                            held_note(held)
                        );
                    }
                    return;
                }
            }
        } else {
            self.outbox.push_weighed(packet, weight)
        };
        // Something waits here now: no sender may pass it.
        self.refresh_shortcut();
        if !dropped.is_empty() {
            self.metrics
                .dropped(drop_reason::BACKEND_OUTBOX_FULL, dropped.len() as u64);
            if let Some(held) = self.overflow_log.admit(std::time::Instant::now()) {
                let old = &dropped[0];
                log::warn!(
                    "backend outbox full ({} packets, {} bytes at most): dropped its oldest `{}` packet for {}{}",
                    self.outbox.limit(),
                    self.outbox.bytes_limit(),
                    old.packet_type.as_str(),
                    old.subject_id,
                    held_note(held)
                );
            }
        }
        self.note_depth();
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.outbox.is_empty() {
            log::info!(
                "backend connected: delivering {} queued packets",
                self.outbox.len()
            );
        }
        self.drain(ctx);
    }
}

impl Actor for BackendLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // An HTTP request that went away cancels its entry; should that
        // message be lost, the entry goes at the next sweep all the same.
        let every = self
            .request_timeout
            .max(std::time::Duration::from_millis(100));
        ctx.run_interval(every, |act, _| {
            act.pending.retain(|_, reply| !reply.is_closed());
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

impl Handler<Resume> for BackendLink {
    type Result = ();
    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) {
        // Sent from the transport's side, not through a `Mailbox`.
        let _h = self.probe.handling_unqueued("Resume");
        self.awaiting_room = false;
        self.drain(ctx);
    }
}

/// A socket said `alive` as `mephisto` (and passed the token check).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendAlive {
    pub session: Mailbox<WsSession>,
}

impl Handler<BackendAlive> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: BackendAlive, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("BackendAlive");
        if let Some(old) = &self.session {
            if old.same(&msg.session) {
                return;
            }
            log::info!("a newer backend socket replaces the current one");
            old.do_send(CloseSocket::normal("replaced by a newer backend socket"));
        } else {
            log::info!("backend connected");
        }
        self.set_connected(Some(msg.session));
        self.flush(ctx);
    }
}

/// The backend's socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendClosed {
    pub session: Mailbox<WsSession>,
}

impl Handler<BackendClosed> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: BackendClosed, _: &mut Context<Self>) {
        let _h = self.probe.handling("BackendClosed");
        if matches!(&self.session, Some(s) if s.same(&msg.session)) {
            log::warn!("backend disconnected; packets for it wait in the outbox");
            self.set_connected(None);
        }
    }
}

/// A packet for the backend.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToBackend(pub Packet);

impl Handler<ToBackend> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: ToBackend, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("ToBackend");
        self.deliver(msg.0, ctx);
    }
}

impl Handler<Relay> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: Relay, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("Relay");
        // The ticket is dropped after the packet is delivered or kept.
        self.deliver(msg.packet, ctx);
    }
}

/// An HTTP request sends `packet` to the backend and waits for the
/// `agent_details` carrying `request_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterRequest {
    pub request_id: String,
    pub packet: Packet,
    pub reply: oneshot::Sender<Packet>,
}

impl Handler<RegisterRequest> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: RegisterRequest, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("RegisterRequest");
        if self.closing {
            // Dropping the reply answers the request (503); its packet
            // must not reach a backend later.
            self.metrics.refused(crate::metrics::refusal::SHUTTING_DOWN);
            return;
        }
        self.pending.insert(msg.request_id, msg.reply);
        self.deliver(msg.packet, ctx);
    }
}

/// The HTTP request gave up waiting (timeout or client gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelRequest {
    pub request_id: String,
}

impl Handler<CancelRequest> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: CancelRequest, _: &mut Context<Self>) {
        let _h = self.probe.handling("CancelRequest");
        self.pending.remove(&msg.request_id);
        // Its packet, if it still waits for the backend, must not reach it
        // later: the HTTP request has been answered 408 already.
        let id = msg.request_id.as_str();
        let removed = self.outbox.remove_where(|p| {
            matches!(
                p.packet_type,
                PacketType::RegisterAgent | PacketType::SubmitOnboarding
            ) && p.data_str("request_id").as_deref() == Some(id)
        });
        if removed > 0 {
            self.metrics
                .dropped(drop_reason::STALE_REQUEST, removed as u64);
            log::info!(
                "request {id}: timed out while waiting for the backend; removed from the outbox"
            );
            self.note_depth();
            self.refresh_shortcut();
        }
    }
}

/// The backend's answer to a `register_agent` or `submit_onboarding`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentDetails(pub Packet);

impl Handler<AgentDetails> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: AgentDetails, _: &mut Context<Self>) {
        let _h = self.probe.handling("AgentDetails");
        let packet = msg.0;
        let key = packet
            .data_str("request_id")
            .unwrap_or_else(|| packet.subject_id.clone());
        match self.pending.remove(&key) {
            Some(reply) => {
                if reply.send(packet).is_err() {
                    // The HTTP client went away between the lookup and now.
                    self.metrics
                        .dropped(drop_reason::UNMATCHED_AGENT_DETAILS, 1);
                }
            }
            None => {
                self.metrics
                    .dropped(drop_reason::UNMATCHED_AGENT_DETAILS, 1);
                log::info!(
                    "agent_details for {key}: no request waits for it (timed out?); dropped"
                );
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendInfo {
    pub connected: bool,
    pub outbox_depth: usize,
    pub pending_requests: usize,
}

#[derive(Message)]
#[rtype(result = "BackendInfo")]
pub struct GetBackendInfo;

impl Handler<GetBackendInfo> for BackendLink {
    type Result = MessageResult<GetBackendInfo>;
    fn handle(&mut self, _: GetBackendInfo, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetBackendInfo");
        MessageResult(BackendInfo {
            connected: self.session.is_some(),
            outbox_depth: self.outbox.len(),
            pending_requests: self.pending.len(),
        })
    }
}

/// Names the manager to announce backend connects and disconnects to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachNetwork(pub Mailbox<NetworkManager>);

impl Handler<AttachNetwork> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: AttachNetwork, _: &mut Context<Self>) {
        let _h = self.probe.handling("AttachNetwork");
        self.network = Some(msg.0);
    }
}

/// The switch is stopping: answer every HTTP request waiting for the
/// backend now (each reply dropped: the handler answers 503), refuse new
/// ones, and take their packets out of the outbox (their requests are
/// answered; a backend must not act on them after a restart). Returns how
/// many requests were waiting.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseRequests;

impl Handler<CloseRequests> for BackendLink {
    type Result = usize;
    fn handle(&mut self, _: CloseRequests, _: &mut Context<Self>) -> usize {
        let _h = self.probe.handling("CloseRequests");
        self.closing = true;
        let ids: std::collections::HashSet<String> = self.pending.drain().map(|(k, _)| k).collect();
        if ids.is_empty() {
            return 0;
        }
        self.metrics
            .router_refused
            .with_label_values(&[crate::metrics::refusal::SHUTTING_DOWN])
            .inc_by(ids.len() as u64);
        let removed = self.outbox.remove_where(|p| {
            matches!(
                p.packet_type,
                PacketType::RegisterAgent | PacketType::SubmitOnboarding
            ) && p.data_str("request_id").is_some_and(|id| ids.contains(&id))
        });
        if removed > 0 {
            self.metrics
                .dropped(drop_reason::STALE_REQUEST, removed as u64);
            self.note_depth();
            self.refresh_shortcut();
        }
        log::info!(
            "stopping: {} requests waiting for the backend answered 503",
            ids.len()
        );
        ids.len()
    }
}

/// The outbox, in order, for the state file (a graceful stop).
#[derive(Message)]
#[rtype(result = "Vec<StoredPacket>")]
pub struct ExportOutbox {
    pub now_secs: f64,
}

impl Handler<ExportOutbox> for BackendLink {
    type Result = MessageResult<ExportOutbox>;
    fn handle(&mut self, msg: ExportOutbox, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ExportOutbox");
        MessageResult(
            self.outbox
                .iter()
                .map(|p| StoredPacket::of(p, msg.now_secs))
                .collect(),
        )
    }
}

/// Packets a previous run kept for the backend: they go before anything
/// kept since (sent at start, before the switch takes input).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreOutbox(pub Vec<Packet>);

impl Handler<RestoreOutbox> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: RestoreOutbox, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("RestoreOutbox");
        let newer: Vec<_> = self.outbox.take_all().into_iter().collect();
        for p in msg.0.into_iter().chain(newer) {
            self.keep(p);
        }
        self.drain(ctx);
    }
}
