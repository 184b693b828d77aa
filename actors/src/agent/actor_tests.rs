//! Actor tests of `Agent` on a paused clock (PROTOCOL 1.3): the reconnect
//! grace, the ping-timeout rule and idle expiry, driven through the
//! agent's real sockets (`testing::FakePeer`) and its public messages.
//! The clock only moves when a test advances it (or when every actor is
//! idle and a timeout is awaited), so "not before" and "after" are exact.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{advance, pause, Instant};

use super::{CheckLiveness, GetAgentInfo, RouterConfig};
use crate::directory::RemoveAgent;
use crate::network::events::SwitchEvent;
use crate::testing::{until, wait_event, TestRouter, WAIT};

const MS: Duration = Duration::from_millis(1);

/// The router with PROTOCOL's defaults (grace 10 s, ping timeout 15 s,
/// idle expiry 1 h): on a paused clock they cost no waiting.
fn router() -> TestRouter {
    TestRouter::start(RouterConfig::default())
}

/// Lets every actor with work to do run, without moving the clock.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// The statuses `agent_id` was given, as published so far.
fn statuses_so_far(events: &mut UnboundedReceiver<SwitchEvent>, agent_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let SwitchEvent::AgentStatus {
            agent_id: id,
            status,
            ..
        } = e
        {
            if id == agent_id {
                out.push(status);
            }
        }
    }
    out
}

/// Waits for `agent_id` to be published with `status`.
async fn published(events: &mut UnboundedReceiver<SwitchEvent>, agent_id: &str, status: &str) {
    let what = format!("agent {agent_id} published as {status}");
    wait_event(events, &what, WAIT, |e| {
        matches!(e, SwitchEvent::AgentStatus { agent_id: id, status: s, .. }
            if id == agent_id && s == status)
        .then_some(())
    })
    .await;
}

/// How many packets `agent_id` keeps, if the switch knows it (yet).
async fn queued(r: &TestRouter, agent_id: &str) -> Option<usize> {
    let agent = r.agent(agent_id).await?;
    agent.send(GetAgentInfo).await.ok().map(|i| i.queued)
}

/// PROTOCOL 1.3 "Reconnect grace": an agent whose socket closed is kept
/// with `is_alive = false`; only when no socket re-binds it within the
/// grace does its status become `disconnect`.
#[actix::test]
async fn a_socketless_agent_is_disconnect_after_the_grace_not_before() {
    pause();
    let mut r = router();
    let grace = r.rctx.config.agent.reconnect_grace();
    let mut events = r.events();
    let mut socket = r.agent_socket("a1").await;

    socket.vanish();
    socket.until_closed().await;
    let closed_at = Instant::now();
    let info = r.agent_info("a1").await;
    assert!(!info.is_alive, "a closed socket leaves the agent not alive");
    assert_eq!(info.status, "none", "the grace has only begun");

    advance(grace - MS).await;
    settle().await;
    assert_eq!(
        r.agent_info("a1").await.status,
        "none",
        "1 ms before the grace ends"
    );
    assert!(!statuses_so_far(&mut events, "a1").contains(&"disconnect".to_string()));

    published(&mut events, "a1", "disconnect").await;
    assert!(closed_at.elapsed() >= grace, "not before the grace");
    assert!(
        closed_at.elapsed() < grace + Duration::from_secs(1),
        "soon after it"
    );
    assert_eq!(r.agent_info("a1").await.status, "disconnect");
}

/// PROTOCOL 1.3 "Reconnect grace": a socket that re-binds the agent within
/// the grace keeps it from becoming `disconnect`.
#[actix::test]
async fn a_rebind_within_the_grace_keeps_the_agent() {
    pause();
    let mut r = router();
    let grace = r.rctx.config.agent.reconnect_grace();
    let mut socket = r.agent_socket("a1").await;
    socket.vanish();
    socket.until_closed().await;

    advance(grace - MS).await;
    let _again = r.agent_socket("a1").await;
    advance(grace * 3).await;
    settle().await;

    let info = r.agent_info("a1").await;
    assert!(info.is_alive);
    assert_eq!(info.status, "none", "re-bound within the grace");
}

/// PROTOCOL 1.3 "Reconnect grace": the grace counts from the latest
/// close. A socket that binds again within the grace ends the earlier
/// grace for good: when it closes again, the agent is `disconnect` one
/// grace after that second close, not one grace after the first.
#[actix::test]
async fn the_grace_counts_from_the_latest_close_after_a_rebind() {
    pause();
    let mut r = router();
    let grace = r.rctx.config.agent.reconnect_grace();
    let mut events = r.events();

    let mut first = r.agent_socket("a1").await;
    first.vanish();
    first.until_closed().await;
    let first_close = Instant::now();
    assert!(!r.agent_info("a1").await.is_alive);

    advance(grace / 2).await;
    let mut second = r.agent_socket("a1").await;
    assert!(r.agent_info("a1").await.is_alive, "bound again");
    second.vanish();
    second.until_closed().await;
    let second_close = Instant::now();
    assert!(!r.agent_info("a1").await.is_alive);

    // Past the end of the first grace, well within the second.
    advance(first_close + grace + MS - Instant::now()).await;
    settle().await;
    assert_eq!(
        r.agent_info("a1").await.status,
        "none",
        "the first close's grace no longer counts"
    );
    assert!(!statuses_so_far(&mut events, "a1").contains(&"disconnect".to_string()));

    published(&mut events, "a1", "disconnect").await;
    assert!(
        second_close.elapsed() >= grace,
        "a grace after the second close"
    );
    assert!(second_close.elapsed() < grace + Duration::from_secs(1));
}

