//! `Agent`: one actor per agent id, outliving its sockets (PROTOCOL 1.2, 1.3).
//!
//! Owns the agent's `AgentState` (status, liveness), its `Delivery` (the
//! bound socket, the queue of undelivered packets, its shortcut) and its
//! timers: reconnect grace and idle expiry. Handles
//! `AgentAlive`, `AgentHeartbeat`, `ToClient`, `Relay`,
//! `SocketClosed`, `CheckLiveness`, `RetireAgent`, `GetAgentInfo`.
//! A claim by another socket while its socket is bound waits for a probe
//! of that socket (PROTOCOL 1.5: a live socket is not taken over).
//! Talks to its current `WsSession`, to `BackendLink` and, to retire, to
//! `AgentDirectory`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::claims::{judge_claim, Holder, Verdict};
use super::delivery::{Bound, Delivery, Outcome, Step};
use super::session::{ClaimRefused, CloseSocket, PeerSocket, ProbeLiveness, WsSession};
use super::shortcut::{Relay, Shortcut};
use super::snapshot::{AgentRecord, RestoredAgent, StoredPacket};
use super::state::AgentState;
use super::{wait_for_room, Resume, RouterContext, ToBackend};
use crate::directory::AgentRetired;
use crate::log_limit::{held_note, LogLimit};
use crate::mailbox::Mailbox;
use crate::metrics::{drop_reason, status_label, ActorProbe};
use crate::network::events::SwitchEvent;
use crate::network::Publish;
use crate::outbox::Outbox;
use crate::wire::{Packet, PacketType};

/// How long a retired agent keeps forwarding stray messages to the
/// `AgentDirectory` before it stops: senders holding a cached address then
/// find it closed and ask the directory instead.
const RETIRE_LINGER: Duration = Duration::from_secs(1);

pub struct Agent {
    state: AgentState,
    /// The bound socket and the packets waiting for it; its shortcut is
    /// open while the socket is bound and nothing is queued: the backend
    /// session then writes live updates to the socket directly.
    delivery: Delivery<PeerSocket>,
    ctx: Arc<RouterContext>,
    probe: Arc<ActorProbe>,
    grace_timer: Option<SpawnHandle>,
    idle_timer: Option<SpawnHandle>,
    /// Set once the manager has forgotten this agent: everything that still
    /// arrives is handed back to the manager.
    retired: bool,
    /// A full queue drops a packet per packet in: logged once a second
    /// (each drop is counted and reported to the backend all the same).
    overflow_log: LogLimit,
    /// A claim from another socket, waiting for the bound socket to show
    /// it is alive (then refused) or not (then granted).
    /// Boxed: rare, and inline it would make every agent's task larger.
    pending_claim: Option<Box<PendingClaim>>,
    next_probe: u32,
    /// Made from the state a previous run left: its reconnect grace starts
    /// with this run, as if its socket had just gone.
    restored: bool,
    /// Cluster mode: this agent's mailbox stream, read while this switch
    /// owns the agent. Boxed: an agent of a single switch pays a pointer.
    #[cfg(feature = "cluster")]
    mailbox: Option<Box<cluster_mode::MailboxFeed>>,
}

/// A claim on the agent by a socket other than its bound one.
struct PendingClaim {
    session: Mailbox<WsSession>,
    /// None for `alive`, the packet for a `heartbeat`.
    heartbeat: Option<Packet>,
    probe: u32,
}

impl Agent {
    pub fn new(agent_id: &str, ctx: Arc<RouterContext>, probe: Arc<ActorProbe>) -> Self {
        ctx.metrics
            .agents_by_status
            .with_label_values(&["none"])
            .inc();
        let queue = Outbox::with_bytes(
            ctx.config.agent.queue_limit,
            ctx.config.agent.queue_bytes_limit,
        );
        let session = &ctx.config.session;
        Agent {
            state: AgentState::new(agent_id),
            delivery: Delivery::new(queue, session.max_in_flight_bytes as u64, session.shortcut),
            ctx,
            probe,
            grace_timer: None,
            idle_timer: None,
            retired: false,
            overflow_log: LogLimit::per_second(),
            pending_claim: None,
            next_probe: 0,
            restored: false,
            #[cfg(feature = "cluster")]
            mailbox: None,
        }
    }

