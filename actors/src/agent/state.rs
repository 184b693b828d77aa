//! `AgentState`: the decisions of PROTOCOL 1.3, without a runtime.
//!
//! The `Agent` actor owns one of these and performs what it decides
//! (sending, scheduling timers); every rule lives here and is unit-tested
//! with plain numbers for the clock.

use crate::outbox::Outbox;
use crate::wire::Packet;

pub const STATUS_NONE: &str = "none";
pub const STATUS_DISCONNECT: &str = "disconnect";
/// Statuses in which a silent agent is declared disconnected (1.3).
pub const LIVE_STATUSES: &[&str] = &["onboarding", "waiting", "in task"];

#[derive(Debug)]
pub struct AgentState {
    pub agent_id: String,
    pub status: String,
    pub is_alive: bool,
    /// Milliseconds since the epoch of the last heartbeat; 0 until the first.
    pub last_ping_ms: i64,
    /// Seconds since the epoch when the last socket went away.
    pub disconnect_time: Option<f64>,
    pub queue: Outbox<Packet>,
}

/// What happened to a packet handed to `enqueue`.
#[derive(Debug, PartialEq)]
pub enum Enqueued {
    Kept,
    /// The queue was full (in items or in bytes): its oldest packets had
    /// to go, oldest first.
    DroppedOldest(Vec<Packet>),
}

impl AgentState {
    pub fn new(agent_id: impl Into<String>, queue_limit: usize) -> Self {
        AgentState::bounded(agent_id, queue_limit, usize::MAX)
    }

    /// An agent whose queue holds at most `queue_limit` packets and
    /// `queue_bytes` bytes of them.
    pub fn bounded(agent_id: impl Into<String>, queue_limit: usize, queue_bytes: usize) -> Self {
        AgentState {
            agent_id: agent_id.into(),
            status: STATUS_NONE.to_string(),
            is_alive: false,
            last_ping_ms: 0,
            disconnect_time: None,
            queue: Outbox::with_bytes(queue_limit, queue_bytes),
        }
    }

    /// Records a status; returns the previous one if it changed.
    pub fn set_status(&mut self, status: &str) -> Option<String> {
        if self.status == status {
            return None;
        }
        Some(std::mem::replace(&mut self.status, status.to_string()))
    }

    pub fn on_bound(&mut self) {
        self.is_alive = true;
        self.disconnect_time = None;
    }

    pub fn on_heartbeat(&mut self, now_ms: i64) {
        self.on_bound();
        self.last_ping_ms = now_ms;
    }

    pub fn on_socket_closed(&mut self, now_secs: f64) {
        self.is_alive = false;
        self.disconnect_time = Some(now_secs);
    }

    /// The reconnect grace ran out: an agent still without a socket is
    /// disconnected. Returns the old status if it changed.
    pub fn on_grace_expired(&mut self) -> Option<String> {
        if self.is_alive {
            return None;
        }
        self.set_status(STATUS_DISCONNECT)
    }

    /// The ping-timeout rule, applied when the backend asks for statuses.
    /// Returns true if the agent was just declared disconnected.
    pub fn check_liveness(&mut self, now_ms: i64, ping_timeout_ms: i64) -> bool {
        if self.last_ping_ms == 0 || !LIVE_STATUSES.contains(&self.status.as_str()) {
            return false;
        }
        if now_ms - self.last_ping_ms > ping_timeout_ms {
            self.set_status(STATUS_DISCONNECT);
            return true;
        }
        false
    }

    /// Keeps a packet for later delivery, dropping the oldest past the bound.
    pub fn enqueue(&mut self, packet: Packet) -> Enqueued {
        let weight = packet.weight();
        let dropped = self.queue.push_weighed(packet, weight);
        if dropped.is_empty() {
            Enqueued::Kept
        } else {
            Enqueued::DroppedOldest(dropped)
        }
    }

    /// The liveness of an agent read back from the state file after the
    /// switch was down for `downtime_ms`: no socket (its grace starts now),
    /// and its last heartbeat moved forward by the downtime, so the
    /// ping-timeout rule does not count the switch's restart against the
    /// worker. An agent never pinged stays at 0; none is later than now.
    pub fn restore_liveness(&mut self, last_ping_ms: i64, downtime_ms: i64, now_secs: f64) {
        self.on_socket_closed(now_secs);
        // A heartbeat after now is not believed (the file is an input).
        let now_ms = (now_secs * 1000.0) as i64;
        self.last_ping_ms = match last_ping_ms {
            t if t <= 0 => 0,
            t => t.saturating_add(downtime_ms.max(0)).min(now_ms),
        };
    }

