//! `Delivery`: the one rule of writing to a socket that may be missing or
//! slow, for both owners of such a socket (an `Agent`: PROTOCOL 1.3, the
//! `BackendLink`: 1.4).
//!
//! It owns the bounded queue of packets not yet written, the bound socket,
//! whether the owner waits for that socket to have room, and the state of
//! the owner's [`Shortcut`] (`shortcut.rs` states its invariant). The rule:
//!
//! - a packet is written at once when nothing waits before it and the
//!   socket keeps up (fewer than the in-flight bound of bytes written and
//!   not yet taken by the peer); otherwise it is kept, in order;
//! - the queue is bounded in packets and bytes: past either bound its
//!   oldest packets go, and are handed back to be counted and reported;
//!   *spare* packets (anyone may cause them) hold only a share of it;
//! - kept packets are written, in order, while the socket keeps up; when it
//!   does not, the owner is told to wait for room ([`Step::WaitForRoom`])
//!   and, once told there is room, calls [`Delivery::resume`];
//! - a socket found gone is unbound ([`Step::Lost`]) and the packet that
//!   found it stays at the head; a new socket takes everything, in order;
//! - the shortcut is open exactly while a packet would be written at once:
//!   closed before anything is kept, opened when the queue is empty again.
//!
//! No actix and no clock: the owner performs what this returns (metrics,
//! reports, logs, timers, asking the socket's flow for a `Resume`), and
//! tests drive it with a fake socket.

use std::collections::VecDeque;
use std::sync::Arc;

use super::shortcut::Shortcut;
use crate::outbox::Outbox;
use crate::wire::Packet;

/// A socket as its owner writes to it.
pub trait Socket: Clone + Send + Sync {
    /// Writes `packet`; hands it back if the socket is gone.
    fn send(&self, packet: Packet) -> Result<(), Packet>;
    /// Bytes written to the socket and not yet taken by its peer.
    fn in_flight(&self) -> u64;
    /// The same socket (binding it again changes nothing).
    fn same(&self, other: &Self) -> bool;
}

/// What the owner must do next.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: what could be written was, the rest waits for a socket.
    Idle,
    /// Packets wait for a socket that is full: have its flow say when at
    /// most `at` bytes are in flight, then call [`Delivery::resume`].
    WaitForRoom { at: u64 },
    /// The socket was found gone and is unbound; the owner does what a
    /// closed socket means to it.
    Lost,
}

/// Packets that had to go to make room, and what the queue held then.
#[derive(Debug)]
pub struct Overflow {
    /// Oldest first.
    pub dropped: Vec<Packet>,
    pub held: usize,
    pub held_bytes: usize,
}

/// What became of a packet handed to [`Delivery::send`] or
/// [`Delivery::keep`].
#[must_use]
#[derive(Debug)]
pub struct Outcome {
    /// It was kept in the queue, not written at once.
    pub queued: bool,
    /// Keeping it pushed the oldest packets out.
    pub overflow: Option<Overflow>,
    /// A spare packet refused: spare packets hold their share already.
    pub refused: Option<Packet>,
    pub step: Step,
}

impl Outcome {
    fn written() -> Self {
        Outcome {
            queued: false,
            overflow: None,
            refused: None,
            step: Step::Idle,
        }
    }
}

/// A socket bound by [`Delivery::bind`], compared with the one before.
pub enum Bound<S> {
    /// It was bound already: nothing changed.
    Same,
    /// No socket was bound.
    New,
    /// It replaced this one (the owner closes it).
    Replaced(S),
}

pub struct Delivery<S: Socket> {
    queue: Outbox<Packet>,
    socket: Option<S>,
    /// Told the owner to wait for room and not yet resumed: the socket's
    /// flow will say when.
    awaiting_room: bool,
    shortcut: Arc<Shortcut<S>>,
    /// `[session] shortcut`: whether the shortcut may open at all.
    shortcut_allowed: bool,
    /// The owner is done: the shortcut stays closed.
    retired: bool,
    is_spare: fn(&Packet) -> bool,
}