    /// An agent as a previous run of the switch left it (PROTOCOL 1.3
    /// state, read back by `snapshot::decode`). Its socket is gone; its
    /// grace starts now. The time the switch was down does not count
    /// against its heartbeats: `last_ping_ms` moves forward by `downtime_ms`,
    /// so a worker is not declared disconnected for the switch's restart.
    pub fn restored(
        r: RestoredAgent,
        downtime_ms: i64,
        ctx: Arc<RouterContext>,
        probe: Arc<ActorProbe>,
    ) -> Self {
        let mut agent = Agent::new(&r.agent_id, ctx, probe);
        if let Some(old) = agent.state.set_status(&r.status) {
            let g = &agent.ctx.metrics.agents_by_status;
            g.with_label_values(&[status_label(&old)]).dec();
            g.with_label_values(&[status_label(&agent.state.status)])
                .inc();
        }
        agent
            .state
            .restore_liveness(r.last_ping_ms, downtime_ms, crate::clock::now_secs());
        agent.state.disconnect_time = r.disconnect_time.or(agent.state.disconnect_time);
        for packet in r.queue {
            let kept = agent.with_queue(|d| d.keep(packet));
            // Keeping writes nothing: there is no next step.
            let _ = agent.performed(kept);
        }
        agent.restored = true;
        agent
    }

    /// Where senders find this agent's socket (for its `Mailbox`).
    pub fn shortcut(&self) -> Arc<Shortcut> {
        Arc::clone(self.delivery.shortcut())
    }

    /// The bound socket.
    fn session(&self) -> Option<&Mailbox<WsSession>> {
        self.delivery.socket().map(|s| &s.session)
    }

    fn set_status(&mut self, status: &str) -> bool {
        match self.state.set_status(status) {
            Some(old) => {
                self.count_status_change(&old);
                true
            }
            None => false,
        }
    }

    fn count_status_change(&self, old: &str) {
        let g = &self.ctx.metrics.agents_by_status;
        g.with_label_values(&[status_label(old)]).dec();
        g.with_label_values(&[status_label(&self.state.status)])
            .inc();
        self.publish_status();
        #[cfg(feature = "cluster")]
        self.record_owner();
    }

    /// Tells the monitor (status changes are rare next to packets).
    fn publish_status(&self) {
        self.ctx.network.do_send(Publish(SwitchEvent::AgentStatus {
            ts: crate::clock::now_secs(),
            agent_id: self.state.agent_id.clone(),
            status: self.state.status.clone(),
        }));
    }

    fn status_packet(&self) -> Packet {
        Packet::new(
            PacketType::UpdateStatus,
            self.state.agent_id.clone(),
            json!({ "status": self.state.status }),
        )
    }

    /// Delivers to the live socket, or keeps the packet (in order) until
    /// the socket can take it or the next one binds.
    fn send_to_client(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        let sent = self.with_queue(|d| d.send(packet));
        let step = self.performed(sent);
        self.follow(step, ctx);
    }

