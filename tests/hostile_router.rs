//! PROTOCOL 1.5 (trust and limits) on the agent router, attacked through
//! real sockets: each test runs an attack, then checks that the switch
//! lives, stays bounded, keeps serving an honest peer within a bound,
//! answers the attacker clearly, and counts the refusal.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// How long an honest agent's heartbeat may take while an attack runs (a
/// noisy two-core machine runs the tests; an unbounded attack takes tens
/// of seconds).
const VICTIM_BOUND: Duration = Duration::from_secs(2);

fn heartbeat(id: &str) -> Value {
    json!({"packet_type": "heartbeat", "subject_id": id, "data": {}})
}

/// One heartbeat round trip of `agent`, asserted within `VICTIM_BOUND`.
async fn served(agent: &mut Ws, id: &str) -> Value {
    let t = Instant::now();
    agent.send(heartbeat(id)).await;
    let r = agent.recv_type("heartbeat").await;
    assert!(
        t.elapsed() < VICTIM_BOUND,
        "heartbeat of {id} took {:?}",
        t.elapsed()
    );
    r
}

/// A WebSocket on `/` whose TCP connection comes from `source` (another
/// loopback address: the switch sees another peer).
async fn ws_from(s: &Switch, source: &str) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap())
        .expect("bind a loopback source address");
    let tcp = sock.connect(s.running.http_addr).await.unwrap();
    let (stream, _) = tokio_tungstenite::client_async(
        s.running.ws_url(),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    Ws { stream }
}

/// The next error the switch sent this socket.
async fn error_of(ws: &mut Ws) -> Value {
    loop {
        let p = ws.recv().await;
        if p.get("error").is_some() {
            return p;
        }
    }
}

/// This process's resident memory (the switch runs in it), in MiB.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

// PROTOCOL 1.5 "Bounds": work a peer can trigger is linear in its input. A
// 0.95 MB frame of ~90 000 distinct keys (the duplicate-key check was
// quadratic: minutes of one HTTP worker) is refused at once.
#[actix_web::test]
async fn a_frame_of_many_fields_is_refused_at_once_and_others_are_served() {
    let s = Switch::start_with(|c| c.session.max_frame_bytes = 1024 * 1024).await;
    let mut victim = s.agent("victim").await;
    let mut attacker = s.ws().await;
    let mut frame = String::from(r#"{"packet_type":"alive","subject_id":"x""#);
    let mut i = 0;
    while frame.len() < 950_000 {
        let _ = write!(frame, r#","k{i}":0"#);
        i += 1;
    }
    frame.push('}');
    assert!(i > 80_000, "{i} keys");
    for _ in 0..3 {
        attacker.send_text(frame.clone()).await;
    }
    served(&mut victim, "victim").await;
    for _ in 0..3 {
        let e = error_of(&mut attacker).await;
        assert_eq!(e["kind"], json!("too_many_fields"), "{e}");
    }
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "too_many_fields")],
        3.0,
    )
    .await;
    served(&mut victim, "victim").await;
    s.stop().await;
}