impl<S: Socket> Delivery<S> {
    /// Keeps what it cannot write in `queue`; writes while the socket has
    /// fewer than `in_flight_limit` bytes in flight; opens the shortcut
    /// only if `shortcut_allowed`.
    pub fn new(queue: Outbox<Packet>, in_flight_limit: u64, shortcut_allowed: bool) -> Self {
        Delivery {
            queue,
            socket: None,
            awaiting_room: false,
            shortcut: Arc::new(Shortcut::new(in_flight_limit)),
            shortcut_allowed,
            retired: false,
            is_spare: |_| false,
        }
    }

    /// Packets `is_spare` picks are kept as the queue's spare items (see
    /// `Outbox::with_spare_share`).
    pub fn with_spare(mut self, is_spare: fn(&Packet) -> bool) -> Self {
        self.is_spare = is_spare;
        self
    }

    /// Where senders find the way past the owner.
    pub fn shortcut(&self) -> &Arc<Shortcut<S>> {
        &self.shortcut
    }

    pub fn socket(&self) -> Option<&S> {
        self.socket.as_ref()
    }

    /// The packets kept, in order.
    pub fn queue(&self) -> &Outbox<Packet> {
        &self.queue
    }

    /// The socket, if it can take more now.
    fn writable(&self) -> Option<&S> {
        self.socket
            .as_ref()
            .filter(|s| s.in_flight() < self.shortcut.in_flight_limit())
    }

    /// Writes `packet` now, or keeps it (in order) until the socket can
    /// take it or the next one is bound.
    pub fn send(&mut self, packet: Packet) -> Outcome {
        if self.queue.is_empty() {
            if let Some(s) = self.writable() {
                match s.send(packet) {
                    Ok(()) => return Outcome::written(),
                    Err(packet) => {
                        self.lose();
                        let kept = self.keep(packet);
                        return Outcome {
                            step: Step::Lost,
                            ..kept
                        };
                    }
                }
            }
        }
        let kept = self.keep(packet);
        Outcome {
            step: self.drain(),
            ..kept
        }
    }

    /// Keeps `packet` behind everything kept, making room past the bounds.
    /// Writes nothing ([`Delivery::drain`] does).
    pub fn keep(&mut self, mut packet: Packet) -> Outcome {
        packet.detach();
        let weight = packet.weight();
        let dropped = if (self.is_spare)(&packet) {
            match self.queue.push_spare(packet, weight) {
                Ok(dropped) => dropped,
                Err(refused) => {
                    return Outcome {
                        refused: Some(refused),
                        ..Outcome::written()
                    }
                }
            }
        } else {
            self.queue.push_weighed(packet, weight)
        };
        // Something waits here now: no sender may pass it.
        self.refresh();
        let overflow = (!dropped.is_empty()).then(|| Overflow {
            dropped,
            held: self.queue.len(),
            held_bytes: self.queue.bytes(),
        });
        Outcome {
            queued: true,
            overflow,
            refused: None,
            step: Step::Idle,
        }
    }

    /// Writes kept packets, in order, while the socket keeps up.
    pub fn drain(&mut self) -> Step {
        if let (Some(s), false) = (self.socket.clone(), self.queue.is_empty()) {
            while s.in_flight() < self.shortcut.in_flight_limit() {
                let Some((p, weight)) = self.queue.pop_weighed() else {
                    break;
                };
                if let Err(p) = s.send(p) {
                    // The head must survive: it goes to the next socket.
                    self.queue.push_front_weighed(p, weight);
                    self.lose();
                    return Step::Lost;
                }
            }
        }
        self.refresh();
        if self.queue.is_empty() || self.awaiting_room || self.socket.is_none() {
            return Step::Idle;
        }
        // The socket is full: go on once it has taken half of its bound,
        // so the queue drains in batches rather than a packet per pull.
        self.awaiting_room = true;
        Step::WaitForRoom {
            at: self.shortcut.in_flight_limit() / 2,
        }
    }

    /// The socket has room again (its flow said so).
    pub fn resume(&mut self) -> Step {
        self.awaiting_room = false;
        self.drain()
    }

    /// The owner could not ask the socket for room (a socket without a
    /// flow never fills up): the next packet looks again.
    pub fn not_waiting(&mut self) {
        self.awaiting_room = false;
    }