/// PROTOCOL 1.2 `client_bound_live_update` (queued for an agent with no
/// socket, delivered after its next `alive`) and 1.3 (nothing is dropped
/// silently): a packet that reaches an agent in the moment it is removed
/// (retired, lingering) is handed back and reaches the agent of that id
/// made next, before its `update_status`.
#[actix::test]
async fn a_packet_reaching_a_retired_agent_reaches_the_next_one() {
    pause();
    let mut r = router();
    let update = "client_bound_live_update";
    let mut backend = r.backend_socket().await;
    backend.send_packet(update, "a1", json!({ "n": 1 }));
    let kept_one = || async { queued(&r, "a1").await == Some(1) };
    until("the agent without a socket keeps the packet", kept_one).await;
    // The backend's session has learnt where a1 lives: its next packet for
    // a1 goes straight to that agent, not through the directory.
    settle().await;

    r.rctx
        .directory
        .send(RemoveAgent {
            agent_id: "a1".into(),
        })
        .await
        .expect("the directory answers");
    // Behind `RetireAgent` in the old agent's mailbox.
    backend.send_packet(update, "a1", json!({ "n": 2 }));
    let made_again = || async { queued(&r, "a1").await == Some(1) };
    until("the packet reaches the agent made next", made_again).await;

    let mut socket = r.socket();
    socket.send_packet("alive", "a1", json!({}));
    let first = socket.next_json().await;
    assert_eq!(first["packet_type"], update, "{first}");
    assert_eq!(first["data"]["n"], 2);
    let status = socket.next_json().await;
    assert_eq!(status["packet_type"], "update_status", "{status}");
}

/// PROTOCOL 1.3 "Ping timeout": an agent whose bound socket has gone silent
/// (it sent a heartbeat once, then none for longer than the timeout) and
/// whose status is `onboarding`, `waiting` or `in task` becomes `disconnect`
/// when statuses are checked, and its socket is sent the `update_status`.
/// At exactly the timeout it is not yet given up.
#[actix::test]
async fn ping_timeout_1_3_a_silent_socket_is_given_up_in_every_live_status() {
    pause();
    let mut r = router();
    let timeout_ms = r.rctx.config.agent.ping_timeout_ms();
    let mut backend = r.backend_socket().await;
    for status in ["onboarding", "waiting", "in task"] {
        let id = format!("agent {status}");
        let mut socket = r.agent_socket(&id).await;
        backend.send_packet("update_status", &id, json!({ "status": status }));
        let update = socket.next_packet("update_status").await;
        assert_eq!(update["data"]["status"], status);
        socket.send_packet("heartbeat", &id, json!({}));
        socket.next_packet("heartbeat").await;
        let last_ping = r.agent_info(&id).await.last_ping_ms;
        assert!(last_ping > 0, "the heartbeat was recorded");

        let agent = r.agent(&id).await.expect("the agent is known");
        let at_timeout = agent
            .send(CheckLiveness {
                now_ms: last_ping + timeout_ms,
            })
            .await
            .expect("the agent answers");
        assert_eq!(at_timeout, status, "{status}: not given up at the timeout");
        let past_timeout = agent
            .send(CheckLiveness {
                now_ms: last_ping + timeout_ms + 1,
            })
            .await
            .expect("the agent answers");
        assert_eq!(past_timeout, "disconnect", "{status}: given up past it");
        let told = socket.next_packet("update_status").await;
        assert_eq!(told["subject_id"], id.as_str());
        assert_eq!(told["data"]["status"], "disconnect", "{status}: told so");
    }
}

/// PROTOCOL 1.3 "Ping timeout", its limits: an agent that never sent a
/// heartbeat (`last_ping == 0`), and one in a status outside `onboarding`,
/// `waiting`, `in task`, keep their status however long the silence.
#[actix::test]
async fn ping_timeout_1_3_spares_agents_without_heartbeat_or_live_status() {
    pause();
    let mut r = router();
    let mut backend = r.backend_socket().await;

    let mut never = r.agent_socket("never").await;
    backend.send_packet("update_status", "never", json!({ "status": "in task" }));
    never.next_packet("update_status").await;

    let mut done = r.agent_socket("done").await;
    backend.send_packet("update_status", "done", json!({ "status": "completed" }));
    done.next_packet("update_status").await;
    done.send_packet("heartbeat", "done", json!({}));
    done.next_packet("heartbeat").await;

    let much_later = crate::clock::now_ms() + 24 * 3600 * 1000;
    for (id, status) in [("never", "in task"), ("done", "completed")] {
        let agent = r.agent(id).await.expect("the agent is known");
        let now = agent
            .send(CheckLiveness { now_ms: much_later })
            .await
            .expect("the agent answers");
        assert_eq!(now, status, "agent {id} keeps its status");
    }
}

/// PROTOCOL 1.3 "idle expiry": an agent with no socket and nothing queued
/// is removed after the idle expiry (default 1 h), not before; an `alive`
/// afterwards makes a new agent.
#[actix::test]
async fn idle_expiry_1_3_a_socketless_agent_is_removed_after_the_expiry_not_before() {
    pause();
    let mut r = router();
    let expiry = r.rctx.config.agent.idle_expiry();
    let mut socket = r.agent_socket("a1").await;
    socket.vanish();
    socket.until_closed().await;
    assert!(!r.agent_info("a1").await.is_alive);

    advance(expiry - MS).await;
    settle().await;
    assert!(r.agent("a1").await.is_some(), "1 ms before the expiry");
    assert_eq!(
        r.agent_info("a1").await.status,
        "disconnect",
        "the grace ran"
    );

    advance(2 * MS).await;
    let gone = || async { r.agent("a1").await.is_none() };
    until("the idle agent is removed", gone).await;

    let _again = r.agent_socket("a1").await;
    assert_eq!(r.agent_info("a1").await.status, "none", "a new agent");
}
