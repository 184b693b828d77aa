//! `AgentDirectory`: where every agent lives (DESIGN's actor table).
//!
//! Owns the routing table (agent id -> [`AgentLocation`]) and the agents'
//! comings and goings: creates `Agent`s (refusing new ones past
//! `max_agents`, PROTOCOL 1.5), removes them after a submit (`RemoveAgent`,
//! from the HTTP handlers) or an idle expiry (`AgentRetired`, from the agent
//! itself, PROTOCOL 1.3), answers `request_statuses` (1.2) by asking every
//! agent, one sweep at a time (`StatusSweeps`), lists them for dashboards
//! (`ListAgents`) and, for restarts, exports and restores them
//! (`ExportAgents` / `RestoreAgents`, the state file).
//!
//! Handles `BindAgent`, `RouteHeartbeat`, `RouteToAgent` (a socket's first
//! packet for an agent, from `WsSession` or passed on by an `Agent`),
//! `RequestStatuses`, `RemoveAgent`, `AgentRetired`, `LocateAgent`,
//! `ListAgents`, `ExportAgents`, `RestoreAgents`. Talks to `Agent`s,
//! `WsSession`s (the `AgentBound` answer) and `BackendLink`
//! (`return_statuses`).
//!
//! It is asked only at the edges of an agent's life and on a socket's first
//! packet for an agent: steady-state packets never pass through here.
//! Whatever is asked, where the agent lives is an [`AgentLocation`]: the
//! one narrow lookup a cluster widens (`CLUSTER.md`).

pub mod routing;

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use serde_json::{Map, Value};

use crate::agent::snapshot::{AgentRecord, RestoredAgent};
use crate::agent::{
    Agent, AgentAlive, AgentBound, AgentHeartbeat, AgentInfo, CheckLiveness, ClaimRefused,
    ExportAgent, GetAgentInfo, Relay, RetireAgent, RouterContext, Ticket, ToBackend, ToClient,
    WsSession,
};
use crate::mailbox::Mailbox;
use crate::metrics::ActorProbe;
use crate::wire::{Packet, PacketType, MEPHISTO};
use routing::{RoutingTable, StatusSweeps, SweepDecision};

/// Where an agent lives. Today always on this switch: its `Agent` actor.
/// A cluster (`CLUSTER.md`) adds a remote location here, an agent owned by
/// another switch and reached through its mailbox stream, behind the same
/// lookup.
#[derive(Clone)]
pub enum AgentLocation {
    Local(Mailbox<Agent>),
}

impl AgentLocation {
    /// Whether this is the agent behind `agent` (not a newer one of the
    /// same id).
    fn is(&self, agent: &Mailbox<Agent>) -> bool {
        match self {
            AgentLocation::Local(a) => a.same(agent),
        }
    }
}

pub struct AgentDirectory {
    rctx: Arc<RouterContext>,
    probe: Arc<ActorProbe>,
    agents: RoutingTable<AgentLocation>,
    /// `request_statuses`: one sweep over the agents at a time.
    sweeps: StatusSweeps<Packet>,
}

impl AgentDirectory {
    /// Starts the directory and returns the router context that names it.
    pub fn start_with(
        make_ctx: impl FnOnce(Mailbox<AgentDirectory>) -> Arc<RouterContext>,
        probe: Arc<ActorProbe>,
    ) -> Arc<RouterContext> {
        let out: Arc<Mutex<Option<Arc<RouterContext>>>> = Arc::new(Mutex::new(None));
        let out2 = Arc::clone(&out);
        AgentDirectory::create(move |c| {
            let me = Mailbox::new(c.address(), Arc::clone(&probe));
            let rctx = make_ctx(me);
            if let Ok(mut o) = out2.lock() {
                *o = Some(Arc::clone(&rctx));
            }
            AgentDirectory {
                rctx,
                probe,
                agents: RoutingTable::default(),
                sweeps: StatusSweeps::default(),
            }
        });
        // `create` runs its closure before returning.
        let rctx = out.lock().ok().and_then(|mut o| o.take());
        rctx.expect("router context is made by AgentDirectory::create")
    }

