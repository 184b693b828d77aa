//! Model tests of the router's plain state (PROTOCOL 1.3, 1.4, 1.5):
//! random operation sequences on `AgentState`'s queue, the backend
//! `Outbox`, a socket's `Claims`, the takeover rule and the status sweeps,
//! each checked against a simple model after every step: order kept,
//! nothing lost that was not counted as dropped, every bound held.

use proptest::prelude::*;
use serde_json::json;

use super::claims::{judge_claim, ClaimError, Claims, Holder, Role, Verdict};
use super::state::{AgentState, Enqueued};
use crate::directory::routing::{StatusSweeps, SweepDecision};
use crate::outbox::Outbox;
use crate::wire::{Packet, PacketType};

#[derive(Debug, Clone)]
enum QueueOp {
    /// Keep a packet with this much padding.
    Push(usize),
    /// Deliver the head.
    Pop,
    /// Take the head and put it back (a socket that died under it).
    Bounce,
    /// Deliver everything (a socket came and kept up).
    Flush,
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        4 => (0usize..3000).prop_map(QueueOp::Push),
        2 => Just(QueueOp::Pop),
        1 => Just(QueueOp::Bounce),
        1 => Just(QueueOp::Flush),
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

    /// An agent's queue: delivered in the order kept, each packet either
    /// delivered, dropped (reported) or still held, within both bounds.
    #[test]
    fn agent_queue_keeps_order_and_bounds(
        limit in 1usize..20,
        bytes_limit in 500usize..20_000,
        ops in proptest::collection::vec(queue_op(), 1..200),
    ) {
        let mut s = AgentState::bounded("a", limit, bytes_limit);
        let (mut next, mut delivered, mut dropped) = (0u64, Vec::new(), Vec::new());
        for op in ops {
            match op {
                QueueOp::Push(pad) => {
                    let p = packet(next, pad);
                    next += 1;
                    match s.enqueue(p) {
                        Enqueued::Kept => {}
                        Enqueued::DroppedOldest(old) => {
                            prop_assert!(!old.is_empty());
                            dropped.extend(old.iter().map(seq));
                        }
                    }
                }
                QueueOp::Pop => {
                    if let Some(p) = s.queue.pop() {
                        delivered.push(seq(&p));
                    }
                }
                QueueOp::Bounce => {
                    if let Some((p, w)) = s.queue.pop_weighed() {
                        s.queue.push_front_weighed(p, w);
                    }
                }
                QueueOp::Flush => delivered.extend(s.queue.take_all().iter().map(seq)),
            }
            let held: Vec<u64> = s.queue.iter().map(seq).collect();
            let weights: usize = s.queue.iter().map(Packet::weight).sum();
            prop_assert_eq!(s.queue.bytes(), weights);
            prop_assert!(s.queue.len() <= limit);
            prop_assert!(s.queue.bytes() <= bytes_limit || s.queue.len() == 1);
            // Nothing lost: every packet made is delivered, dropped or held.
            let mut all: Vec<u64> = delivered.iter().chain(&dropped).chain(&held).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..next).collect::<Vec<_>>());
            // Order: what was delivered, then what is held, ascending; drops
            // are always the oldest.
            let out: Vec<u64> = delivered.iter().chain(&held).copied().collect();
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]), "order {:?}", out);
            if let (Some(d), Some(h)) = (dropped.iter().max(), held.first()) {
                prop_assert!(d < h);
            }
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
