//! PROTOCOL 1.2, 1.3, 1.5, 1.6 over real WebSockets.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::*;

/// A switch with its backend connected and one agent, `a1`, bound: what
/// most tests here start from.
struct Router {
    s: Switch,
    b: Ws,
    a: Ws,
}

impl Router {
    async fn start() -> Router {
        Router::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut switchyard::Config)) -> Router {
        let s = Switch::start_with(tweak).await;
        let b = s.backend().await;
        let a = s.agent("a1").await;
        Router { s, b, a }
    }
}

/// Asks for statuses until `agent` has `status` (timers run in the switch).
async fn wait_status(backend: &mut Ws, agent: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        backend.send(request_statuses(123.5)).await;
        let r = backend.recv_type("return_statuses").await;
        if r["data"][agent] == json!(status) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent {agent} never reached {status}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// PROTOCOL 1.2 `alive` (agent): bound, then `update_status` with its status.
#[test_deadline::test]
async fn agent_alive_answers_update_status() {
    let s = Switch::start().await;
    let mut a = s.ws().await;
    a.send(alive("a1")).await;
    let p = a.recv().await;
    assert_eq!(p["packet_type"], json!("update_status"));
    assert_eq!(p["data"]["status"], json!("none"));
    assert!(p["router_outgoing_timestamp"].as_f64().unwrap() > 1.6e9);
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 1.0)
        .await;
    s.wait_metric("switchyard_agents", &[("status", "none")], 1.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.2 `heartbeat`: same packet back, data replaced by
// last_mephisto_ping (integer ms) and, for a known agent, its status.
#[test_deadline::test]
async fn heartbeat_reply_carries_ping_and_status() {
    let s = Switch::start().await;
    let mut stranger = s.ws().await;
    stranger
        .send(json!({"packet_type": "heartbeat", "subject_id": "nobody", "data": {"x": 1}, "extra": "kept"}))
        .await;
    let r = stranger.recv().await;
    assert_eq!(r["packet_type"], json!("heartbeat"));
    assert_eq!(r["extra"], json!("kept"));
    assert!(r["data"]["last_mephisto_ping"].is_i64(), "{r}");
    assert!(
        r["data"].get("status").is_none(),
        "unknown agent has no status: {r}"
    );
    assert!(r["data"].get("x").is_none());

    let mut a = s.agent("a1").await;
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    let r = a.recv_type("heartbeat").await;
    assert_eq!(r["data"]["status"], json!("none"));
    let ping = r["data"]["last_mephisto_ping"].as_i64().unwrap();
    let now_ms = switchyard_actors::clock::now_ms();
    assert!((now_ms - ping).abs() < 60_000, "ms since epoch: {ping}");
    s.wait_metric("switchyard_heartbeats_total", &[], 2.0).await;
    s.stop().await;
}

// PROTOCOL 1.2 `request_statuses` sets last_mephisto_ping (seen in the next
// heartbeat reply).
#[test_deadline::test]
async fn request_statuses_updates_last_mephisto_ping() {
    let s = Switch::start().await;
    let mut a = s.agent("a1").await;
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    let before = a.recv_type("heartbeat").await["data"]["last_mephisto_ping"]
        .as_i64()
        .unwrap();
    let mut b = s.backend().await;
    // Make sure the clock moves past `before`.
    wait_for("clock tick", || async {
        switchyard_actors::clock::now_ms() > before + 5
    })
    .await;
    b.send(request_statuses(123.5)).await;
    b.recv_type("return_statuses").await;
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    let after = a.recv_type("heartbeat").await["data"]["last_mephisto_ping"]
        .as_i64()
        .unwrap();
    assert!(after > before, "{after} > {before}");
    s.stop().await;
}

// PROTOCOL 1.2 live updates both ways; unknown fields kept, timestamps set.
#[test_deadline::test]
async fn live_updates_flow_both_ways_with_every_field() {
    let Router { s, mut b, mut a } = Router::start().await;
    a.send(
        json!({"packet_type": "mephisto_bound_live_update", "subject_id": "a1",
                  "data": {"text": "hi", "nested": {"k": [1, 2]}}, "client_timestamp": 5.5,
                  "custom_field": "stays"}),
    )
    .await;
    let p = b.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"], json!({"text": "hi", "nested": {"k": [1, 2]}}));
    assert_eq!(p["custom_field"], json!("stays"));
    assert_eq!(p["client_timestamp"], json!(5.5));
    let inc = p["router_incoming_timestamp"].as_f64().unwrap();
    let out = p["router_outgoing_timestamp"].as_f64().unwrap();
    assert!(out >= inc && inc > 1.6e9);

    b.send(
        json!({"packet_type": "client_bound_live_update", "subject_id": "a1",
                  "data": {"reply": true}, "server_timestamp": 9.0, "other": 1}),
    )
    .await;
    let p = a.recv_type("client_bound_live_update").await;
    assert_eq!(p["data"], json!({"reply": true}));
    assert_eq!(p["other"], json!(1));
    assert_eq!(p["server_timestamp"], json!(9.0));
    s.wait_metric(
        "switchyard_packets_forwarded_total",
        &[("direction", "to_backend")],
        1.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.2 `log_error` from an agent socket goes to the backend.
#[test_deadline::test]
async fn log_error_packet_reaches_the_backend() {
    let Router { s, mut b, mut a } = Router::start().await;
    a.send(json!({"packet_type": "log_error", "subject_id": "a1", "data": {"error": "oops"}}))
        .await;
    let p = b.recv_type("log_error").await;
    assert_eq!(p["data"]["error"], json!("oops"));
    s.stop().await;
}

// PROTOCOL 1.2 `update_status` + `request_statuses` -> `return_statuses`.
#[test_deadline::test]
async fn update_status_is_recorded_and_returned() {
    let Router { s, mut b, mut a } = Router::start().await;
    b.send(update_status("a1", "in task")).await;
    let p = a.recv_type("update_status").await;
    assert_eq!(p["data"]["status"], json!("in task"));
    b.send(request_statuses(123.5)).await;
    let r = b.recv_type("return_statuses").await;
    assert_eq!(r["subject_id"], json!("mephisto"));
    assert_eq!(r["data"], json!({"a1": "in task"}));
    assert_eq!(r["client_timestamp"], json!(123.5));
    assert!(r["router_incoming_timestamp"].as_f64().unwrap() > 1.6e9);
    s.wait_metric("switchyard_agents", &[("status", "in task")], 1.0)
        .await;
    s.wait_metric("switchyard_agents", &[("status", "none")], 0.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.2 `client_bound_live_update` for an agent with no socket is
// queued and delivered after its next `alive`, in order (no packet lost
// across an agent's reconnect).
#[test_deadline::test]
async fn agent_reconnect_loses_no_client_bound_packet() {
    let Router { s, mut b, a } = Router::start().await;
    a.close().await;
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 1.0)
        .await;
    for n in 0..5 {
        b.send(live_update("a1", "client_bound_live_update", n))
            .await;
    }
    s.wait_metric("switchyard_packets_queued", &[], 5.0).await;
    // PROTOCOL 1.5: the queue is bounded in bytes too, so its bytes show.
    let bytes = s.metric("switchyard_packets_queued_bytes", &[]).await;
    assert!(bytes >= 5.0 * 60.0, "5 packets queued in {bytes} bytes");
    let mut a = s.ws().await;
    a.send(alive("a1")).await;
    for n in 0..5 {
        let p = a.recv().await;
        assert_eq!(p["packet_type"], json!("client_bound_live_update"), "{p}");
        assert_eq!(p["data"]["n"], json!(n));
    }
    assert_eq!(a.recv().await["packet_type"], json!("update_status"));
    s.wait_metric("switchyard_packets_queued", &[], 0.0).await;
    s.wait_metric("switchyard_packets_queued_bytes", &[], 0.0)
        .await;
    assert_eq!(s.metric("switchyard_packets_queued_total", &[]).await, 5.0);
    s.stop().await;
}

// PROTOCOL 1.2/1.4: packets for an absent backend wait in the outbox and
// arrive in order when it says `alive` again (reference bug 1.6: a packet
// written into a dead socket is lost).
#[test_deadline::test]
async fn backend_reconnect_loses_no_backend_bound_packet() {
    let Router { s, b, mut a } = Router::start().await;
    b.close().await;
    s.wait_metric("switchyard_backend_connected", &[], 0.0)
        .await;
    for n in 0..20 {
        a.send(live_update("a1", "mephisto_bound_live_update", n))
            .await;
    }
    s.wait_metric("switchyard_backend_outbox_depth", &[], 20.0)
        .await;
    let mut b = s.backend().await;
    for n in 0..20 {
        let p = b.recv_type("mephisto_bound_live_update").await;
        assert_eq!(p["data"]["n"], json!(n));
    }
    s.wait_metric("switchyard_backend_outbox_depth", &[], 0.0)
        .await;
    s.stop().await;
}

/// PROTOCOL 1.5 "Agents": a claim against a bound socket is decided by a
/// probe, so it is granted not before `takeover_probe_secs` (the old socket
/// had its chance to answer) and by it, plus a margin for a loaded machine.
fn assert_took_the_probe(s: &Switch, took: Duration) {
    let probe = Duration::from_secs_f64(s.running.config.agent.takeover_probe_secs);
    assert_timer("the takeover", took, probe, Duration::from_secs(2));
}

// House rule 6 / PROTOCOL 1.2, 1.5: a heartbeat from another socket
// rebinds the agent when its socket is silent (the test holds the old
// socket and never reads it, so it answers no ping); the old socket is
// told to close; packets follow the new socket. (A claim against a socket
// that answers is refused: hostile_router.rs
// `a_live_agent_socket_is_not_taken_over`.)
#[test_deadline::test]
async fn heartbeat_from_a_new_socket_takes_over_a_silent_one() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let mut old = s.agent("a1").await;
    let mut new = s.ws().await;
    let t = std::time::Instant::now();
    new.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    let r = new.recv_type("heartbeat").await;
    assert_took_the_probe(&s, t.elapsed());
    assert_eq!(r["data"]["status"], json!("none"));
    assert_eq!(old.closed_with().await, 1000);
    b.send(live_update("a1", "client_bound_live_update", 7))
        .await;
    assert_eq!(
        new.recv_type("client_bound_live_update").await["data"]["n"],
        json!(7)
    );
    s.wait_metric("switchyard_rebinds_total", &[], 1.0).await;
    s.stop().await;
}

// PROTOCOL 1.2, 1.5 "Agents": once a new socket has taken an agent over,
// the old socket's close is news of a socket the agent no longer has: the
// agent stays bound to the new one, which still gets what crosses the
// agent (a status change; live updates take the shortcut and would not
// show it).
#[test_deadline::test]
async fn the_old_socket_closing_after_a_takeover_leaves_the_agent_bound() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let mut old = s.agent("a1").await;
    let mut new = s.agent("a1").await;
    assert_eq!(old.closed_with().await, 1000);
    // The old session has ended (its close reached the agent's mailbox
    // before this gauge moved); the backend and the new socket are left.
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 2.0)
        .await;
    b.send(update_status("a1", "in task")).await;
    let p = new.recv_type("update_status").await;
    assert_eq!(p["data"]["status"], json!("in task"), "{p}");
    s.assert_not_counted("switchyard_packets_queued_total", &[])
        .await;
    s.stop().await;
}

// PROTOCOL 1.3 reconnect grace, 1.5 "Agents": a socket closed because a
// new socket took one of its agents over has closed for every agent it
// spoke for. Each other agent's grace runs from that close and ends in
// `disconnect`; the agent taken over stays with its new socket.
#[test_deadline::test]
async fn every_agent_of_a_socket_closed_by_a_takeover_loses_it() {
    let Router {
        s,
        mut b,
        a: mut old,
    } = Router::start().await;
    old.send(alive("a2")).await;
    old.recv_type("update_status").await;
    b.send(update_status("a2", "waiting")).await;
    wait_status(&mut b, "a2", "waiting").await;
    // `old` is not read from here on: it answers no ping, so it is silent.
    let _new = s.agent("a1").await;
    assert_eq!(old.closed_with().await, 1000);
    let r = wait_status(&mut b, "a2", "disconnect").await;
    assert_eq!(r["data"]["a1"], json!("none"), "{r}");
    s.stop().await;
}

// House rule 6, PROTOCOL 1.5: an `alive` from a second socket takes over
// a silent one too (the old socket is never read, so it answers no ping).
#[test_deadline::test]
async fn alive_from_a_new_socket_takes_over_a_silent_one() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let mut old = s.agent("a1").await;
    let t = std::time::Instant::now();
    let mut new = s.agent("a1").await;
    assert_took_the_probe(&s, t.elapsed());
    assert_eq!(old.closed_with().await, 1000);
    b.send(live_update("a1", "client_bound_live_update", 1))
        .await;
    assert_eq!(
        new.recv_type("client_bound_live_update").await["data"]["n"],
        json!(1)
    );
    s.wait_metric("switchyard_rebinds_total", &[], 1.0).await;
    s.stop().await;
}

// PROTOCOL 1.3 reconnect grace: no socket within the grace -> disconnect.
#[test_deadline::test]
async fn reconnect_grace_expiry_disconnects() {
    let Router { s, mut b, a } = Router::start().await;
    b.send(update_status("a1", "in task")).await;
    wait_status(&mut b, "a1", "in task").await;
    a.close().await;
    wait_status(&mut b, "a1", "disconnect").await;
    s.stop().await;
}

// PROTOCOL 1.3 reconnect grace: back within the grace -> status kept.
#[test_deadline::test]
async fn reconnect_within_grace_keeps_status() {
    let Router { s, mut b, a } = Router::start_with(|c| c.agent.reconnect_grace_secs = 1.0).await;
    b.send(update_status("a1", "waiting")).await;
    wait_status(&mut b, "a1", "waiting").await;
    // A witness agent in the same status whose socket closes after a1's
    // and never comes back: once its grace has run out, a1's (started
    // earlier) has too, so no fixed sleep stands for "the grace is over".
    let witness = s.agent("w").await;
    b.send(update_status("w", "waiting")).await;
    wait_status(&mut b, "w", "waiting").await;
    a.close().await;
    let _a2 = s.agent("a1").await;
    witness.close().await;
    let r = wait_status(&mut b, "w", "disconnect").await;
    assert_eq!(r["data"]["a1"], json!("waiting"), "{r}");
    s.stop().await;
}

// PROTOCOL 1.3 ping timeout: a live agent that stops sending heartbeats is
// declared disconnected on request_statuses and told so.
#[test_deadline::test]
async fn ping_timeout_disconnects_a_silent_live_agent() {
    let Router { s, mut b, mut a } = Router::start().await;
    let mut idle = s.agent("a2").await;
    for (id, sock) in [("a1", &mut a), ("a2", &mut idle)] {
        sock.send(json!({"packet_type": "heartbeat", "subject_id": id, "data": {}}))
            .await;
        sock.recv_type("heartbeat").await;
    }
    b.send(update_status("a1", "in task")).await;
    a.recv_type("update_status").await;
    // a2 stays `none`: not a live status, never timed out.
    let r = wait_status(&mut b, "a1", "disconnect").await;
    assert_eq!(r["data"]["a2"], json!("none"));
    let p = a.recv_type("update_status").await;
    assert_eq!(p["data"]["status"], json!("disconnect"));
    s.stop().await;
}

// PROTOCOL 1.3 bounded queue: past the bound the oldest is dropped,
// counted, and reported to the backend as log_error.
#[test_deadline::test]
async fn agent_queue_is_bounded_and_drops_are_reported() {
    let s = Switch::start_with(|c| c.agent.queue_limit = 10).await;
    let mut b = s.backend().await;
    for n in 0..13 {
        b.send(live_update("ghost", "client_bound_live_update", n))
            .await;
    }
    for n in 0..3 {
        let e = b.recv_type("log_error").await;
        assert_eq!(e["subject_id"], json!("ghost"));
        assert_eq!(e["data"]["error_type"], json!("agent-queue-overflow"));
        assert_eq!(e["data"]["dropped_packet"]["data"]["n"], json!(n));
    }
    s.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "agent_queue_full")],
        3.0,
    )
    .await;
    let mut a = s.ws().await;
    a.send(alive("ghost")).await;
    for n in 3..13 {
        assert_eq!(a.recv().await["data"]["n"], json!(n));
    }
    s.stop().await;
}

