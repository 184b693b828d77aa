//! `Acks`: what a switch has handed to a socket from a stream, and so may
//! purge (`CLUSTER.md`: the purge is the acknowledgement).
//!
//! Packets read from a stream go into an owner's queue (an agent's, the
//! backend's) in stream order. The queue is FIFO, so when it holds `q`
//! packets, all but the newest `q` read have left it: handed to the socket
//! (or dropped by its bound, which reports them). Everything up to the
//! newest of those may be purged. Sequences already seen (a live copy of
//! a packet replayed, a repeat after a reconnect) are refused, so nothing
//! reaches a socket twice from one reader.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Acks {
    /// Sequences of the packets now in the queue, oldest first.
    in_queue: VecDeque<u64>,
    /// The newest sequence read.
    seen: u64,
    /// The newest sequence handed over.
    handed: u64,
    purged: u64,
}

impl Acks {
    /// The newest sequence read so far (0: none).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Packet `seq` was read: whether it is new (then the caller queues
    /// it); an old one is to be skipped.
    pub fn read(&mut self, seq: u64) -> bool {
        if seq <= self.seen {
            return false;
        }
        self.seen = seq;
        self.in_queue.push_back(seq);
        true
    }

    /// The queue now holds `queued` packets of those read.
    pub fn settle(&mut self, queued: usize) {
        while self.in_queue.len() > queued {
            if let Some(seq) = self.in_queue.pop_front() {
                self.handed = self.handed.max(seq);
            }
        }
    }

    /// The purge that is due: delete below this sequence.
    pub fn due(&mut self) -> Option<u64> {
        (self.handed > self.purged).then(|| {
            self.purged = self.handed;
            self.handed + 1
        })
    }

    /// The reader stops: what is queued stays in the stream for the next.
    pub fn forget_queued(&mut self) {
        self.in_queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_up_to_what_left_the_queue() {
        let mut a = Acks::default();
        assert!(a.read(5) && a.read(6) && a.read(9));
        a.settle(3);
        assert_eq!(a.due(), None, "all three still queued");
        a.settle(1);
        assert_eq!(a.due(), Some(7), "5 and 6 handed over");
        assert_eq!(a.due(), None, "once");
        a.settle(0);
        assert_eq!(a.due(), Some(10));
    }

    #[test]
    fn a_sequence_is_taken_once() {
        let mut a = Acks::default();
        assert!(a.read(3));
        assert!(!a.read(3), "a live copy of a replayed packet");
        assert!(!a.read(2));
        assert!(a.read(4));
        assert_eq!(a.seen(), 4);
    }

    #[test]
    fn what_was_queued_when_the_reader_stops_is_not_purged() {
        let mut a = Acks::default();
        a.read(1);
        a.read(2);
        a.settle(1);
        a.forget_queued();
        a.settle(0);
        assert_eq!(a.due(), Some(2), "only 1 was handed over");
    }
}