    /// Sends queued packets, in order, while the socket keeps up.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let step = self.with_queue(Delivery::drain);
        self.follow(step, ctx);
        // Cluster mode: what left the queue is to be acknowledged.
        #[cfg(feature = "cluster")]
        self.arm_purge_tick(ctx);
    }

    /// Runs `f` on the delivery and moves the queue gauges by what the
    /// queue gained or lost meanwhile (they sum over every agent).
    fn with_queue<T>(&mut self, f: impl FnOnce(&mut Delivery<PeerSocket>) -> T) -> T {
        let q = self.delivery.queue();
        let (len, bytes) = (q.len(), q.bytes());
        let out = f(&mut self.delivery);
        let q = self.delivery.queue();
        let m = &self.ctx.metrics;
        if q.len() != len {
            m.packets_queued.add(q.len() as i64 - len as i64);
        }
        #[cfg(feature = "cluster")]
        if let Some(feed) = &mut self.mailbox {
            feed.acks.settle(q.len());
        }
        if q.bytes() != bytes {
            m.packets_queued_bytes.add(q.bytes() as i64 - bytes as i64);
        }
        out
    }

    /// Counts a packet kept and reports the packets it pushed out.
    fn performed(&mut self, out: Outcome) -> Step {
        if out.queued {
            self.ctx.metrics.packets_queued_total.inc();
        }
        if let Some(o) = out.overflow {
            let m = &self.ctx.metrics;
            m.dropped(drop_reason::AGENT_QUEUE_FULL, o.dropped.len() as u64);
            for old in o.dropped {
                self.report_overflow(old, o.held, o.held_bytes);
            }
        }
        out.step
    }

    fn follow(&mut self, step: Step, ctx: &mut Context<Self>) {
        match step {
            Step::Idle => {}
            Step::WaitForRoom { at } => wait_for_room(&mut self.delivery, &self.probe, at, ctx),
            // The socket died before telling us: forget it.
            Step::Lost => self.socket_gone(ctx),
        }
    }

    /// Tells the backend (a `log_error`) that a queued packet was dropped
    /// because the queue was full; the packet goes along as text.
    fn report_overflow(&mut self, mut old: Packet, held: usize, held_bytes: usize) {
        let q = self.delivery.queue();
        if let Some(held) = self.overflow_log.admit(std::time::Instant::now()) {
            log::warn!(
                "agent {}: queue full ({} packets, {} bytes at most), dropped its oldest {} packet{}",
                self.state.agent_id,
                q.limit(),
                q.bytes_limit(),
                old.packet_type.as_str(),
                held_note(held)
            );
        }
        let text = format!(
            "switchyard: agent {} had {} undelivered packets ({} bytes, at most {} packets and {} bytes); dropped the oldest ({})",
            self.state.agent_id,
            held,
            held_bytes,
            q.limit(),
            q.bytes_limit(),
            old.packet_type.as_str()
        );
        let dropped = old.to_raw(crate::clock::now_secs());
        let report = Packet::new(
            PacketType::LogError,
            self.state.agent_id.clone(),
            json!({ "error_type": "agent-queue-overflow", "text": text }),
        )
        .with("client_timestamp", serde_json::Value::Null);
        let report = with_data_field(report, "dropped_packet", &dropped);
        self.ctx.backend.do_send(ToBackend(report));
    }

    /// Sends queued packets, in order, to the (new) live socket.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }

    fn bind(&mut self, session: Mailbox<WsSession>, ctx: &mut Context<Self>) {
        if let Bound::Replaced(old) = self.delivery.bind(PeerSocket::to_agent(session)) {
            self.ctx.metrics.rebinds.inc();
            log::info!("agent {}: rebound to a newer socket", self.state.agent_id);
            old.session
                .do_send(CloseSocket::normal("agent rebound to a newer socket"));
        }
        self.state.on_bound();
        self.cancel_timers(ctx);
        #[cfg(feature = "cluster")]
        self.own(ctx);
    }

    fn unbind(&mut self, ctx: &mut Context<Self>) {
        // Cluster mode: what the departing socket's transport took is
        // acknowledged now; the rest goes to the next socket again.
        #[cfg(feature = "cluster")]
        self.purge_mailbox(false);
        self.delivery.unbind();
        self.socket_gone(ctx);
    }

    /// The socket is unbound: the agent waits for the next one.
    fn socket_gone(&mut self, ctx: &mut Context<Self>) {
        self.state.on_socket_closed(crate::clock::now_secs());
        self.cancel_timers(ctx);
        self.start_grace(ctx);
        self.schedule_idle(ctx);
    }

    /// The reconnect grace: an agent still without a socket at its end is
    /// `disconnect`.
    fn start_grace(&mut self, ctx: &mut Context<Self>) {
        let grace = self.ctx.config.agent.reconnect_grace();
        self.grace_timer = Some(ctx.run_later(grace, |act, _| {
            act.grace_timer = None;
            if let Some(old) = act.state.on_grace_expired() {
                log::info!(
                    "agent {}: no socket within the reconnect grace, status disconnect",
                    act.state.agent_id
                );
                act.count_status_change(&old);
            }
        }));
    }

    fn schedule_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.state.is_idle(self.session().is_some()) {
            return;
        }
        if let Some(h) = self.idle_timer.take() {
            ctx.cancel_future(h);
        }
        let expiry = self.ctx.config.agent.idle_expiry();
        self.idle_timer = Some(ctx.run_later(expiry, |act, ctx| {
            act.idle_timer = None;
            if act.state.is_idle(act.session().is_some()) {
                log::info!("agent {}: idle, removed", act.state.agent_id);
                act.retire(true, ctx);
            }
        }));
    }

    fn cancel_timers(&mut self, ctx: &mut Context<Self>) {
        for h in [self.grace_timer.take(), self.idle_timer.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_future(h);
        }
    }

    /// Forgets the agent. `expired`: it had no socket for the idle expiry
    /// (what it still held for its socket is reported to the backend);
    /// else its work was submitted.
    fn retire(&mut self, expired: bool, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.retired = true;
        let bytes_before = self.delivery.queue().bytes();
        let left = self.with_queue(Delivery::retire);
        self.cancel_timers(ctx);
        // Cluster mode: what was dropped here is acknowledged (it is
        // reported below), and the agent is no switch's any more.
        #[cfg(feature = "cluster")]
        self.leave_cluster(ctx);
        self.ctx.directory.do_send(AgentRetired {
            agent_id: self.state.agent_id.clone(),
            agent: Mailbox::new(ctx.address(), Arc::clone(&self.probe)),
        });
        if !left.is_empty() {
            let reason = if expired {
                drop_reason::AGENT_EXPIRED
            } else {
                drop_reason::AGENT_REMOVED
            };
            self.ctx.metrics.dropped(reason, left.len() as u64);
            log::info!(
                "agent {}: removed with {} undelivered packets ({} bytes)",
                self.state.agent_id,
                left.len(),
                bytes_before
            );
            if expired {
                let report = Packet::new(
                    PacketType::LogError,
                    self.state.agent_id.clone(),
                    json!({
                        "error_type": "agent-expired-undelivered",
                        "text": format!(
                            "switchyard: agent {} had no socket for {:?}; removed with {} undelivered packets ({} bytes), dropped",
                            self.state.agent_id,
                            self.ctx.config.agent.idle_expiry(),
                            left.len(),
                            bytes_before
                        ),
                        "dropped_count": left.len(),
                    }),
                )
                .with("client_timestamp", serde_json::Value::Null);
                self.ctx.backend.do_send(ToBackend(report));
            }
        }
        ctx.run_later(RETIRE_LINGER, |_, ctx| ctx.stop());
    }
}

