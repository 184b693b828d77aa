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

/// One heartbeat round trip of `agent`, asserted within `VICTIM_BOUND`.
async fn served(agent: &mut Ws, id: &str) -> Value {
    heartbeat_within(agent, id, VICTIM_BOUND).await
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
#[test_deadline::test]
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
#[test_deadline::test]
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
#[test_deadline::test]
async fn a_socket_binds_a_few_short_ids_and_speaks_only_for_them() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut attacker = s.ws().await;
    for i in 0..4 {
        attacker.send(alive(&format!("a{i}"))).await;
        attacker.recv_type("update_status").await;
    }
    // A flood of new ids: each refused, no agent made.
    for i in 4..2000 {
        attacker.send(alive(&format!("a{i}"))).await;
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
    long.send(alive(&"x".repeat(300))).await;
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
#[test_deadline::test]
async fn a_socket_keeps_its_role() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut turncoat = s.agent("t1").await;
    turncoat.send(alive("mephisto")).await;
    assert_eq!(turncoat.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 1.0)
        .await;
    // Nor may the backend's socket bind an agent.
    backend.send(alive("b1")).await;
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
#[test_deadline::test]
async fn without_a_token_the_backend_is_pinned_to_its_first_address() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut usurper = ws_from(&s, "127.0.0.2").await;
    usurper.send(alive("mephisto")).await;
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
    again.send(alive("mephisto")).await;
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
#[test_deadline::test]
async fn backend_allow_admits_only_its_networks() {
    let s = Switch::start_with(|c| c.backend.allow = vec!["127.0.0.2/32".into()]).await;
    let mut outsider = s.ws().await;
    outsider.send(alive("mephisto")).await;
    assert_eq!(outsider.closed_with().await, 1008);
    s.wait_metric("switchyard_backend_refused_total", &[], 1.0)
        .await;
    let mut backend = ws_from(&s, "127.0.0.2").await;
    backend.send(alive("mephisto")).await;
    s.wait_metric("switchyard_backend_connected", &[], 1.0)
        .await;
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 1))
        .await;
    let p = backend.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["subject_id"], json!("a1"));
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": `request_statuses` cannot fan out without bound.
// A burst of requests over thousands of agents runs one sweep at a time;
// requests that come meanwhile are answered by the next sweep.
#[test_deadline::test]
async fn a_burst_of_request_statuses_is_swept_once_at_a_time() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut victim = s.agent("victim").await;
    // Thousands of agents (made by the backend writing to them).
    for i in 0..3000 {
        backend
            .send(live_update(&format!("g{i}"), "client_bound_live_update", i))
            .await;
    }
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 3001.0)
        .await;
    for i in 0..200 {
        backend.send(request_statuses(i as f64)).await;
    }
    served(&mut victim, "victim").await;
    // Every request was swept for or coalesced; far fewer sweeps ran.
    let url = s.url("/metrics");
    wait_for("every request answered or coalesced", || {
        let url = url.clone();
        async move {
            let sweeps = metric_at(&url, "switchyard_status_sweeps_total", &[]).await;
            let coalesced = metric_at(
                &url,
                "switchyard_router_refused_total",
                &[("reason", "statuses_coalesced")],
            )
            .await;
            sweeps + coalesced == 200.0
        }
    })
    .await;
    let sweeps = s.metric("switchyard_status_sweeps_total", &[]).await;
    assert!(sweeps < 200.0, "{sweeps} sweeps for 200 requests");
    // The last answer is for the newest request, and lists every agent.
    let mut last = Value::Null;
    for _ in 0..sweeps as usize {
        last = backend.recv_type("return_statuses").await;
    }
    assert_eq!(
        last["client_timestamp"],
        json!(199.0),
        "newest request answered last"
    );
    assert_eq!(last["data"].as_object().unwrap().len(), 3001);
    served(&mut victim, "victim").await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": the backend outbox is bounded in bytes as well as
