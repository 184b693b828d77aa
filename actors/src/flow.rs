//! `Flow`: the bytes of one socket written by the switch and taken by the
//! transport.
//!
//! A WebSocket actor (actix-web-actors) runs only when the HTTP layer pulls
//! its output, so when its peer stops reading the actor freezes and every
//! message sent to it would pile up in its mailbox. Senders therefore look
//! at the socket's bytes in flight first and, past a bound, keep what they
//! have in their own bounded queues (an agent's queue, the backend outbox,
//! a monitor subscriber's queue), where overflow is counted and reported.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Flow {
    written: AtomicU64,
    taken: AtomicU64,
}

impl Flow {
    /// Bytes written and not yet taken by the transport.
    pub fn in_flight(&self) -> u64 {
        self.written
            .load(Ordering::Relaxed)
            .saturating_sub(self.taken.load(Ordering::Relaxed))
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
        self.taken.fetch_add(bytes as u64, Ordering::Relaxed);
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
}
