//! `Shortcut`: the one way past an owner (an `Agent`, the `BackendLink`)
//! for live updates that need nothing from it (PROTOCOL 1.2), and the one
//! place where packets pass between router actors under a lock instead of
//! through a mailbox. (The router's other shared state is configuration,
//! metrics, atomics, and the backend gate's mutex, taken once per backend
//! claim.)
//!
//! In steady state a live update only crosses its owner (`Agent` for
//! `client_bound_live_update`, `BackendLink` for
//! `mephisto_bound_live_update`) to be written to a socket: each crossing
//! is one more mailbox and one more thread wake-up per packet. So the
//! owner publishes its socket here, and sessions write to it directly.
//!
//! # The invariant
//!
//! **The shortcut is open exactly while its owner would write a packet to
//! its socket at once itself**: a socket is bound, nothing waits in the
//! owner's queue (PROTOCOL 1.3, 1.4), the owner is not retired, and the
//! switch runs with `[session] shortcut = true`. Whether the socket keeps
//! up is looked at by each sender as it writes: past the in-flight bound
//! it hands the packet to the owner, which queues it, and queueing closes
//! the shortcut.
//!
//! - **Who opens and closes it: the owner only.** Its `Delivery`
//!   (`delivery.rs`) holds the socket and the queue and calls
//!   [`Shortcut::publish`] after every change of either (bind, unbind, a
//!   packet kept, the queue drained, retirement). Senders only read it.
//! - **What keeps order: the [`Detour`].** Each sender counts the packets it
//!   handed to the owner (a [`Relay`] carrying a [`Ticket`]) that the owner
//!   has not passed on yet; while any are left it hands the owner its next
//!   packets too. So a sender's packet never overtakes its earlier one:
//!   either both crossed the owner's mailbox in order, or the earlier one
//!   was already passed on (written, or queued, which closed the shortcut
//!   first). Packets the owner must see (status changes) always cross it,
//!   with a ticket, so the live updates behind them follow them. Packets of
//!   different senders have no order to keep between them.
//! - **Why the read lock is enough.** Senders write while holding the read
//!   lock (many at once: writing is a send to the socket's mailbox, which is
//!   thread-safe); the owner changes the target under the write lock. So
//!   when the owner's close returns, no sender is between reading the
//!   target and writing to it: every packet written by the shortcut is
//!   already in the socket's mailbox, and what the owner queues or writes
//!   next comes after it. A ticket is released (`Release`) after the owner
//!   closed the shortcut for its packet, and read (`Acquire`) by the sender
//!   before it looks: a sender that sees its last ticket gone sees that
//!   close too.
//!
//! With `[session] shortcut = false` (`--no-shortcut`) the owner never
//! opens it: every packet crosses its owner's mailbox, and nothing else
//! changes, so the shortcut's gain can be measured.
//!
//! An owner whose socket is connected but full also says so here (part of
//! [`Shortcut::publish`]): a sender that had to hand it a packet then stops
//! reading its own socket until the owner's queue is empty again
//! ([`Shortcut::until_room`]), so the peers that send wait in their own TCP
//! buffers instead of in the owner's queue, and the owner is not asked to
//! handle every packet while it is the slowest part of the path. The
//! session does this for the `BackendLink`, with or without the shortcut.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::delivery::Socket;
use super::session::PeerSocket;
use crate::wire::Packet;

pub struct Shortcut<S = PeerSocket> {
    target: RwLock<Option<S>>,
    /// Bytes in flight on the target past which a sender hands its packet
    /// to the owner instead (the owner's own bound).
    in_flight_limit: u64,
    /// True while the owner keeps packets because its connected socket is
    /// full (not while it has no socket: then its queue is the place for
    /// them). Written by the owner alone.
    full: AtomicBool,
    /// Wakes the senders waiting on `full` when it changes. A flag and a
    /// `Notify` rather than a `watch` channel: every agent has a shortcut,
    /// and a channel's shared state is a few hundred bytes more per agent.
    changed: Notify,
    /// Counts the times `full` turned true: a sender that waited
    /// `MAX_PAUSE` in vain does not wait again in the same episode.
    episode: AtomicU64,
}

