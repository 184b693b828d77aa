//! The uplink's frames (PROTOCOL 5): one bincode-encoded `Envelope` per
//! binary WebSocket frame, version byte first.
//!
//! Edge -> central: `Hello`, then `Event`s numbered by a per-gateway
//! sequence (node data, node messages, node status, link state) and
//! `CommandResult`s. Central -> edge: `Ack` (every event up to `seq` is
//! applied) and `Command`s for the gateway's nodes.

use serde::{Deserialize, Serialize};

use super::mesh::NodeAddr;

pub const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UplinkEvent {
    NodeData {
        node: NodeAddr,
        entries: Vec<(String, Vec<u8>)>,
    },
    NodeMessage {
        node: NodeAddr,
        message: Vec<u8>,
    },
    NodeStatus {
        node: NodeAddr,
        active: bool,
    },
    Link {
        up: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RemoteCommand {
    Send { message: Vec<u8> },
    SendTracked { message: Vec<u8> },
    Broadcast { message: Vec<u8> },
    Restart,
    Clean,
    NetInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Envelope {
    /// `epoch` is new each time the edge starts (its numbering starts
    /// again); `resume` is the oldest number the edge still holds, so a
    /// central switch that does not know this gateway yet (or restarted)
    /// knows where the sequence stands.
    Hello {
        gateway: String,
        epoch: u64,
        resume: u64,
    },
    Event {
        seq: u64,
        ts: f64,
        event: UplinkEvent,
    },
    Ack {
        seq: u64,
    },
    Command {
        id: u64,
        node: NodeAddr,
        command: RemoteCommand,
    },
    CommandResult {
        id: u64,
        outcome: Result<Vec<NodeAddr>, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkError {
    #[error("empty frame")]
    Empty,
    #[error("envelope version {0}, this switch speaks {VERSION}")]
    WrongVersion(u8),
    #[error("undecodable envelope: {0}")]
    Garbage(String),
}

impl UplinkError {
    pub fn kind(&self) -> &'static str {
        match self {
            UplinkError::Empty => "empty",
            UplinkError::WrongVersion(_) => "wrong_version",
            UplinkError::Garbage(_) => "garbage",
        }
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Encoding owned plain data into a Vec cannot fail.
        if let Ok(body) = bincode::serde::encode_to_vec(self, config()) {
            out.extend_from_slice(&body);
        }
        out
    }

    pub fn decode(frame: &[u8]) -> Result<Envelope, UplinkError> {
        let (&version, body) = frame.split_first().ok_or(UplinkError::Empty)?;
        if version != VERSION {
            return Err(UplinkError::WrongVersion(version));
        }
        let (env, used) = bincode::serde::decode_from_slice::<Envelope, _>(body, config())
            .map_err(|e| UplinkError::Garbage(e.to_string()))?;
        if used != body.len() {
            return Err(UplinkError::Garbage(format!(
                "{} trailing bytes",
                body.len() - used
            )));
        }
        Ok(env)
    }
}

/// The central side's rule for a gateway's numbered events: apply exactly
/// the next one; an older one is a replay (duplicate), a later one means an
/// earlier one is missing and will come again in the gateway's replay.
#[derive(Debug, Default, Clone)]
pub struct SeqGate {
    applied: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    Apply,
    Duplicate,
    Gap,
}

impl SeqGate {
    /// A gate whose next event is `next`.
    pub fn resuming_at(next: u64) -> SeqGate {
        SeqGate {
            applied: next.saturating_sub(1),
        }
    }

    /// The edge no longer holds anything before `next` (its buffer
    /// overflowed): move on rather than wait for it. Returns how many
    /// numbers were skipped.
    pub fn skip_to(&mut self, next: u64) -> u64 {
        let before = self.applied;
        self.applied = self.applied.max(next.saturating_sub(1));
        self.applied - before
    }

    pub fn check(&mut self, seq: u64) -> SeqVerdict {
        if seq == self.applied + 1 {
            self.applied = seq;
            SeqVerdict::Apply
        } else if seq <= self.applied {
            SeqVerdict::Duplicate
        } else {
            SeqVerdict::Gap
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_the_version_first() {
        let all = vec![
            Envelope::Hello {
                gateway: "edge-1".into(),
                epoch: 42,
                resume: 1,
            },
            Envelope::Event {
                seq: 7,
                ts: 1.5,
                event: UplinkEvent::NodeData {
                    node: 3,
                    entries: vec![("TMP".into(), vec![1, 2])],
                },
            },
            Envelope::Event {
                seq: 8,
                ts: 2.0,
                event: UplinkEvent::Link { up: false },
            },
            Envelope::Ack { seq: 8 },
            Envelope::Command {
                id: 1,
                node: 2,
                command: RemoteCommand::Send {
                    message: b"hi".to_vec(),
                },
            },
            Envelope::CommandResult {
                id: 1,
                outcome: Err("mesh link down".into()),
            },
        ];
        for e in all {
            let bytes = e.encode();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(Envelope::decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn bad_frames_are_typed() {
        assert_eq!(Envelope::decode(&[]), Err(UplinkError::Empty));
        assert_eq!(Envelope::decode(&[9, 0]), Err(UplinkError::WrongVersion(9)));
        assert!(matches!(
            Envelope::decode(&[VERSION, 200, 1, 2]),
            Err(UplinkError::Garbage(_))
        ));
        let mut ok = Envelope::Ack { seq: 1 }.encode();
        ok.push(0);
        assert!(matches!(
            Envelope::decode(&ok),
            Err(UplinkError::Garbage(_))
        ));
    }

    #[test]
    fn the_seq_gate_applies_in_order_once() {
        let mut g = SeqGate::default();
        assert_eq!(g.check(1), SeqVerdict::Apply);
        assert_eq!(g.check(3), SeqVerdict::Gap);
        assert_eq!(g.check(2), SeqVerdict::Apply);
        assert_eq!(g.check(3), SeqVerdict::Apply);
        assert_eq!(g.check(2), SeqVerdict::Duplicate);
        assert_eq!(g.applied(), 3);
        let mut r = SeqGate::resuming_at(10);
        assert_eq!(r.check(9), SeqVerdict::Duplicate);
        assert_eq!(r.check(10), SeqVerdict::Apply);
        assert_eq!(r.skip_to(15), 4);
        assert_eq!(r.check(15), SeqVerdict::Apply);
        assert_eq!(r.skip_to(3), 0);
    }
}
