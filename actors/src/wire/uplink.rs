//! The uplink's frames (PROTOCOL 5): one bincode-encoded `Envelope` per
//! binary WebSocket frame, version byte first.
//!
//! Edge -> central: `Hello`, then `Event`s numbered by a per-gateway
//! sequence (node data, node messages, node status, link state) and
//! `CommandResult`s. Central -> edge: `Ack` (every event up to `seq` is
//! applied) and `Command`s for the gateway's nodes.

use serde::{Deserialize, Serialize};

use super::mesh::{DataEntry, MeshError, NodeAddr, RootMessage};

pub const VERSION: u8 = 1;

/// Default largest uplink frame (PROTOCOL 1.5, 5): an envelope carries at
/// most one mesh frame's worth of data (1 KiB), so 1 MiB is generous.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Longest gateway name.
pub const MAX_GATEWAY_NAME: usize = 64;

/// Whether `name` may name a gateway: 1 to 64 of `A-Z a-z 0-9 . _ -`.
/// The name is a metric label, a history field and part of an URL path,
/// so it is kept short and plain.
pub fn is_valid_gateway_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GATEWAY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

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
    /// The frame, or what its length fields claim, is over the byte limit.
    #[error("envelope over the limit of {0} bytes")]
    TooLarge(usize),
}

