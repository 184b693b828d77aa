//! Text to a node, or to every node, from any front end (the HTTP API, the
//! MQTT bridge): one path, so both refuse the same things the same way.
//! A node of this switch's mesh is checked by the `NetworkManager` itself;
//! a node behind a gateway must be known here before its gateway's link is
//! bothered. A module of its own rather than part of `network`: it needs
//! the gateways (`uplink`), which need `network`.

use std::future::Future;

use crate::mailbox::Mailbox;
use crate::network::node_cache::NodeKey;
use crate::network::{GetNode, MeshCommand, NetworkManager};
use crate::uart::{CommandError, RootReply};
use crate::uplink::{GatewayCommand, GatewayServer};
use crate::wire::mesh::Command;
use crate::wire::uplink::RemoteCommand;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(NodeKey),
    /// Every node of this switch's mesh (None) or of one gateway's.
    Broadcast(Option<String>),
}

/// A message for the mesh: `SEND-`, `SENDI` (tracked: the root reports
/// delivery) or `BCAST` (never tracked; front ends refuse a tracked
/// broadcast before they get here).
#[derive(Debug, Clone)]
pub struct NodeSend {
    pub target: Target,
    pub message: Vec<u8>,
    pub tracked: bool,
}

impl NodeSend {
    /// The root command it becomes (PROTOCOL 2).
    pub fn name(&self) -> &'static str {
        match (&self.target, self.tracked) {
            (Target::Broadcast(_), _) => "BCAST",
            (Target::Node(_), true) => "SENDI",
            (Target::Node(_), false) => "SEND-",
        }
    }

    /// Sends it; the future borrows nothing, so an actor can spawn it. The
    /// mesh's or the gateways' actor gone means the switch is stopping: the
    /// link is down.
    pub fn run(
        self,
        network: &Mailbox<NetworkManager>,
        gateways: &Mailbox<GatewayServer>,
    ) -> impl Future<Output = Result<RootReply, CommandError>> + 'static {
        let NodeSend {
            target,
            message,
            tracked,
        } = self;
        let network = network.clone();
        let gateways = gateways.clone();
        async move {
            let sent = match target {
                Target::Node(NodeKey {
                    gateway: None,
                    addr,
                }) => {
                    let command = if tracked {
                        Command::SendTracked { dst: addr, message }
                    } else {
                        Command::Send { dst: addr, message }
                    };
                    let node = Some(addr);
                    network.send(MeshCommand { command, node }).await
                }
                Target::Broadcast(None) => {
                    let command = Command::Broadcast { message };
                    network
                        .send(MeshCommand {
                            command,
                            node: None,
                        })
                        .await
                }
                Target::Node(key) => {
                    if network
                        .send(GetNode(key.clone()))
                        .await
                        .ok()
                        .flatten()
                        .is_none()
                    {
                        return Err(CommandError::UnknownNode(key.addr));
                    }
                    let command = if tracked {
                        RemoteCommand::SendTracked { message }
                    } else {
                        RemoteCommand::Send { message }
                    };
                    gateways
                        .send(GatewayCommand {
                            gateway: key.gateway.unwrap_or_default(),
                            node: key.addr,
                            command,
                        })
                        .await
                }
                Target::Broadcast(Some(gateway)) => {
                    let command = RemoteCommand::Broadcast { message };
                    gateways
                        .send(GatewayCommand {
                            gateway,
                            node: 0,
                            command,
                        })
                        .await
                }
            };
            sent.unwrap_or(Err(CommandError::LinkDown))
        }
    }
}