// PROTOCOL 1.5 "Backend-only packets": from any socket but the backend's,
// `request_statuses`, `update_status`, `client_bound_live_update` and
// `agent_details` are refused with an error and counted (no fan-out over
// every agent, no status set, nothing delivered to the victim).
#[actix_web::test]
async fn backend_only_packets_from_other_sockets_are_refused() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut victim = s.agent("victim").await;
    let mut attacker = s.ws().await;
    let types = [
        "request_statuses",
        "update_status",
        "client_bound_live_update",
        "agent_details",
    ];
    for _ in 0..50 {
        for t in types {
            attacker
                .send(json!({"packet_type": t, "subject_id": "victim",
                             "data": {"status": "completed", "request_id": "r1"}}))
                .await;
        }
    }
    for _ in 0..200 {
        let e = error_of(&mut attacker).await;
        assert_eq!(e["kind"], json!("not_backend"), "{e}");
    }
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "not_backend")],
        200.0,
    )
    .await;
    // The victim saw nothing of it: its status is still `none`.
    let r = served(&mut victim, "victim").await;
    assert_eq!(r["data"]["status"], json!("none"), "{r}");
    // The backend got no answer it did not ask for: its own request's
    // answer is the first `return_statuses` it sees.
    backend
        .send(
            json!({"packet_type": "request_statuses", "subject_id": "mephisto",
                     "data": {}, "server_timestamp": 42.5}),
        )
        .await;
    let r = backend.recv_type("return_statuses").await;
    assert_eq!(r["client_timestamp"], json!(42.5), "{r}");
    assert_eq!(r["data"]["victim"], json!("none"));
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": a socket binds at most a few ids, each bounded in
// length, and speaks to the backend only for ids it bound.
#[actix_web::test]
async fn a_socket_binds_a_few_short_ids_and_speaks_only_for_them() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut attacker = s.ws().await;
    for i in 0..4 {
        attacker
            .send(json!({"packet_type": "alive", "subject_id": format!("a{i}"), "data": {}}))
            .await;
        attacker.recv_type("update_status").await;
    }
    // A flood of new ids: each refused, no agent made.
    for i in 4..2000 {
        attacker
            .send(json!({"packet_type": "alive", "subject_id": format!("a{i}"), "data": {}}))
            .await;
    }
    for _ in 4..2000 {
        let e = error_of(&mut attacker).await;
        assert_eq!(e["kind"], json!("too_many_ids"), "{e}");
    }
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "too_many_ids")],
        1996.0,
    )
    .await;
    assert_eq!(
        s.metric("switchyard_actors_live", &[("kind", "Agent")])
            .await,
        4.0
    );

    // Too long an id, from a fresh socket.
    let mut long = s.ws().await;
    long.send(json!({"packet_type": "alive", "subject_id": "x".repeat(300), "data": {}}))
        .await;
    let e = error_of(&mut long).await;
    assert_eq!(e["kind"], json!("id_too_long"), "{e}");
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "id_too_long")],
        1.0,
    )
    .await;

    // Speaking for an agent this socket did not bind.
    let mut victim = s.agent("victim").await;
    attacker
        .send(live_update("victim", "mephisto_bound_live_update", 1))
        .await;
    attacker
        .send(json!({"packet_type": "log_error", "subject_id": "victim", "data": {}}))
        .await;
    for _ in 0..2 {
        let e = error_of(&mut attacker).await;
        assert_eq!(e["kind"], json!("unbound_agent"), "{e}");
    }
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "unbound_agent")],
        2.0,
    )
    .await;
    // The backend gets the victim's own update, and only that.
    victim
        .send(live_update("victim", "mephisto_bound_live_update", 7))
        .await;
    let p = backend.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(7), "{p}");
    served(&mut victim, "victim").await;
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": a socket keeps its role. An agent socket that
// says `alive` as `mephisto` is closed with 1008; the backend's socket may
// not bind an agent.
#[actix_web::test]
async fn a_socket_keeps_its_role() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut turncoat = s.agent("t1").await;
    turncoat
        .send(json!({"packet_type": "alive", "subject_id": "mephisto", "data": {}}))
        .await;
    assert_eq!(turncoat.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 1.0)
        .await;
    // Nor may the backend's socket bind an agent.
    backend
        .send(json!({"packet_type": "alive", "subject_id": "b1", "data": {}}))
        .await;
    let e = error_of(&mut backend).await;
    assert_eq!(e["kind"], json!("role_change"), "{e}");
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "role_change")],
        1.0,
    )
    .await;
    // The backend is still the backend.
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 3))
        .await;
    let p = backend.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["subject_id"], json!("a1"));
    s.stop().await;
}

// PROTOCOL 1.5 "Backend": with no token the backend is pinned to the first
// backend's address; a claim from another address is closed with 1008
// after the upgrade, counted, and the backend keeps being served.
#[actix_web::test]
async fn without_a_token_the_backend_is_pinned_to_its_first_address() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut usurper = ws_from(&s, "127.0.0.2").await;
    usurper
        .send(json!({"packet_type": "alive", "subject_id": "mephisto", "data": {}}))
        .await;
    assert_eq!(usurper.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 1.0)
        .await;
    assert_eq!(s.metric("switchyard_backend_connected", &[]).await, 1.0);
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 5))
        .await;
    let p = backend.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(5));
    // The pinned address may come back (a backend restart).
    backend.close().await;
    let mut again = s.ws().await;
    again
        .send(json!({"packet_type": "alive", "subject_id": "mephisto", "data": {}}))
        .await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    a.send(live_update("a1", "mephisto_bound_live_update", 6))
        .await;
    let p = again.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(6));
    s.stop().await;
}

// PROTOCOL 1.5 "Backend": `--backend-allow` names the networks the backend
// may come from instead of the pin.
#[actix_web::test]
async fn backend_allow_admits_only_its_networks() {
    let s = Switch::start_with(|c| c.backend.allow = vec!["127.0.0.2/32".into()]).await;
    let mut outsider = s.ws().await;
    outsider
        .send(json!({"packet_type": "alive", "subject_id": "mephisto", "data": {}}))
        .await;
    assert_eq!(outsider.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 1.0)
        .await;
    let mut backend = ws_from(&s, "127.0.0.2").await;
    backend
        .send(json!({"packet_type": "alive", "subject_id": "mephisto", "data": {}}))
        .await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 1))
        .await;
    let p = backend.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["subject_id"], json!("a1"));
    s.stop().await;
}