impl UplinkError {
    pub fn kind(&self) -> &'static str {
        match self {
            UplinkError::Empty => "empty",
            UplinkError::WrongVersion(_) => "wrong_version",
            UplinkError::Garbage(_) => "garbage",
            UplinkError::TooLarge(_) => "too_large",
        }
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decodes `body` with bincode's byte limit `N`: every length a peer
/// claims is checked against what is left of `N` before anything is
/// allocated (a string "of 2^50 bytes" fails here instead of aborting the
/// process on the allocation).
fn decode_within<const N: usize>(body: &[u8]) -> Result<(Envelope, usize), UplinkError> {
    let cfg = bincode::config::standard().with_limit::<N>();
    bincode::serde::decode_from_slice::<Envelope, _>(body, cfg).map_err(|e| match e {
        bincode::error::DecodeError::LimitExceeded => UplinkError::TooLarge(N),
        e => UplinkError::Garbage(e.to_string()),
    })
}

/// Decodes with the largest of bincode's compile-time limits that is not
/// above `limit` (the limit is a type parameter in bincode 2).
fn decode_limited_body(body: &[u8], limit: usize) -> Result<(Envelope, usize), UplinkError> {
    const KIB: usize = 1024;
    if limit >= 16 * KIB * KIB {
        decode_within::<{ 16 * KIB * KIB }>(body)
    } else if limit >= 4 * KIB * KIB {
        decode_within::<{ 4 * KIB * KIB }>(body)
    } else if limit >= KIB * KIB {
        decode_within::<{ KIB * KIB }>(body)
    } else if limit >= 256 * KIB {
        decode_within::<{ 256 * KIB }>(body)
    } else if limit >= 64 * KIB {
        decode_within::<{ 64 * KIB }>(body)
    } else if limit >= 16 * KIB {
        decode_within::<{ 16 * KIB }>(body)
    } else {
        decode_within::<{ 4 * KIB }>(body)
    }
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

    /// Decodes with the default frame limit.
    pub fn decode(frame: &[u8]) -> Result<Envelope, UplinkError> {
        Envelope::decode_limited(frame, DEFAULT_MAX_FRAME_BYTES)
    }

    /// Decodes one frame of at most `limit` bytes; what its length fields
    /// claim is held to the limit too (bincode's own byte limit, never
    /// above `limit`), so decoding allocates at most about `limit` bytes.
    pub fn decode_limited(frame: &[u8], limit: usize) -> Result<Envelope, UplinkError> {
        if frame.len() > limit {
            return Err(UplinkError::TooLarge(limit));
        }
        let (&version, body) = frame.split_first().ok_or(UplinkError::Empty)?;
        if version != VERSION {
            return Err(UplinkError::WrongVersion(version));
        }
        let (env, used) = decode_limited_body(body, limit)?;
        if used != body.len() {
            return Err(UplinkError::Garbage(format!(
                "{} trailing bytes",
                body.len() - used
            )));
        }
        Ok(env)
    }
}

impl UplinkEvent {
    /// The event as the mesh frame a root would have sent, checked exactly
    /// as a frame from the serial port is (PROTOCOL 2.2, 5): encoded as
    /// frame content (refusing what does not fit: more than 255 entries, a
    /// data type that is not 3 printable ASCII characters, data or a
    /// message over 255 bytes), held to the mesh frame limit
    /// `max_frame_bytes`, and parsed back by the serial link's own parser.
    /// Lengths per declared data type are then checked by the same code as
    /// serial data (`MeshState`). `None` for events that carry no frame.
    pub fn to_root_message(
        &self,
        max_frame_bytes: usize,
    ) -> Option<Result<RootMessage, MeshError>> {
        let m = match self {
            UplinkEvent::NodeData { node, entries } => RootMessage::Data {
                node: *node,
                entries: entries
                    .iter()
                    .map(|(t, raw)| DataEntry::new(t.clone(), raw.clone()))
                    .collect(),
            },
            UplinkEvent::NodeMessage { node, message } => RootMessage::Message {
                node: *node,
                text: message.clone(),
            },
            UplinkEvent::NodeStatus { .. } | UplinkEvent::Link { .. } => return None,
        };
        Some(m.try_encode().and_then(|content| {
            if content.len() > max_frame_bytes {
                return Err(MeshError::FrameTooLong(content.len()));
            }
            RootMessage::parse(&content)
        }))
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

    // PROTOCOL 1.5, 5: a string length of 2^50 in a 13-byte frame is refused
    // by the byte limit before anything is allocated.
    #[test]
    fn claimed_lengths_over_the_limit_are_refused_before_allocating() {
        let frame = [VERSION, 0, 0xFD, 0, 0, 0, 0, 0, 0, 4, 0, b'a', b'b'];
        assert_eq!(frame.len(), 13);
        assert!(matches!(
            Envelope::decode(&frame),
            Err(UplinkError::TooLarge(_))
        ));
        // A byte string claiming 2^40 entries, the limit at its smallest.
        let frame = [VERSION, 4, 1, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(Envelope::decode_limited(&frame, 100).is_err());
        let big = Envelope::Event {
            seq: 1,
            ts: 0.0,
            event: UplinkEvent::NodeMessage {
                node: 1,
                message: vec![0; 5000],
            },
        }
        .encode();
        assert_eq!(
            Envelope::decode_limited(&big, 4096),
            Err(UplinkError::TooLarge(4096))
        );
        assert!(Envelope::decode_limited(&big, 64 * 1024).is_ok());
    }

    /// A short frame whose first field, a `hello`'s gateway name, claims
    /// `len` bytes (bincode's varint: 0xFC and a u32) and carries none:
    /// bincode holds a string's claimed length to its limit before reading.
    fn frame_claiming(len: u32) -> Vec<u8> {
        let mut frame = vec![VERSION, 0, 0xFC];
        frame.extend_from_slice(&len.to_le_bytes());
        frame
    }

    // PROTOCOL 5 and 1.5: what a gateway's frame claims is held to the
    // largest of bincode's fixed limits not above the configured one, so
    // each step holds: a claim just inside a step passes the limit (and
    // then finds the frame cut short) and is refused as too large one byte
    // below the step, where the next step down applies.
    #[test]
    fn each_step_of_the_decoding_limit_holds() {
        const KIB: usize = 1024;
        // The documented default of `--gateway-max-frame-bytes` (README).
        assert_eq!(DEFAULT_MAX_FRAME_BYTES, 1_048_576);
        let steps = [
            16 * KIB,
            64 * KIB,
            256 * KIB,
            KIB * KIB,
            4 * KIB * KIB,
            16 * KIB * KIB,
        ];
        for step in steps {
            let frame = frame_claiming(step as u32 - 64);
            assert!(
                matches!(
                    Envelope::decode_limited(&frame, step),
                    Err(UplinkError::Garbage(_))
                ),
                "{step}"
            );
            assert!(
                matches!(
                    Envelope::decode_limited(&frame, step - 1),
                    Err(UplinkError::TooLarge(_))
                ),
                "{step}"
            );
        }
        let small = frame_claiming(4 * KIB as u32 - 64);
        assert!(matches!(
            Envelope::decode_limited(&small, 4 * KIB),
            Err(UplinkError::Garbage(_))
        ));
        // A whole frame of exactly the limit is within it.
        let hello = Envelope::Hello {
            gateway: "g".into(),
            epoch: 1,
            resume: 0,
        }
        .encode();
        assert!(Envelope::decode_limited(&hello, hello.len()).is_ok());
        assert_eq!(
            Envelope::decode_limited(&hello, hello.len() - 1),
            Err(UplinkError::TooLarge(hello.len() - 1))
        );
        // Far above the top step, the top step holds.
        let top = frame_claiming(16 * KIB as u32 * KIB as u32 - 64);
        assert!(matches!(
            Envelope::decode_limited(&top, usize::MAX),
            Err(UplinkError::Garbage(_))
        ));
        let over = frame_claiming(16 * KIB as u32 * KIB as u32 + 64);
        assert!(matches!(
            Envelope::decode_limited(&over, usize::MAX),
            Err(UplinkError::TooLarge(_))
        ));
    }

    #[test]
    fn gateway_names_are_short_and_plain() {
        assert!(is_valid_gateway_name("edge-1.site_a"));
        assert!(!is_valid_gateway_name(""));
        assert!(!is_valid_gateway_name("a/b"));
        assert!(!is_valid_gateway_name("caf\u{e9}"));
        assert!(!is_valid_gateway_name(&"x".repeat(65)));
        assert!(is_valid_gateway_name(&"x".repeat(64)));
    }

    // PROTOCOL 2.2, 5: gateway events pass the serial link's own checks.
    #[test]
    fn gateway_events_are_checked_as_serial_frames() {
        let ok = UplinkEvent::NodeData {
            node: 1,
            entries: vec![("TMP".into(), vec![1, 2])],
        };
        assert!(matches!(
            ok.to_root_message(1024),
            Some(Ok(RootMessage::Data { node: 1, .. }))
        ));
        let bad_type = UplinkEvent::NodeData {
            node: 1,
            entries: vec![("TOOLONG".into(), vec![1])],
        };
        assert_eq!(
            bad_type.to_root_message(1024),
            Some(Err(MeshError::BadDataType))
        );
        let long = UplinkEvent::NodeMessage {
            node: 1,
            message: vec![b'x'; 256],
        };
        assert_eq!(
            long.to_root_message(1024),
            Some(Err(MeshError::MessageTooLong(256)))
        );
        let many = UplinkEvent::NodeData {
            node: 1,
            entries: (0..200).map(|_| ("RAW".to_string(), vec![0; 10])).collect(),
        };
        assert_eq!(
            many.to_root_message(1024),
            Some(Err(MeshError::FrameTooLong(2 + 3 + 1 + 200 * 14)))
        );
        // A frame of exactly the link's limit is within it (PROTOCOL 2.1).
        let len = 2 + 3 + 1 + 200 * 14;
        assert!(matches!(many.to_root_message(len), Some(Ok(_))));
        assert_eq!(
            many.to_root_message(len - 1),
            Some(Err(MeshError::FrameTooLong(len)))
        );
        assert_eq!(UplinkEvent::Link { up: true }.to_root_message(1024), None);
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

    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = UplinkEvent> {
        prop_oneof![
            (
                any::<u16>(),
                proptest::collection::vec(
                    ("[A-Z]{3}", proptest::collection::vec(any::<u8>(), 0..8)),
                    0..4
                )
            )
                .prop_map(|(node, entries)| UplinkEvent::NodeData { node, entries }),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(node, message)| UplinkEvent::NodeMessage { node, message }),
            (any::<u16>(), any::<bool>())
                .prop_map(|(node, active)| UplinkEvent::NodeStatus { node, active }),
            any::<bool>().prop_map(|up| UplinkEvent::Link { up }),
        ]
    }

    proptest! {
        // Any bytes, any limit: a typed error or an envelope, never a panic.
        #[test]
        fn arbitrary_frames_decode_or_fail_cleanly(
            body in proptest::collection::vec(any::<u8>(), 0..64),
            limit in 1usize..20_000,
        ) {
            let mut frame = vec![VERSION];
            frame.extend_from_slice(&body);
            let _ = Envelope::decode_limited(&frame, limit);
            let _ = Envelope::decode(&body);
        }

        #[test]
        fn events_round_trip(seq in any::<u64>(), ts in -1e12f64..1e12, event in event()) {
            let e = Envelope::Event { seq, ts, event };
            prop_assert_eq!(Envelope::decode(&e.encode()), Ok(e));
        }

        // Whatever an event holds, the serial link's checks either give the
        // frame it stands for or a typed error.
        #[test]
        fn event_checks_are_total(event in event()) {
            if let Some(Ok(m)) = event.to_root_message(1024) {
                prop_assert_eq!(RootMessage::parse(&m.encode()), Ok(m));
            }
        }
    }
}
