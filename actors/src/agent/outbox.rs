//! A bounded FIFO that drops its oldest item when full.
//!
//! Used for an agent's undelivered packets (PROTOCOL 1.3) and the backend
//! outbox (1.4): both must keep order, stay bounded whatever a peer does,
//! and report every drop so it can be counted and told.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Outbox<T> {
    items: VecDeque<T>,
    limit: usize,
}

impl<T> Outbox<T> {
    pub fn new(limit: usize) -> Self {
        Outbox {
            items: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Appends `item`; returns the oldest item if it had to make room.
    pub fn push(&mut self, item: T) -> Option<T> {
        let dropped = if self.items.len() >= self.limit {
            self.items.pop_front()
        } else {
            None
        };
        self.items.push_back(item);
        dropped
    }

    /// Puts an item back at the head (it was taken out but could not be
    /// delivered). Never drops: the head is the oldest and must survive.
    pub fn push_front(&mut self, item: T) {
        self.items.push_front(item);
    }

    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Takes the head if `f` says so.
    pub fn pop_if(&mut self, f: impl FnOnce(&T) -> bool) -> Option<T> {
        if self.items.front().is_some_and(f) {
            self.items.pop_front()
        } else {
            None
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes everything, in order.
    pub fn take_all(&mut self) -> VecDeque<T> {
        std::mem::take(&mut self.items)
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
    fn a_zero_limit_still_holds_one() {
        let mut o = Outbox::new(0);
        assert_eq!(o.push('a'), None);
        assert_eq!(o.push('b'), Some('a'));
    }
}
