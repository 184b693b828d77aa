//! `Outbound`: everything the bridge publishes, kept until the broker has
//! it, in order, bounded.
//!
//! A message waits (bounded in items and bytes, the oldest dropped and
//! counted) until the bridge hands it to the MQTT client, at most `window`
//! at a time. A handed message is done when the client has written it
//! (QoS 0) or the broker has acknowledged it (QoS 1, `PUBACK`). When the
//! connection is lost, the handed messages not done go back to the front
//! of the queue, in order, and are handed again on the next connection:
//! the client starts every connection with a clean session, so it keeps
//! nothing of its own across one.
//!
//! The client reports a written publish by packet id only, in the order it
//! was handed (`Outgoing::Publish(pkid)`; 0 for QoS 0), so the first
//! handed message without a packet id is the one written.
//!
//! Some messages are *spare* (the answers to commands, which anyone who
//! may publish to the broker can cause): they may hold only a share of the
//! bound, so a flood of commands never pushes node data out.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::outbox::Outbox;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// 0 or 1.
    pub qos: u8,
    pub retain: bool,
}

impl Message {
    pub fn new(topic: String, payload: impl Into<Bytes>, qos: u8, retain: bool) -> Message {
        Message {
            topic,
            payload: payload.into(),
            qos: qos.min(1),
            retain,
        }
    }

