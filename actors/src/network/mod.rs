//! `NetworkManager`: the switch's directory (DESIGN: "it is the switch").
//!
//! Owns the routing table (agent id -> `Agent`). Handles `BindAgent`,
//! `RouteHeartbeat`, `RouteToAgent`, `RequestStatuses`, `RemoveAgent`,
//! `AgentRetired`, `LocateAgent`, `ListAgents`, and for restarts
//! `ExportAgents` / `RestoreAgents` (the state file). Creates `Agent`s, answers
//! `request_statuses` (PROTOCOL 1.2) by asking every agent, one sweep at
//! a time (`StatusSweeps`), refuses new agents past `max_agents`, and removes
//! agents after a submit or an idle expiry (1.3).
//!
//! It is asked only at the edges of an agent's life and on a socket's first
//! packet for an agent: steady-state packets never pass through here.
//!
//! On the mesh side (PROTOCOL 2) it owns the node cache (bounded per source)
//! and the history log's writer thread (writes never run on this actor's
//! turn):
//! `UartManager` hands it every frame from the root (`RootMessageReceived`,
//! `LinkStateChanged`), and it publishes what happened as `SwitchEvent`s to
//! its subscribers. Commands for the root (`MeshCommand`) pass through here
//! so an unknown node is refused before the radio is bothered. Gateways'
//! events arrive checked from `GatewayServer` (`GatewayMessage`) and are
//! stamped with this switch's clock.

pub mod events;
pub mod history;
pub mod mesh;
pub mod node_cache;
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
use crate::uart::{CommandError, LinkInfo, RootReply, SendCommand, UartManager};
use crate::wire::mesh::{Command, NodeAddr, RootMessage};
use crate::wire::{Packet, PacketType, MEPHISTO};
use events::SwitchEvent;
use history::HistoryWriter;
use mesh::MeshState;
use node_cache::{NodeKey, NodeView, Sample};
use routing::{RoutingTable, StatusSweeps, SweepDecision};

/// How often node statuses are checked against the node timeout.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

pub struct NetworkManager {
    rctx: Arc<RouterContext>,
    probe: Arc<ActorProbe>,
    agents: RoutingTable<Mailbox<Agent>>,
    /// `request_statuses`: one sweep over the agents at a time.
    sweeps: StatusSweeps<Packet>,
    mesh: MeshState,
    history: Option<HistoryWriter>,
    uart: Option<Mailbox<UartManager>>,
    subscribers: Vec<Recipient<SwitchEvent>>,
    started: std::time::Instant,
    /// The robots' status, as the last `W-RBT` gave it.
    robots: Value,
}

/// What the manager starts with besides the router.
pub struct NetworkSetup {
    pub mesh: MeshState,
    /// The history log's writer thread (the log is already read back
    /// into `mesh`).
    pub history: Option<HistoryWriter>,
}

impl NetworkManager {
    /// Starts the manager and returns the router context that names it.
    pub fn start_with(
        make_ctx: impl FnOnce(Mailbox<NetworkManager>) -> Arc<RouterContext>,
        probe: Arc<ActorProbe>,
        setup: NetworkSetup,
    ) -> Arc<RouterContext> {
        let out: Arc<Mutex<Option<Arc<RouterContext>>>> = Arc::new(Mutex::new(None));
        let out2 = Arc::clone(&out);
        NetworkManager::create(move |c| {
            let me = Mailbox::new(c.address(), Arc::clone(&probe));
            let rctx = make_ctx(me);
            if let Ok(mut o) = out2.lock() {
                *o = Some(Arc::clone(&rctx));
            }
            NetworkManager {
                rctx,
                probe,
                agents: RoutingTable::default(),
                sweeps: StatusSweeps::default(),
                mesh: setup.mesh,
                history: setup.history,
                uart: None,
                subscribers: Vec::new(),
                started: std::time::Instant::now(),
                robots: Value::Array(Vec::new()),
            }
        });
        // `create` runs its closure before returning.
        let rctx = out.lock().ok().and_then(|mut o| o.take());
        rctx.expect("router context is made by NetworkManager::create")
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
        let (agent, created) = self.agents.locate_or_insert(agent_id, || {
            let probe = rctx.metrics.probe("Agent", agent_id);
            let agent = Agent::new(agent_id, Arc::clone(rctx), Arc::clone(&probe));
            let shortcut = agent.shortcut();
            Mailbox::new(agent.start(), probe).with_shortcut(shortcut)
        });
        if created {
            log::debug!("agent {agent_id}: created");
        }
        Some(agent)
    }