    /// The agent, made if it is new and the switch holds fewer than
    /// `max_agents` (PROTOCOL 1.5: a crowd of ids must not grow the switch
    /// without bound); None past it, counted.
    fn agent(&mut self, agent_id: &str) -> Option<Mailbox<Agent>> {
        if self.agents.locate(agent_id).is_none()
            && self.agents.len() >= self.rctx.config.agent.max_agents
        {
            self.rctx
                .metrics
                .refused(crate::metrics::refusal::AGENT_LIMIT);
            return None;
        }
        let rctx = &self.rctx;
        let (location, created) = self.agents.locate_or_insert(agent_id, || {
            let probe = rctx.metrics.probe("Agent", agent_id);
            let agent = Agent::new(agent_id, Arc::clone(rctx), Arc::clone(&probe));
            let shortcut = agent.shortcut();
            AgentLocation::Local(Mailbox::new(agent.start(), probe).with_shortcut(shortcut))
        });
        if created {
            log::debug!("agent {agent_id}: created");
        }
        let AgentLocation::Local(agent) = location;
        Some(agent)
    }
}

impl AgentDirectory {
    /// Makes an agent from state another process left (the state file, or
    /// a switch of the cluster gone down): no socket, its grace starting.
    /// False for an id already here, or past `max_agents`.
    fn restore(&mut self, r: RestoredAgent, downtime_ms: i64) -> bool {
        if self.agents.locate(&r.agent_id).is_some()
            || self.agents.len() >= self.rctx.config.agent.max_agents
        {
            return false;
        }
        let id = r.agent_id.clone();
        let probe = self.rctx.metrics.probe("Agent", &id);
        let agent = Agent::restored(r, downtime_ms, Arc::clone(&self.rctx), Arc::clone(&probe));
        let shortcut = agent.shortcut();
        let mailbox = Mailbox::new(agent.start(), probe).with_shortcut(shortcut);
        self.agents
            .locate_or_insert(&id, || AgentLocation::Local(mailbox));
        true
    }
}

impl Actor for AgentDirectory {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

/// A socket said `alive` for an agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BindAgent {
    pub agent_id: String,
    pub session: Mailbox<WsSession>,
}

impl Handler<BindAgent> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: BindAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("BindAgent");
        let Some(agent) = self.agent(&msg.agent_id) else {
            msg.session.do_send(ClaimRefused::agent_limit(
                &msg.agent_id,
                self.rctx.config.agent.max_agents,
            ));
            return;
        };
        agent.do_send(AgentAlive {
            session: msg.session.clone(),
        });
        msg.session.do_send(AgentBound {
            agent_id: msg.agent_id,
            agent,
        });
    }
}

/// A heartbeat from a socket that does not know its agent yet.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteHeartbeat {
    pub session: Mailbox<WsSession>,
    pub packet: Packet,
}

impl Handler<RouteHeartbeat> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, mut msg: RouteHeartbeat, _: &mut Context<Self>) {
        let _h = self.probe.handling("RouteHeartbeat");
        let agent_id = msg.packet.subject_id.clone();
        match self.agents.locate(&agent_id).cloned() {
            Some(AgentLocation::Local(agent)) => {
                agent.do_send(AgentHeartbeat {
                    session: msg.session.clone(),
                    packet: msg.packet,
                });
                msg.session.do_send(AgentBound { agent_id, agent });
            }
            None => {
                // Unknown agent: answer with the backend's ping only.
                self.rctx.metrics.heartbeats.inc();
                msg.packet.set_data(self.rctx.heartbeat_data(None));
                let _ = crate::agent::deliver(&msg.session, msg.packet, crate::agent::TO_AGENT);
            }
        }
    }
}

/// A packet for an agent from a socket that has not cached that agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteToAgent {
    pub packet: Packet,
    pub reply_to: Option<Mailbox<WsSession>>,
    /// The sender's hold on its shortcut to this agent, released once the
    /// agent has passed the packet on.
    pub ticket: Option<Ticket>,
}

impl Handler<RouteToAgent> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: RouteToAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("RouteToAgent");
        let agent_id = msg.packet.subject_id.clone();
        // Cluster mode: every packet for an agent goes to its mailbox
        // stream, read by whichever switch holds the agent (this one or
        // another); the sender keeps no agent to write to.
        #[cfg(feature = "cluster")]
        if let Some(c) = self.rctx.cluster() {
            c.to_mailbox(msg.packet);
            return;
        }
        let Some(agent) = self.agent(&agent_id) else {
            let max = self.rctx.config.agent.max_agents;
            log::warn!("agent {agent_id}: not made, {max} agents already; packet dropped");
            self.rctx
                .metrics
                .dropped(crate::metrics::drop_reason::AGENT_LIMIT, 1);
            if let Some(s) = msg.reply_to {
                s.do_send(ClaimRefused::agent_limit(&agent_id, max));
            }
            return;
        };
        // Forward first, then tell the sender: anything it sends straight
        // to the agent afterwards lands behind this packet, and the detour
        // keeps it off the shortcut until the agent has passed this on.
        match msg.ticket {
            Some(ticket) => agent.do_send(Relay {
                packet: msg.packet,
                ticket,
            }),
            None => agent.do_send(ToClient(msg.packet)),
        }
        if let Some(s) = msg.reply_to {
            s.do_send(AgentBound { agent_id, agent });
        }
    }
}