    /// Idle: no socket (the idle-expiry rule). Packets waiting for a socket
    /// that never comes do not keep an agent forever: they are dropped,
    /// counted and reported when it expires.
    pub fn is_idle(&self, has_socket: bool) -> bool {
        !has_socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PacketType;
    use serde_json::json;

    fn pkt(n: i64) -> Packet {
        Packet::new(PacketType::ClientBoundLiveUpdate, "a", json!({ "n": n }))
    }

    #[test]
    fn new_agent_is_none_and_not_alive() {
        let s = AgentState::new("a", 10);
        assert_eq!(s.status, "none");
        assert!(!s.is_alive);
        assert_eq!(s.last_ping_ms, 0);
    }

    #[test]
    fn grace_expiry_disconnects_only_an_agent_still_gone() {
        let mut s = AgentState::new("a", 10);
        s.set_status("in task");
        s.on_socket_closed(1.0);
        assert_eq!(s.on_grace_expired(), Some("in task".into()));
        assert_eq!(s.status, "disconnect");

        let mut s = AgentState::new("b", 10);
        s.set_status("in task");
        s.on_socket_closed(1.0);
        s.on_bound();
        assert_eq!(s.on_grace_expired(), None);
        assert_eq!(s.status, "in task");
    }

    #[test]
    fn ping_timeout_applies_to_live_statuses_after_a_first_ping() {
        let mut s = AgentState::new("a", 10);
        s.set_status("in task");
        // Never pinged: not a live task yet.
        assert!(!s.check_liveness(1_000_000, 15_000));
        s.on_heartbeat(1_000);
        assert!(!s.check_liveness(16_000, 15_000));
        assert!(s.check_liveness(16_001, 15_000));
        assert_eq!(s.status, "disconnect");
    }

    #[test]
    fn ping_timeout_ignores_other_statuses() {
        for status in ["none", "completed", "accepted", "disconnect"] {
            let mut s = AgentState::new("a", 10);
            s.set_status(status);
            s.on_heartbeat(1);
            assert!(!s.check_liveness(1_000_000, 15_000), "{status}");
            assert_eq!(s.status, status);
        }
    }

    #[test]
    fn queue_is_bounded_and_reports_the_drop() {
        let mut s = AgentState::new("a", 2);
        assert_eq!(s.enqueue(pkt(1)), Enqueued::Kept);
        assert_eq!(s.enqueue(pkt(2)), Enqueued::Kept);
        match s.enqueue(pkt(3)) {
            Enqueued::DroppedOldest(p) => assert_eq!(p[0].data().unwrap()["n"], json!(1)),
            other => panic!("expected a drop, got {other:?}"),
        }
        let left: Vec<_> = s
            .queue
            .take_all()
            .into_iter()
            .map(|p| p.data().unwrap()["n"].clone())
            .collect();
        assert_eq!(left, vec![json!(2), json!(3)]);
    }

    #[test]
    fn idle_means_no_socket_whatever_waits() {
        let mut s = AgentState::new("a", 2);
        assert!(s.is_idle(false));
        assert!(!s.is_idle(true));
        s.enqueue(pkt(1));
        assert!(s.is_idle(false));
    }

    #[test]
    fn queue_is_bounded_in_bytes() {
        let one = pkt(1).weight();
        let mut s = AgentState::bounded("a", 100, one * 3);
        for n in 0..3 {
            assert_eq!(s.enqueue(pkt(n)), Enqueued::Kept);
        }
        match s.enqueue(pkt(3)) {
            Enqueued::DroppedOldest(p) => {
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].data().unwrap()["n"], json!(0));
            }
            other => panic!("expected a drop, got {other:?}"),
        }
        assert!(s.queue.bytes() <= one * 3);
        assert_eq!(s.queue.len(), 3);
    }

    #[test]
    fn a_restored_agent_is_not_disconnected_for_the_switch_downtime() {
        let mut s = AgentState::new("a", 2);
        s.set_status("in task");
        // Last heartbeat at 1 000 ms, the switch down for 60 s.
        s.restore_liveness(1_000, 60_000, 61.0);
        assert!(!s.is_alive);
        assert_eq!(s.disconnect_time, Some(61.0));
        assert_eq!(s.last_ping_ms, 61_000);
        assert!(!s.check_liveness(61_000 + 15_000, 15_000));
        assert!(s.check_liveness(61_000 + 15_001, 15_000));
        // Never pinged: stays unpinged; a clock gone back adds nothing.
        let mut s = AgentState::new("b", 2);
        s.restore_liveness(0, 60_000, 61.0);
        assert_eq!(s.last_ping_ms, 0);
        s.restore_liveness(5, -10, 61.0);
        assert_eq!(s.last_ping_ms, 5);
        s.restore_liveness(i64::MAX, i64::MAX, 61.0);
        assert_eq!(s.last_ping_ms, 61_000);
    }

    #[test]
    fn set_status_reports_changes_only() {
        let mut s = AgentState::new("a", 2);
        assert_eq!(s.set_status("none"), None);
        assert_eq!(s.set_status("waiting"), Some("none".into()));
    }
}