    /// Binds `socket` (the owner then drains). A waiter armed on the
    /// socket it replaces no longer matters.
    pub fn bind(&mut self, socket: S) -> Bound<S> {
        let before = match self.socket.take() {
            Some(old) if old.same(&socket) => {
                self.socket = Some(old);
                return Bound::Same;
            }
            Some(old) => Bound::Replaced(old),
            None => Bound::New,
        };
        self.socket = Some(socket);
        self.awaiting_room = false;
        self.refresh();
        before
    }

    /// The socket closed: everything is kept for the next one.
    pub fn unbind(&mut self) {
        self.lose();
    }

    fn lose(&mut self) {
        self.socket = None;
        self.awaiting_room = false;
        self.refresh();
    }

    /// Removes every kept packet `f` picks; returns how many went.
    pub fn remove_where(&mut self, f: impl FnMut(&Packet) -> bool) -> usize {
        let removed = self.queue.remove_where(f);
        if removed > 0 {
            self.refresh();
        }
        removed
    }

    /// Takes everything kept, in order (to keep it again behind older
    /// packets, or to hand it over).
    pub fn take_all(&mut self) -> VecDeque<Packet> {
        let all = self.queue.take_all();
        self.refresh();
        all
    }

    /// The owner is done: the shortcut closes for good; returns what was
    /// still kept.
    pub fn retire(&mut self) -> VecDeque<Packet> {
        self.retired = true;
        self.take_all()
    }

    /// Publishes the owner's decision to its shortcut (its one writer):
    /// open while a packet would be written at once, full while a bound
    /// socket has packets waiting for it.
    fn refresh(&self) {
        let open = self.shortcut_allowed && !self.retired && self.queue.is_empty();
        let full = self.socket.is_some() && !self.queue.is_empty();
        self.shortcut
            .publish(self.socket.as_ref().filter(|_| open), full);
    }
}

#[cfg(test)]
pub(super) mod fake {
    //! A socket the tests fill, empty and close at will.

    use std::sync::{Arc, Mutex};

    use super::Socket;
    use crate::wire::Packet;

    #[derive(Default)]
    struct Inner {
        written: Vec<Packet>,
        in_flight: u64,
        gone: bool,
    }

    /// Bytes in flight a write adds: two writes fill a socket bounded at
    /// 100 bytes.
    pub const WRITE_BYTES: u64 = 60;

    #[derive(Clone, Default)]
    pub struct FakeSocket(Arc<Mutex<Inner>>);