/// The backend's `request_statuses`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestStatuses(pub Packet);

impl Handler<RequestStatuses> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: RequestStatuses, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("RequestStatuses");
        self.rctx.set_last_mephisto_ping_ms(crate::clock::now_ms());
        match self.sweeps.request(msg.0) {
            SweepDecision::Start(request) => self.sweep_statuses(request, ctx),
            // The request it replaced is answered by the sweep that
            // answers this one.
            SweepDecision::Wait { replaced: true } => {
                self.rctx
                    .metrics
                    .refused(crate::metrics::refusal::STATUSES_COALESCED);
            }
            SweepDecision::Wait { replaced: false } => {}
        }
    }
}

impl AgentDirectory {
    /// Every local agent's status, each having applied the ping-timeout
    /// rule at `now_ms`; off the directory's turn.
    fn local_statuses(&self, now_ms: i64) -> impl std::future::Future<Output = Map<String, Value>> {
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(id, AgentLocation::Local(a))| {
                let id = id.clone();
                let req = a.send(CheckLiveness { now_ms });
                async move { (id, req.await.ok()) }
            })
            .collect();
        async move {
            let mut statuses = Map::new();
            for (id, status) in futures_util::future::join_all(asks).await {
                if let Some(s) = status {
                    statuses.insert(id, Value::String(s));
                }
            }
            statuses
        }
    }

    /// Asks every agent to apply the ping-timeout rule and report its
    /// status, then answers `request` with `return_statuses`; when the
    /// answer is sent, sweeps again for a request that came meanwhile.
    /// Off the directory's own turn: it keeps serving while agents reply.
    fn sweep_statuses(&mut self, request: Packet, ctx: &mut Context<Self>) {
        self.rctx.metrics.status_sweeps.inc();
        let local = self.local_statuses(crate::clock::now_ms());
        // Cluster mode: every other switch answers for its agents at the
        // same time (a slow or dead one makes the answer partial, never
        // late past its deadline).
        #[cfg(feature = "cluster")]
        let remote = self.rctx.cluster().map(|c| {
            c.addr.send(crate::cluster::GatherStatuses {
                last_ping_ms: self.rctx.last_mephisto_ping_ms(),
                per_switch: self.rctx.config.agent.max_agents,
            })
        });
        let backend = self.rctx.backend.clone();
        let answer = async move {
            #[allow(unused_mut)]
            let mut statuses = local.await;
            #[cfg(feature = "cluster")]
            if let Some(Ok(more)) = match remote {
                Some(r) => Some(r.await),
                None => None,
            } {
                for (id, status) in more {
                    // This switch's own answer wins for an agent that
                    // moved meanwhile.
                    statuses.entry(id).or_insert(status);
                }
            }
            let reply = Packet::new(
                PacketType::ReturnStatuses,
                MEPHISTO,
                Value::Object(statuses),
            )
            .with(
                "client_timestamp",
                request.get("server_timestamp").unwrap_or(Value::Null),
            )
            .with(
                "router_incoming_timestamp",
                request
                    .get("router_incoming_timestamp")
                    .unwrap_or(Value::Null),
            );
            backend.do_send(ToBackend(reply));
        };
        ctx.spawn(answer.into_actor(self).map(|(), act, ctx| {
            if let Some(next) = act.sweeps.finished() {
                act.sweep_statuses(next, ctx);
            }
        }));
    }
}

/// Forget an agent (its unit or onboarding was submitted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveAgent {
    pub agent_id: String,
}

impl Handler<RemoveAgent> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: RemoveAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("RemoveAgent");
        if let Some(AgentLocation::Local(agent)) = self.agents.remove(&msg.agent_id) {
            log::debug!("agent {}: removed after submit", msg.agent_id);
            agent.do_send(RetireAgent);
        }
    }
}

/// An agent retired itself (idle expiry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentRetired {
    pub agent_id: String,
    pub agent: Mailbox<Agent>,
}

impl Handler<AgentRetired> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: AgentRetired, _: &mut Context<Self>) {
        let _h = self.probe.handling("AgentRetired");
        self.agents.remove_if(&msg.agent_id, |l| l.is(&msg.agent));
    }
}