    fn weight(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

#[derive(Debug)]
pub struct Outbound {
    waiting: Outbox<Message>,
    /// Handed to the client, oldest first, with the packet id once written.
    handed: VecDeque<(Message, Option<u16>)>,
    window: usize,
}

impl Outbound {
    /// `limit` items and `bytes_limit` bytes waiting; `window` handed.
    pub fn new(limit: usize, bytes_limit: usize, window: usize) -> Outbound {
        Outbound {
            waiting: Outbox::with_bytes(limit, bytes_limit).with_spare_share(4),
            handed: VecDeque::new(),
            window: window.max(1),
        }
    }

    /// Queues a message; returns how many old ones were dropped for it.
    pub fn push(&mut self, m: Message) -> usize {
        let w = m.weight();
        self.waiting.push_weighed(m, w).len()
    }

    /// Queues a spare message; false (and not queued) when spare messages
    /// already hold their share.
    pub fn push_spare(&mut self, m: Message) -> Result<usize, Message> {
        let w = m.weight();
        self.waiting.push_spare(m, w).map(|dropped| dropped.len())
    }

    /// Puts messages before everything waiting, in the order given
    /// (the availability and discovery of a new connection). Not bounded:
    /// they are few and the bridge makes them, not a peer.
    pub fn push_front(&mut self, ms: Vec<Message>) {
        for m in ms.into_iter().rev() {
            let w = m.weight();
            self.waiting.push_front_weighed(m, w);
        }
    }

    /// The next message to hand to the client, if the window has room; it
    /// counts as handed from now on.
    pub fn hand(&mut self) -> Option<Message> {
        if self.handed.len() >= self.window {
            return None;
        }
        let m = self.waiting.pop()?;
        self.handed.push_back((m.clone(), None));
        Some(m)
    }

    /// The client did not take the last message handed: it waits again,
    /// first in line.
    pub fn unhand_last(&mut self) {
        if let Some((m, _)) = self.handed.pop_back() {
            self.push_front(vec![m]);
        }
    }

    /// The client wrote a publish with this packet id. Returns true when
    /// that finished a message (QoS 0).
    pub fn written(&mut self, pkid: u16) -> bool {
        let Some(i) = self.handed.iter().position(|(_, id)| id.is_none()) else {
            return false;
        };
        if self.handed[i].0.qos == 0 {
            self.handed.remove(i);
            true
        } else {
            self.handed[i].1 = Some(pkid);
            false
        }
    }

    /// The broker acknowledged this packet id. Returns true when it was
    /// one of ours.
    pub fn acked(&mut self, pkid: u16) -> bool {
        match self.handed.iter().position(|(_, id)| *id == Some(pkid)) {
            Some(i) => {
                self.handed.remove(i);
                true
            }
            None => false,
        }
    }

    /// The connection is gone: what was handed and not done waits again,
    /// first, in order. Returns how many.
    pub fn link_lost(&mut self) -> usize {
        let back: Vec<Message> = self.handed.drain(..).map(|(m, _)| m).collect();
        let n = back.len();
        self.push_front(back);
        n
    }

    /// Messages waiting or handed and not done.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.handed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes (topic and payload) of the messages waiting.
    pub fn bytes(&self) -> usize {
        self.waiting.bytes()
    }

    pub fn in_flight(&self) -> usize {
        self.handed.len()
    }

    pub fn limit(&self) -> usize {
        self.waiting.limit()
    }

    pub fn bytes_limit(&self) -> usize {
        self.waiting.bytes_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize, qos: u8) -> Message {
        Message::new(format!("t/{i}"), format!("{i}"), qos, false)
    }

    fn topics(v: &[Message]) -> Vec<String> {
        v.iter().map(|m| m.topic.clone()).collect()
    }

    #[test]
    fn handed_in_order_within_the_window_and_done_on_ack() {
        let mut o = Outbound::new(100, 1 << 20, 2);
        for i in 0..4 {
            o.push(m(i, 1));
        }
        let a = o.hand().unwrap();
        let b = o.hand().unwrap();
        assert_eq!(o.hand(), None, "the window is full");
        assert_eq!(topics(&[a, b]), ["t/0", "t/1"]);
        assert!(!o.written(1));
        assert!(!o.written(2));
        assert!(o.acked(1));
        assert!(!o.acked(1), "acknowledged once");
        assert_eq!(o.hand().unwrap().topic, "t/2");
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn qos0_is_done_when_written() {
        let mut o = Outbound::new(100, 1 << 20, 8);
        o.push(m(0, 1));
        o.push(m(1, 0));
        o.hand();
        o.hand();
        assert!(!o.written(7));
        assert!(o.written(0));
        assert_eq!(o.in_flight(), 1);
        assert!(o.acked(7));
        assert!(o.is_empty());
    }

    #[test]
    fn a_lost_connection_sends_again_what_was_not_done_first_and_in_order() {
        let mut o = Outbound::new(100, 1 << 20, 3);
        for i in 0..5 {
            o.push(m(i, 1));
        }
        for _ in 0..3 {
            o.hand();
        }
        o.written(1);
        o.written(2);
        assert!(o.acked(1));
        assert_eq!(o.link_lost(), 2);
        let mut order = Vec::new();
        while let Some(x) = o.hand() {
            order.push(x);
            o.written(9);
            o.acked(9);
        }
        assert_eq!(topics(&order), ["t/1", "t/2", "t/3", "t/4"]);
        assert!(o.is_empty());
    }

    #[test]
    fn bounded_by_items_and_bytes_oldest_dropped() {
        let mut o = Outbound::new(3, 1 << 20, 1);
        let dropped: usize = (0..5).map(|i| o.push(m(i, 1))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(o.hand().unwrap().topic, "t/2");
        let mut o = Outbound::new(100, 30, 1);
        let big = Message::new("t".into(), vec![0u8; 20], 1, false);
        assert_eq!(o.push(big.clone()), 0);
        assert_eq!(o.push(big), 1);
        assert_eq!(o.bytes(), 21);
    }

    #[test]
    fn spare_messages_hold_only_a_share() {
        let mut o = Outbound::new(8, 1 << 20, 1);
        for i in 0..2 {
            assert!(o.push_spare(m(100 + i, 0)).is_ok());
        }
        assert!(o.push_spare(m(102, 0)).is_err(), "a quarter of 8");
        for i in 0..8 {
            o.push(m(i, 1));
        }
        // Data pushed the spare ones out first? No: the oldest go first,
        // whatever they are, and spare ones never push data out.
        assert_eq!(o.len(), 8);
    }

    #[test]
    fn the_client_refusing_a_message_keeps_it_first() {
        let mut o = Outbound::new(10, 1 << 20, 4);
        o.push(m(0, 1));
        o.push(m(1, 1));
        assert_eq!(o.hand().unwrap().topic, "t/0");
        o.unhand_last();
        assert_eq!(o.in_flight(), 0);
        assert_eq!(o.hand().unwrap().topic, "t/0");
    }
}
