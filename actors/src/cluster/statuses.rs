//! `request_statuses` across switches (`CLUSTER.md` section 2): the switch
//! holding the backend asks every switch on `sy.ctl.statuses`; each runs
//! the ping-timeout rule on its agents and answers with their statuses, in
//! parts small enough for one NATS message each. The asker waits for every
//! switch it knows to be alive, or until its deadline, and answers with
//! what it has: a slow or dead switch makes the answer partial (counted),
//! never a failure (the all-or-nothing timeout of Socket.IO's adapters is
//! the pitfall avoided).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Agents per reply part: ~100 bytes each stays far below NATS's default
/// 1 MiB message.
pub const PER_PART: usize = 2_000;

/// Largest reply part read.
pub const MAX_PART_BYTES: usize = 1024 * 1024;

/// The question: the backend's last ping, so every switch applies the
/// ping-timeout rule (PROTOCOL 1.3) as the backend's switch would.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Ask {
    pub from: String,
    pub last_ping_ms: i64,
}

/// Largest question read (it holds a switch's name and a time).
pub const MAX_ASK_BYTES: usize = 1024;

impl Ask {
    /// A question as read from `sy.ctl.statuses`; None for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Ask> {
        super::parse_bounded(bytes, MAX_ASK_BYTES)
    }
}

/// One part of a switch's answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub node: String,
    pub statuses: Map<String, Value>,
    /// The switch's last part.
    pub last: bool,
}

/// A switch's answer, as parts to send.
pub fn parts(node: &str, statuses: Map<String, Value>) -> Vec<Part> {
    let mut out = Vec::new();
    let mut part = Map::new();
    for (id, status) in statuses {
        part.insert(id, status);
        if part.len() == PER_PART {
            out.push(Part {
                node: node.to_string(),
                statuses: std::mem::take(&mut part),
                last: false,
            });
        }
    }
    out.push(Part {
        node: node.to_string(),
        statuses: part,
        last: true,
    });
    out
}

/// Answers gathered so far.
#[derive(Debug, Default)]
pub struct Gathered {
    expected: BTreeSet<String>,
    done: BTreeSet<String>,
    /// Statuses kept at most: whatever a peer sends, the answer stays
    /// within what the switches may hold.
    limit: usize,
    pub statuses: Map<String, Value>,
    /// Replies that were not parts, or from switches not asked.
    pub refused: usize,
}

impl Gathered {
    /// Waiting for the switches `expected`, keeping at most `per_switch`
    /// statuses for each (their `max_agents`).
    pub fn new(expected: impl IntoIterator<Item = String>, per_switch: usize) -> Gathered {
        let expected: BTreeSet<String> = expected.into_iter().collect();
        Gathered {
            limit: per_switch.saturating_mul(expected.len()),
            expected,
            ..Gathered::default()
        }
    }

    /// A reply arrived; whether every switch has now answered in full.
    pub fn take(&mut self, reply: &[u8]) -> bool {
        match super::parse_bounded::<Part>(reply, MAX_PART_BYTES) {
            Some(p)
                if self.expected.contains(&p.node)
                    && !self.done.contains(&p.node)
                    && self.statuses.len() + p.statuses.len() <= self.limit =>
            {
                self.statuses.extend(p.statuses);
                if p.last {
                    self.done.insert(p.node);
                }
            }
            _ => self.refused += 1,
        }
        self.complete()
    }

    pub fn complete(&self) -> bool {
        self.done.len() >= self.expected.len()
    }

    /// Switches that did not answer in full.
    pub fn missing(&self) -> Vec<String> {
        self.expected.difference(&self.done).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statuses(n: usize) -> Map<String, Value> {
        (0..n)
            .map(|i| (format!("a{i}"), json!("in task")))
            .collect()
    }

    #[test]
    fn an_answer_is_cut_into_parts_and_gathered_whole() {
        let ps = parts("n2", statuses(PER_PART * 2 + 1));
        assert_eq!(ps.len(), 3);
        assert!(ps.iter().take(2).all(|p| !p.last) && ps[2].last);
        let mut g = Gathered::new(["n2".to_string(), "n3".to_string()], PER_PART * 3);
        for p in &ps {
            assert!(!g.take(&serde_json::to_vec(p).unwrap()));
        }
        assert_eq!(g.missing(), ["n3"]);
        let empty = parts("n3", Map::new());
        assert_eq!(empty.len(), 1);
        assert!(g.take(&serde_json::to_vec(&empty[0]).unwrap()));
        assert_eq!(g.statuses.len(), PER_PART * 2 + 1);
    }

    #[test]
    fn strangers_and_garbage_are_refused() {
        let mut g = Gathered::new(["n2".to_string()], 10);
        let stranger = &parts("n9", statuses(1))[0];
        assert!(!g.take(&serde_json::to_vec(stranger).unwrap()));
        assert!(!g.take(b"{not json"));
        assert!(!g.take(&vec![b' '; MAX_PART_BYTES + 1]));
        assert_eq!((g.refused, g.statuses.len()), (3, 0));
        // A part after the last one of a switch is refused too.
        let done = &parts("n2", statuses(1))[0];
        assert!(g.take(&serde_json::to_vec(done).unwrap()));
        assert!(g.take(&serde_json::to_vec(done).unwrap()));
        assert_eq!(g.refused, 4);
    }

    #[test]
    fn parts_past_the_switches_bound_are_refused() {
        let mut g = Gathered::new(["n2".to_string()], 3);
        let flood = &parts("n2", statuses(4))[0];
        assert!(!g.take(&serde_json::to_vec(flood).unwrap()));
        assert_eq!((g.refused, g.statuses.len()), (1, 0));
        let fits = &parts("n2", statuses(3))[0];
        assert!(g.take(&serde_json::to_vec(fits).unwrap()));
        assert_eq!(g.statuses.len(), 3);
    }
}
