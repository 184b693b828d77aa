//! The router's state on disk (`DATA_DIR/state/router.json`): what a
//! graceful stop keeps for the next start (every agent's status, liveness
//! timestamps and queued packets; the backend outbox, in order).
//!
//! The file is an input like any other: the next start may find one from
//! another version, a damaged one, or one somebody wrote by hand. So
//! [`decode`] is pure (bytes in, a bounded [`Restored`] or a
//! [`SnapshotError`] out: no IO, no clock, no actix) and applies the same
//! bounds the live queues have: the file's size first, then agents, id
//! lengths, packets per queue and bytes per queue. A packet that does not
//! parse is skipped and counted; a file that does not parse as a whole is
//! set aside by the caller, never a reason to refuse to start.
//!
//! Packets are kept as their text (what was received, byte for byte, plus
//! the fields the switch set), so what is delivered after a restart is what
//! would have been delivered without one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RouterConfig;
use crate::outbox::Outbox;
use crate::wire::Packet;

/// What the file says it is; anything else is set aside.
pub const STATE_FORMAT: &str = "switchyard-router-state";
/// The layout of the file; a file of another version is set aside.
pub const STATE_VERSION: u32 = 1;
/// The file's name inside the state directory.
pub const STATE_FILE: &str = "router.json";

/// Where the router's state is kept across restarts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Write the router's state on a graceful stop and read it back at the
    /// next start.
    pub enabled: bool,
    /// Largest state file read at start; a larger one is set aside unread
    /// (a stop that writes more says so in the log).
    pub max_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            enabled: true,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One packet as stored: its text and, apart, the time it reached the
/// switch (`router_incoming_timestamp`), which a parse would restamp.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredPacket {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<f64>,
    pub text: String,
}

impl StoredPacket {
    /// The packet as it would be written out (the outgoing timestamp is
    /// set again when it really is).
    pub fn of(packet: &Packet, now_secs: f64) -> StoredPacket {
        let incoming = packet
            .get("router_incoming_timestamp")
            .and_then(|v| v.as_f64());
        let mut p = packet.clone();
        StoredPacket {
            incoming,
            text: p.to_text(now_secs),
        }
    }
}

/// One agent as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AgentRecord {
    pub agent_id: String,
    pub status: String,
    /// Milliseconds since the epoch of the last heartbeat; 0 for none.
    pub last_ping_ms: i64,
    /// Seconds since the epoch when its last socket went away.
    pub disconnect_time: Option<f64>,
    /// Undelivered packets, oldest first.
    pub queue: Vec<StoredPacket>,
}

/// The whole file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RouterSnapshot {
    pub format: String,
    pub version: u32,
    /// When it was written, milliseconds since the epoch.
    pub saved_at_ms: i64,
    pub agents: Vec<AgentRecord>,
    /// Packets for the backend, oldest first.
    pub outbox: Vec<StoredPacket>,
}

impl RouterSnapshot {
    pub fn new(saved_at_ms: i64, agents: Vec<AgentRecord>, outbox: Vec<StoredPacket>) -> Self {
        RouterSnapshot {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            saved_at_ms,
            agents,
            outbox,
        }
    }
}

/// The bounds a restored state must keep: the live ones.
#[derive(Clone, Debug)]
pub struct SnapshotLimits {
    pub max_bytes: usize,
    pub max_agents: usize,
    pub max_agent_id_bytes: usize,
    /// Longest status kept (a status is any string the backend sent).
    pub max_status_bytes: usize,
    pub queue_limit: usize,
    pub queue_bytes_limit: usize,
    pub outbox_limit: usize,
    pub outbox_bytes_limit: usize,
    pub max_packet_fields: usize,
}

impl SnapshotLimits {
    pub fn of(router: &RouterConfig, state: &StateConfig) -> Self {
        SnapshotLimits {
            max_bytes: state.max_bytes,
            max_agents: router.agent.max_agents,
            max_agent_id_bytes: router.session.max_agent_id_bytes,
            max_status_bytes: router.session.max_agent_id_bytes,
            queue_limit: router.agent.queue_limit,
            queue_bytes_limit: router.agent.queue_bytes_limit,
            outbox_limit: router.backend.outbox_limit,
            outbox_bytes_limit: router.backend.outbox_bytes_limit,
            max_packet_fields: router.session.max_packet_fields,
        }
    }
}