// PROTOCOL 1.3 idle expiry: no socket and an empty queue -> removed.
#[test_deadline::test]
async fn idle_agents_expire() {
    let s = Switch::start_with(|c| c.agent.idle_expiry_secs = 0.3).await;
    let a = s.agent("a1").await;
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 1.0)
        .await;
    a.close().await;
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 0.0)
        .await;
    let mut b = s.backend().await;
    b.send(request_statuses(123.5)).await;
    assert_eq!(b.recv_type("return_statuses").await["data"], json!({}));
    s.stop().await;
}

// PROTOCOL 1.2 "anything else": counted, ignored, connection kept.
#[test_deadline::test]
async fn unknown_packet_types_are_counted_and_ignored() {
    let s = Switch::start().await;
    let mut a = s.agent("a1").await;
    a.send(json!({"packet_type": "teleport", "subject_id": "a1", "data": {}}))
        .await;
    a.send(json!({"packet_type": "return_statuses", "subject_id": "a1", "data": {}}))
        .await;
    s.wait_metric(
        "switchyard_packets_unknown_total",
        &[("from", "agent")],
        2.0,
    )
    .await;
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    assert_eq!(a.recv().await["packet_type"], json!("heartbeat"));
    s.stop().await;
}

// Bad input: a JSON error back, a counter, the socket stays open.
#[test_deadline::test]
async fn malformed_frames_get_errors_and_keep_the_socket() {
    let s = Switch::start().await;
    let mut a = s.agent("a1").await;
    type MakeFrame = Box<dyn Fn() -> tokio_tungstenite::tungstenite::Message>;
    let cases: Vec<(MakeFrame, &str)> = vec![
        (Box::new(|| "{not json".to_string().into()), "invalid_json"),
        (Box::new(|| "[1,2]".to_string().into()), "not_an_object"),
        (
            Box::new(|| r#"{"packet_type":"alive"}"#.to_string().into()),
            "missing_field",
        ),
        (Box::new(|| vec![0xffu8, 0, 1].into()), "binary_frame"),
        (Box::new(|| "x".repeat(70 * 1024).into()), "oversize_frame"),
    ];
    for (make, kind) in cases {
        futures_util::SinkExt::send(&mut a.stream, make())
            .await
            .unwrap();
        let e = a.recv().await;
        assert_eq!(e["kind"], json!(kind), "{e}");
        assert!(e["error"].as_str().is_some_and(|t| !t.is_empty()));
        s.wait_metric("switchyard_malformed_input_total", &[("kind", kind)], 1.0)
            .await;
    }
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    assert_eq!(a.recv().await["packet_type"], json!("heartbeat"));
    s.stop().await;
}

// A message past the transport limit ends that socket with 1009; the
// switch carries on.
#[test_deadline::test]
async fn a_message_past_the_transport_limit_closes_with_1009() {
    let s = Switch::start().await;
    let mut a = s.agent("a1").await;
    let hard = s.running.config.session.hard_frame_bytes();
    a.send_text("y".repeat(hard + 10)).await;
    assert_eq!(a.closed_with().await, 1009);
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "oversize_frame")],
        1.0,
    )
    .await;
    let _other = s.agent("a2").await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds" and the README's "Bad input": a message past
