//! A bounded FIFO that drops its oldest item when full.
//!
//! Used for an agent's undelivered packets (PROTOCOL 1.3) and the backend
//! outbox (1.4): both must keep order, stay bounded whatever a peer does,
//! and report every drop so it can be counted and told. The channels'
//! buffers while their link is away (`UartManager`, `WebsocketChannel`)
//! and a client connection's push queue (`ClientConnection`) are the same
//! queue. A support type: it depends on nothing else in the crate.
//!
//! Some items are *spare*: anyone may cause them (the backend outbox's
//! `log_error` reports come from any browser, through `/log_error` or a
//! version check). They may hold only a share of the bound, so a flood of
//! them can never push the packets that matter (submits, registrations,
//! live updates) out of a full queue; past their share the newest spare
//! item is refused instead. Every check is O(1): a count and a byte sum of
//! the spare items are kept beside the totals.

use std::collections::VecDeque;

/// A bounded FIFO, by items and (for weighed items) by bytes.
#[derive(Debug)]
pub struct Outbox<T> {
    /// Each item with its weight (bytes; 0 for an item pushed unweighed)
    /// and whether it is spare.
    items: VecDeque<(T, usize, bool)>,
    limit: usize,
    bytes: usize,
    bytes_limit: usize,
    /// Spare items held, and their bytes.
    spare: usize,
    spare_bytes: usize,
    /// The share of `limit` and `bytes_limit` spare items may hold.
    spare_limit: usize,
    spare_bytes_limit: usize,
}

impl<T> Outbox<T> {
    pub fn new(limit: usize) -> Self {
        Outbox::with_bytes(limit, usize::MAX)
    }

    /// Bounded by `limit` items and `bytes_limit` bytes of weighed items.
    pub fn with_bytes(limit: usize, bytes_limit: usize) -> Self {
        let limit = limit.max(1);
        Outbox {
            items: VecDeque::new(),
            limit,
            bytes: 0,
            bytes_limit,
            spare: 0,
            spare_bytes: 0,
            spare_limit: limit,
            spare_bytes_limit: bytes_limit,
        }
    }

    /// Spare items may hold at most `1/denominator` of the item and byte
    /// bounds (at least one item).
    pub fn with_spare_share(mut self, denominator: usize) -> Self {
        let d = denominator.max(1);
        self.spare_limit = (self.limit / d).max(1);
        self.spare_bytes_limit = self.bytes_limit / d;
        self
    }

    /// Appends a spare item weighing `weight` bytes: refused (handed back)
    /// when spare items already hold their share, otherwise kept like any
    /// item (and then the oldest items make room, as for
    /// [`Outbox::push_weighed`]).
    pub fn push_spare(&mut self, item: T, weight: usize) -> Result<Vec<T>, T> {
        if self.spare >= self.spare_limit
            || self.spare_bytes.saturating_add(weight) > self.spare_bytes_limit
        {
            return Err(item);
        }
        let dropped = self.make_room(weight);
        self.put_back(item, weight, true);
        Ok(dropped)
    }

    fn make_room(&mut self, weight: usize) -> Vec<T> {
        let mut dropped = Vec::new();
        while !self.items.is_empty()
            && (self.items.len() >= self.limit
                || self.bytes.saturating_add(weight) > self.bytes_limit)
        {
            if let Some(old) = self.pop() {
                dropped.push(old);
            }
        }
        dropped
    }

    fn put_back(&mut self, item: T, weight: usize, spare: bool) {
        self.bytes += weight;
        if spare {
            self.spare += 1;
            self.spare_bytes += weight;
        }
        self.items.push_back((item, weight, spare));
    }

    /// Spare items held.
    pub fn spare(&self) -> usize {
        self.spare
    }

    /// Appends `item`; returns the oldest item if it had to make room.
    pub fn push(&mut self, item: T) -> Option<T> {
        let dropped = if self.items.len() >= self.limit {
            self.pop()
        } else {
            None
        };
        self.items.push_back((item, 0, false));
        dropped
    }

    /// Appends `item` weighing `weight` bytes; returns the oldest items
    /// that had to make room, by count or by bytes. The new item is always
    /// kept (one item alone may weigh more than the bound: it is bounded by
    /// the frame or body limit it came in under).
    pub fn push_weighed(&mut self, item: T, weight: usize) -> Vec<T> {
        let dropped = self.make_room(weight);
        self.put_back(item, weight, false);
        dropped
    }

    /// Puts an item back at the head (it was taken out but could not be
    /// delivered). Never drops: the head is the oldest and must survive.
    pub fn push_front(&mut self, item: T) {
        self.items.push_front((item, 0, false));
    }

    /// [`Outbox::push_front`] of an item taken with [`Outbox::pop_weighed`]
    /// (it goes back as an ordinary item: it was the head, and the head
    /// must survive).
    pub fn push_front_weighed(&mut self, item: T, weight: usize) {
        self.bytes += weight;
        self.items.push_front((item, weight, false));
    }

    pub fn pop(&mut self) -> Option<T> {
        self.pop_weighed().map(|(t, _)| t)
    }

    /// The head and its weight.
    pub fn pop_weighed(&mut self) -> Option<(T, usize)> {
        let (item, w, spare) = self.items.pop_front()?;
        self.bytes -= w;
        if spare {
            self.spare -= 1;
            self.spare_bytes -= w;
        }
        Some((item, w))
    }