    /// A frame from a root (ours, or a gateway's): cache, history, events.
    fn apply_root(&mut self, gateway: Option<&str>, message: RootMessage, now: f64) {
        let outcome = self
            .mesh
            .on_root_message(gateway, message, now, &self.rctx.metrics);
        // Written on the history thread: a slow disk never holds up this
        // actor (a full queue is dropped and counted there).
        if let Some(h) = &self.history {
            h.write(outcome.records);
        }
        if outcome
            .events
            .iter()
            .any(|e| matches!(e, SwitchEvent::NodeStatus { .. }))
        {
            self.node_gauges();
        }
        for e in outcome.events {
            self.publish(e);
        }
    }

    /// Sends an event to every subscriber still listening.
    fn publish(&mut self, event: SwitchEvent) {
        self.rctx
            .metrics
            .events_published
            .with_label_values(&[event.name()])
            .inc();
        self.subscribers.retain(|s| s.connected());
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
    }

    fn node_gauges(&self) {
        let m = &self.rctx.metrics;
        let active = self.mesh.cache.active_count();
        m.nodes.with_label_values(&["active"]).set(active as i64);
        m.nodes
            .with_label_values(&["inactive"])
            .set((self.mesh.cache.len() - active) as i64);
    }
}

impl Actor for NetworkManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.node_gauges();
        ctx.run_interval(SWEEP_EVERY, |act, _| {
            let events = act.mesh.sweep(crate::clock::now_secs());
            if !events.is_empty() {
                act.node_gauges();
            }
            for e in events {
                act.publish(e);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Dropping the writer syncs what it holds.
        self.history.take();
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

impl Handler<BindAgent> for NetworkManager {
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

impl Handler<RouteHeartbeat> for NetworkManager {
    type Result = ();
    fn handle(&mut self, mut msg: RouteHeartbeat, _: &mut Context<Self>) {
        let _h = self.probe.handling("RouteHeartbeat");
        let agent_id = msg.packet.subject_id.clone();
        match self.agents.locate(&agent_id).cloned() {
            Some(agent) => {
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

impl Handler<RouteToAgent> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: RouteToAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("RouteToAgent");
        let agent_id = msg.packet.subject_id.clone();
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

impl Handler<RequestStatuses> for NetworkManager {
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

impl NetworkManager {
    /// Asks every agent to apply the ping-timeout rule and report its
    /// status, then answers `request` with `return_statuses`; when the
    /// answer is sent, sweeps again for a request that came meanwhile.
    /// Off the manager's own turn: it keeps serving while agents reply.
    fn sweep_statuses(&mut self, request: Packet, ctx: &mut Context<Self>) {
        self.rctx.metrics.status_sweeps.inc();
        let now_ms = crate::clock::now_ms();
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(id, a)| {
                let id = id.clone();
                let req = a.send(CheckLiveness { now_ms });
                async move { (id, req.await.ok()) }
            })
            .collect();
        let backend = self.rctx.backend.clone();
        let answer = async move {
            let mut statuses = Map::new();
            for (id, status) in futures_util::future::join_all(asks).await {
                if let Some(s) = status {
                    statuses.insert(id, Value::String(s));
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

impl Handler<RemoveAgent> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: RemoveAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("RemoveAgent");
        if let Some(agent) = self.agents.remove(&msg.agent_id) {
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

impl Handler<AgentRetired> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: AgentRetired, _: &mut Context<Self>) {
        let _h = self.probe.handling("AgentRetired");
        self.agents.remove_if(&msg.agent_id, |a| a.same(&msg.agent));
    }
}

/// Where agent X lives: the one narrow lookup the rest of the switch uses.
#[derive(Message)]
#[rtype(result = "Option<Mailbox<Agent>>")]
pub struct LocateAgent {
    pub agent_id: String,
}

impl Handler<LocateAgent> for NetworkManager {
    type Result = Option<Mailbox<Agent>>;
    fn handle(&mut self, msg: LocateAgent, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("LocateAgent");
        self.agents.locate(&msg.agent_id).cloned()
    }
}

/// Every agent's state, for dashboards.
#[derive(Message)]
#[rtype(result = "Vec<AgentInfo>")]
pub struct ListAgents;

impl Handler<ListAgents> for NetworkManager {
    type Result = ResponseFuture<Vec<AgentInfo>>;
    fn handle(&mut self, _: ListAgents, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ListAgents");
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(_, a)| a.send(GetAgentInfo))
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

impl Handler<ExportAgents> for NetworkManager {
    type Result = ResponseFuture<Vec<AgentRecord>>;
    fn handle(&mut self, msg: ExportAgents, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ExportAgents");
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(_, a)| {
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

impl Handler<RestoreAgents> for NetworkManager {
    type Result = usize;
    fn handle(&mut self, msg: RestoreAgents, _: &mut Context<Self>) -> usize {
        let _h = self.probe.handling("RestoreAgents");
        let mut made = 0;
        for r in msg.agents {
            if self.agents.locate(&r.agent_id).is_some()
                || self.agents.len() >= self.rctx.config.agent.max_agents
            {
                continue;
            }
            let id = r.agent_id.clone();
            let probe = self.rctx.metrics.probe("Agent", &id);
            let agent = Agent::restored(
                r,
                msg.downtime_ms,
                Arc::clone(&self.rctx),
                Arc::clone(&probe),
            );
            let shortcut = agent.shortcut();
            let mailbox = Mailbox::new(agent.start(), probe).with_shortcut(shortcut);
            self.agents.locate_or_insert(&id, || mailbox);
            made += 1;
        }
        made
    }
}

/// Connects the serial link once it is started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachUart(pub Mailbox<UartManager>);

impl Handler<AttachUart> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: AttachUart, _: &mut Context<Self>) {
        let _h = self.probe.handling("AttachUart");
        self.uart = Some(msg.0);
    }
}

/// A frame from the root, decoded; `answered` names the command an `[R]`
/// answered (command name, destination, outcome).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RootMessageReceived {
    pub message: RootMessage,
    pub answered: Option<(&'static str, Option<NodeAddr>, Result<(), String>)>,
}

impl Handler<RootMessageReceived> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: RootMessageReceived, _: &mut Context<Self>) {
        let _h = self.probe.handling("RootMessageReceived");
        let now = crate::clock::now_secs();
        if let Some((command, dst, outcome)) = msg.answered {
            // Results of tracked sends go to listeners (PROTOCOL 3).
            if command == "SENDI" {
                self.publish(SwitchEvent::CommandResult {
                    ts: now,
                    key: NodeKey::local(dst.unwrap_or(0)),
                    command,
                    outcome,
                });
            }
        }
        self.apply_root(None, msg.message, now);
    }
}

/// The serial link went up or down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkStateChanged {
    pub up: bool,
}

impl Handler<LinkStateChanged> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: LinkStateChanged, _: &mut Context<Self>) {
        let _h = self.probe.handling("LinkStateChanged");
        self.mesh.link_up = msg.up;
        self.publish(SwitchEvent::Link {
            ts: crate::clock::now_secs(),
            link: "mesh".into(),
            state: if msg.up { "up" } else { "down" }.into(),
        });
    }
}

/// Adds a subscriber to every `SwitchEvent`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<SwitchEvent>);

impl Handler<Subscribe> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        let _h = self.probe.handling("Subscribe");
        self.subscribers.push(msg.0);
    }
}

/// An event from elsewhere in the switch, for every subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub SwitchEvent);

impl Handler<Publish> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        let _h = self.probe.handling("Publish");
        self.publish(msg.0);
    }
}

/// Every node, as `/api/nodes` shows them.
#[derive(Message)]
#[rtype(result = "Vec<NodeView>")]
pub struct GetNodes;

impl Handler<GetNodes> for NetworkManager {
    type Result = MessageResult<GetNodes>;
    fn handle(&mut self, _: GetNodes, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetNodes");
        MessageResult(self.mesh.cache.views())
    }
}

#[derive(Message)]
#[rtype(result = "Option<NodeView>")]
pub struct GetNode(pub NodeKey);

impl Handler<GetNode> for NetworkManager {
    type Result = Option<NodeView>;
    fn handle(&mut self, msg: GetNode, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetNode");
        self.mesh.cache.view(&msg.0)
    }
}

/// The last `limit` samples of one node's data type (None: no such node;
/// an empty list: no such data).
#[derive(Message)]
#[rtype(result = "Option<Vec<Sample>>")]
pub struct GetHistory {
    pub key: NodeKey,
    pub data_type: String,
    pub limit: usize,
}

impl Handler<GetHistory> for NetworkManager {
    type Result = Option<Vec<Sample>>;
    fn handle(&mut self, msg: GetHistory, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetHistory");
        if !self.mesh.cache.contains(&msg.key) {
            return None;
        }
        Some(
            self.mesh
                .cache
                .history(&msg.key, &msg.data_type, msg.limit)
                .unwrap_or_default(),
        )
    }
}

/// The latest value of a type for one node or every node (the client
/// socket's `[GET]`).
#[derive(Message)]
#[rtype(result = "Vec<(NodeAddr, Sample)>")]
pub struct GetLatest {
    pub data_type: String,
    pub node: Option<NodeAddr>,
}

impl Handler<GetLatest> for NetworkManager {
    type Result = MessageResult<GetLatest>;
    fn handle(&mut self, msg: GetLatest, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetLatest");
        let all = self.mesh.cache.latest_of_type(None, &msg.data_type);
        MessageResult(match msg.node {
            Some(n) => all.into_iter().filter(|(a, _)| *a == n).collect(),
            None => all,
        })
    }
}

/// A command for the root. With `node` set, a node the switch has never
/// heard from is refused without bothering the radio.
#[derive(Message)]
#[rtype(result = "Result<RootReply, CommandError>")]
pub struct MeshCommand {
    pub command: Command,
    pub node: Option<NodeAddr>,
}

impl Handler<MeshCommand> for NetworkManager {
    type Result = ResponseFuture<Result<RootReply, CommandError>>;
    fn handle(&mut self, msg: MeshCommand, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("MeshCommand");
        let Some(uart) = self.uart.clone() else {
            return Box::pin(async { Err(CommandError::NoMesh) });
        };
        if let Some(n) = msg.node {
            if !self.mesh.cache.contains(&NodeKey::local(n)) {
                return Box::pin(async move { Err(CommandError::UnknownNode(n)) });
            }
        }
        if !self.mesh.link_up {
            return Box::pin(async { Err(CommandError::LinkDown) });
        }
        let req = uart.send(SendCommand(msg.command));
        Box::pin(async move { req.await.unwrap_or(Err(CommandError::LinkDown)) })
    }
}

/// The mesh as a whole (`NINFO` on the client socket, dashboards).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshInfo {
    pub link: Option<LinkInfo>,
    pub link_up: bool,
    pub nodes: Vec<NodeView>,
    pub node_amount: usize,
    pub active_nodes: usize,
    pub root_nodes: Vec<NodeAddr>,
    pub uptime_secs: f64,
}

#[derive(Message)]
#[rtype(result = "MeshInfo")]
pub struct GetMeshInfo;

impl Handler<GetMeshInfo> for NetworkManager {
    type Result = ResponseFuture<MeshInfo>;
    fn handle(&mut self, _: GetMeshInfo, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetMeshInfo");
        let mut info = MeshInfo {
            link: None,
            link_up: self.mesh.link_up,
            nodes: self.mesh.cache.views(),
            node_amount: self.mesh.cache.len(),
            active_nodes: self.mesh.cache.active_count(),
            root_nodes: self.mesh.root_nodes.clone(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
        };
        let link = self.uart.as_ref().map(|u| u.send(crate::uart::GetLinkInfo));
        Box::pin(async move {
            if let Some(req) = link {
                info.link = req.await.ok();
            }
            info
        })
    }
}

/// The robots' status from a client program (`W-RBT`): stored and published.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRobots(pub Value);

impl Handler<SetRobots> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: SetRobots, _: &mut Context<Self>) {
        let _h = self.probe.handling("SetRobots");
        self.robots = msg.0.clone();
        self.publish(SwitchEvent::Robots {
            ts: crate::clock::now_secs(),
            robots: msg.0,
        });
    }
}

/// The robots' status as last set.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct GetRobots;

impl Handler<GetRobots> for NetworkManager {
    type Result = MessageResult<GetRobots>;
    fn handle(&mut self, _: GetRobots, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetRobots");
        MessageResult(self.robots.clone())
    }
}

/// What a gateway's event means once checked (central side): a frame as
/// its root would have sent it, a node's status, its mesh link's state.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayUpdate {
    Root(RootMessage),
    NodeStatus { node: NodeAddr, active: bool },
    Link { up: bool },
}

/// An event from a gateway's mesh (central side), checked and applied once
/// and in order by `GatewayServer`. It is stamped with this switch's clock
/// on arrival: the edge's clock never decides node status, history file
/// names or what a warm start reads.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayMessage {
    pub gateway: String,
    pub update: GatewayUpdate,
}

impl Handler<GatewayMessage> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: GatewayMessage, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayMessage");
        let gw = msg.gateway;
        let now = crate::clock::now_secs();
        match msg.update {
            GatewayUpdate::Root(m) => self.apply_root(Some(&gw), m, now),
            GatewayUpdate::NodeStatus { node, active } => {
                use node_cache::NodeStatus;
                let key = NodeKey {
                    gateway: Some(gw),
                    addr: node,
                };
                // Only for nodes the gateway has sent data or messages for.
                if self.mesh.cache.contains(&key) {
                    self.publish(SwitchEvent::NodeStatus {
                        ts: now,
                        key,
                        status: if active {
                            NodeStatus::Active
                        } else {
                            NodeStatus::Inactive
                        },
                    });
                }
            }
            GatewayUpdate::Link { up } => self.publish(SwitchEvent::Link {
                ts: now,
                link: format!("gateway:{gw}/mesh"),
                state: if up { "up" } else { "down" }.into(),
            }),
        }
    }
}

/// A gateway the central switch no longer remembers (room was made for a
/// new one): its nodes leave the cache too, so names that come and go
/// cannot grow it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetGateway(pub String);

impl Handler<ForgetGateway> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: ForgetGateway, _: &mut Context<Self>) {
        let _h = self.probe.handling("ForgetGateway");
        let n = self.mesh.cache.forget_gateway(&msg.0);
        if n > 0 {
            log::info!("gateway {}: forgotten with its {n} nodes", msg.0);
            self.node_gauges();
        }
    }
}