// `max_frame_bytes` but within eight times it, and never less than 64 KiB,
// is answered with an error on a socket that stays open (one oversized
// packet does not cost a worker its task); past that it closes with 1009.
#[test_deadline::test]
async fn a_socket_is_kept_up_to_eight_times_the_frame_limit_and_at_least_64_kib() {
    // (frame limit, the hard limit it gives): the floor, then eight times.
    for (max, hard) in [(1024, 64 * 1024), (16 * 1024, 128 * 1024)] {
        let s = Switch::start_with(|c| c.session.max_frame_bytes = max).await;
        let mut a = s.agent("a1").await;
        a.send_text("y".repeat(hard - 100)).await;
        let e = a.recv().await;
        assert_eq!(e["kind"], json!("oversize_frame"), "limit {max}: {e}");
        a.send_text("y".repeat(hard + 100)).await;
        assert_eq!(a.closed_with().await, 1009, "limit {max}");
        s.stop().await;
    }
}

// PROTOCOL 1.5: with a token, a backend without it is refused with 1008.
#[test_deadline::test]
async fn backend_token_is_required_when_set() {
    let s = Switch::start_with(|c| c.backend.token = Some("s3cret".into())).await;
    let mut intruder = s.ws().await;
    intruder.send(alive("mephisto")).await;
    assert_eq!(intruder.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 1.0)
        .await;
    assert_eq!(s.metric("switchyard_backend_connected", &[]).await, 0.0);

    let mut wrong = Ws::connect(&format!("{}?token=nope", s.running.ws_url())).await;
    wrong.send(alive("mephisto")).await;
    assert_eq!(wrong.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 2.0)
        .await;

    // An agent socket may not act for the backend either.
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "client_bound_live_update", 1))
        .await;
    assert_eq!(a.recv().await["kind"], json!("not_backend"));

    let mut req = s.running.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer s3cret".parse().unwrap());
    let mut b = Ws::connect_request(req).await;
    b.send(alive("mephisto")).await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    b.close().await;
    s.wait_metric("switchyard_backend_connected", &[], 0.0)
        .await;

    let mut b = Ws::connect(&format!("{}?token=s3cret", s.running.ws_url())).await;
    b.send(alive("mephisto")).await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    b.send(live_update("a1", "client_bound_live_update", 2))
        .await;
    assert_eq!(
        a.recv_type("client_bound_live_update").await["data"]["n"],
        json!(2)
    );
    s.stop().await;
}

