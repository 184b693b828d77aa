//! PROTOCOL 1.2 live updates with the shortcut on and off (`[session]
//! shortcut`, `--no-shortcut`): the same packets arrive, in the same order;
//! off, every one crosses its owner's mailbox (`Relay` handled by the
//! `BackendLink` or the `Agent`).

use serde_json::{json, Value};

use crate::common::*;

const AGENTS: [&str; 2] = ["a1", "a2"];
const N: i64 = 200;

/// Live updates both ways at once: each agent sends `N` to the backend,
/// the backend sends each agent `N` (every tenth a status change, which
/// must cross the `Agent`). Checks that every packet arrives, each
/// sender's in order.
async fn updates_both_ways(s: &Switch) {
    let mut b = s.backend().await;
    let mut agents = Vec::new();
    for id in AGENTS {
        agents.push(s.agent(id).await);
    }
    for n in 0..N {
        for (id, a) in AGENTS.iter().zip(agents.iter_mut()) {
            a.send(live_update(id, "mephisto_bound_live_update", n))
                .await;
            let p = if n % 10 == 0 {
                json!({"packet_type": "update_status", "subject_id": id,
                       "data": {"status": "in task", "n": n}})
            } else {
                live_update(id, "client_bound_live_update", n)
            };
            b.send(p).await;
        }
    }
    let mut next = std::collections::HashMap::from(AGENTS.map(|id| (id.to_string(), 0i64)));
    for _ in 0..N * AGENTS.len() as i64 {
        let p = b.recv_type("mephisto_bound_live_update").await;
        let want = next.get_mut(p["subject_id"].as_str().unwrap()).unwrap();
        assert_eq!(p["data"]["n"], json!(*want), "to the backend in order: {p}");
        *want += 1;
    }
    for (id, a) in AGENTS.iter().zip(agents.iter_mut()) {
        for n in 0..N {
            let p: Value = a.recv().await;
            assert_eq!(p["subject_id"], json!(id));
            assert_eq!(p["data"]["n"], json!(n), "to {id} in order: {p}");
            let want = if n % 10 == 0 {
                "update_status"
            } else {
                "client_bound_live_update"
            };
            assert_eq!(p["packet_type"], json!(want));
        }
    }
    let both = (N * AGENTS.len() as i64) as f64;
    s.wait_metric(
        "switchyard_packets_forwarded_total",
        &[("direction", "to_backend")],
        both,
    )
    .await;
}

fn relays(kind: &'static str) -> [(&'static str, &'static str); 2] {
    [("kind", kind), ("message", "Relay")]
}

// PROTOCOL 1.2 with `[session] shortcut = false`: everything still arrives,
// in order, and every live update crossed its owner's mailbox.
#[test_deadline::test]
async fn with_the_shortcut_off_updates_cross_their_owners_in_order_both_ways() {
    let s = Switch::start_with(|c| c.session.shortcut = false).await;
    updates_both_ways(&s).await;
    let both = (N * AGENTS.len() as i64) as f64;
    s.wait_metric(
        "switchyard_actor_messages_total",
        &relays("BackendLink"),
        both,
    )
    .await;
    s.wait_metric("switchyard_actor_messages_total", &relays("Agent"), both)
        .await;
    s.stop().await;
}

// The same with the shortcut on (the default): the agents' updates pass
// the `BackendLink` (it holds nothing back), so the switch above is what
// made them cross it.
#[test_deadline::test]
async fn with_the_shortcut_on_updates_pass_an_owner_that_holds_nothing_back() {
    let s = Switch::start().await;
    updates_both_ways(&s).await;
    s.assert_not_counted("switchyard_actor_messages_total", &relays("BackendLink"))
        .await;
    s.stop().await;
}
