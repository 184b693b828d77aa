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

// PROTOCOL 1.2 `client_bound_live_update` and `update_status`, shortcut on:
// once the backend's socket knows an agent, its live updates pass the
// agent by (neither the directory nor the agent handles them), but a
// status change still crosses the agent, which records it before it goes
// out.
#[test_deadline::test]
async fn live_updates_pass_a_known_agent_and_status_changes_cross_it() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let mut a = s.agent("a1").await;
    // The first packets find the agent through the directory; by their
    // arrival the backend's socket has learnt where the agent is.
    for n in 0..2 {
        b.send(live_update("a1", "client_bound_live_update", n))
            .await;
        assert_eq!(a.recv().await["data"]["n"], json!(n));
    }
    let routed = [("kind", "AgentDirectory"), ("message", "RouteToAgent")];
    let (routed_before, relays_before) = (
        s.counted("switchyard_actor_messages_total", &routed).await,
        s.counted("switchyard_actor_messages_total", &relays("Agent"))
            .await,
    );
    for n in 2..102 {
        b.send(live_update("a1", "client_bound_live_update", n))
            .await;
    }
    for n in 2..102 {
        let p = a.recv().await;
        assert_eq!(p["data"]["n"], json!(n), "in order: {p}");
    }
    let routed = s.counted("switchyard_actor_messages_total", &routed).await - routed_before;
    let relays = s
        .counted("switchyard_actor_messages_total", &relays("Agent"))
        .await
        - relays_before;
    // A packet may still cross the agent when the socket's queue had no
    // room at that moment; most must not.
    assert!(routed <= 5.0, "{routed} of 100 went through the directory");
    assert!(relays < 50.0, "{relays} of 100 crossed the agent");
    b.send(update_status("a1", "in task")).await;
    let p = a.recv_type("update_status").await;
    assert_eq!(p["data"]["status"], json!("in task"));
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    let r = b.recv_type("return_statuses").await;
    assert_eq!(r["data"], json!({"a1": "in task"}), "{r}");
    s.stop().await;
}