// A newer backend socket replaces the older one (which is closed).
#[test_deadline::test]
async fn a_newer_backend_replaces_the_old_one() {
    let s = Switch::start().await;
    let mut old = s.backend().await;
    let mut new = s.ws().await;
    new.send(alive("mephisto")).await;
    assert_eq!(old.closed_with().await, 1000);
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 3))
        .await;
    assert_eq!(
        new.recv_type("mephisto_bound_live_update").await["data"]["n"],
        json!(3)
    );
    s.stop().await;
}

// Reference bug 1.6 absent: backend-bound packets are written at once, not
// on a 50 ms timer tick.
#[test_deadline::test]
async fn backend_bound_packets_do_not_wait_for_a_tick() {
    let Router { s, mut b, mut a } = Router::start().await;
    let mut spent = Vec::new();
    for n in 0..21 {
        a.send(live_update("a1", "mephisto_bound_live_update", n))
            .await;
        let p = b.recv_type("mephisto_bound_live_update").await;
        spent.push(
            p["router_outgoing_timestamp"].as_f64().unwrap()
                - p["router_incoming_timestamp"].as_f64().unwrap(),
        );
    }
    spent.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let median = spent[spent.len() / 2];
    assert!(median < 0.025, "median time in the switch {median} s");
    s.stop().await;
}