/// Cluster mode: another switch took one of this switch's agents.
#[cfg(feature = "cluster")]
impl Handler<crate::cluster::AgentMoved> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: crate::cluster::AgentMoved, _: &mut Context<Self>) {
        let _h = self.probe.handling("AgentMoved");
        if let Some(AgentLocation::Local(agent)) = self.agents.remove(&msg.agent_id) {
            agent.do_send(msg);
        }
    }
}

/// Cluster mode: live copies may have been missed; every agent reads its
/// mailbox again.
#[cfg(feature = "cluster")]
impl Handler<crate::cluster::CatchUp> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: crate::cluster::CatchUp, _: &mut Context<Self>) {
        let _h = self.probe.handling("CatchUp");
        for (_, AgentLocation::Local(agent)) in self.agents.iter() {
            agent.do_send(msg);
        }
        self.rctx.backend.do_send(msg);
    }
}

/// Cluster mode: an agent of a switch gone down is this switch's now.
#[cfg(feature = "cluster")]
impl Handler<crate::cluster::AdoptAgent> for AgentDirectory {
    type Result = ();
    fn handle(&mut self, msg: crate::cluster::AdoptAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("AdoptAgent");
        let id = msg.agent_id.clone();
        // As an agent a restart left: no socket, its grace starting now.
        let restored = RestoredAgent {
            agent_id: msg.agent_id,
            status: msg.status,
            last_ping_ms: msg.last_ping_ms,
            disconnect_time: None,
            queue: Vec::new(),
        };
        if !self.restore(restored, 0) {
            return;
        }
        log::info!("agent {id}: adopted from a switch gone down");
    }
}

/// Cluster mode: the switch holding the backend asks for this switch's
/// agents' statuses (`request_statuses` across switches).
#[cfg(feature = "cluster")]
impl Handler<crate::cluster::LocalStatuses> for AgentDirectory {
    type Result = ResponseFuture<Map<String, Value>>;
    fn handle(
        &mut self,
        msg: crate::cluster::LocalStatuses,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let _h = self.probe.handling("LocalStatuses");
        // The ping-timeout rule counts from the backend's last ping, which
        // only its switch saw.
        self.rctx.set_last_mephisto_ping_ms(msg.last_ping_ms);
        Box::pin(self.local_statuses(crate::clock::now_ms()))
    }
}

/// Where agent X lives: the one narrow lookup the rest of the switch uses.
#[derive(Message)]
#[rtype(result = "Option<AgentLocation>")]
pub struct LocateAgent {
    pub agent_id: String,
}

impl Handler<LocateAgent> for AgentDirectory {
    type Result = Option<AgentLocation>;
    fn handle(&mut self, msg: LocateAgent, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("LocateAgent");
        self.agents.locate(&msg.agent_id).cloned()
    }
}

/// Every agent's state, for dashboards.
#[derive(Message)]
#[rtype(result = "Vec<AgentInfo>")]
pub struct ListAgents;

impl Handler<ListAgents> for AgentDirectory {
    type Result = ResponseFuture<Vec<AgentInfo>>;
    fn handle(&mut self, _: ListAgents, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ListAgents");
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(_, AgentLocation::Local(a))| a.send(GetAgentInfo))
            .collect();
        Box::pin(async move {
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect()
        })
    }
}

/// Every agent's state, for the state file written on a graceful stop.
#[derive(Message)]
#[rtype(result = "Vec<AgentRecord>")]
pub struct ExportAgents {
    pub now_secs: f64,
}

impl Handler<ExportAgents> for AgentDirectory {
    type Result = ResponseFuture<Vec<AgentRecord>>;
    fn handle(&mut self, msg: ExportAgents, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ExportAgents");
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(_, AgentLocation::Local(a))| {
                a.send(ExportAgent {
                    now_secs: msg.now_secs,
                })
            })
            .collect();
        Box::pin(async move {
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .filter_map(|r| r.ok().flatten())
                .collect()
        })
    }
}

/// Agents a previous run left (read back, within bounds, from the state
/// file), made before the switch takes input. Returns how many were made;
/// an id already known or past `max_agents` is skipped.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RestoreAgents {
    pub agents: Vec<RestoredAgent>,
    /// How long the switch was down, in ms (not held against heartbeats).
    pub downtime_ms: i64,
}

impl Handler<RestoreAgents> for AgentDirectory {
    type Result = usize;
    fn handle(&mut self, msg: RestoreAgents, _: &mut Context<Self>) -> usize {
        let _h = self.probe.handling("RestoreAgents");
        let mut made = 0;
        for r in msg.agents {
            if self.restore(r, msg.downtime_ms) {
                made += 1;
            }
        }
        made
    }
}