    /// Takes the head if `f` says so.
    pub fn pop_if(&mut self, f: impl FnOnce(&T) -> bool) -> Option<T> {
        if self.items.front().is_some_and(|(t, _, _)| f(t)) {
            self.pop()
        } else {
            None
        }
    }

    /// Removes every item `f` picks, keeping the others in order; returns
    /// how many went.
    pub fn remove_where(&mut self, mut f: impl FnMut(&T) -> bool) -> usize {
        let before = self.items.len();
        let (mut bytes, mut spare, mut spare_bytes) = (self.bytes, self.spare, self.spare_bytes);
        self.items.retain(|(t, w, is_spare)| {
            let drop = f(t);
            if drop {
                bytes -= *w;
                if *is_spare {
                    spare -= 1;
                    spare_bytes -= *w;
                }
            }
            !drop
        });
        (self.bytes, self.spare, self.spare_bytes) = (bytes, spare, spare_bytes);
        before - self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(t, _, _)| t)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes of the weighed items held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn bytes_limit(&self) -> usize {
        self.bytes_limit
    }

    /// Takes everything, in order.
    pub fn take_all(&mut self) -> VecDeque<T> {
        self.bytes = 0;
        self.spare = 0;
        self.spare_bytes = 0;
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(t, _, _)| t)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_drops_oldest_past_the_limit() {
        let mut o = Outbox::new(3);
        assert_eq!(o.push(1), None);
        assert_eq!(o.push(2), None);
        assert_eq!(o.push(3), None);
        assert_eq!(o.push(4), Some(1));
        assert_eq!(o.len(), 3);
        assert_eq!(o.take_all().into_iter().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(o.is_empty());
    }

    #[test]
    fn push_front_restores_the_head() {
        let mut o = Outbox::new(2);
        o.push(1);
        o.push(2);
        let head = o.pop().unwrap();
        o.push_front(head);
        assert_eq!(o.pop(), Some(1));
        assert_eq!(o.pop(), Some(2));
        assert_eq!(o.pop(), None);
    }

    #[test]
    fn weighed_items_are_bounded_in_bytes_too() {
        let mut o = Outbox::with_bytes(10, 100);
        assert!(o.push_weighed(1, 40).is_empty());
        assert!(o.push_weighed(2, 40).is_empty());
        assert_eq!(o.bytes(), 80);
        assert_eq!(o.push_weighed(3, 40), vec![1]);
        assert_eq!(o.bytes(), 80);
        // One item heavier than the bound: everything older goes, it stays.
        assert_eq!(o.push_weighed(4, 500), vec![2, 3]);
        assert_eq!(o.bytes(), 500);
        let (head, w) = o.pop_weighed().unwrap();
        assert_eq!((head, w, o.bytes()), (4, 500, 0));
        o.push_front_weighed(head, w);
        assert_eq!(o.bytes(), 500);
        assert_eq!(o.take_all().len(), 1);
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn remove_where_keeps_order_and_bytes() {
        let mut o = Outbox::with_bytes(10, 1000);
        for i in 0..6 {
            o.push_weighed(i, 10 + i);
        }
        assert_eq!(o.remove_where(|i| i % 2 == 1), 3);
        assert_eq!(o.bytes(), 10 + 12 + 14);
        assert_eq!(o.take_all().into_iter().collect::<Vec<_>>(), vec![0, 2, 4]);
    }

    #[test]
    fn spare_items_hold_only_their_share_and_never_push_others_out() {
        // 8 items, 800 bytes; spare items: 2 items, 200 bytes.
        let mut o = Outbox::with_bytes(8, 800).with_spare_share(4);
        assert_eq!(o.push_weighed("submit-1", 10), Vec::<&str>::new());
        assert_eq!(o.push_spare("err-1", 10), Ok(vec![]));
        assert_eq!(o.push_spare("err-2", 10), Ok(vec![]));
        // A flood of spare items is refused past the share, newest first.
        for _ in 0..100 {
            assert_eq!(o.push_spare("err-n", 10), Err("err-n"));
        }
        assert_eq!((o.len(), o.spare()), (3, 2));
        // Taking a spare item out frees its place in the share.
        o.remove_where(|i| *i == "err-1");
        assert_eq!(o.spare(), 1);
        assert_eq!(
            o.push_spare("err-3", 195),
            Err("err-3"),
            "bytes of the share"
        );
        assert_eq!(o.push_spare("err-3", 100), Ok(vec![]));
        // The head goes when ordinary items need the room, whatever it is.
        for i in 0..5 {
            assert!(o.push_weighed("live", 10 + i).is_empty());
        }
        assert_eq!(o.push_weighed("submit-2", 10), vec!["submit-1"]);
        assert_eq!(o.pop(), Some("err-2"));
        assert_eq!(o.spare(), 1);
        o.take_all();
        assert_eq!((o.spare(), o.bytes()), (0, 0));
        assert_eq!(o.push_spare("err-4", 10), Ok(vec![]));
    }

    #[test]
    fn a_zero_limit_still_holds_one() {
        let mut o = Outbox::new(0);
        assert_eq!(o.push('a'), None);
        assert_eq!(o.push('b'), Some('a'));
    }
}