/// Why a state file as a whole is not used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnapshotError {
    #[error("{size} bytes, over the limit of {limit} ([state] max_bytes)")]
    TooLarge { size: u64, limit: usize },
    #[error("not a router state file: {0}")]
    Damaged(String),
    #[error("format {found:?}, expected {STATE_FORMAT:?}")]
    Format { found: String },
    #[error("version {found}, this switch reads version {STATE_VERSION}")]
    Version { found: u32 },
}

impl SnapshotError {
    /// The label of `switchyard_state_set_aside_total{reason}`.
    pub fn kind(&self) -> &'static str {
        match self {
            SnapshotError::TooLarge { .. } => "too_large",
            SnapshotError::Damaged(_) => "damaged",
            SnapshotError::Format { .. } => "format",
            SnapshotError::Version { .. } => "version",
        }
    }
}

/// One agent read back.
#[derive(Debug)]
pub struct RestoredAgent {
    pub agent_id: String,
    pub status: String,
    pub last_ping_ms: i64,
    pub disconnect_time: Option<f64>,
    pub queue: Vec<Packet>,
}

/// Items of a readable file that were not restored, by reason.
#[derive(Debug, Default, PartialEq)]
pub struct Skipped {
    /// Packets whose text does not parse (or has too many fields).
    pub bad_packets: usize,
    /// Agents past `max_agents`, repeated ids, ids or statuses too long.
    pub bad_agents: usize,
    /// Packets past a queue's item or byte bound (oldest first, as live).
    pub over_bounds: usize,
}

impl Skipped {
    pub fn any(&self) -> bool {
        *self != Skipped::default()
    }
}

/// A state file read back within bounds.
#[derive(Debug)]
pub struct Restored {
    pub saved_at_ms: i64,
    pub agents: Vec<RestoredAgent>,
    pub outbox: Vec<Packet>,
    pub skipped: Skipped,
}

impl Restored {
    pub fn agent_packets(&self) -> usize {
        self.agents.iter().map(|a| a.queue.len()).sum()
    }
}

/// The file's bytes.
pub fn encode(snapshot: &RouterSnapshot) -> Vec<u8> {
    // Strings, numbers and options only: serialising cannot fail.
    serde_json::to_vec(snapshot).unwrap_or_default()
}

/// Reads a state file's bytes back, within `limits`. Pure.
pub fn decode(bytes: &[u8], limits: &SnapshotLimits) -> Result<Restored, SnapshotError> {
    if bytes.len() > limits.max_bytes {
        return Err(SnapshotError::TooLarge {
            size: bytes.len() as u64,
            limit: limits.max_bytes,
        });
    }
    // Format and version first, from a view that ignores everything else:
    // a file of another version is recognised even if its layout differs.
    #[derive(Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    if head.format != STATE_FORMAT {
        return Err(SnapshotError::Format { found: head.format });
    }
    if head.version != STATE_VERSION {
        return Err(SnapshotError::Version {
            found: head.version,
        });
    }
    let snap: RouterSnapshot =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    let mut skipped = Skipped::default();
    let mut agents = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in snap.agents {
        if agents.len() >= limits.max_agents
            || record.agent_id.is_empty()
            || record.agent_id.len() > limits.max_agent_id_bytes
            || record.status.len() > limits.max_status_bytes
            || record.agent_id == crate::wire::MEPHISTO
            || !seen.insert(record.agent_id.clone())
        {
            skipped.bad_agents += 1;
            continue;
        }
        let queue = bounded(
            record.queue,
            limits.queue_limit,
            limits.queue_bytes_limit,
            limits.max_packet_fields,
            &mut skipped,
        );
        agents.push(RestoredAgent {
            agent_id: record.agent_id,
            status: record.status,
            last_ping_ms: record.last_ping_ms.max(0),
            disconnect_time: record.disconnect_time.filter(|t| t.is_finite()),
            queue,
        });
    }
    let outbox = bounded(
        snap.outbox,
        limits.outbox_limit,
        limits.outbox_bytes_limit,
        limits.max_packet_fields,
        &mut skipped,
    );
    Ok(Restored {
        saved_at_ms: snap.saved_at_ms,
        agents,
        outbox,
        skipped,
    })
}