// Shutdown: every socket is closed with 1001.
#[test_deadline::test]
async fn stopping_closes_sockets_with_1001() {
    let s = Switch::start().await;
    let mut a = s.agent("a1").await;
    let mut b = s.backend().await;
    let running = s.running;
    let stop = actix_web::rt::spawn(running.stop());
    assert_eq!(a.closed_with().await, 1001);
    assert_eq!(b.closed_with().await, 1001);
    stop.await.unwrap();
}

// Every queue a peer can fill is bounded: an agent that stops reading
// makes its packets wait in its own bounded queue (drops counted and told
// to the backend), not in an ever-growing mailbox.
#[test_deadline::test]
async fn an_agent_that_stops_reading_fills_only_its_bounded_queue() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = Switch::start_with(|c| {
        c.agent.queue_limit = 50;
        c.session.max_in_flight_bytes = 64 * 1024;
    })
    .await;
    let b = s.backend().await;
    // A backend reads while it writes (as Mephisto's does).
    let (mut to_switch, mut from_switch) = b.stream.split();
    let (overflow_tx, mut overflow_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = actix_web::rt::spawn(async move {
        while let Some(Ok(m)) = from_switch.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["packet_type"] == json!("log_error") {
                    let _ = overflow_tx.send(v["data"]["error_type"].clone());
                }
            }
        }
    });
    let mut slow = s.small_buffer_ws().await;
    slow.send(alive("slow")).await;
    assert_eq!(slow.recv().await["packet_type"], json!("update_status"));
    let filler = "z".repeat(50 * 1024);
    // 400 x 50 KB: far more than the kernel's buffers between us.
    for n in 0..400 {
        let p = json!({"packet_type": "client_bound_live_update", "subject_id": "slow",
                       "data": {"n": n, "filler": filler}});
        to_switch.send(Message::Text(p.to_string())).await.unwrap();
    }
    let kind = tokio::time::timeout(WAIT, overflow_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kind, json!("agent-queue-overflow"));
    let dropped = s
        .metric(
            "switchyard_packets_dropped_total",
            &[("reason", "agent_queue_full")],
        )
        .await;
    assert!(dropped > 0.0);
    let depth = s
        .metric("switchyard_actor_mailbox_depth", &[("kind", "WsSession")])
        .await;
    assert!(depth < 100.0, "mailbox depth {depth}");
    // Reading again, the agent gets what was kept, in order, ending with
    // the last packet sent.
    let mut last = -1i64;
    while last != 399 {
        let p = slow.recv_type("client_bound_live_update").await;
        let n = p["data"]["n"].as_i64().unwrap();
        assert!(n > last, "in order: {n} after {last}");
        last = n;
    }
    s.stop().await;
    reader.abort();
}

