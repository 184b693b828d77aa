//! `Flow`: the bytes of one socket written by the switch and taken by the
//! transport.
//!
//! A WebSocket actor (actix-web-actors) runs only when the HTTP layer pulls
//! its output, so when its peer stops reading the actor freezes and every
//! message sent to it would pile up in its mailbox. Senders therefore look
//! at the socket's bytes in flight first and, past a bound, keep what they
//! have in their own bounded queues (an agent's queue, the backend outbox,
//! a monitor subscriber's queue), where overflow is counted and reported.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What an owner asks to have done when the socket has taken enough.
type Wake = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub struct Flow {
    written: AtomicU64,
    taken: AtomicU64,
    /// A waiter is set: `took` checks `resume_at` (one load per pull
    /// while nobody waits).
    armed: AtomicBool,
    resume_at: AtomicU64,
    /// By owner: one socket may be written to by several owners (a socket
    /// that speaks for several agents), each waiting for room.
    waiters: Mutex<Vec<(usize, Wake)>>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("in_flight", &self.in_flight())
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Flow {
    /// Bytes written and not yet taken by the transport.
    pub fn in_flight(&self) -> u64 {
        self.written
            .load(Ordering::SeqCst)
            .saturating_sub(self.taken.load(Ordering::SeqCst))
    }

    /// Bytes written to the session so far, and bytes its transport has
    /// taken so far (both only grow): what was written before a moment has
    /// been taken once `taken` reaches that moment's `written`.
    pub fn totals(&self) -> (u64, u64) {
        // `taken` first: read after it, `written` is never behind it.
        let taken = self.taken.load(Ordering::SeqCst);
        (self.written.load(Ordering::SeqCst), taken)
    }

    /// Counts a WebSocket text frame of `payload` bytes about to be written
    /// (header included, as the transport will hand it on).
    pub fn wrote(&self, payload: usize) {
        let header = if payload < 126 {
            2
        } else if payload < 65_536 {
            4
        } else {
            10
        };
        self.written
            .fetch_add((payload + header) as u64, Ordering::Relaxed);
    }

    /// Counts bytes the transport took (called by the response body stream).
    pub fn took(&self, bytes: usize) {
        self.taken.fetch_add(bytes as u64, Ordering::SeqCst);
        if self.armed.load(Ordering::SeqCst)
            && self.in_flight() <= self.resume_at.load(Ordering::Relaxed)
        {
            self.fire();
        }
    }

    /// Calls `wake` once, from whichever thread sees it first, when the
    /// bytes in flight have fallen to `at` or below: at once if they
    /// already have. An owner that keeps packets for this socket thus
    /// resumes as soon as there is room, rather than polling. A later call
    /// by the same `owner` replaces its waiter if that was not called yet;
    /// every owner's waiter is called when the threshold last asked for is
    /// reached (the router's owners all ask for half the same bound).
    pub fn wake_when_at_most(&self, owner: usize, at: u64, wake: impl FnOnce() + Send + 'static) {
        if let Ok(mut w) = self.waiters.lock() {
            w.retain(|(o, _)| *o != owner);
            w.push((owner, Box::new(wake)));
        }
        self.resume_at.store(at, Ordering::Relaxed);
        self.armed.store(true, Ordering::SeqCst);
        // The transport may have taken everything between the owner's last
        // look and the arming: then nobody else would see it.
        if self.in_flight() <= at {
            self.fire();
        }
    }

    fn fire(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let waiters = self
            .waiters
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for (_, wake) in waiters {
            wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_written_minus_taken_with_frame_headers() {
        let f = Flow::default();
        f.wrote(10);
        assert_eq!(f.in_flight(), 12);
        f.wrote(200);
        assert_eq!(f.in_flight(), 12 + 204);
        f.wrote(70_000);
        assert_eq!(f.in_flight(), 12 + 204 + 70_010);
        f.took(1_000_000);
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn a_waiter_is_woken_once_when_enough_is_taken() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let f = Flow::default();
        let woken = Arc::new(AtomicUsize::new(0));
        f.wrote(996); // 1000 in flight, the header included
        let waiter = |by: usize| {
            let w = Arc::clone(&woken);
            move || {
                w.fetch_add(by, Ordering::SeqCst);
            }
        };
        // Two owners wait; the first one asks twice (replaced, not doubled).
        f.wake_when_at_most(1, 400, waiter(1));
        f.wake_when_at_most(1, 400, waiter(1));
        f.wake_when_at_most(2, 400, waiter(10));
        f.took(500);
        assert_eq!(woken.load(Ordering::SeqCst), 0, "500 still in flight");
        f.took(100);
        assert_eq!(woken.load(Ordering::SeqCst), 11, "each owner once");
        f.took(400);
        assert_eq!(woken.load(Ordering::SeqCst), 11, "once");
        // Already below: woken at once.
        f.wake_when_at_most(1, 10, waiter(100));
        assert_eq!(woken.load(Ordering::SeqCst), 111);
    }
}
