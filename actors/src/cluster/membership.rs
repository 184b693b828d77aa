//! `Membership`: which switches of a cluster are alive, from the
//! heartbeats each publishes (`CLUSTER.md` section 2, "Timers": one a
//! second, a switch silent for `node_timeout` is down).
//!
//! A switch that restarts comes back with a new boot number: its agents
//! were lost with the old process, so the others treat it as a switch that
//! went down and one that joined. The agents of a switch that went down
//! are adopted by the lowest live node id, decided here so every switch
//! that sees the same heartbeats picks the same one (the adoption itself
//! is a compare-and-swap in KV, so a race between two is harmless).
//!
//! Heartbeats come over NATS, which every switch of the cluster shares:
//! the number of nodes is still bounded, so a misconfigured cluster cannot
//! grow this map without end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a heartbeat changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A switch not seen before (or seen down).
    Joined,
    /// A known switch with a new boot: its previous process is gone.
    Restarted { previous_boot: u64 },
    /// A known switch, still alive.
    Alive,
    /// Our own heartbeat, echoed back.
    Me,
    /// Past `max_nodes` switches: not tracked, counted by the caller.
    Refused,
}

#[derive(Debug)]
struct Peer {
    boot: u64,
    last: Instant,
}

#[derive(Debug)]
pub struct Membership {
    me: String,
    timeout: Duration,
    max_nodes: usize,
    peers: BTreeMap<String, Peer>,
}

impl Membership {
    /// A cluster of one (`me`) so far; a switch silent for `timeout` is
    /// down; at most `max_nodes` switches, `me` included.
    pub fn new(me: &str, timeout: Duration, max_nodes: usize) -> Membership {
        Membership {
            me: me.to_string(),
            timeout,
            max_nodes: max_nodes.max(1),
            peers: BTreeMap::new(),
        }
    }

    /// A heartbeat of `node` (booted as `boot`) arrived at `now`.
    pub fn heard(&mut self, node: &str, boot: u64, now: Instant) -> Heard {
        if node == self.me {
            return Heard::Me;
        }
        if let Some(p) = self.peers.get_mut(node) {
            p.last = now;
            if p.boot != boot {
                let previous_boot = std::mem::replace(&mut p.boot, boot);
                return Heard::Restarted { previous_boot };
            }
            return Heard::Alive;
        }
        if self.peers.len() + 1 >= self.max_nodes {
            return Heard::Refused;
        }
        self.peers
            .insert(node.to_string(), Peer { boot, last: now });
        Heard::Joined
    }

    /// The switches silent for longer than the timeout at `now`, with the
    /// boot they were last heard with; they are forgotten (a heartbeat
    /// later makes them join again).
    pub fn expire(&mut self, now: Instant) -> Vec<(String, u64)> {
        let timeout = self.timeout;
        let down: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last) > timeout)
            .map(|(n, _)| n.clone())
            .collect();
        down.into_iter()
            .filter_map(|n| self.peers.remove(&n).map(|p| (n, p.boot)))
            .collect()
    }

    /// Every live switch, this one included.
    pub fn count(&self) -> usize {
        self.peers.len() + 1
    }

    /// Every other live switch.
    pub fn others(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    pub fn is_live(&self, node: &str) -> bool {
        node == self.me || self.peers.contains_key(node)
    }

    /// The switch that adopts the agents of one that went down: the
    /// lowest live node id, this one included.
    pub fn adopter(&self) -> &str {
        match self.peers.keys().next() {
            Some(first) if first.as_str() < self.me.as_str() => first,
            _ => &self.me,
        }
    }

    /// Whether this switch is the adopter.
    pub fn adopts(&self) -> bool {
        self.adopter() == self.me
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(3);

    #[test]
    fn switches_join_stay_and_go_after_the_timeout() {
        let t0 = Instant::now();
        let mut m = Membership::new("n2", T, 16);
        assert_eq!(m.count(), 1);
        assert_eq!(m.heard("n2", 1, t0), Heard::Me);
        assert_eq!(m.heard("n1", 5, t0), Heard::Joined);
        assert_eq!(m.heard("n3", 9, t0), Heard::Joined);
        assert_eq!(m.count(), 3);
        assert_eq!(m.heard("n1", 5, t0 + Duration::from_secs(2)), Heard::Alive);
        // At exactly the timeout n3 is still live; past it, down.
        assert!(m.expire(t0 + T).is_empty());
        assert_eq!(
            m.expire(t0 + T + Duration::from_millis(1)),
            vec![("n3".to_string(), 9)]
        );
        assert!(!m.is_live("n3") && m.is_live("n1") && m.is_live("n2"));
        assert_eq!(m.count(), 2);
        assert_eq!(m.heard("n3", 9, t0 + T * 2), Heard::Joined);
    }

    #[test]
    fn a_new_boot_is_a_restart() {
        let t0 = Instant::now();
        let mut m = Membership::new("n1", T, 16);
        m.heard("n2", 1, t0);
        assert_eq!(m.heard("n2", 2, t0), Heard::Restarted { previous_boot: 1 });
        assert_eq!(m.heard("n2", 2, t0), Heard::Alive);
    }

    #[test]
    fn the_lowest_live_id_adopts() {
        let t0 = Instant::now();
        let mut m = Membership::new("n2", T, 16);
        assert!(m.adopts(), "alone, it adopts");
        m.heard("n3", 1, t0);
        assert!(m.adopts());
        m.heard("n1", 1, t0);
        assert_eq!(m.adopter(), "n1");
        assert!(!m.adopts());
        m.heard("n3", 1, t0 + T);
        m.expire(t0 + T + Duration::from_millis(1));
        assert_eq!(m.adopter(), "n2", "n1 went down");
    }

    #[test]
    fn the_number_of_switches_is_bounded() {
        let t0 = Instant::now();
        let mut m = Membership::new("me", T, 3);
        assert_eq!(m.heard("a", 1, t0), Heard::Joined);
        assert_eq!(m.heard("b", 1, t0), Heard::Joined);
        assert_eq!(m.heard("c", 1, t0), Heard::Refused);
        assert_eq!(m.count(), 3);
        assert_eq!(m.heard("a", 1, t0), Heard::Alive, "known ones still count");
    }
}