impl Actor for Agent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.publish_status();
        if self.restored {
            self.start_grace(ctx);
        }
        self.schedule_idle(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.ctx
            .metrics
            .agents_by_status
            .with_label_values(&[status_label(&self.state.status)])
            .dec();
        let left = self.delivery.queue().len();
        self.ctx.metrics.packets_queued.sub(left as i64);
        let bytes = self.delivery.queue().bytes();
        self.ctx.metrics.packets_queued_bytes.sub(bytes as i64);
        self.probe.retire();
    }
}

/// The agent's socket said `alive`: bind it, flush, send the status.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentAlive {
    pub session: Mailbox<WsSession>,
}

impl Handler<Resume> for Agent {
    type Result = ();
    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) {
        // Sent from the transport's side, not through a `Mailbox`.
        let _h = self.probe.handling_unqueued("Resume");
        let step = self.with_queue(Delivery::resume);
        self.follow(step, ctx);
    }
}

impl Handler<AgentAlive> for Agent {
    type Result = ();
    fn handle(&mut self, msg: AgentAlive, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("AgentAlive");
        if self.retired {
            self.ctx.directory.do_send(crate::directory::BindAgent {
                agent_id: self.state.agent_id.clone(),
                session: msg.session,
            });
            return;
        }
        self.claim(msg.session, None, ctx);
    }
}

impl Agent {
    /// A socket says `alive` (`heartbeat` None) or `heartbeat` for this
    /// agent: granted at once unless another socket holds the agent and
    /// may still be alive; then that socket is probed (PROTOCOL 1.5).
    fn claim(
        &mut self,
        session: Mailbox<WsSession>,
        heartbeat: Option<Packet>,
        ctx: &mut Context<Self>,
    ) {
        let holder = match self.session() {
            Some(s) if !s.same(&session) => Holder::Other {
                live: self.state.is_alive && s.connected(),
            },
            _ => Holder::FreeOrSame,
        };
        let pending = self
            .pending_claim
            .as_ref()
            .map(|p| p.session.same(&session));
        match judge_claim(holder, pending) {
            Verdict::Grant => self.grant(session, heartbeat, ctx),
            Verdict::Probe => self.start_probe(session, heartbeat, ctx),
            Verdict::Wait => {
                if let (Some(p), Some(hb)) = (self.pending_claim.as_mut(), heartbeat) {
                    p.heartbeat = Some(hb);
                }
            }
            Verdict::Refuse => self.refuse_claim(&session),
        }
    }

    fn grant(
        &mut self,
        session: Mailbox<WsSession>,
        heartbeat: Option<Packet>,
        ctx: &mut Context<Self>,
    ) {
        let rebound = match self.session() {
            Some(s) => !s.same(&session),
            None => true,
        };
        match heartbeat {
            None => {
                self.bind(session, ctx);
                self.flush(ctx);
                let status = self.status_packet();
                self.send_to_client(status, ctx);
            }
            Some(mut packet) => {
                if rebound {
                    self.bind(session, ctx);
                }
                self.state.on_heartbeat(crate::clock::now_ms());
                packet.set_data(self.ctx.heartbeat_data(Some(&self.state.status)));
                self.send_to_client(packet, ctx);
                if rebound {
                    self.flush(ctx);
                }
            }
        }
    }