    impl FakeSocket {
        fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }
        /// What it was written, taken.
        pub fn written(&self) -> Vec<Packet> {
            self.with(|i| std::mem::take(&mut i.written))
        }
        /// The peer takes everything written so far.
        pub fn take(&self) {
            self.with(|i| i.in_flight = 0);
        }
        pub fn close(&self) {
            self.with(|i| i.gone = true);
        }
    }

    impl Socket for FakeSocket {
        fn send(&self, packet: Packet) -> Result<(), Packet> {
            self.with(|i| {
                if i.gone {
                    return Err(packet);
                }
                i.in_flight += WRITE_BYTES;
                i.written.push(packet);
                Ok(())
            })
        }
        fn in_flight(&self) -> u64 {
            self.with(|i| i.in_flight)
        }
        fn same(&self, other: &Self) -> bool {
            Arc::ptr_eq(&self.0, &other.0)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every rule of PROTOCOL 1.3 (and the outbox of 1.4) on a fake socket.

    use std::time::Duration;

    use serde_json::json;

    use super::fake::FakeSocket;
    use super::*;
    use crate::agent::Detour;
    use crate::wire::PacketType;

    fn pkt(n: i64) -> Packet {
        Packet::new(PacketType::ClientBoundLiveUpdate, "a", json!({ "n": n }))
    }

    fn n(p: &Packet) -> i64 {
        p.data().and_then(|d| d["n"].as_i64()).unwrap_or(-1)
    }

    fn ns(ps: &[Packet]) -> Vec<i64> {
        ps.iter().map(n).collect()
    }

    fn kept(d: &Delivery<FakeSocket>) -> Vec<i64> {
        d.queue().iter().map(n).collect()
    }

    /// A queue of `limit` packets, and room on the socket for about
    /// `in_flight` bytes.
    fn delivery(limit: usize, in_flight: u64) -> Delivery<FakeSocket> {
        Delivery::new(Outbox::with_bytes(limit, usize::MAX), in_flight, true)
    }

    #[test]
    fn with_nothing_kept_a_packet_is_written_at_once() {
        let mut d = delivery(10, 1000);
        let s = FakeSocket::default();
        assert!(matches!(d.bind(s.clone()), Bound::New));
        let out = d.send(pkt(1));
        assert!(!out.queued);
        assert_eq!(out.step, Step::Idle);
        assert_eq!(ns(&s.written()), vec![1]);
        assert!(d.queue().is_empty());
    }

    #[test]
    fn without_a_socket_packets_are_kept_and_written_in_order_to_the_next() {
        let mut d = delivery(10, 1000);
        for i in 0..5 {
            let out = d.send(pkt(i));
            assert!(out.queued);
            assert_eq!(out.step, Step::Idle, "no socket to wait for");
        }
        assert_eq!(kept(&d), vec![0, 1, 2, 3, 4]);
        let s = FakeSocket::default();
        assert!(matches!(d.bind(s.clone()), Bound::New));
        assert_eq!(d.drain(), Step::Idle);
        assert_eq!(ns(&s.written()), vec![0, 1, 2, 3, 4]);
        assert!(!d.send(pkt(5)).queued);
        assert_eq!(ns(&s.written()), vec![5]);
    }

    #[test]
    fn past_the_count_bound_the_oldest_go_and_are_handed_back_to_report() {
        let mut d = delivery(3, 1000);
        for i in 0..3 {
            assert!(d.send(pkt(i)).overflow.is_none());
        }
        let out = d.send(pkt(3));
        assert!(out.queued);
        let o = out.overflow.expect("the oldest made room");
        assert_eq!(ns(&o.dropped), vec![0]);
        // What the queue held then, for the report to the backend.
        assert_eq!((o.held, o.held_bytes), (3, d.queue().bytes()));
        assert_eq!(kept(&d), vec![1, 2, 3]);
    }

    #[test]
    fn past_the_byte_bound_the_oldest_go_too() {
        let one = pkt(0).weight();
        let mut d = Delivery::<FakeSocket>::new(Outbox::with_bytes(100, one * 3), 1000, true);
        for i in 0..3 {
            assert!(d.send(pkt(i)).overflow.is_none());
        }
        let o = d.send(pkt(3)).overflow.expect("bytes bound");
        assert_eq!(ns(&o.dropped), vec![0]);
        assert!(d.queue().bytes() <= one * 3);
        assert_eq!(kept(&d), vec![1, 2, 3]);
    }

    #[test]
    fn spare_packets_hold_only_their_share() {
        let is_err = |p: &Packet| p.packet_type == PacketType::LogError;
        let mut d = Delivery::<FakeSocket>::new(Outbox::new(8).with_spare_share(4), 1000, true)
            .with_spare(is_err);
        let err = |i| Packet::new(PacketType::LogError, "a", json!({ "n": i }));
        assert!(d.send(err(0)).refused.is_none());
        assert!(d.send(err(1)).refused.is_none());
        let out = d.send(err(2));
        assert!(!out.queued);
        assert_eq!(out.refused.as_ref().map(n), Some(2));
        assert!(d.send(pkt(3)).queued, "others are kept all the same");
        assert_eq!(kept(&d), vec![0, 1, 3]);
    }

    #[test]
    fn a_full_socket_makes_the_owner_wait_once_and_resume_in_order() {
        let mut d = delivery(100, 100);
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        // Two writes fill the socket.
        const { assert!(super::fake::WRITE_BYTES * 2 >= 100) };
        assert_eq!(d.send(pkt(0)).step, Step::Idle);
        assert_eq!(d.send(pkt(1)).step, Step::Idle);
        let out = d.send(pkt(2));
        assert!(out.queued);
        assert_eq!(out.step, Step::WaitForRoom { at: 50 });
        // Already waiting: told once per full socket.
        assert_eq!(d.send(pkt(3)).step, Step::Idle);
        assert_eq!(kept(&d), vec![2, 3]);
        assert_eq!(ns(&s.written()), vec![0, 1]);
        // The peer reads: written in order; full again after two.
        s.take();
        assert_eq!(d.resume(), Step::Idle);
        assert_eq!(ns(&s.written()), vec![2, 3]);
        assert!(d.queue().is_empty());
    }

    #[test]
    fn a_new_socket_replaces_the_old_and_takes_everything_kept() {
        let mut d = delivery(100, 100);
        let old = FakeSocket::default();
        let _ = d.bind(old.clone());
        for i in 0..4 {
            let _ = d.send(pkt(i));
        }
        assert_eq!(ns(&old.written()), vec![0, 1]);
        assert!(matches!(d.bind(old.clone()), Bound::Same));
        let new = FakeSocket::default();
        match d.bind(new.clone()) {
            Bound::Replaced(s) => assert!(s.same(&old)),
            _ => panic!("the old socket is replaced"),
        }
        // Whatever the old socket's flow says no longer matters: the new
        // one is asked for room when it fills.
        assert_eq!(d.drain(), Step::Idle);
        assert_eq!(ns(&new.written()), vec![2, 3]);
        assert_eq!(d.send(pkt(4)).step, Step::WaitForRoom { at: 50 });
    }

    #[test]
    fn a_socket_found_gone_is_unbound_and_its_packet_kept_first() {
        let mut d = delivery(100, 1000);
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        s.close();
        let out = d.send(pkt(0));
        assert_eq!(out.step, Step::Lost);
        assert!(out.queued);
        assert!(d.socket().is_none());
        let _ = d.send(pkt(1));
        // Gone while draining: the head stays the head.
        let s2 = FakeSocket::default();
        s2.close();
        let _ = d.bind(s2);
        assert_eq!(d.drain(), Step::Lost);
        assert_eq!(kept(&d), vec![0, 1]);
        let s3 = FakeSocket::default();
        let _ = d.bind(s3.clone());
        assert_eq!(d.drain(), Step::Idle);
        assert_eq!(ns(&s3.written()), vec![0, 1]);
    }

    #[test]
    fn the_shortcut_is_open_only_while_nothing_is_kept_and_closed_before_keeping() {
        let mut d = delivery(100, 100);
        let sc = Arc::clone(d.shortcut());
        let detour = Detour::default();
        assert!(!sc.is_open(), "no socket");
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        assert!(sc.is_open());
        assert!(sc.send(&detour, pkt(0)).is_ok());
        assert!(sc.send(&detour, pkt(1)).is_ok());
        // The socket does not keep up: a sender hands its packet to the
        // owner, which keeps it and closes the shortcut as it does.
        let p = sc.send(&detour, pkt(2)).unwrap_err();
        let out = d.send(p);
        assert!(out.queued);
        assert!(!sc.is_open());
        s.take();
        assert!(sc.send(&detour, pkt(3)).is_err(), "closed while kept");
        assert_eq!(d.resume(), Step::Idle);
        assert!(sc.is_open(), "open again once the queue is empty");
        assert_eq!(ns(&s.written()), vec![0, 1, 2]);
        // A sender with a packet still at the owner does not pass it.
        let ticket = detour.ticket();
        assert!(sc.send(&detour, pkt(4)).is_err());
        drop(ticket);
        assert!(sc.send(&detour, pkt(4)).is_ok());
        d.unbind();
        assert!(!sc.is_open());
    }

    #[test]
    fn the_shortcut_says_full_while_a_bound_socket_has_packets_waiting() {
        let mut d = delivery(100, 100);
        let sc = Arc::clone(d.shortcut());
        let _ = d.send(pkt(0));
        assert!(sc.until_room(0).is_none(), "no socket: not full");
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        for i in 1..4 {
            let _ = d.send(pkt(i));
        }
        assert!(sc.until_room(0).is_some(), "bound and kept: full");
        s.take();
        let _ = d.resume();
        s.take();
        let _ = d.resume();
        assert!(d.queue().is_empty());
        assert!(sc.until_room(0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waiting_for_room_wakes_when_the_queue_is_taken_or_gives_up() {
        let mut d = delivery(100, 100);
        let sc = Arc::clone(d.shortcut());
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        for i in 0..4 {
            let _ = d.send(pkt(i));
        }
        let wait = sc.until_room(0).expect("bound and kept: full");
        let taken = async {
            tokio::task::yield_now().await;
            while !d.queue().is_empty() {
                s.take();
                let _ = d.resume();
            }
        };
        let (room, ()) = tokio::join!(wait, taken);
        assert!(room, "the wait ends when the queue is empty again");

        for i in 4..8 {
            let _ = d.send(pkt(i));
        }
        let episode = sc.episode();
        let wait = sc.until_room(0).expect("full again");
        let began = tokio::time::Instant::now();
        assert!(!wait.await, "nothing taken: the wait gives up");
        assert_eq!(began.elapsed(), super::super::shortcut::MAX_PAUSE);
        assert!(
            sc.until_room(episode).is_none(),
            "a sender that gave up in this episode does not wait again"
        );

        // The queue drains and fills again: a new episode, in which the
        // sender that gave up in the last one waits again.
        while !d.queue().is_empty() {
            s.take();
            let _ = d.resume();
        }
        assert!(sc.until_room(episode).is_none(), "not full");
        for i in 8..12 {
            let _ = d.send(pkt(i));
        }
        assert_ne!(sc.episode(), episode, "a new episode");
        assert!(
            sc.until_room(episode).is_some(),
            "in a new episode a sender waits again"
        );
    }

    /// PROTOCOL 1.5 "Bounds" (back-pressure): a waiter made while the
    /// owner was full, whose owner drained before it was first polled
    /// (the notice went to no one), sees so at once instead of pausing
    /// its sender for `MAX_PAUSE`; and so does one whose owner drained and
    /// filled again meanwhile (a new episode).
    #[tokio::test(start_paused = true)]
    async fn a_waiter_whose_owner_drained_before_its_first_poll_ends_at_once() {
        let mut d = delivery(100, 100);
        let sc = Arc::clone(d.shortcut());
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        for i in 0..4 {
            let _ = d.send(pkt(i));
        }
        let wait = sc.until_room(0).expect("bound and kept: full");
        while !d.queue().is_empty() {
            s.take();
            let _ = d.resume();
        }
        let began = tokio::time::Instant::now();
        assert!(wait.await, "the owner has room: no wait");
        assert_eq!(began.elapsed(), Duration::ZERO);

        // Drained and full again before the first poll: a new episode.
        for i in 4..8 {
            let _ = d.send(pkt(i));
        }
        let wait = sc.until_room(0).expect("full");
        while !d.queue().is_empty() {
            s.take();
            let _ = d.resume();
        }
        for i in 8..12 {
            let _ = d.send(pkt(i));
        }
        let began = tokio::time::Instant::now();
        assert!(wait.await, "the full episode it waited for is over");
        assert_eq!(began.elapsed(), Duration::ZERO);
    }

    #[test]
    fn switched_off_the_shortcut_never_opens_and_nothing_else_changes() {
        let mut d = Delivery::new(Outbox::new(100), 100, false);
        let sc = Arc::clone(d.shortcut());
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        assert!(!sc.is_open());
        assert!(sc.send(&Detour::default(), pkt(0)).is_err());
        for i in 0..4 {
            let _ = d.send(pkt(i));
        }
        assert!(!sc.is_open());
        s.take();
        let _ = d.resume();
        assert_eq!(ns(&s.written()), vec![0, 1, 2, 3]);
        assert!(!sc.is_open());
    }

    #[test]
    fn removing_the_last_kept_packet_opens_the_shortcut() {
        let mut d = delivery(100, 100);
        let s = FakeSocket::default();
        let _ = d.bind(s.clone());
        for i in 0..3 {
            let _ = d.send(pkt(i));
        }
        assert!(!d.shortcut().is_open());
        assert_eq!(d.remove_where(|p| n(p) == 2), 1);
        assert!(d.queue().is_empty());
        assert!(d.shortcut().is_open());
    }

    #[test]
    fn a_retired_owner_keeps_the_shortcut_closed_and_hands_back_its_queue() {
        let mut d = delivery(100, 1000);
        let _ = d.send(pkt(0));
        let s = FakeSocket::default();
        let left = d.retire();
        assert_eq!(left.iter().map(n).collect::<Vec<_>>(), vec![0]);
        let _ = d.bind(s);
        assert!(!d.shortcut().is_open());
    }
}