/// The longest a sender stops reading for a full owner: past it, it reads
/// on and its packets wait in the owner's bounded queue until the owner's
/// socket has room again, so a peer that never reads again costs each
/// sender one second, not its socket.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

impl<S: Socket> Shortcut<S> {
    /// Closed, for a socket bounded at `in_flight_limit` bytes in flight.
    pub fn new(in_flight_limit: u64) -> Self {
        Shortcut {
            target: RwLock::new(None),
            in_flight_limit,
            full: AtomicBool::new(false),
            changed: Notify::new(),
            episode: AtomicU64::new(0),
        }
    }

    /// The owner's decision, made by its `Delivery` and nowhere else:
    /// `open` is the socket senders may write to (None: everything goes
    /// through the owner), `full` whether its connected socket is full.
    pub(super) fn publish(&self, open: Option<&S>, full: bool) {
        {
            // A panic elsewhere cannot leave a half-written `Option`.
            let mut t = self.target.write().unwrap_or_else(PoisonError::into_inner);
            match open {
                Some(to) if matches!(&*t, Some(cur) if cur.same(to)) => {}
                Some(to) => *t = Some(to.clone()),
                None => *t = None,
            }
        }
        self.set_full(full);
    }

    /// Bytes in flight on the owner's socket past which it holds packets.
    pub fn in_flight_limit(&self) -> u64 {
        self.in_flight_limit
    }

    /// Whether senders may write past the owner now.
    pub fn is_open(&self) -> bool {
        self.target
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn set_full(&self, full: bool) {
        // One writer (the owner): a plain look, then the change.
        if self.full.load(Ordering::Acquire) == full {
            return;
        }
        if full {
            self.episode.fetch_add(1, Ordering::AcqRel);
        }
        self.full.store(full, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// While the owner says its socket is full, and unless the sender
    /// already waited in vain in this episode (`gave_up`): a future that
    /// ends when the flag next changes (from full, that is to not full,
    /// however briefly), `true`, or after [`MAX_PAUSE`], `false`.
    pub fn until_room(
        self: &Arc<Self>,
        gave_up: u64,
    ) -> Option<impl Future<Output = bool> + 'static>
    where
        S: 'static,
    {
        let episode = self.episode();
        if !self.full.load(Ordering::Acquire) || episode == gave_up {
            return None;
        }
        let me = Arc::clone(self);
        Some(async move {
            let changed = me.changed.notified();
            tokio::pin!(changed);
            // Registered before the second look, so a change after it is
            // not missed; one between the first look and this is seen in
            // the flag, or, when the socket filled up again meanwhile, in
            // the episode.
            changed.as_mut().enable();
            if !me.full.load(Ordering::Acquire) || me.episode() != episode {
                return true;
            }
            tokio::time::timeout(MAX_PAUSE, changed).await.is_ok()
        })
    }

    /// The current full episode (see `until_room`).
    pub fn episode(&self) -> u64 {
        self.episode.load(Ordering::Relaxed)
    }

    /// Writes `packet` straight to the owner's socket if the shortcut is
    /// open, this sender has nothing left with the owner, and the socket
    /// has fewer than the owner's bound of bytes in flight. Hands the
    /// packet back otherwise (for the owner, in a [`Relay`]).
    pub fn send(&self, detour: &Detour, packet: Packet) -> Result<(), Packet> {
        // Acquire: pairs with the owner's release when it let go of this
        // sender's last packet, so a shortcut closed before that is seen.
        if detour.pending() != 0 {
            return Err(packet);
        }
        let t = self.target.read().unwrap_or_else(PoisonError::into_inner);
        match &*t {
            Some(s) if s.in_flight() < self.in_flight_limit => s.send(packet),
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