    /// Asks the bound socket for a sign of life (any frame after a ping)
    /// within `takeover_probe_secs`; the claim waits meanwhile.
    fn start_probe(
        &mut self,
        session: Mailbox<WsSession>,
        heartbeat: Option<Packet>,
        ctx: &mut Context<Self>,
    ) {
        let Some(holder) = self.session().cloned() else {
            return self.grant(session, heartbeat, ctx);
        };
        self.next_probe = self.next_probe.wrapping_add(1);
        let probe = self.next_probe;
        self.pending_claim = Some(Box::new(PendingClaim {
            session,
            heartbeat,
            probe,
        }));
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A holder too far behind to take the message is not live either:
        // the dropped sender ends the wait at once.
        let _ = holder.try_send(ProbeLiveness(tx));
        let wait = self.ctx.config.agent.takeover_probe();
        let answered = async move { matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(()))) };
        ctx.spawn(answered.into_actor(self).map(move |answered, act, ctx| {
            act.probe_done(probe, answered, ctx);
        }));
    }

    fn probe_done(&mut self, probe: u32, answered: bool, ctx: &mut Context<Self>) {
        if self.pending_claim.as_ref().map(|p| p.probe) != Some(probe) {
            return;
        }
        let Some(claim) = self.pending_claim.take() else {
            return;
        };
        let claim = *claim;
        if self.retired {
            return;
        }
        if answered {
            self.refuse_claim(&claim.session);
        } else {
            log::info!(
                "agent {}: its socket did not answer within {:?}; a newer socket takes over",
                self.state.agent_id,
                self.ctx.config.agent.takeover_probe()
            );
            self.grant(claim.session, claim.heartbeat, ctx);
        }
    }

    /// A claim on this agent while its socket is alive: refused, counted,
    /// and the claimer told.
    fn refuse_claim(&mut self, session: &Mailbox<WsSession>) {
        self.ctx.metrics.refused(crate::metrics::refusal::TAKEOVER);
        session.do_send(ClaimRefused {
            agent_id: self.state.agent_id.clone(),
            kind: crate::metrics::refusal::TAKEOVER,
            text: "this agent is connected on another socket that is still alive".into(),
        });
    }
}

/// A heartbeat from one of the agent's sockets: answer, mark alive, rebind.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentHeartbeat {
    pub session: Mailbox<WsSession>,
    pub packet: Packet,
}

impl Handler<AgentHeartbeat> for Agent {
    type Result = ();
    fn handle(&mut self, mut msg: AgentHeartbeat, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("AgentHeartbeat");
        if self.retired {
            self.ctx
                .directory
                .do_send(crate::directory::RouteHeartbeat {
                    session: msg.session,
                    packet: msg.packet,
                });
            return;
        }
        self.ctx.metrics.heartbeats.inc();
        let same = matches!(self.session(), Some(s) if s.same(&msg.session));
        if !same {
            return self.claim(msg.session, Some(msg.packet), ctx);
        }
        self.state.on_heartbeat(crate::clock::now_ms());
        msg.packet
            .set_data(self.ctx.heartbeat_data(Some(&self.state.status)));
        self.send_to_client(msg.packet, ctx);
    }
}

/// A packet for the agent's browser (`client_bound_live_update`,
/// `update_status`): delivered now, or queued until the next `alive`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToClient(pub Packet);

impl Handler<ToClient> for Agent {
    type Result = ();
    fn handle(&mut self, msg: ToClient, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("ToClient");
        self.pass_to_client(msg.0, ctx);
    }
}

impl Handler<Relay> for Agent {
    type Result = ();
    fn handle(&mut self, msg: Relay, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("Relay");
        // The ticket is dropped after the packet is delivered or queued.
        self.pass_to_client(msg.packet, ctx);
    }
}

impl Agent {
    fn pass_to_client(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        if self.retired {
            self.ctx.directory.do_send(crate::directory::RouteToAgent {
                packet,
                reply_to: None,
                ticket: None,
            });
            return;
        }
        if packet.packet_type == PacketType::UpdateStatus {
            if let Some(status) = packet.data_str("status") {
                self.set_status(&status);
            }
        }
        // A queued packet does not keep the agent from idle expiry: with no
        // socket to come for it, it is dropped and reported then.
        self.send_to_client(packet, ctx);
    }
}

/// One of the agent's sockets closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SocketClosed {
    pub session: Mailbox<WsSession>,
}