// packets. With no backend, an agent's large live updates drop the oldest
// past the bound (counted); the newest reach the backend in order.
#[test_deadline::test]
async fn the_backend_outbox_is_bounded_in_bytes() {
    let s = Switch::start_with(|c| c.backend.outbox_bytes_limit = 2 * 1024 * 1024).await;
    let mut a = s.agent("a1").await;
    let blob = "x".repeat(60 * 1024);
    for n in 0..100 {
        a.send(
            json!({"packet_type": "mephisto_bound_live_update", "subject_id": "a1",
                      "data": {"n": n, "blob": blob}}),
        )
        .await;
    }
    served(&mut a, "a1").await;
    let url = s.url("/metrics");
    wait_for("drops counted", || {
        let url = url.clone();
        async move {
            let dropped = metric_at(
                &url,
                "switchyard_packets_dropped_total",
                &[("reason", "backend_outbox_full")],
            )
            .await;
            let kept = metric_at(&url, "switchyard_backend_outbox_depth", &[]).await;
            dropped > 0.0 && dropped + kept == 100.0
        }
    })
    .await;
    let bytes = s.metric("switchyard_backend_outbox_bytes", &[]).await;
    assert!(bytes <= 2.0 * 1024.0 * 1024.0, "{bytes} bytes kept");
    let kept = s.metric("switchyard_backend_outbox_depth", &[]).await as i64;
    assert!(kept >= 20, "{kept} kept");
    let mut b = s.backend().await;
    for n in (100 - kept)..100 {
        let p = b.recv_type("mephisto_bound_live_update").await;
        assert_eq!(p["data"]["n"], json!(n));
    }
    s.stop().await;
}

// PROTOCOL 1.3, 1.5: an agent's queue is bounded in bytes as well as
// packets; every drop is counted and reported to the backend.
#[test_deadline::test]
async fn an_agent_queue_is_bounded_in_bytes() {
    let s = Switch::start_with(|c| c.agent.queue_bytes_limit = 1024 * 1024).await;
    let mut b = s.backend().await;
    let blob = "y".repeat(60 * 1024);
    for n in 0..40 {
        b.send(
            json!({"packet_type": "client_bound_live_update", "subject_id": "away",
                      "data": {"n": n, "blob": blob}}),
        )
        .await;
    }
    let e = b.recv_type("log_error").await;
    assert_eq!(
        e["data"]["error_type"],
        json!("agent-queue-overflow"),
        "{e}"
    );
    assert_eq!(e["data"]["dropped_packet"]["data"]["n"], json!(0));
    let url = s.url("/metrics");
    wait_for("drops counted", || {
        let url = url.clone();
        async move {
            let dropped = metric_at(
                &url,
                "switchyard_packets_dropped_total",
                &[("reason", "agent_queue_full")],
            )
            .await;
            let kept = metric_at(&url, "switchyard_packets_queued", &[]).await;
            dropped > 0.0 && dropped + kept == 40.0
        }
    })
    .await;
    let bytes = s.metric("switchyard_packets_queued_bytes", &[]).await;
    assert!(bytes <= 1024.0 * 1024.0, "{bytes} bytes queued");
    // The agent comes and gets the newest, in order.
    let kept = s.metric("switchyard_packets_queued", &[]).await as i64;
    let mut a = s.ws().await;
    a.send(alive("away")).await;
    for n in (40 - kept)..40 {
        let p = a.recv_type("client_bound_live_update").await;
        assert_eq!(p["data"]["n"], json!(n));
    }
    s.stop().await;
}

