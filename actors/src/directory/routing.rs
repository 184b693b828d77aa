//! `RoutingTable`: where each agent lives, by agent id; `StatusSweeps`:
//! one `request_statuses` sweep at a time. Plain rules of `AgentDirectory`.
//!
//! Generic over the location type so the rules are tested without actors,
//! and so a remote location (another switch) can later stand beside a
//! local actor address behind the same lookup.

use std::collections::HashMap;

#[derive(Debug)]
pub struct RoutingTable<L> {
    agents: HashMap<String, L>,
}

impl<L> Default for RoutingTable<L> {
    fn default() -> Self {
        RoutingTable {
            agents: HashMap::new(),
        }
    }
}

impl<L: Clone> RoutingTable<L> {
    /// Where agent `id` lives, if it is known.
    pub fn locate(&self, id: &str) -> Option<&L> {
        self.agents.get(id)
    }

    /// The agent's location, made by `create` if it is new. The bool says
    /// whether it was created.
    pub fn locate_or_insert(&mut self, id: &str, create: impl FnOnce() -> L) -> (L, bool) {
        if let Some(l) = self.agents.get(id) {
            return (l.clone(), false);
        }
        let l = create();
        self.agents.insert(id.to_string(), l.clone());
        (l, true)
    }

    /// Forgets agent `id`, but only if it still lives at a location that
    /// `is_it` recognises (a newer agent of the same id stays).
    pub fn remove_if(&mut self, id: &str, is_it: impl FnOnce(&L) -> bool) -> Option<L> {
        if self.agents.get(id).is_some_and(is_it) {
            self.agents.remove(id)
        } else {
            None
        }
    }

    pub fn remove(&mut self, id: &str) -> Option<L> {
        self.agents.remove(id)
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &L)> {
        self.agents.iter()
    }
}

/// `request_statuses` sweeps (PROTOCOL 1.2, 1.5): at most one runs over
/// the agents at a time; requests that arrive meanwhile are answered
/// together by one more sweep when it ends (its answer carries the newest
/// request's timestamps), so a flood of requests costs at most two sweeps'
/// worth of work and memory, not one per request.
#[derive(Debug)]
pub struct StatusSweeps<R> {
    running: bool,
    waiting: Option<R>,
}

impl<R> Default for StatusSweeps<R> {
    fn default() -> Self {
        StatusSweeps {
            running: false,
            waiting: None,
        }
    }
}

/// What to do with a `request_statuses`.
#[derive(Debug, PartialEq)]
pub enum SweepDecision<R> {
    /// Sweep now, answering this request.
    Start(R),
    /// A sweep runs: this request waits for the next one. True if it
    /// replaced an older waiting request (that one is answered by the same
    /// sweep, with this one's timestamps).
    Wait { replaced: bool },
}

impl<R> StatusSweeps<R> {
    pub fn request(&mut self, request: R) -> SweepDecision<R> {
        if !self.running {
            self.running = true;
            return SweepDecision::Start(request);
        }
        let replaced = self.waiting.replace(request).is_some();
        SweepDecision::Wait { replaced }
    }

    /// The running sweep ended: the request to sweep for next, if any.
    pub fn finished(&mut self) -> Option<R> {
        match self.waiting.take() {
            Some(next) => Some(next),
            None => {
                self.running = false;
                None
            }
        }
    }

    pub fn running(&self) -> bool {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sweep_at_a_time_and_the_newest_waiting_request_next() {
        let mut s = StatusSweeps::default();
        assert_eq!(s.request(1), SweepDecision::Start(1));
        assert_eq!(s.request(2), SweepDecision::Wait { replaced: false });
        assert_eq!(s.request(3), SweepDecision::Wait { replaced: true });
        assert_eq!(s.request(4), SweepDecision::Wait { replaced: true });
        assert_eq!(s.finished(), Some(4));
        assert!(s.running());
        assert_eq!(s.finished(), None);
        assert!(!s.running());
        assert_eq!(s.request(5), SweepDecision::Start(5));
    }

    #[test]
    fn locate_or_insert_creates_once() {
        let mut t = RoutingTable::default();
        let mut made = 0;
        let (a, new) = t.locate_or_insert("x", || {
            made += 1;
            1
        });
        assert_eq!((a, new), (1, true));
        let (b, new) = t.locate_or_insert("x", || 2);
        assert_eq!((b, new), (1, false));
        assert_eq!(made, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn remove_if_spares_a_newer_location() {
        let mut t = RoutingTable::default();
        t.locate_or_insert("x", || 2);
        assert_eq!(t.remove_if("x", |l| *l == 1), None);
        assert_eq!(t.locate("x"), Some(&2));
        assert_eq!(t.remove_if("x", |l| *l == 2), Some(2));
        assert!(t.is_empty());
    }
}