// One socket may speak for several agents. When it stops reading, each
// agent keeps its packets in its own queue and waits for the socket's room
// on the same flow; reading again, the socket gets every packet of both,
// each agent's in order.
#[test_deadline::test]
async fn a_socket_for_two_agents_gets_both_queues_when_it_reads_again() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = Switch::start_with(|c| {
        c.session.max_in_flight_bytes = 64 * 1024;
        // Room for everything: this is about waiting, not overflow.
        c.agent.queue_limit = 1000;
    })
    .await;
    let b = s.backend().await;
    let (mut to_switch, mut from_switch) = b.stream.split();
    let reader =
        actix_web::rt::spawn(async move { while let Some(Ok(_)) = from_switch.next().await {} });
    let mut slow = s.small_buffer_ws().await;
    for id in ["x1", "x2"] {
        slow.send(alive(id)).await;
        assert_eq!(
            slow.recv_type("update_status").await["subject_id"],
            json!(id)
        );
    }
    let filler = "q".repeat(20 * 1024);
    const N: i64 = 150;
    for n in 0..N {
        for id in ["x1", "x2"] {
            let p = json!({"packet_type": "client_bound_live_update", "subject_id": id,
                           "data": {"n": n, "filler": filler}});
            to_switch.send(Message::Text(p.to_string())).await.unwrap();
        }
    }
    wait_for("packets wait in the agents' queues", || async {
        s.metric("switchyard_packets_queued", &[]).await > 0.0
    })
    .await;
    let mut next = std::collections::HashMap::from([("x1", 0i64), ("x2", 0i64)]);
    while next.values().any(|n| *n < N) {
        let p = slow.recv_type("client_bound_live_update").await;
        let id = p["subject_id"].as_str().unwrap().to_string();
        let want = next.get_mut(id.as_str()).unwrap();
        assert_eq!(p["data"]["n"], json!(*want), "{id}: in order, none missing");
        *want += 1;
    }
    assert_eq!(s.metric("switchyard_packets_queued", &[]).await, 0.0);
    s.assert_not_counted(
        "switchyard_packets_dropped_total",
        &[("reason", "agent_queue_full")],
    )
    .await;
    s.stop().await;
    reader.abort();
}

// Every queue a peer can fill is bounded, the switch's own mailboxes too:
// past the bound a sender's live updates are refused with `overloaded`
// (counted), never queued without limit.
#[test_deadline::test]
async fn a_flood_past_the_mailbox_bound_is_refused_not_queued() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = Switch::start_with(|c| c.session.max_mailbox_depth = 1).await;
    // No backend: every update goes through the BackendLink's mailbox (with
    // a backend that keeps up they pass it by its shortcut).
    let a = s.agent("flood").await;
    let (mut tx, mut rx) = a.stream.split();
    // One burst: queued in the socket, then written at once.
    for n in 0..3000 {
        let p = live_update("flood", "mephisto_bound_live_update", n).to_string();
        tx.feed(Message::Text(p)).await.unwrap();
    }
    tx.flush().await.unwrap();
    let refused = tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["kind"] == json!("overloaded") {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(refused, "the sender is told");
    assert!(
        s.metric(
            "switchyard_packets_dropped_total",
            &[("reason", "overloaded")]
        )
        .await
            > 0.0
    );
    s.stop().await;
}

// PROTOCOL 1.2: whatever way a packet takes through the switch (status
// changes through the `Agent`, live updates past it while it holds nothing
// back), an agent gets the backend's packets in the order they were sent.
#[test_deadline::test]
async fn status_changes_and_live_updates_keep_their_order() {
    let Router { s, mut b, mut a } = Router::start().await;
    const N: i64 = 300;
    for n in 0..N {
        let p = if n % 10 == 0 {
            json!({"packet_type": "update_status", "subject_id": "a1",
                   "data": {"status": "in task", "n": n}})
        } else {
            live_update("a1", "client_bound_live_update", n)
        };
        b.send(p).await;
    }
    for n in 0..N {
        let p = a.recv().await;
        assert_eq!(p["data"]["n"], json!(n), "in order: {p}");
        let want = if n % 10 == 0 {
            "update_status"
        } else {
            "client_bound_live_update"
        };
        assert_eq!(p["packet_type"], json!(want));
    }
    s.stop().await;
}

// A backend that stops reading holds its packets in the bounded outbox
// (its socket's bytes in flight past the bound), and gets every one, in
// order, when it reads again; then updates go straight to it again.
// Meanwhile the agent's socket stops being read, for at most a second: its
// heartbeat, sent behind the updates, is still answered.
#[test_deadline::test]
async fn a_backend_that_stops_reading_gets_everything_in_order_later() {
    let s = Switch::start_with(|c| c.session.max_in_flight_bytes = 64 * 1024).await;
    let mut b = s.small_buffer_ws().await;
    b.send(alive("mephisto")).await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    let mut a = s.agent("a1").await;
    let filler = "y".repeat(20 * 1024);
    // 300 x 20 KB: far more than the kernel's buffers and the bound.
    const N: i64 = 300;
    for n in 0..N {
        a.send(
            json!({"packet_type": "mephisto_bound_live_update", "subject_id": "a1",
                      "data": {"n": n, "filler": filler}}),
        )
        .await;
    }
    wait_for("packets wait in the outbox", || async {
        s.metric("switchyard_backend_outbox_depth", &[]).await > 0.0
    })
    .await;
    wait_for("the agent's socket stopped being read", || async {
        s.metric("switchyard_sender_pauses_total", &[]).await >= 1.0
    })
    .await;
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    let hb = a.recv_type("heartbeat").await;
    assert_eq!(hb["subject_id"], json!("a1"));
    for n in 0..N {
        let p = b.recv_type("mephisto_bound_live_update").await;
        assert_eq!(p["data"]["n"], json!(n), "in order, none missing");
    }
    a.send(live_update("a1", "mephisto_bound_live_update", N))
        .await;
    let p = b.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(N));
    assert_eq!(s.metric("switchyard_backend_outbox_depth", &[]).await, 0.0);
    s.stop().await;
}

