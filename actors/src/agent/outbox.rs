//! A bounded FIFO that drops its oldest item when full.
//!
//! Used for an agent's undelivered packets (PROTOCOL 1.3) and the backend
//! outbox (1.4): both must keep order, stay bounded whatever a peer does,
//! and report every drop so it can be counted and told.

use std::collections::VecDeque;

/// A bounded FIFO, by items and (for weighed items) by bytes.
#[derive(Debug)]
pub struct Outbox<T> {
    /// Each item with its weight (bytes; 0 for an item pushed unweighed).
    items: VecDeque<(T, usize)>,
    limit: usize,
    bytes: usize,
    bytes_limit: usize,
}

impl<T> Outbox<T> {
    pub fn new(limit: usize) -> Self {
        Outbox::with_bytes(limit, usize::MAX)
    }

    /// Bounded by `limit` items and `bytes_limit` bytes of weighed items.
    pub fn with_bytes(limit: usize, bytes_limit: usize) -> Self {
        Outbox {
            items: VecDeque::new(),
            limit: limit.max(1),
            bytes: 0,
            bytes_limit,
        }
    }

    /// Appends `item`; returns the oldest item if it had to make room.
    pub fn push(&mut self, item: T) -> Option<T> {
        let dropped = if self.items.len() >= self.limit {
            self.pop()
        } else {
            None
        };
        self.items.push_back((item, 0));
        dropped
    }

    /// Appends `item` weighing `weight` bytes; returns the oldest items
    /// that had to make room, by count or by bytes. The new item is always
    /// kept (one item alone may weigh more than the bound: it is bounded by
    /// the frame or body limit it came in under).
    pub fn push_weighed(&mut self, item: T, weight: usize) -> Vec<T> {
        let mut dropped = Vec::new();
        while !self.items.is_empty()
            && (self.items.len() >= self.limit
                || self.bytes.saturating_add(weight) > self.bytes_limit)
        {
            if let Some(old) = self.pop() {
                dropped.push(old);
            }
        }
        self.bytes += weight;
        self.items.push_back((item, weight));
        dropped
    }

    /// Puts an item back at the head (it was taken out but could not be
    /// delivered). Never drops: the head is the oldest and must survive.
    pub fn push_front(&mut self, item: T) {
        self.items.push_front((item, 0));
    }

    /// [`Outbox::push_front`] of an item taken with [`Outbox::pop_weighed`].
    pub fn push_front_weighed(&mut self, item: T, weight: usize) {
        self.bytes += weight;
        self.items.push_front((item, weight));
    }

    pub fn pop(&mut self) -> Option<T> {
        self.pop_weighed().map(|(t, _)| t)
    }

    /// The head and its weight.
    pub fn pop_weighed(&mut self) -> Option<(T, usize)> {
        let (item, w) = self.items.pop_front()?;
        self.bytes -= w;
        Some((item, w))
    }

    /// Takes the head if `f` says so.
    pub fn pop_if(&mut self, f: impl FnOnce(&T) -> bool) -> Option<T> {
        if self.items.front().is_some_and(|(t, _)| f(t)) {
            self.pop()
        } else {
            None
        }
    }

    /// Removes every item `f` picks, keeping the others in order; returns
    /// how many went.
    pub fn remove_where(&mut self, mut f: impl FnMut(&T) -> bool) -> usize {
        let before = self.items.len();
        let mut bytes = self.bytes;
        self.items.retain(|(t, w)| {
            let drop = f(t);
            if drop {
                bytes -= *w;
            }
            !drop
        });
        self.bytes = bytes;
        before - self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(t, _)| t)
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
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(t, _)| t)
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
    fn a_zero_limit_still_holds_one() {
        let mut o = Outbox::new(0);
        assert_eq!(o.push('a'), None);
        assert_eq!(o.push('b'), Some('a'));
    }
}