// PROTOCOL 1.3, 1.5: an agent with queued packets and no socket expires
// after its idle expiry all the same; the drop is counted and reported.
#[test_deadline::test]
async fn an_agent_with_queued_packets_and_no_socket_expires() {
    let s = Switch::start_with(|c| c.agent.idle_expiry_secs = 0.5).await;
    let mut b = s.backend().await;
    for n in 0..3 {
        b.send(live_update("gone", "client_bound_live_update", n))
            .await;
    }
    s.wait_metric("switchyard_packets_queued", &[], 3.0).await;
    let e = b.recv_type("log_error").await;
    assert_eq!(
        e["data"]["error_type"],
        json!("agent-expired-undelivered"),
        "{e}"
    );
    assert_eq!(e["data"]["dropped_count"], json!(3));
    s.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 0.0)
        .await;
    s.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "agent_expired")],
        3.0,
    )
    .await;
    assert_eq!(s.metric("switchyard_packets_queued_bytes", &[]).await, 0.0);
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": past `max_agents`, a new agent id is refused.
#[test_deadline::test]
async fn past_max_agents_new_ids_are_refused() {
    let s = Switch::start_with(|c| c.agent.max_agents = 3).await;
    let mut keep = Vec::new();
    for i in 0..3 {
        keep.push(s.agent(&format!("a{i}")).await);
    }
    let mut late = s.ws().await;
    late.send(alive("a3")).await;
    let e = error_of(&mut late).await;
    assert_eq!(e["kind"], json!("agent_limit"), "{e}");
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "agent_limit")],
        1.0,
    )
    .await;
    assert_eq!(
        s.metric("switchyard_actors_live", &[("kind", "Agent")])
            .await,
        3.0
    );
    served(&mut keep[0], "a0").await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": JSON bodies have a small limit of their own and
// are kept as text. A 10 MiB body is refused (413, JSON error) without
// being taken; one under the limit reaches the backend intact.
#[test_deadline::test]
async fn a_big_json_body_is_refused_and_memory_stays_bounded() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let before = rss_mib();
    // Announced: refused on the header, before any of the body is taken.
    for _ in 0..2 {
        let answer = raw_post(&s, Some(10 * 1024 * 1024), 10 * 1024 * 1024).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("limit"), "{answer}");
    }
    // Streamed (chunked, no length): refused once past the limit.
    let answer = raw_post(&s, None, 10 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "body_too_large")],
        3.0,
    )
    .await;
    let grown = rss_mib() - before;
    assert!(grown < 200.0, "RSS grew {grown} MiB");
    let (status, _) = get_json(&s.url("/is_alive")).await;
    assert_eq!(status, 200);
    // Under the limit: delivered, its text as sent.
    let fits = format!(
        r#"{{"USED_AGENT_ID":"a1","metadata":{{"k":"{}","f":1.50}},"client_timestamp":2}}"#,
        "w".repeat(900 * 1024)
    );
    let (status, _) = post_raw(
        &s.url("/submit_metadata"),
        "application/json",
        fits.into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let p = b.recv_type("submit_metadata").await;
    assert_eq!(p["data"]["k"].as_str().unwrap().len(), 900 * 1024);
    assert_eq!(p["client_timestamp"], json!(2));
    s.stop().await;
}

