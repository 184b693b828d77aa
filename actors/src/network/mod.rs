//! `NetworkManager`: the mesh network (seed 003's network manager).
//!
//! Owns the node cache (bounded per source), the history log's writer
//! thread (writes never run on this actor's turn), the list of event
//! subscribers, the robots' status and the gateways' nodes (PROTOCOL 2,
//! 5). It owns the serial link's channel: `UartManager` tells it the link
//! going up and down and hands it every frame from the root, as
//! `ChannelNotice`s, and it publishes what
//! happened as `SwitchEvent`s to its subscribers (`Monitor`,
//! `SocketManager`, `Uplink`); other actors publish through it too
//! (`Publish`: agents' statuses, the backend's presence, client logs).
//! Commands for the root (`MeshCommand`) pass through here so an unknown
//! node is refused before the radio is bothered. Gateways' events arrive
//! checked from `GatewayServer` (`GatewayMessage`) and are stamped with
//! this switch's clock.
//!
//! Agents are not its business: where they live is `AgentDirectory`'s.

pub mod events;
pub mod history;
pub mod mesh;
pub mod node_cache;

use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;

use crate::channel::ChannelNotice;
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::uart::{CommandError, LinkInfo, RootReply, SendCommand, UartManager};
use crate::wire::mesh::{Command, NodeAddr, RootMessage};
use events::SwitchEvent;
use history::HistoryWriter;
use mesh::MeshState;
use node_cache::{NodeKey, NodeView, Sample};

/// How often node statuses are checked against the node timeout.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

pub struct NetworkManager {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    mesh: MeshState,
    history: Option<HistoryWriter>,
    uart: Option<Mailbox<UartManager>>,
    subscribers: Vec<Recipient<SwitchEvent>>,
    started: std::time::Instant,
    /// The robots' status, as the last `W-RBT` gave it.
    robots: Value,
}

/// What the manager starts with.
pub struct NetworkSetup {
    pub mesh: MeshState,
    /// The history log's writer thread (the log is already read back
    /// into `mesh`).
    pub history: Option<HistoryWriter>,
}

impl NetworkManager {
    pub fn start_link(
        metrics: Arc<Metrics>,
        probe: Arc<ActorProbe>,
        setup: NetworkSetup,
    ) -> Mailbox<NetworkManager> {
        let manager = NetworkManager {
            metrics,
            probe: Arc::clone(&probe),
            mesh: setup.mesh,
            history: setup.history,
            uart: None,
            subscribers: Vec::new(),
            started: std::time::Instant::now(),
            robots: Value::Array(Vec::new()),
        };
        Mailbox::new(manager.start(), probe)
    }

    /// A frame from a root (ours, or a gateway's): cache, history, events.
    fn apply_root(&mut self, gateway: Option<&str>, message: RootMessage, now: f64) {
        let outcome = self
            .mesh
            .on_root_message(gateway, message, now, &self.metrics);
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
        self.metrics
            .events_published
            .with_label_values(&[event.name()])
            .inc();
        self.subscribers.retain(|s| s.connected());
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
    }

    /// The serial link went up or down.
    fn link_changed(&mut self, up: bool) {
        self.mesh.link_up = up;
        self.publish(SwitchEvent::Link {
            ts: crate::clock::now_secs(),
            link: "mesh".into(),
            state: if up { "up" } else { "down" }.into(),
        });
    }

    fn node_gauges(&self) {
        let m = &self.metrics;
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

/// What the serial link tells its owner (PROTOCOL 2): the link going up
/// and down, and every frame from the root.
impl Handler<ChannelNotice> for NetworkManager {
    type Result = ();
    fn handle(&mut self, notice: ChannelNotice, _: &mut Context<Self>) {
        let _h = self.probe.handling("ChannelNotice");
        match notice {
            ChannelNotice::Opened | ChannelNotice::Reconnected => self.link_changed(true),
            ChannelNotice::Lost { .. } => self.link_changed(false),
            // Only past a retry budget, which the switch's link does not
            // set; the link was reported down before.
            ChannelNotice::CatastrophicDisconnect { .. } => {}
            // A frame `UartManager` could not read it has counted and
            // logged already.
            // Results of tracked sends go to listeners (PROTOCOL 3), in the
            // order the root reported them: before the node's reply that
            // follows its `[R]`.
            ChannelNotice::Answered {
                command,
                dst: Some(dst),
                outcome,
            } if command == "SENDI" => {
                self.publish(SwitchEvent::CommandResult {
                    ts: crate::clock::now_secs(),
                    key: NodeKey::local(dst),
                    command,
                    outcome,
                });
            }
            ChannelNotice::Answered { .. } => {}
            ChannelNotice::Inbound(content) => {
                if let Ok(message) = RootMessage::parse(&content) {
                    self.apply_root(None, message, crate::clock::now_secs());
                }
            }
        }
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
    type Result = ResponseActFuture<Self, Result<RootReply, CommandError>>;
    fn handle(&mut self, msg: MeshCommand, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("MeshCommand");
        let refused = |e: CommandError| Box::pin(actix::fut::ready(Err(e)));
        let Some(uart) = self.uart.clone() else {
            return refused(CommandError::NoMesh);
        };
        if let Some(n) = msg.node {
            if !self.mesh.cache.contains(&NodeKey::local(n)) {
                return refused(CommandError::UnknownNode(n));
            }
        }
        if !self.mesh.link_up {
            return refused(CommandError::LinkDown);
        }
        // The root's result of a tracked send reaches listeners with the
        // frame that carried it (`ChannelNotice::Answered`), not here: here
        // it could overtake the frames that followed it.
        let req = uart.send(SendCommand(msg.command));
        Box::pin(async move { req.await.unwrap_or(Err(CommandError::LinkDown)) }.into_actor(self))
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