impl Handler<SocketClosed> for Agent {
    type Result = ();
    fn handle(&mut self, msg: SocketClosed, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("SocketClosed");
        let current = matches!(self.session(), Some(s) if s.same(&msg.session));
        if current && !self.retired {
            log::debug!("agent {}: socket closed", self.state.agent_id);
            self.unbind(ctx);
            // A claim waiting on that socket's sign of life has its answer.
            if let Some(claim) = self.pending_claim.take() {
                let claim = *claim;
                self.grant(claim.session, claim.heartbeat, ctx);
            }
        }
    }
}

/// `request_statuses` asks every agent to apply the ping-timeout rule and
/// report its status.
#[derive(Message)]
#[rtype(result = "String")]
pub struct CheckLiveness {
    pub now_ms: i64,
}

impl Handler<CheckLiveness> for Agent {
    type Result = String;
    fn handle(&mut self, msg: CheckLiveness, ctx: &mut Context<Self>) -> String {
        let _h = self.probe.handling("CheckLiveness");
        let old = self.state.status.clone();
        if self
            .state
            .check_liveness(msg.now_ms, self.ctx.config.agent.ping_timeout_ms())
        {
            log::info!(
                "agent {}: no heartbeat within the ping timeout, status disconnect",
                self.state.agent_id
            );
            self.count_status_change(&old);
            let status = self.status_packet();
            self.send_to_client(status, ctx);
        }
        self.state.status.clone()
    }
}

/// The agent's work is over (submitted) or it is idle: forget it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireAgent;

impl Handler<RetireAgent> for Agent {
    type Result = ();
    fn handle(&mut self, _: RetireAgent, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("RetireAgent");
        self.retire(false, ctx);
    }
}

/// The agent's state for the state file (a graceful stop): None once it
/// is retired (the directory no longer lists it).
#[derive(Message)]
#[rtype(result = "Option<AgentRecord>")]
pub struct ExportAgent {
    pub now_secs: f64,
}

impl Handler<ExportAgent> for Agent {
    type Result = MessageResult<ExportAgent>;
    fn handle(&mut self, msg: ExportAgent, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ExportAgent");
        if self.retired {
            return MessageResult(None);
        }
        let s = &self.state;
        MessageResult(Some(AgentRecord {
            agent_id: s.agent_id.clone(),
            status: s.status.clone(),
            last_ping_ms: s.last_ping_ms,
            disconnect_time: s.disconnect_time,
            queue: self
                .delivery
                .queue()
                .iter()
                .map(|p| StoredPacket::of(p, msg.now_secs))
                .collect(),
        }))
    }
}

/// What an agent looks like from outside (metrics, monitor).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub status: String,
    pub is_alive: bool,
    pub queued: usize,
    pub last_ping_ms: i64,
}

#[derive(Message)]
#[rtype(result = "AgentInfo")]
pub struct GetAgentInfo;

impl Handler<GetAgentInfo> for Agent {
    type Result = MessageResult<GetAgentInfo>;
    fn handle(&mut self, _: GetAgentInfo, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetAgentInfo");
        MessageResult(AgentInfo {
            agent_id: self.state.agent_id.clone(),
            status: self.state.status.clone(),
            is_alive: self.state.is_alive,
            queued: self.delivery.queue().len(),
            last_ping_ms: self.state.last_ping_ms,
        })
    }
}

/// `report` with `data.<key>` set to `raw`, kept as text: `data` is
/// written out with the field appended (the report's own `data` is small).
fn with_data_field(mut report: Packet, key: &str, raw: &serde_json::value::RawValue) -> Packet {
    let data = report.data().unwrap_or_else(|| json!({}));
    let mut text = serde_json::to_string(&data).unwrap_or_else(|_| "{}".into());
    if text.ends_with('}') {
        text.pop();
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(key).unwrap_or_else(|_| "\"_\"".into()));
        text.push(':');
        text.push_str(raw.get());
        text.push('}');
    }
    match serde_json::value::RawValue::from_string(text) {
        Ok(r) => report.set_raw_data(r),
        Err(e) => log::warn!("report of agent {}: {e}", report.subject_id),
    }
    report
}

/// Cluster mode (`CLUSTER.md`, "Agent-bound"): packets for this agent are
/// stored in its mailbox stream by whichever switch took them; the switch
/// holding the agent's socket reads them (its live copies, and the stream
/// itself for what it has not seen), and purges what it handed over.
#[cfg(feature = "cluster")]
mod cluster_mode {
    use super::*;
    use crate::cluster::acks::Acks;
    use crate::cluster::mailbox::{live_sequences, read_from, stored_packet, Owner};
    use crate::cluster::{AgentMoved, Purge, Target};

