//! `PublishWindow`: publishes to JetStream not yet acknowledged
//! (`CLUSTER.md` section 2: only a PubAck proves a message is stored).
//!
//! Each publish gets the next sequence of this switch's boot, and with it
//! its message id (`names::message_id`). Acks may come back in any order;
//! what is not acknowledged when the connection drops is published again,
//! in the original order and with the original ids, and JetStream stores a
//! repeated id once. The window is bounded: full, the caller stops taking
//! packets from its senders (their sockets' backpressure) instead of
//! queueing more.

use std::collections::VecDeque;

use super::names::message_id;

#[derive(Debug)]
pub struct PublishWindow<T> {
    node: String,
    boot: u64,
    /// The sequence of the oldest slot.
    base: u64,
    /// Slots in publish order; `None` once acknowledged (the front is
    /// always unacknowledged).
    slots: VecDeque<Option<T>>,
    pending: usize,
    limit: usize,
}

impl<T> PublishWindow<T> {
    /// A window for `node` in its boot `boot`, holding at most `limit`
    /// publishes from the oldest unacknowledged one on.
    pub fn new(node: &str, boot: u64, limit: usize) -> PublishWindow<T> {
        PublishWindow {
            node: node.to_string(),
            boot,
            base: 0,
            slots: VecDeque::new(),
            pending: 0,
            limit: limit.max(1),
        }
    }

    /// Takes `item` for publishing: its sequence, or the item back when
    /// the window is full.
    pub fn push(&mut self, item: T) -> Result<u64, T> {
        if self.slots.len() >= self.limit {
            return Err(item);
        }
        let n = self.base + self.slots.len() as u64;
        self.slots.push_back(Some(item));
        self.pending += 1;
        Ok(n)
    }

    /// The message id of sequence `n`.
    pub fn id(&self, n: u64) -> String {
        message_id(&self.node, self.boot, n)
    }

    /// JetStream acknowledged sequence `n`: its item, if it was pending.
    pub fn ack(&mut self, n: u64) -> Option<T> {
        let at = usize::try_from(n.checked_sub(self.base)?).ok()?;
        let item = self.slots.get_mut(at)?.take()?;
        self.pending -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(item)
    }

    /// Every unacknowledged publish, oldest first, to send again.
    pub fn unacked(&self) -> impl Iterator<Item = (u64, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|t| (self.base + i as u64, t)))
    }

    /// Publishes waiting for their ack.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn is_full(&self) -> bool {
        self.slots.len() >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequences_ids_and_acks_in_order() {
        let mut w = PublishWindow::new("n1", 7, 10);
        assert_eq!(w.push("a"), Ok(0));
        assert_eq!(w.push("b"), Ok(1));
        assert_eq!(w.id(1), "n1-7-1");
        assert_eq!(w.ack(0), Some("a"));
        assert_eq!(w.ack(0), None, "an ack counts once");
        assert_eq!(w.pending(), 1);
        assert_eq!(w.push("c"), Ok(2));
        assert_eq!(w.unacked().collect::<Vec<_>>(), vec![(1, &"b"), (2, &"c")]);
    }

    #[test]
    fn out_of_order_acks_keep_the_oldest_pending_first() {
        let mut w = PublishWindow::new("n1", 1, 3);
        for x in ["a", "b", "c"] {
            w.push(x).unwrap();
        }
        assert!(w.is_full());
        assert_eq!(w.ack(2), Some("c"));
        assert_eq!(w.ack(1), Some("b"));
        // Still full: the oldest, "a", holds the window's start.
        assert_eq!(w.push("d"), Err("d"));
        assert_eq!(w.unacked().collect::<Vec<_>>(), vec![(0, &"a")]);
        assert_eq!(w.ack(0), Some("a"));
        assert_eq!(w.pending(), 0);
        assert_eq!(w.push("d"), Ok(3), "sequences go on");
        assert_eq!(w.ack(99), None);
    }

    proptest! {
        /// Whatever the acks' order, nothing is lost or acked twice, the
        /// retry list is in publish order, and the bound holds.
        #[test]
        fn every_publish_is_acked_once_or_still_pending(
            ops in proptest::collection::vec(any::<(bool, u8)>(), 1..200)
        ) {
            let mut w = PublishWindow::new("n", 1, 16);
            let mut sent = Vec::new();
            let mut acked = std::collections::BTreeSet::new();
            for (push, k) in ops {
                if push {
                    if let Ok(n) = w.push(n_item(sent.len())) { sent.push(n); }
                } else if !sent.is_empty() {
                    let n = sent[k as usize % sent.len()];
                    let got = w.ack(n);
                    prop_assert_eq!(got.is_some(), acked.insert(n));
                }
                let pending: Vec<u64> = w.unacked().map(|(n, _)| n).collect();
                let want: Vec<u64> = sent.iter().copied().filter(|n| !acked.contains(n)).collect();
                prop_assert_eq!(&pending, &want);
                prop_assert!(pending.windows(2).all(|p| p[0] < p[1]));
                prop_assert!(w.pending() <= 16);
            }
        }
    }

    fn n_item(i: usize) -> usize {
        i
    }
}
