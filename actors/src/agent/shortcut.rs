//! `Shortcut`: the way past an `Agent` or the `BackendLink` for live
//! updates that need nothing from it.
//!
//! In steady state a live update only crosses its owner (`Agent` for
//! `client_bound_live_update`, `BackendLink` for
//! `mephisto_bound_live_update`) to be written to a socket: each crossing is
//! one more mailbox and one more thread wake-up per packet. So the owner,
//! which alone decides whether its socket may be written to now, publishes
//! that socket here while (and only while) it holds nothing back: a socket
//! is bound, it keeps up (`Flow`), and nothing waits in the owner's queue.
//! Sessions then write to that socket directly.
//!
//! Order per sender is kept with a [`Detour`]: a sender that handed packets
//! to the owner goes direct again only once the owner has passed all of
//! them on (delivered, or queued, which closes the shortcut first).
//!
//! An owner whose socket is connected but full also says so here
//! ([`Shortcut::set_full`]): a sender that had to hand it a packet then
//! stops reading its own socket until the owner's queue is empty again
//! ([`Shortcut::until_room`]), so the peers that send wait in their own TCP
//! buffers instead of in the owner's queue, and the owner is not asked to
//! handle every packet while it is the slowest part of the path.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::session::{deliver, WsSession};
use crate::mailbox::Mailbox;
use crate::wire::Packet;

pub struct Shortcut {
    target: RwLock<Option<Mailbox<WsSession>>>,
    /// True while the owner keeps packets because its connected socket is
    /// full (not while it has no socket: then its queue is the place for
    /// them).
    full: watch::Sender<bool>,
    /// Counts the times `full` turned true: a sender that waited
    /// `MAX_PAUSE` in vain does not wait again in the same episode.
    episode: AtomicU64,
}

impl Default for Shortcut {
    fn default() -> Self {
        Shortcut {
            target: RwLock::new(None),
            full: watch::Sender::new(false),
            episode: AtomicU64::new(0),
        }
    }
}

/// The longest a sender stops reading for a full owner: past it, it reads
/// on and its packets wait in the owner's bounded queue until the owner's
/// socket has room again, so a peer that never reads again costs each
/// sender one second, not its socket.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

impl Shortcut {
    /// The owner's socket is connected and full (`true`), or not.
    pub fn set_full(&self, full: bool) {
        self.full.send_if_modified(|f| {
            if *f == full {
                return false;
            }
            if full {
                self.episode.fetch_add(1, Ordering::Relaxed);
            }
            *f = full;
            true
        });
    }

    /// While the owner says its socket is full, and unless the sender
    /// already waited in vain in this episode (`gave_up`): a future that
    /// ends when the flag next changes (from full, that is to not full,
    /// however briefly), `true`, or after [`MAX_PAUSE`], `false`.
    pub fn until_room(&self, gave_up: u64) -> Option<impl Future<Output = bool> + 'static> {
        // Subscribed before looking: a change after the look is not missed.
        let mut rx = self.full.subscribe();
        if !*rx.borrow_and_update() || self.episode() == gave_up {
            return None;
        }
        Some(async move { tokio::time::timeout(MAX_PAUSE, rx.changed()).await.is_ok() })
    }

    /// The current full episode (see `until_room`).
    pub fn episode(&self) -> u64 {
        self.episode.load(Ordering::Relaxed)
    }

    /// The owner holds nothing back and `to` is its live socket.
    pub fn open(&self, to: &Mailbox<WsSession>) {
        if let Ok(mut t) = self.target.write() {
            if !matches!(&*t, Some(cur) if cur.same(to)) {
                *t = Some(to.clone());
            }
        }
    }

    /// The owner queues, or has no socket: everything goes through it.
    pub fn close(&self) {
        if let Ok(mut t) = self.target.write() {
            *t = None;
        }
    }

    /// Writes `packet` straight to the owner's socket if the shortcut is
    /// open, this sender has nothing left with the owner, and the socket
    /// has fewer than `in_flight_limit` bytes in flight. Hands the packet
    /// back otherwise.
    pub fn send(
        &self,
        detour: &Detour,
        packet: Packet,
        direction: &'static str,
        in_flight_limit: u64,
    ) -> Result<(), Packet> {
        // Acquire: pairs with the owner's release when it let go of this
        // sender's last packet, so a shortcut closed before that is seen.
        if detour.pending() != 0 {
            return Err(packet);
        }
        let Ok(t) = self.target.read() else {
            return Err(packet);
        };
        match &*t {
            Some(s) if s.in_flight() < in_flight_limit => deliver(s, packet, direction),
            _ => Err(packet),
        }
    }
}

/// Packets one sender has handed to an owner and the owner has not yet
/// passed on. Each such packet travels with a [`Ticket`].
#[derive(Default, Clone)]
pub struct Detour(Arc<AtomicUsize>);

impl Detour {
    /// Packets handed over and not yet passed on.
    pub fn pending(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    pub fn ticket(&self) -> Ticket {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ticket(Arc::clone(&self.0))
    }
}

/// A packet a session could not send by the shortcut, for the owner
/// (`BackendLink` or `Agent`) to pass on as if sent directly to it.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Relay {
    pub packet: Packet,
    pub ticket: Ticket,
}

/// Dropped when the owner is done with the packet (or the message is
/// dropped with a stopped owner), releasing the sender's shortcut.
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_until_dropped() {
        let d = Detour::default();
        let t1 = d.ticket();
        let t2 = d.ticket();
        assert_eq!(d.0.load(Ordering::Acquire), 2);
        drop(t1);
        assert_eq!(d.0.load(Ordering::Acquire), 1);
        drop(t2);
        assert_eq!(d.0.load(Ordering::Acquire), 0);
    }
}
