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
    /// Handed up to this sequence, on socket `flow` whose written bytes
    /// then were `mark`: purged once the transport has taken `mark`.
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    flow: usize,
    handed: u64,
    mark: u64,
}

/// A socket's flow as an ack tick sees it: its identity, the bytes written
/// to its session so far and the bytes its transport has taken so far.
#[derive(Debug, Clone, Copy)]
pub struct FlowMark {
    pub flow: usize,
    pub written: u64,
    pub taken: u64,
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

    /// An ack tick, with the bound socket's flow (None: no socket): the
    /// purge that is due, below this sequence. What was handed over is
    /// purged at a later tick, once the transport has taken it.
    pub fn tick(&mut self, flow: Option<FlowMark>) -> Option<u64> {
        let flow = flow?;
        if let Some(p) = self.pending {
            if p.flow != flow.flow {
                // Another socket: what the old one took is unknown here.
                self.pending = None;
            } else if flow.taken >= p.mark {
                self.pending = None;
                self.purged = p.handed;
                return Some(p.handed + 1);
            } else {
                return None;
            }
        }
        if self.handed > self.purged {
            if flow.taken >= flow.written {
                // The transport has taken everything: nothing to wait for.
                self.purged = self.handed;
                return Some(self.handed + 1);
            }
            self.pending = Some(Pending {
                flow: flow.flow,
                handed: self.handed,
                mark: flow.written,
            });
        }
        None
    }

    /// Everything read has been purged: no tick has anything to do until
    /// the next packet is read (an idle owner needs no ack timer).
    pub fn all_purged(&self) -> bool {
        self.purged >= self.seen && self.pending.is_none()
    }

    /// The purge of everything handed over or dropped, now (the owner
    /// retires: what it dropped it has reported).
    pub fn due_now(&mut self) -> Option<u64> {
        self.pending = None;
        (self.handed > self.purged).then(|| {
            self.purged = self.handed;
            self.handed + 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(flow: usize, written: u64, taken: u64) -> Option<FlowMark> {
        Some(FlowMark {
            flow,
            written,
            taken,
        })
    }

    #[test]
    fn purges_what_left_the_queue_once_the_transport_took_it() {
        let mut a = Acks::default();
        assert!(a.read(5) && a.read(6) && a.read(9));
        a.settle(3);
        assert_eq!(a.tick(flow(1, 0, 0)), None, "all three still queued");
        a.settle(1);
        // 5 and 6 handed over: 300 bytes written to the session so far.
        assert_eq!(a.tick(flow(1, 300, 100)), None, "marked, not yet taken");
        assert_eq!(a.tick(flow(1, 300, 299)), None, "one byte still waits");
        assert_eq!(a.tick(flow(1, 450, 300)), Some(7), "taken: purged");
        assert_eq!(a.tick(flow(1, 450, 450)), None, "once");
        a.settle(0);
        assert_eq!(a.tick(flow(1, 600, 450)), None);
        assert_eq!(a.tick(flow(1, 600, 600)), Some(10));
        // Handed over and already taken when the tick comes: at once.
        a.read(11);
        a.settle(0);
        assert_eq!(a.tick(flow(1, 700, 700)), Some(12));
    }

    #[test]
    fn no_socket_or_another_socket_purges_nothing_yet() {
        let mut a = Acks::default();
        a.read(1);
        a.settle(0);
        assert_eq!(a.tick(None), None, "no socket: nothing is known taken");
        assert_eq!(a.tick(flow(1, 100, 0)), None);
        // The socket was replaced before its transport took the packet.
        assert_eq!(a.tick(flow(2, 80, 50)), None, "marked again on the new one");
        assert_eq!(a.tick(flow(2, 80, 80)), Some(2));
    }

    #[test]
    fn retiring_purges_what_was_handed_or_dropped_at_once() {
        let mut a = Acks::default();
        a.read(1);
        a.read(2);
        a.settle(0);
        assert_eq!(a.tick(flow(1, 10, 0)), None);
        assert_eq!(a.due_now(), Some(3));
        assert_eq!(a.due_now(), None);
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
}
