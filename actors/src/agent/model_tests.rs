//! Model tests of the router's plain state (PROTOCOL 1.3, 1.4, 1.5):
//! random operation sequences on a `Delivery` (queue, socket, shortcut), the backend
//! `Outbox`, a socket's `Claims`, the takeover rule and the status sweeps,
//! each checked against a simple model after every step: order kept,
//! nothing lost that was not counted as dropped, every bound held.

use proptest::prelude::*;
use serde_json::json;

use super::claims::{judge_claim, ClaimError, Claims, Holder, Role, Verdict};
use super::delivery::fake::FakeSocket;
use super::delivery::{Bound, Delivery, Socket, Step};
use crate::directory::routing::{StatusSweeps, SweepDecision};
use crate::outbox::Outbox;
use crate::wire::{Packet, PacketType};

#[derive(Debug, Clone)]
enum DeliveryOp {
    /// The owner gets a packet with this much padding.
    Send(usize),
    /// A socket binds: a new one, or the bound one again.
    Bind { fresh: bool },
    /// The bound socket closes, and says so.
    Unbind,
    /// The peer takes everything written; its flow tells the owner if it
    /// waits for room.
    Take,
    /// The socket dies without telling: the next write finds out.
    Die,
}

fn delivery_op() -> impl Strategy<Value = DeliveryOp> {
    prop_oneof![
        8 => (0usize..600).prop_map(DeliveryOp::Send),
        1 => any::<bool>().prop_map(|fresh| DeliveryOp::Bind { fresh }),
        1 => Just(DeliveryOp::Unbind),
        3 => Just(DeliveryOp::Take),
        1 => Just(DeliveryOp::Die),
    ]
}

fn packet(n: u64, pad: usize) -> Packet {
    Packet::new(
        PacketType::ClientBoundLiveUpdate,
        "a",
        json!({ "n": n, "pad": "p".repeat(pad) }),
    )
}