/// The packets of one stored queue that parse, bounded as the live queue
/// is (past a bound the oldest go).
fn bounded(
    stored: Vec<StoredPacket>,
    limit: usize,
    bytes_limit: usize,
    max_fields: usize,
    skipped: &mut Skipped,
) -> Vec<Packet> {
    let mut queue = Outbox::with_bytes(limit, bytes_limit);
    for s in stored {
        let incoming = s.incoming.filter(|t| t.is_finite()).unwrap_or(0.0);
        match Packet::parse_limited(s.text.into(), incoming, max_fields) {
            Ok(p) => {
                let weight = p.weight();
                skipped.over_bounds += queue.push_weighed(p, weight).len();
            }
            Err(_) => skipped.bad_packets += 1,
        }
    }
    queue.take_all().into()
}

/// The state file in `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Writes `bytes` as the state file of `dir`, atomically: a temporary
/// file, synced, renamed over the old one, then the directory synced, so a
/// crash at any point leaves the old file or the new one, never half of one.
pub fn write_atomic(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = state_path(dir);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    // A temporary file left by a crash keeps its old mode if reused.
    let _ = std::fs::remove_file(&tmp);
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Queued packets are workers' task data: readable by the switch's
        // user only.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What the state directory held at start.
#[derive(Debug)]
pub enum Found {
    /// No state file.
    Nothing,
    /// The file's bytes, at most `max_bytes`.
    Bytes(Vec<u8>),
    /// Larger than `max_bytes`: not read.
    TooLarge(u64),
}

/// Reads the state file of `dir`, taking at most `max_bytes` of it.
pub fn read_bounded(dir: &Path, max_bytes: usize) -> std::io::Result<Found> {
    let path = state_path(dir);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len();
    if size > max_bytes as u64 {
        return Ok(Found::TooLarge(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow after the size was read: take one byte past the
    // limit at most, to see it.
    f.take(max_bytes as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max_bytes {
        return Ok(Found::TooLarge(bytes.len() as u64));
    }
    Ok(Found::Bytes(bytes))
}

/// Moves the state file of `dir` aside (renamed with a suffix naming why
/// and when), so it is kept for a look but never read again.
pub fn set_aside(dir: &Path, why: &str, now_ms: i64) -> std::io::Result<PathBuf> {
    let to = dir.join(format!("{STATE_FILE}.{why}-{now_ms}"));
    std::fs::rename(state_path(dir), &to)?;
    sync_dir(dir)?;
    Ok(to)
}

/// Removes the state file of `dir` once its content is back in the
/// actors: a second start must not replay it.
pub fn consume(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(state_path(dir)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PacketType;
    use serde_json::json;

    fn limits() -> SnapshotLimits {
        SnapshotLimits::of(&RouterConfig::default(), &StateConfig::default())
    }

    fn stored(n: i64) -> StoredPacket {
        let p = Packet::parse(
            &json!({"packet_type": "client_bound_live_update", "subject_id": "a",
                    "data": {"n": n}, "extra": [1.50]})
            .to_string(),
            1234.5,
        )
        .unwrap();
        StoredPacket::of(&p, 2000.0)
    }

    fn snapshot() -> RouterSnapshot {
        RouterSnapshot::new(
            99,
            vec![AgentRecord {
                agent_id: "a".into(),
                status: "in task".into(),
                last_ping_ms: 5,
                disconnect_time: Some(7.5),
                queue: (0..3).map(stored).collect(),
            }],
            vec![stored(10), stored(11)],
        )
    }

    fn n(p: &Packet) -> i64 {
        p.data().unwrap()["n"].as_i64().unwrap()
    }

    #[test]
    fn round_trip_keeps_agents_order_fields_and_incoming_time() {
        let r = decode(&encode(&snapshot()), &limits()).unwrap();
        assert_eq!(r.saved_at_ms, 99);
        assert!(!r.skipped.any());
        let a = &r.agents[0];
        assert_eq!((a.agent_id.as_str(), a.status.as_str()), ("a", "in task"));
        assert_eq!((a.last_ping_ms, a.disconnect_time), (5, Some(7.5)));
        assert_eq!(a.queue.iter().map(n).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(r.outbox.iter().map(n).collect::<Vec<_>>(), vec![10, 11]);
        let p = &r.outbox[0];
        assert_eq!(p.packet_type, PacketType::ClientBoundLiveUpdate);
        assert_eq!(p.get("extra"), Some(json!([1.5])));
        assert_eq!(p.get("router_incoming_timestamp"), Some(json!(1234.5)));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let good = encode(&snapshot());
        for bad in [
            &b""[..],
            b"\0\0\0",
            b"{",
            b"[]",
            b"{\"format\":\"switchyard-router-state\",\"version\":1}",
            &good[..good.len() / 2],
        ] {
            assert!(
                matches!(decode(bad, &limits()), Err(SnapshotError::Damaged(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Every prefix of a good file fails cleanly.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], &limits()).is_err());
        }
    }

    #[test]
    fn another_version_or_format_is_recognised() {
        let mut s = snapshot();
        s.version = 2;
        assert_eq!(
            decode(&encode(&s), &limits()).unwrap_err(),
            SnapshotError::Version { found: 2 }
        );
        let other = br#"{"format":"something-else","version":1,"x":[]}"#;
        assert!(matches!(
            decode(other, &limits()),
            Err(SnapshotError::Format { .. })
        ));
    }

    #[test]
    fn the_size_bound_comes_first() {
        let l = SnapshotLimits {
            max_bytes: 10,
            ..limits()
        };
        assert_eq!(decode(&[b' '; 11], &l).unwrap_err().kind(), "too_large");
    }

    #[test]
    fn bad_packets_and_bad_agents_are_skipped_and_counted() {
        let mut s = snapshot();
        s.agents[0].queue.insert(
            1,
            StoredPacket {
                incoming: None,
                text: "{not json".into(),
            },
        );
        s.agents[0].queue.push(StoredPacket {
            incoming: Some(f64::NAN),
            text: "[1,2]".into(),
        });
        let mut dup = s.agents[0].clone();
        dup.queue.clear();
        s.agents.push(dup);
        let mut long = s.agents[0].clone();
        long.agent_id = "x".repeat(1000);
        s.agents.push(long);
        let mut backend = s.agents[0].clone();
        backend.agent_id = "mephisto".into();
        s.agents.push(backend);
        let r = decode(&encode(&s), &limits()).unwrap();
        assert!(r.skipped.any());
        assert_eq!(r.agents.len(), 1);
        assert_eq!(
            r.agents[0].queue.iter().map(n).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(
            r.skipped,
            Skipped {
                bad_packets: 2,
                bad_agents: 3,
                over_bounds: 0
            }
        );
    }

    #[test]
    fn live_bounds_hold_for_agents_and_queues() {
        let mut s = snapshot();
        for i in 0..5 {
            let mut a = s.agents[0].clone();
            a.agent_id = format!("b{i}");
            s.agents.push(a);
        }
        s.outbox = (0..10).map(stored).collect();
        let l = SnapshotLimits {
            max_agents: 2,
            queue_limit: 2,
            outbox_limit: 4,
            ..limits()
        };
        let r = decode(&encode(&s), &l).unwrap();
        assert_eq!(r.agents.len(), 2);
        // The newest stay, as in a live queue.
        assert_eq!(
            r.agents[0].queue.iter().map(n).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(r.outbox.iter().map(n).collect::<Vec<_>>(), vec![6, 7, 8, 9]);
        assert_eq!(r.skipped.bad_agents, 4);
        assert_eq!(r.skipped.over_bounds, 2 + 6);
        let one = r.outbox[0].weight();
        let l = SnapshotLimits {
            outbox_bytes_limit: one * 2,
            ..limits()
        };
        assert_eq!(decode(&encode(&s), &l).unwrap().outbox.len(), 2);
    }

    /// PROTOCOL 1.5 "Bounds" on what is read back, and 1.3 (agent state
    /// survives a restart): an id and a status of exactly the live limits,
    /// in a file of exactly `max_bytes`, are restored; a status one byte
    /// over the limit drops its agent, counted.
    #[test]
    fn values_of_exactly_the_limits_are_restored_one_byte_more_is_not() {
        let defaults = limits();
        assert_eq!(
            (defaults.max_agent_id_bytes, defaults.max_status_bytes),
            (256, 256),
            "PROTOCOL's defaults"
        );
        let record = |status_bytes: usize| {
            let mut s = snapshot();
            s.agents[0].agent_id = "i".repeat(defaults.max_agent_id_bytes);
            s.agents[0].status = "s".repeat(status_bytes);
            encode(&s)
        };

        let bytes = record(defaults.max_status_bytes);
        let exact = SnapshotLimits {
            max_bytes: bytes.len(),
            ..limits()
        };
        let r = decode(&bytes, &exact).expect("a file of exactly max_bytes is read");
        assert!(!r.skipped.any(), "{:?}", r.skipped);
        assert_eq!(r.agents.len(), 1);
        assert_eq!(r.agents[0].agent_id.len(), defaults.max_agent_id_bytes);
        assert_eq!(r.agents[0].status.len(), defaults.max_status_bytes);
        assert_eq!(r.agent_packets(), 3);

        let r = decode(&record(defaults.max_status_bytes + 1), &limits()).unwrap();
        assert!(
            r.agents.is_empty(),
            "a status past the limit drops its agent"
        );
        assert_eq!(r.skipped.bad_agents, 1);
    }

    /// PROTOCOL 1.3 (agent state survives a restart, once): a state file
    /// that cannot be removed, or a state directory that cannot be read,
    /// is an error for the caller to count, never taken for "no state".
    #[test]
    fn a_state_file_that_cannot_be_removed_or_read_is_an_error() {
        let dir = std::env::temp_dir().join(format!("sy-snapshot-{}", uuid::Uuid::new_v4()));
        // The state file's place is taken by a directory: it cannot be
        // removed as a file (EISDIR).
        std::fs::create_dir_all(state_path(&dir)).unwrap();
        assert!(consume(&dir).is_err());
        assert!(state_path(&dir).is_dir(), "left for a look");
        // The state "directory" is a regular file: nothing under it can
        // be opened (ENOTDIR).
        let file = dir.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        assert!(read_bounded(&file, 100).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        // Any bytes decode or fail cleanly, and what decodes keeps the bounds.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let l = SnapshotLimits { max_agents: 2, queue_limit: 2, outbox_limit: 2, ..limits() };
            if let Ok(r) = decode(&bytes, &l) {
                proptest::prop_assert!(r.agents.len() <= 2 && r.outbox.len() <= 2);
            }
        }

        // A good file with one byte changed decodes or fails cleanly, and
        // never past the bounds.
        #[test]
        fn a_changed_byte_decodes_or_fails_cleanly(at in 0usize..10_000, b in proptest::prelude::any::<u8>()) {
            let mut bytes = encode(&snapshot());
            let at = at % bytes.len();
            bytes[at] = b;
            let l = SnapshotLimits { queue_limit: 2, ..limits() };
            if let Ok(r) = decode(&bytes, &l) {
                proptest::prop_assert!(r.agents.iter().all(|a| a.queue.len() <= 2));
                proptest::prop_assert!(r.agents.len() <= 1);
            }
        }
    }

    #[test]
    fn files_are_written_atomically_read_bounded_set_aside_and_consumed() {
        let dir = std::env::temp_dir().join(format!("sy-snapshot-{}", uuid::Uuid::new_v4()));
        assert!(matches!(read_bounded(&dir, 100), Ok(Found::Nothing)));
        let bytes = encode(&snapshot());
        write_atomic(&dir, &bytes).unwrap();
        assert!(!dir.join(format!("{STATE_FILE}.tmp")).exists());
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state_path(&dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        match read_bounded(&dir, bytes.len()).unwrap() {
            Found::Bytes(b) => assert_eq!(b, bytes),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_bounded(&dir, bytes.len() - 1),
            Ok(Found::TooLarge(_))
        ));
        let aside = set_aside(&dir, "damaged", 1).unwrap();
        assert!(aside.exists() && !state_path(&dir).exists());
        write_atomic(&dir, &bytes).unwrap();
        consume(&dir).unwrap();
        assert!(!state_path(&dir).exists());
        consume(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
