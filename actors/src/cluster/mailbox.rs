//! An agent's mailbox in the cluster (`CLUSTER.md` section 2,
//! "Agent-bound"): reading it back, and the ownership record that says
//! which switch holds the agent's socket.

use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use serde::{Deserialize, Serialize};

use super::link::MAILBOX_LIMIT;
use super::names::Names;
use crate::wire::Packet;

/// Largest stored packet read back (larger is no packet of ours: the
/// switches store what their own sockets took, within the frame limit).
const MAX_STORED_BYTES: usize = 16 * 1024 * 1024;

/// A packet as a switch stored it, read back. Peers on NATS are switches
/// of the same cluster, but what is read is checked all the same.
pub fn stored_packet(payload: &[u8]) -> Option<Packet> {
    if payload.len() > MAX_STORED_BYTES {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    Packet::parse(text, crate::clock::now_secs()).ok()
}

/// Who holds an agent, in the agents bucket (key: the agent's token).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Owner {
    pub owner: String,
    pub since: f64,
    /// The agent's status (PROTOCOL 1.3), kept by its owner: what a switch
    /// adopting the agent starts from.
    #[serde(default)]
    pub status: String,
    /// The agent's last heartbeat, ms since the epoch.
    #[serde(default)]
    pub last_ping_ms: i64,
}

/// Largest ownership record read.
pub const MAX_RECORD_BYTES: usize = 1024;

impl Owner {
    pub fn parse(bytes: &[u8]) -> Option<Owner> {
        super::parse_bounded(bytes, MAX_RECORD_BYTES)
    }
}

/// Every packet stored for `agent_id` from sequence `from` on, in order
/// (at most a full mailbox). Stops at the first error other than "no
/// more" (a lost connection): what was not read is read at the next gap.
/// Returns the packets and how many stored messages were not packets.
pub async fn read_from(
    stream: &Stream,
    names: &Names,
    agent_id: &str,
    from: u64,
) -> (Vec<(u64, Packet)>, usize) {
    let subject = names.mailbox(agent_id);
    let mut out = Vec::new();
    let mut bad = 0;
    let mut next = from.max(1);
    while out.len() + bad < MAILBOX_LIMIT as usize {
        match stream
            .direct_get_next_for_subject(subject.clone(), Some(next))
            .await
        {
            Ok(m) => {
                next = m.sequence + 1;
                match stored_packet(&m.payload) {
                    Some(p) => out.push((m.sequence, p)),
                    None => bad += 1,
                }
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
            Err(e) => {
                log::warn!("cluster: reading the mailbox of {agent_id}: {e}");
                break;
            }
        }
    }
    (out, bad)
}

/// The stream sequence of a live copy (RePublish's `Nats-Sequence`) and
/// the previous sequence of its subject (`Nats-Last-Sequence`).
pub fn live_sequences(headers: Option<&async_nats::HeaderMap>) -> Option<(u64, u64)> {
    let h = headers?;
    let seq = h.get("Nats-Sequence")?.as_str().parse().ok()?;
    let last = h
        .get("Nats-Last-Sequence")
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0);
    Some((seq, last))
}