    pub(super) struct MailboxFeed {
        pub(super) acks: Acks,
        live: SpawnHandle,
        /// The next ack tick, while something read is not purged yet (an
        /// idle agent has no timer: thousands of them would wake for
        /// nothing).
        purge_tick: Option<SpawnHandle>,
    }

    impl Agent {
        /// A socket bound here: record this switch as the agent's owner
        /// (the switch that held it sees the record change and lets the
        /// agent go), and read the agent's mailbox from the first packet
        /// not purged.
        pub(super) fn own(&mut self, ctx: &mut Context<Self>) {
            let Some(cluster) = self.ctx.cluster().cloned() else {
                return;
            };
            self.record_owner();
            if self.mailbox.is_some() {
                return;
            }
            // Subscribe to the live copies first, then read what is
            // stored: nothing falls between the two, and what is seen
            // twice is skipped by its sequence. Nothing else is handled
            // until the stored packets are queued, so they go first.
            let client = cluster.link.client.clone();
            let live = cluster.link.names.live(&self.state.agent_id);
            let stream = cluster.link.mailboxes.clone();
            let names = cluster.link.names.clone();
            let id = self.state.agent_id.clone();
            ctx.wait(
                async move {
                    let sub = client.subscribe(live).await;
                    let stored = read_from(&stream, &names, &id, 1).await;
                    (sub, stored)
                }
                .into_actor(self)
                .map(move |(sub, (stored, bad)), act, ctx| {
                    let sub = match sub {
                        Ok(s) => s,
                        Err(e) => {
                            log::error!(
                                "cluster: agent {}: cannot hear its mailbox: {e}",
                                act.state.agent_id
                            );
                            return;
                        }
                    };
                    let m = &cluster.metrics;
                    m.replayed.inc_by(stored.len() as u64);
                    if bad > 0 {
                        m.malformed
                            .with_label_values(&["stored_packet"])
                            .inc_by(bad as u64);
                    }
                    let live = ctx.add_stream(sub);
                    act.mailbox = Some(Box::new(MailboxFeed {
                        acks: Acks::default(),
                        live,
                        purge_tick: None,
                    }));
                    for (seq, p) in stored {
                        act.take_stored(seq, p, ctx);
                    }
                }),
            );
        }

        /// Records this switch as the agent's owner, with its status.
        pub(super) fn record_owner(&self) {
            let Some(cluster) = self.ctx.cluster() else {
                return;
            };
            let id = self.state.agent_id.clone();
            let record = Owner {
                owner: cluster.node.clone(),
                since: crate::clock::now_secs(),
                status: self.state.status.clone(),
                last_ping_ms: self.state.last_ping_ms,
            };
            let store = cluster.link.agents.clone();
            let key = crate::cluster::names::token(&id);
            if let Ok(body) = serde_json::to_vec(&record) {
                actix::spawn(async move {
                    if let Err(e) = store.put(key, body.into()).await {
                        log::warn!("cluster: cannot record the owner of {id}: {e}");
                    }
                });
            }
        }

        /// Reads the mailbox past sequence `seen`, in order, and nothing
        /// else is handled until it is done (what comes live meanwhile is
        /// newer, or skipped as seen).
        fn read_past(&mut self, seen: u64, ctx: &mut Context<Self>) {
            let Some(c) = self.ctx.cluster() else {
                return;
            };
            let stream = c.link.mailboxes.clone();
            let names = c.link.names.clone();
            let id = self.state.agent_id.clone();
            ctx.wait(
                async move { read_from(&stream, &names, &id, seen + 1).await }
                    .into_actor(self)
                    .map(|(stored, _), act, ctx| {
                        for (seq, p) in stored {
                            act.take_stored(seq, p, ctx);
                        }
                    }),
            );
        }

        fn take_stored(&mut self, seq: u64, packet: Packet, ctx: &mut Context<Self>) {
            let Some(feed) = &mut self.mailbox else {
                return;
            };
            if !feed.acks.read(seq) {
                return;
            }
            if let Some(c) = self.ctx.cluster() {
                c.metrics.received.with_label_values(&["mailbox"]).inc();
            }
            self.pass_to_client(packet, ctx);
            let queued = self.delivery.queue().len();
            if let Some(feed) = &mut self.mailbox {
                feed.acks.settle(queued);
            }
            self.arm_purge_tick(ctx);
        }