/// POSTs a JSON body of `size` bytes to `/submit_metadata` over a raw TCP
/// connection (with `Content-Length: declared`, or chunked), stopping
/// when the switch stops taking it; returns what the switch answered.
async fn raw_post(s: &Switch, declared: Option<usize>, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.running.http_addr)
        .await
        .unwrap();
    let length = match declared {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".into(),
    };
    let head = format!(
        "POST /submit_metadata HTTP/1.1\r\nHost: switch\r\nContent-Type: application/json\r\n{length}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut body = br#"{"USED_AGENT_ID":"a1","metadata":{"k":""#.to_vec();
    body.resize(size, b'z');
    let mut sent = 0;
    let writing = async {
        // Pieces that do not divide the limit: a streamed count must
        // refuse past the limit, not only on landing on it exactly.
        for piece in body.chunks(100_000) {
            let r = match declared {
                Some(_) => tcp.write_all(piece).await,
                None => {
                    let mut c = format!("{:x}\r\n", piece.len()).into_bytes();
                    c.extend_from_slice(piece);
                    c.extend_from_slice(b"\r\n");
                    tcp.write_all(&c).await
                }
            };
            if r.is_err() {
                break;
            }
            sent += piece.len();
        }
    };
    // The switch answers and stops reading: writing stalls or fails.
    let _ = tokio::time::timeout(Duration::from_secs(3), writing).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    // An announced length is refused before the body is taken. (A chunked
    // body is refused once past the limit; the HTTP layer may read the
    // rest of it to its end, but nothing past the limit is kept.)
    if declared.is_some() {
        assert!(
            sent < size,
            "the switch took the whole body ({sent} bytes): {answer}"
        );
    }
    answer
}

// PROTOCOL 1.4, 1.5: a request that timed out (408) is removed from the
// outbox with its HTTP request: a backend that connects later never gets it.
#[test_deadline::test]
async fn a_timed_out_request_never_reaches_the_backend() {
    let s = Switch::start().await;
    let (status, answer, took) = timed(post_json(
        &s.url("/request_agent"),
        json!({"provider_data": {"worker": "w1"}, "client_timestamp": 1}),
    ))
    .await;
    assert_eq!(status, 408, "{answer}");
    assert_within_request_timeout(&s, took);
    s.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "stale_request")],
        1.0,
    )
    .await;
    assert_eq!(s.metric("switchyard_backend_outbox_depth", &[]).await, 0.0);
    let mut b = s.backend().await;
    // What the backend gets first is a later packet, not the stale one.
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 1))
        .await;
    let p = b.recv().await;
    assert_eq!(p["packet_type"], json!("mephisto_bound_live_update"), "{p}");
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": a second socket claiming an agent whose socket is
// still live (it answers a ping promptly) is refused and counted; the
// backend's next packet for the agent goes to its own worker.
#[test_deadline::test]
async fn a_live_agent_socket_is_not_taken_over() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let mut victim = s.agent("v").await;
    let mut attacker = s.ws().await;
    for packet_type in ["alive", "heartbeat"] {
        attacker
            .send(json!({"packet_type": packet_type, "subject_id": "v", "data": {}}))
            .await;
        // The victim's worker goes on as usual (its client answers pings).
        let refused = error_of(&mut attacker);
        let worker = async {
            loop {
                served(&mut victim, "v").await;
                // A worker's heartbeat pace while the claim is judged.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let e = tokio::select! {
            e = refused => e,
            _ = worker => unreachable!(),
        };
        assert_eq!(e["kind"], json!("takeover"), "{e}");
    }
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "takeover")],
        2.0,
    )
    .await;
    // Nor may the refused socket speak for the agent.
    attacker
        .send(live_update("v", "mephisto_bound_live_update", 1))
        .await;
    assert_eq!(
        error_of(&mut attacker).await["kind"],
        json!("unbound_agent")
    );
    backend
        .send(live_update("v", "client_bound_live_update", 9))
        .await;
    let p = victim.recv_type("client_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(9));
    assert!(attacker.try_recv(Duration::from_millis(300)).await.is_err());
    assert_eq!(s.metric("switchyard_rebinds_total", &[]).await, 0.0);
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": a worker whose old socket went silent (a network
// drop: nothing answers the probe) takes its agent back within the probe
// time, and gets what was sent meanwhile.
#[test_deadline::test]
async fn a_silent_agent_socket_is_taken_over_quickly() {
    let s = Switch::start().await;
    let mut backend = s.backend().await;
    let _silent = s.agent("w").await;
    let t = Instant::now();
    let mut again = s.ws().await;
    again.send(alive("w")).await;
    again.recv_type("update_status").await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    s.wait_metric("switchyard_rebinds_total", &[], 1.0).await;
    backend
        .send(live_update("w", "client_bound_live_update", 4))
        .await;
    let p = again.recv_type("client_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(4));
    s.stop().await;
}

// PROTOCOL 1.4, 1.5: `/log_error` is open to every page visitor. While the
// backend is away, a flood of it fills at most a quarter of the outbox (the
// newest reports past it are dropped and counted) and never pushes a
// worker's submit out; the backend then gets the submit and the reports it
// kept, in order.
#[test_deadline::test]
async fn a_log_error_flood_never_pushes_a_submit_out_of_the_outbox() {
    let s = Switch::start_with(|c| c.backend.outbox_limit = 40).await;
    let (status, _) = post_json(
        &s.url("/submit_task"),
        json!({"USED_AGENT_ID": "worker-1", "final_data": {"answer": 42}, "client_timestamp": 1.0}),
    )
    .await;
    assert_eq!(status, 200);
    for n in 0..200 {
        let (status, _) = post_json(
            &s.url("/log_error"),
            json!({"USED_AGENT_ID": format!("visitor-{n}"), "error_data": {"n": n}, "client_timestamp": 1.0}),
        )
        .await;
        assert_eq!(status, 200);
    }
    s.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "log_error_share")],
        190.0,
    )
    .await;
    assert_eq!(s.metric("switchyard_backend_outbox_depth", &[]).await, 11.0);
    let mut b = s.backend().await;
    let submit = b.recv_type("submit_unit").await;
    assert_eq!(submit["subject_id"], json!("worker-1"));
    assert_eq!(submit["data"]["answer"], json!(42));
    for n in 0..10 {
        let p = b.recv_type("log_error").await;
        assert_eq!(p["subject_id"], json!(format!("visitor-{n}")));
    }
    s.stop().await;
}

