//! `WindowRoom`: whether the publish window has room, for the sockets that
//! fill it (`CLUSTER.md` section 2, "Actors": a full window pauses the
//! senders' sockets as a full backend socket does on one switch).
//!
//! The `Cluster` actor owns the window and says when it fills and when it
//! has drained to half; a session reads one atomic per packet and, while
//! the window is full, stops reading its socket until there is room again
//! (or a bounded pause passed: a switch whose NATS is gone keeps serving
//! what does not need NATS, and what cannot wait is counted and dropped by
//! the window's own bound).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct WindowRoom {
    full: AtomicBool,
    notify: Notify,
}

impl WindowRoom {
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// The window filled (`true`) or drained enough to take senders again.
    pub fn set_full(&self, full: bool) {
        let was = self.full.swap(full, Ordering::AcqRel);
        if was && !full {
            self.notify.notify_waiters();
        }
    }

    /// Resolves `true` once the window has room, or `false` after `most`.
    pub async fn until_room(&self, most: Duration) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the look: a drain between the two still wakes.
        notified.as_mut().enable();
        if !self.is_full() {
            return true;
        }
        tokio::time::timeout(most, notified).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_waiter_resumes_when_the_window_drains_or_after_the_pause() {
        let room = Arc::new(WindowRoom::default());
        assert!(room.until_room(Duration::from_secs(1)).await, "not full");
        room.set_full(true);
        let began = tokio::time::Instant::now();
        assert!(!room.until_room(Duration::from_secs(1)).await);
        assert_eq!(began.elapsed(), Duration::from_secs(1));
        let waiter = tokio::spawn({
            let room = Arc::clone(&room);
            async move { room.until_room(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        room.set_full(false);
        assert!(waiter.await.unwrap());
        assert!(began.elapsed() < Duration::from_secs(2));
    }
}