        /// Ticks every ack interval while something read is not purged.
        pub(super) fn arm_purge_tick(&mut self, ctx: &mut Context<Self>) {
            let Some(interval) = self.ctx.cluster().map(|c| c.config.ack_interval()) else {
                return;
            };
            let Some(feed) = &mut self.mailbox else {
                return;
            };
            if feed.purge_tick.is_some() || feed.acks.all_purged() {
                return;
            }
            feed.purge_tick = Some(ctx.run_later(interval, |act, ctx| {
                if let Some(feed) = &mut act.mailbox {
                    feed.purge_tick = None;
                }
                act.purge_mailbox(false);
                act.arm_purge_tick(ctx);
            }));
        }

        /// Acknowledges what the socket's transport has taken (`now`:
        /// everything handed over or dropped, as the agent retires).
        pub(super) fn purge_mailbox(&mut self, now: bool) {
            let (Some(feed), Some(c)) = (&mut self.mailbox, self.ctx.cluster()) else {
                return;
            };
            let due = if now {
                feed.acks.due_now()
            } else {
                feed.acks.tick(crate::agent::backend_feed::flow_mark(
                    self.delivery.socket(),
                ))
            };
            if let Some(below) = due {
                c.addr.do_send(Purge {
                    target: Target::Mailbox(self.state.agent_id.clone()),
                    below,
                });
            }
        }

        /// The agent retires: stop reading its mailbox and forget its
        /// owner record (a switch that dies later adopts nothing of it).
        pub(super) fn leave_cluster(&mut self, ctx: &mut Context<Self>) {
            let Some(cluster) = self.ctx.cluster() else {
                return;
            };
            let store = cluster.link.agents.clone();
            let key = crate::cluster::names::token(&self.state.agent_id);
            actix::spawn(async move {
                let _ = store.delete(key).await;
            });
            self.purge_mailbox(true);
            self.leave_mailbox(ctx);
        }

        /// Stops reading the mailbox; what was not handed over stays in
        /// it for the next owner.
        fn leave_mailbox(&mut self, ctx: &mut Context<Self>) {
            if let Some(feed) = self.mailbox.take() {
                ctx.cancel_future(feed.live);
                if let Some(t) = feed.purge_tick {
                    ctx.cancel_future(t);
                }
            }
        }
    }

    impl StreamHandler<async_nats::Message> for Agent {
        fn handle(&mut self, msg: async_nats::Message, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("FromMailbox");
            let Some(c) = self.ctx.cluster().cloned() else {
                return;
            };
            let Some((seq, last)) = live_sequences(msg.headers.as_ref()) else {
                c.metrics.malformed.with_label_values(&["live_copy"]).inc();
                return;
            };
            let seen = self.mailbox.as_ref().map_or(0, |f| f.acks.seen());
            if seq <= seen {
                return;
            }
            if last > seen {
                // A live copy was missed (or arrives late): read the gap
                // from the stream, in order, before this one.
                c.metrics.gap_repairs.inc();
                self.read_past(seen, ctx);
                return;
            }
            match stored_packet(&msg.payload) {
                Some(p) => self.take_stored(seq, p, ctx),
                None => {
                    c.metrics
                        .malformed
                        .with_label_values(&["stored_packet"])
                        .inc();
                    log::warn!(
                        "cluster: agent {}: mailbox message {seq} is no packet; skipped",
                        self.state.agent_id
                    );
                }
            }
        }

        fn finished(&mut self, _: &mut Context<Self>) {}
    }

    /// Live copies may have been missed: read the mailbox past what was
    /// seen (nothing is taken twice).
    impl Handler<crate::cluster::CatchUp> for Agent {
        type Result = ();
        fn handle(&mut self, _: crate::cluster::CatchUp, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("CatchUp");
            let Some(feed) = &self.mailbox else {
                return;
            };
            let seen = feed.acks.seen();
            self.read_past(seen, ctx);
        }
    }

    /// Another switch now holds this agent's socket: close ours, stop
    /// reading the mailbox and go, without a `disconnect` (the agent is
    /// alive, elsewhere).
    impl Handler<AgentMoved> for Agent {
        type Result = ();
        fn handle(&mut self, msg: AgentMoved, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("AgentMoved");
            if let Some(s) = self.session() {
                s.do_send(CloseSocket::normal("agent connected to another switch"));
            }
            log::info!(
                "agent {}: now held by switch {}; let go here",
                self.state.agent_id,
                msg.owner
            );
            self.leave_mailbox(ctx);
            self.delivery.unbind();
            // Packets still queued here were not handed over: they stay in
            // the stream, and the new owner reads them.
            let _ = self.with_queue(Delivery::take_all);
            self.retired = true;
            self.cancel_timers(ctx);
            ctx.stop();
        }
    }
}