// PROTOCOL 1.5 "Agents": a live socket is not taken over, however many of
// its agents are claimed at once. Two claims judged together (both probes
// of the victim's socket pending when it next speaks) are both refused.
#[test_deadline::test]
async fn claims_on_two_agents_of_one_live_socket_are_both_refused() {
    let s = Switch::start().await;
    let _backend = s.backend().await;
    let mut victim = s.ws().await;
    for id in ["x1", "x2"] {
        victim.send(alive(id)).await;
        victim.recv_type("update_status").await;
    }
    let (mut a1, mut a2) = (s.ws().await, s.ws().await);
    for (a, id) in [(&mut a1, "x1"), (&mut a2, "x2")] {
        a.send(alive(id)).await;
    }
    // The victim reads nothing (so its client answers no ping) until the
    // switch has asked its socket twice: only then are both claims pending
    // together. The count of handled probes is the one sign of that.
    s.wait_metric(
        "switchyard_actor_messages_total",
        &[("kind", "WsSession"), ("message", "ProbeLiveness")],
        2.0,
    )
    .await;
    // Its next frame answers both.
    served(&mut victim, "x1").await;
    for (a, id) in [(&mut a1, "x1"), (&mut a2, "x2")] {
        let e = a.recv().await;
        assert_eq!(e["kind"], json!("takeover"), "claim on {id}: {e}");
    }
    s.wait_metric(
        "switchyard_router_refused_total",
        &[("reason", "takeover")],
        2.0,
    )
    .await;
    assert_eq!(s.metric("switchyard_rebinds_total", &[]).await, 0.0);
    served(&mut victim, "x2").await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": a body whose announced length is past the limit is
// refused on its head, before any byte of it is sent (JSON and multipart).
#[test_deadline::test]
async fn a_body_announced_past_the_limit_is_refused_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Switch::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let heads = [
        ("/log_error", "application/json", 2_000_000),
        ("/submit_task", "multipart/form-data; boundary=x", 100_000),
    ];
    for (path, ctype, length) in heads {
        let mut tcp = tokio::net::TcpStream::connect(s.running.http_addr)
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: switch\r\nContent-Type: {ctype}\r\n\
             Content-Length: {length}\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        // The answer comes with no body sent; one that waits for the body
        // never comes.
        let mut answer = vec![0u8; 12];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer before the body"))
            .expect("an answer");
        assert_eq!(&answer, b"HTTP/1.1 413", "{path}");
    }
    s.wait_metric(
        "switchyard_malformed_input_total",
        &[("kind", "body_too_large")],
        2.0,
    )
    .await;
    s.stop().await;
}
