//! `SwitchEvent`: what `NetworkManager` tells its subscribers (the monitor,
//! listening client connections, the uplink). Cheap to clone: the payloads
//! are shared.

use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;

use super::node_cache::{NodeKey, NodeStatus};

/// One decoded entry of a data update.
#[derive(Debug, Clone, PartialEq)]
pub struct DataItem {
    pub data_type: String,
    pub raw: Vec<u8>,
    pub value: Value,
}

/// A `[D]` frame from a node: its entries (the valid ones) and the frame's
/// payload as it arrived (pushed as is to TCP listeners, PROTOCOL 3).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeData {
    pub ts: f64,
    pub key: NodeKey,
    pub items: Vec<DataItem>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SwitchEvent {
    NodeData(Arc<NodeData>),
    NodeMessage {
        ts: f64,
        key: NodeKey,
        message: Arc<Vec<u8>>,
    },
    NodeStatus {
        ts: f64,
        key: NodeKey,
        status: NodeStatus,
    },
    /// A link's state: `mesh` (the UART), or an uplink/gateway.
    Link {
        ts: f64,
        link: String,
        state: String,
    },
    /// The root's result for a tracked send (SENDI).
    CommandResult {
        ts: f64,
        key: NodeKey,
        command: &'static str,
        outcome: Result<(), String>,
    },
    AgentStatus {
        ts: f64,
        agent_id: String,
        status: String,
    },
    Backend {
        ts: f64,
        connected: bool,
    },
    Log {
        ts: f64,
        text: String,
    },
    Robots {
        ts: f64,
        robots: Value,
    },
}

impl SwitchEvent {
    /// The event's name as the monitor shows it (PROTOCOL 4).
    pub fn name(&self) -> &'static str {
        match self {
            SwitchEvent::NodeData(_) => "node_data",
            SwitchEvent::NodeMessage { .. } => "node_message",
            SwitchEvent::NodeStatus { .. } => "node_status",
            SwitchEvent::Link { .. } => "link",
            SwitchEvent::CommandResult { .. } => "command_result",
            SwitchEvent::AgentStatus { .. } => "agent_status",
            SwitchEvent::Backend { .. } => "backend",
            SwitchEvent::Log { .. } => "log",
            SwitchEvent::Robots { .. } => "robots",
        }
    }
}
