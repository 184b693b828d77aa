//! `NetworkManager`: the switch's directory (DESIGN: "it is the switch").
//!
//! Owns the routing table (agent id -> `Agent`). Handles `BindAgent`,
//! `RouteHeartbeat`, `RouteToAgent`, `RequestStatuses`, `RemoveAgent`,
//! `AgentRetired`, `LocateAgent`, `ListAgents`. Creates `Agent`s, answers
//! `request_statuses` (PROTOCOL 1.2) by asking every agent, and removes
//! agents after a submit or an idle expiry (1.3).
//!
//! It is asked only at the edges of an agent's life and on a socket's first
//! packet for an agent: steady-state packets never pass through here.

pub mod routing;

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use serde_json::{Map, Value};

use crate::agent::{
    Agent, AgentAlive, AgentBound, AgentHeartbeat, AgentInfo, CheckLiveness, Deliver, GetAgentInfo,
    RetireAgent, RouterContext, ToBackend, ToClient, WsSession,
};
use crate::metrics::{ActorProbe, Mailbox};
use crate::wire::{Packet, PacketType, MEPHISTO};
use routing::RoutingTable;

pub struct NetworkManager {
    rctx: Arc<RouterContext>,
    probe: Arc<ActorProbe>,
    agents: RoutingTable<Mailbox<Agent>>,
}

impl NetworkManager {
    /// Starts the manager and returns the router context that names it.
    pub fn start_with(
        make_ctx: impl FnOnce(Mailbox<NetworkManager>) -> Arc<RouterContext>,
        probe: Arc<ActorProbe>,
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
            }
        });
        // `create` runs its closure before returning.
        let rctx = out.lock().ok().and_then(|mut o| o.take());
        rctx.expect("router context is made by NetworkManager::create")
    }

    fn agent(&mut self, agent_id: &str) -> Mailbox<Agent> {
        let rctx = &self.rctx;
        let (agent, created) = self.agents.locate_or_insert(agent_id, || {
            let probe = rctx.metrics.probe("Agent", agent_id);
            let addr = Agent::new(agent_id, Arc::clone(rctx), Arc::clone(&probe)).start();
            Mailbox::new(addr, probe)
        });
        if created {
            log::debug!("agent {agent_id}: created");
        }
        agent
    }
}

impl Actor for NetworkManager {
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

impl Handler<BindAgent> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: BindAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("BindAgent");
        let agent = self.agent(&msg.agent_id);
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
                msg.session.do_send(Deliver::to_agent(msg.packet));
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
}

impl Handler<RouteToAgent> for NetworkManager {
    type Result = ();
    fn handle(&mut self, msg: RouteToAgent, _: &mut Context<Self>) {
        let _h = self.probe.handling("RouteToAgent");
        let agent_id = msg.packet.subject_id.clone();
        let agent = self.agent(&agent_id);
        // Forward first, then tell the sender: anything it sends straight
        // to the agent afterwards lands behind this packet.
        agent.do_send(ToClient(msg.packet));
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
    fn handle(&mut self, msg: RequestStatuses, _: &mut Context<Self>) {
        let _h = self.probe.handling("RequestStatuses");
        let now_ms = crate::now_ms();
        self.rctx.set_last_mephisto_ping_ms(now_ms);
        let asks: Vec<_> = self
            .agents
            .iter()
            .map(|(id, a)| {
                let id = id.clone();
                let req = a.send(CheckLiveness { now_ms });
                async move { (id, req.await.ok()) }
            })
            .collect();
        let request = msg.0;
        let backend = self.rctx.backend.clone();
        // Answer off the manager's own turn: it keeps serving while the
        // agents reply.
        actix::spawn(async move {
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
                request
                    .get("server_timestamp")
                    .cloned()
                    .unwrap_or(Value::Null),
            )
            .with(
                "router_incoming_timestamp",
                request
                    .get("router_incoming_timestamp")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            backend.do_send(ToBackend(reply));
        });
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