fn seq(p: &Packet) -> u64 {
    p.data().and_then(|d| d["n"].as_u64()).unwrap_or(u64::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// One owner's delivery (an agent's queue and socket): every packet is
    /// written, dropped (handed back to report) or still kept; what is
    /// written and kept is in the order sent; both bounds hold; nothing
    /// waits unless the owner waits for room; the shortcut is open exactly
    /// while a socket is bound and nothing is kept.
    #[test]
    fn delivery_keeps_order_bounds_and_the_shortcut_invariant(
        limit in 1usize..20,
        bytes_limit in 500usize..20_000,
        in_flight_limit in 100u64..3000,
        allowed in any::<bool>(),
        ops in proptest::collection::vec(delivery_op(), 1..200),
    ) {
        let mut d: Delivery<FakeSocket> =
            Delivery::new(Outbox::with_bytes(limit, bytes_limit), in_flight_limit, allowed);
        let mut sockets: Vec<FakeSocket> = Vec::new();
        let mut waiting = false;
        let (mut next, mut delivered, mut dropped) = (0u64, Vec::new(), Vec::new());
        for op in ops {
            let step = match op {
                DeliveryOp::Send(pad) => {
                    let out = d.send(packet(next, pad));
                    next += 1;
                    prop_assert!(out.refused.is_none());
                    if let Some(o) = out.overflow {
                        prop_assert!(!o.dropped.is_empty());
                        prop_assert_eq!(o.held, d.queue().len().max(o.held));
                        dropped.extend(o.dropped.iter().map(seq));
                    }
                    out.step
                }
                DeliveryOp::Bind { fresh } => {
                    let s = match (fresh, d.socket()) {
                        (false, Some(s)) => s.clone(),
                        _ => FakeSocket::default(),
                    };
                    sockets.push(s.clone());
                    match d.bind(s) {
                        Bound::Same => {}
                        Bound::New | Bound::Replaced(_) => waiting = false,
                    }
                    d.drain()
                }
                DeliveryOp::Unbind => {
                    d.unbind();
                    waiting = false;
                    Step::Idle
                }
                DeliveryOp::Take => {
                    for s in &sockets {
                        s.take();
                    }
                    if waiting {
                        waiting = false;
                        d.resume()
                    } else {
                        Step::Idle
                    }
                }
                DeliveryOp::Die => {
                    if let Some(s) = d.socket() {
                        s.close();
                    }
                    Step::Idle
                }
            };
            match step {
                Step::Idle => {}
                Step::WaitForRoom { .. } => {
                    prop_assert!(!waiting, "asked to wait twice");
                    waiting = true;
                }
                Step::Lost => {
                    prop_assert!(d.socket().is_none());
                    waiting = false;
                }
            }
            for s in &sockets {
                delivered.extend(s.written().iter().map(seq));
            }
            let q = d.queue();
            let held: Vec<u64> = q.iter().map(seq).collect();
            let weights: usize = q.iter().map(Packet::weight).sum();
            prop_assert_eq!(q.bytes(), weights);
            prop_assert!(q.len() <= limit);
            prop_assert!(q.bytes() <= bytes_limit || q.len() == 1);
            // Nothing lost: every packet made is written, dropped or kept.
            let mut all: Vec<u64> = delivered.iter().chain(&dropped).chain(&held).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..next).collect::<Vec<_>>());
            // Order: what was written, then what is kept, ascending; drops
            // are always the oldest.
            let out: Vec<u64> = delivered.iter().chain(&held).copied().collect();
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]), "order {:?}", out);
            if let (Some(d), Some(h)) = (dropped.iter().max(), held.first()) {
                prop_assert!(d < h);
            }
            // No stall: packets kept for a bound socket wait for its room.
            if d.socket().is_some() && !q.is_empty() {
                prop_assert!(waiting, "kept with a socket and nobody waiting");
                prop_assert!(d.socket().is_some_and(|s| s.in_flight() >= in_flight_limit));
            }
            // The shortcut: open exactly while a packet would be written
            // at once (the socket's room is looked at by each sender).
            let open = allowed && d.socket().is_some() && q.is_empty();
            prop_assert_eq!(d.shortcut().is_open(), open);
        }
    }

    /// The backend outbox, with requests removed when they go stale.
    #[test]
    fn outbox_removal_keeps_the_rest_in_order(
        weights in proptest::collection::vec(1usize..100, 1..100),
        stale in proptest::collection::vec(any::<bool>(), 100),
        limit in 1usize..50,
        bytes_limit in 50usize..2000,
    ) {
        let mut o = Outbox::with_bytes(limit, bytes_limit);
        let mut dropped = 0;
        for (i, w) in weights.iter().enumerate() {
            dropped += o.push_weighed(i, *w).len();
            prop_assert!(o.len() <= limit);
            prop_assert!(o.bytes() <= bytes_limit || o.len() == 1);
        }
        let removed = o.remove_where(|i| stale[*i]);
        let left: Vec<usize> = o.iter().copied().collect();
        prop_assert!(left.iter().all(|i| !stale[*i]));
        prop_assert!(left.windows(2).all(|w| w[0] < w[1]));
        prop_assert_eq!(dropped + removed + left.len(), weights.len());
        let bytes: usize = left.iter().map(|i| weights[*i]).sum();
        prop_assert_eq!(o.bytes(), bytes);
    }

    /// A socket's claims: its role never flips between agent and backend,
    /// it binds at most `max` ids of bounded length, and speaks only for
    /// the ids it bound and still holds.
    #[test]
    fn claims_hold_role_and_bounds(
        max in 1usize..6,
        ops in proptest::collection::vec((0u8..5, 0usize..10), 1..100),
    ) {
        let mut c = Claims::new(max, 8);
        let mut held: Vec<String> = Vec::new();
        let mut was_agent = false;
        for (op, n) in ops {
            let id = if n == 9 { "x".repeat(9) } else { format!("a{n}") };
            match op {
                0 | 1 => match c.claim_agent(&id) {
                    Ok(()) => {
                        prop_assert!(id.len() <= 8);
                        if !held.contains(&id) {
                            held.push(id.clone());
                        }
                        was_agent = true;
                    }
                    Err(ClaimError::RoleChange) => prop_assert_eq!(c.role(), Role::Backend),
                    Err(ClaimError::TooManyIds(_)) => prop_assert_eq!(held.len(), max),
                    Err(ClaimError::IdTooLong(..)) => prop_assert!(id.len() > 8),
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                },
                2 => {
                    let r = c.claim_backend();
                    prop_assert_eq!(r.is_ok(), !was_agent);
                }
                3 => {
                    c.release(&id);
                    held.retain(|h| h != &id);
                }
                _ => c.drop_backend(),
            }
            prop_assert!(held.len() <= max);
            prop_assert!(!(was_agent && c.role() == Role::Backend));
            for k in 0..10 {
                let id = if k == 9 { "x".repeat(9) } else { format!("a{k}") };
                prop_assert_eq!(c.speak_for(&id).is_ok(), held.contains(&id));
            }
        }
    }

    /// The takeover rule: a live holder is never replaced without a probe
    /// that went unanswered, and one claim at a time waits on a probe.
    #[test]
    fn a_live_holder_is_never_replaced_unasked(
        ops in proptest::collection::vec((0u8..3, 0u8..5), 1..80),
    ) {
        // Sockets 0..3; the agent's holder and whether it is live.
        let mut holder: Option<u8> = None;
        let mut live = false;
        let mut pending: Option<u8> = None;
        for (claimer, action) in ops {
            match action {
                // A claim by `claimer`.
                0 | 1 => {
                    let h = match holder {
                        Some(x) if x != claimer => Holder::Other { live },
                        _ => Holder::FreeOrSame,
                    };
                    match judge_claim(h, pending.map(|s| s == claimer)) {
                        Verdict::Grant => {
                            let replaced_live = matches!(h, Holder::Other { live: true });
                            prop_assert!(!replaced_live);
                            holder = Some(claimer);
                            live = true;
                        }
                        Verdict::Probe => {
                            prop_assert!(pending.is_none());
                            pending = Some(claimer);
                        }
                        Verdict::Wait => prop_assert_eq!(pending, Some(claimer)),
                        Verdict::Refuse => {
                            prop_assert!(pending.is_some() && pending != Some(claimer))
                        }
                    }
                }
                // The probe ends: answered (the holder keeps the agent) or
                // not (the claimer takes over).
                2 => pending = None,
                3 => {
                    if let Some(c) = pending.take() {
                        holder = Some(c);
                        live = true;
                    }
                }
                // The holder closes: a waiting claim is granted.
                _ => {
                    live = false;
                    if let Some(c) = pending.take() {
                        holder = Some(c);
                        live = true;
                    }
                }
            }
            prop_assert!(pending.is_none() || holder.is_some());
        }
    }

    /// Status sweeps: at most one runs; every request is swept for,
    /// waiting, or answered by a newer one's sweep (counted).
    #[test]
    fn status_sweeps_are_one_at_a_time(
        ops in proptest::collection::vec(any::<bool>(), 1..200),
    ) {
        let mut s = StatusSweeps::default();
        let (mut requests, mut sweeps, mut coalesced, mut running) = (0u32, 0u32, 0u32, false);
        let mut waiting = false;
        for request in ops {
            if request {
                requests += 1;
                match s.request(requests) {
                    SweepDecision::Start(_) => {
                        prop_assert!(!running);
                        running = true;
                        sweeps += 1;
                    }
                    SweepDecision::Wait { replaced } => {
                        prop_assert!(running);
                        prop_assert_eq!(replaced, waiting);
                        if replaced {
                            coalesced += 1;
                        }
                        waiting = true;
                    }
                }
            } else if running {
                match s.finished() {
                    Some(next) => {
                        prop_assert!(waiting);
                        prop_assert_eq!(next, requests, "the newest waits");
                        waiting = false;
                        sweeps += 1;
                    }
                    None => {
                        prop_assert!(!waiting);
                        running = false;
                    }
                }
            }
            prop_assert_eq!(s.running(), running);
            prop_assert_eq!(sweeps + coalesced + u32::from(waiting), requests);
        }
    }
}