// PROTOCOL 1.3 ping timeout: the live statuses are `onboarding`, `waiting`
// and `in task`; an agent in `waiting` or `onboarding` that has sent a
// heartbeat and then falls silent for longer than the timeout is marked
// `disconnect` on request_statuses and sent an `update_status` saying so;
// one in `completed` (not live) keeps its status. The timer is checked from
// both sides: not before the timeout, and by it.
#[test_deadline::test]
async fn ping_timeout_disconnects_silent_waiting_and_onboarding_agents() {
    let timeout = Duration::from_secs(2);
    let s = Switch::start_with(|c| c.agent.ping_timeout_secs = timeout.as_secs_f64()).await;
    let mut b = s.backend().await;
    let mut agents = Vec::new();
    for (id, status) in [("w", "waiting"), ("o", "onboarding"), ("c", "completed")] {
        let mut a = s.agent(id).await;
        b.send(update_status(id, status)).await;
        let p = a.recv_type("update_status").await;
        assert_eq!(p["data"]["status"], json!(status));
        agents.push((id, status, a));
    }
    // One heartbeat each (last_ping is set), then silence.
    let heard = std::time::Instant::now();
    for (id, _, a) in agents.iter_mut() {
        a.send(heartbeat(id)).await;
        a.recv_type("heartbeat").await;
    }
    // Well within the timeout: nobody is disconnected yet.
    b.send(request_statuses(123.5)).await;
    let r = b.recv_type("return_statuses").await;
    assert!(
        heard.elapsed() < timeout,
        "the machine is too slow for this test"
    );
    for (id, status, _) in &agents {
        assert_eq!(r["data"][id], json!(status), "{r}");
    }
    for id in ["w", "o"] {
        wait_status(&mut b, id, "disconnect").await;
    }
    assert_timer(
        "the disconnect",
        heard.elapsed(),
        timeout,
        Duration::from_secs(3),
    );
    let r = wait_status(&mut b, "c", "completed").await;
    assert_eq!(r["data"]["w"], json!("disconnect"), "{r}");
    assert_eq!(r["data"]["o"], json!("disconnect"), "{r}");
    for (id, status, a) in agents.iter_mut() {
        if *status != "completed" {
            let p = a.recv_type("update_status").await;
            assert_eq!(p["data"]["status"], json!("disconnect"), "{id}: {p}");
        }
    }
    s.wait_metric("switchyard_agents", &[("status", "disconnect")], 2.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.5 "Backend": with `--backend-token T` the backend presents T
// itself: an empty token, a prefix of T and T with more after it are all
// refused with 1008 after the upgrade, and counted.
#[test_deadline::test]
async fn a_backend_token_must_match_in_full() {
    let s = Switch::start_with(|c| c.backend.token = Some("s3cret".into())).await;
    let base = s.running.ws_url();
    let mut requests = Vec::new();
    for q in ["?token=", "?token=s", "?token=s3cre", "?token=s3cret2"] {
        requests.push(format!("{base}{q}").into_client_request().unwrap());
    }
    for bearer in ["Bearer ", "Bearer s3c"] {
        let mut req = base.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", bearer.parse().unwrap());
        requests.push(req);
    }
    let n = requests.len();
    for (i, req) in requests.into_iter().enumerate() {
        let mut ws = Ws::connect_request(req).await;
        ws.send(alive("mephisto")).await;
        assert_eq!(ws.closed_with().await, 1008, "attempt {i}");
        s.wait_metric("switchyard_backend_refused_total", &[], (i + 1) as f64)
            .await;
    }
    assert_eq!(n, 6);
    assert_eq!(s.metric("switchyard_backend_connected", &[]).await, 0.0);
    s.stop().await;
}

// PROTOCOL 1.2 `agent_details` and 1.5 "Backend-only packets": with a
// backend token set, an agent socket's `agent_details` is refused with an
// error and counted, and never answers another worker's HTTP request; the
// backend's own answer does.
#[test_deadline::test]
async fn an_agent_socket_cannot_answer_an_http_request() {
    let s = Switch::start_with(|c| c.backend.token = Some("s3cret".into())).await;
    let mut b = Ws::connect(&format!("{}?token=s3cret", s.running.ws_url())).await;
    b.send(alive("mephisto")).await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    let url = s.url("/request_agent");
    let req = actix_web::rt::spawn(async move {
        post_json(
            &url,
            json!({"provider_data": {"worker": "w1"}, "client_timestamp": 1}),
        )
        .await
    });
    let p = b.recv_type("register_agent").await;
    let rid = p["data"]["request_id"].clone();
    let mut thief = s.agent("thief").await;
    thief
        .send(json!({"packet_type": "agent_details", "subject_id": rid,
                     "data": {"request_id": rid, "agent_id": "stolen"}}))
        .await;
    assert_eq!(thief.recv().await["kind"], json!("not_backend"));
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "not_backend")],
        1.0,
    )
    .await;
    b.send(json!({"packet_type": "agent_details", "subject_id": rid,
                  "data": {"request_id": rid, "agent_id": "agent-1"}}))
        .await;
    let (status, answer) = req.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["agent_id"], json!("agent-1"), "{answer}");
    s.stop().await;
}

// PROTOCOL 1.4: the backend outbox is bounded (`outbox_limit`); past the
// bound the oldest packets are dropped and counted
// (`switchyard_packets_dropped_total{reason="backend_outbox_full"}`), and
// the backend gets the rest in order when it says `alive`.
#[test_deadline::test]
async fn the_backend_outbox_drops_its_oldest_past_the_limit_and_counts_them() {
    const LIMIT: i64 = 5;
    const SENT: i64 = 8;
    let s = Switch::start_with(|c| c.backend.outbox_limit = LIMIT as usize).await;
    let mut a = s.agent("a1").await;
    for n in 0..SENT {
        a.send(live_update("a1", "mephisto_bound_live_update", n))
            .await;
    }
    s.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "backend_outbox_full")],
        (SENT - LIMIT) as f64,
    )
    .await;
    assert_eq!(
        s.metric("switchyard_backend_outbox_depth", &[]).await,
        LIMIT as f64
    );
    let mut b = s.backend().await;
    for n in SENT - LIMIT..SENT {
        let p = b.recv_type("mephisto_bound_live_update").await;
        assert_eq!(p["data"]["n"], json!(n), "the newest, in order: {p}");
    }
    s.wait_metric("switchyard_backend_outbox_depth", &[], 0.0)
        .await;
    s.stop().await;
}

// PROTOCOL 1.2 `alive` and 1.3: packets queued for an agent are delivered
// after its next `alive`, in order. A socket that says `alive` and is gone
// at once (a tab closed right after it reconnected) may take some with it
// (written into a socket that closed: no protocol can tell), but what is
// kept stays in order for the next socket: a packet that could not be
// written goes back to the head of the queue, never behind the others.
// Each round races the closing socket against the flush, so the rounds
// together meet both outcomes.
#[test_deadline::test]
async fn a_socket_gone_at_its_alive_leaves_the_queue_in_order() {
    const ROUNDS: usize = 20;
    const N: i64 = 5;
    let s = Switch::start_with(|c| c.agent.reconnect_grace_secs = 60.0).await;
    let mut b = s.backend().await;
    let mut lost = 0;
    for round in 0..ROUNDS {
        let id = format!("r{round}");
        s.agent(&id).await.close().await;
        for n in 0..N {
            b.send(live_update(&id, "client_bound_live_update", n))
                .await;
        }
        s.wait_metric("switchyard_packets_queued", &[], N as f64)
            .await;
        let mut gone = s.ws().await;
        gone.send(alive(&id)).await;
        drop(gone);
        let mut back = s.ws().await;
        back.send(alive(&id)).await;
        let mut got = Vec::new();
        loop {
            let p = back.recv().await;
            match p["packet_type"].as_str() {
                Some("client_bound_live_update") => got.push(p["data"]["n"].as_i64().unwrap()),
                Some("update_status") => break,
                _ => panic!("{id}: unexpected {p}"),
            }
        }
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{id}: kept packets out of order: {got:?}"
        );
        lost += N as usize - got.len();
        back.close().await;
        s.wait_metric("switchyard_packets_queued", &[], 0.0).await;
    }
    println!("{lost} packets went with the closing sockets in {ROUNDS} rounds");
    s.stop().await;
}

// PROTOCOL 1.2 `alive`: a socket saying `alive` again for the agent it
// holds is answered as the first time (bound, `update_status`); it is not
// a claim on a live socket and keeps its agent.
#[test_deadline::test]
async fn alive_again_from_the_agents_own_socket_keeps_it_bound() {
    let Router { s, mut b, mut a } = Router::start().await;
    for _ in 0..2 {
        a.send(alive("a1")).await;
        let p = a.recv().await;
        assert_eq!(p["packet_type"], json!("update_status"), "{p}");
    }
    a.send(live_update("a1", "mephisto_bound_live_update", 3))
        .await;
    let p = b.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(3));
    s.assert_not_counted("switchyard_router_refused_total", &[("reason", "takeover")])
        .await;
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": a claim on an agent whose socket closes while it
// is probed takes the agent over: a Close frame is no sign of life.
#[test_deadline::test]
async fn a_socket_closing_while_probed_gives_its_agent_up() {
    let Router {
        s,
        b: _b,
        a: mut old,
    } = Router::start().await;
    let mut new = s.ws().await;
    new.send(alive("a1")).await;
    // The old socket has read nothing (its client answered no ping) when
    // the switch has asked it once.
    s.wait_metric(
        "switchyard_actor_messages_total",
        &[("kind", "WsSession"), ("message", "ProbeLiveness")],
        1.0,
    )
    .await;
    old.stream.close(None).await.expect("a Close frame sent");
    let p = new.recv().await;
    assert_eq!(p["packet_type"], json!("update_status"), "{p}");
    s.assert_not_counted("switchyard_router_refused_total", &[("reason", "takeover")])
        .await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": `max_frame_bytes` is the largest packet taken; a
// text message of exactly that size is a packet, one byte more is refused.
#[test_deadline::test]
async fn a_packet_of_exactly_the_frame_limit_is_taken() {
    let Router { s, b: _b, mut a } = Router::start_with(|c| c.session.max_frame_bytes = 300).await;
    let sized = |len: usize| {
        let head = r#"{"packet_type": "heartbeat", "subject_id": "a1", "data": {"pad": ""#;
        let tail = r#""}}"#;
        format!("{head}{}{tail}", "p".repeat(len - head.len() - tail.len()))
    };
    a.send_text(sized(300)).await;
    let p = a.recv().await;
    assert_eq!(p["packet_type"], json!("heartbeat"), "{p}");
    a.send_text(sized(301)).await;
    let e = a.recv().await;
    assert_eq!(e["kind"], json!("oversize_frame"), "{e}");
    s.stop().await;
}
