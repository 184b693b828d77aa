//! What Mephisto's own users run into with the Node router, each checked
//! against the switch through real sockets (PROTOCOL 1.2, 1.3, 1.5): idle
//! backend sockets behind proxies, backend restarts, workers' network
//! drops, timed-out agents, and statuses that disagree.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// How long an honest agent's heartbeat may take (a noisy two-core machine
/// runs the tests).
const VICTIM_BOUND: Duration = Duration::from_secs(2);

/// One `request_statuses` round trip: the `return_statuses` data.
async fn statuses(backend: &mut Ws) -> Value {
    backend.send(request_statuses(42.5)).await;
    let r = backend.recv_type("return_statuses").await;
    assert_eq!(r["client_timestamp"], json!(42.5), "{r}");
    r["data"].clone()
}

/// One heartbeat round trip of `agent`, asserted within `VICTIM_BOUND`;
/// the reply's `data`.
async fn served(agent: &mut Ws, id: &str) -> Value {
    heartbeat_within(agent, id, VICTIM_BOUND).await["data"].clone()
}

/// Reads `ws` until a close frame (its code) or the end of the stream
/// (`None`: the switch may have reset the connection before the client
/// could answer the pings it had buffered).
async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.stream.next())
            .await
            .expect("timed out waiting for the socket to close");
        match next {
            Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// A WebSocket client written by hand on a raw TCP stream: it completes the
/// upgrade, sends one text frame, and then never reads again (a worker whose
/// network dropped without a FIN: the switch's pings go unanswered).
async fn half_open_client(s: &Switch, text: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(s.running.http_addr).await.unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        s.running.http_addr
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("upgrade answer")
            .unwrap();
        assert_eq!(n, 1, "connection closed during the upgrade");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    // One masked text frame (client frames are masked, RFC 6455 5.3).
    tcp.write_all(&client_frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    tcp
}

// Mephisto issue 1034 (a backend socket idle for hours behind a proxy is cut
// by the proxy) -- PROTOCOL 1.5 "Bounds" (ping timeout) and 1.2: the switch
// pings an idle backend socket, and the socket stays open across many ping
// timeouts while the backend answers; protocol pings from the backend are
// answered with pongs of the same payload; a backend path that answers
// nothing is closed after the ping timeout and counted, and a backend that
// comes back gets what agents sent meanwhile.
#[test_deadline::test]
async fn an_idle_backend_socket_is_kept_alive_by_pings_both_ways() {
    let s = Switch::start_with(|c| {
        c.session.ping_interval_secs = 0.2;
        c.session.ping_timeout_secs = 0.8;
    })
    .await;
    let mut b = s.backend().await;

    // (a) Idle for five ping timeouts; the client answers every ping.
    let idle = Duration::from_secs(4);
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < idle {
        match tokio::time::timeout(Duration::from_millis(100), b.stream.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Text(_)))) => {}
            Ok(other) => panic!("idle backend socket ended: {other:?}"),
        }
    }
    assert!(pings >= 5, "only {pings} pings in {idle:?}");
    assert_eq!(s.metric("switchyard_backend_connected", &[]).await, 1.0);
    s.assert_not_counted(
        "switchyard_malformed_input_total",
        &[("kind", "ping_timeout")],
    )
    .await;

    // (b) The backend's own keep-alive pings are answered in kind.
    for payload in [b"proxy-keepalive-1".to_vec(), b"x".to_vec(), Vec::new()] {
        b.stream
            .send(Message::Ping(payload.clone()))
            .await
            .expect("ping sent");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, b.stream.next())
                .await
                .expect("no pong")
                .expect("stream ended")
                .expect("socket error");
            if let Message::Pong(p) = m {
                if p == payload {
                    break;
                }
            }
        }
    }
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 1))
        .await;
    let p = b.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(1));

    // (c) The path goes dead: the backend stops answering anything.
    a.close().await;
    let t = Instant::now();
    s.wait_metric("switchyard_backend_connected", &[], 0.0)
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        s.metric(
            "switchyard_malformed_input_total",
            &[("kind", "ping_timeout")]
        )
        .await
            >= 1.0
    );
    // The socket ends (close_code fails the test if it does not); on a
    // dead path its close frame may be lost, and one that arrives says
    // "going away".
    let code = close_code(&mut b).await;
    assert!(matches!(code, None | Some(1001)), "closed with {code:?}");
    let (status, alive) = get_json(&s.url("/is_alive")).await;
    assert_eq!((status, alive["status"].clone()), (200, json!("Alive!")));

    // The backend reconnects; an agent's update reaches it.
    let mut a = s.agent("a1").await;
    a.send(live_update("a1", "mephisto_bound_live_update", 2))
        .await;
    let mut b = s.backend().await;
    let p = b.recv_type("mephisto_bound_live_update").await;
    assert_eq!(p["data"]["n"], json!(2));
    s.stop().await;
}

// Mephisto issue 685 (packets sent while the backend restarts are lost) --
// PROTOCOL 1.2 `mephisto_bound_live_update` and 1.4 (backend outbox): the
// backend closes mid-task, agents go on sending, a new backend socket from
// the same address says `alive` and gets every packet, in order, once.
#[test_deadline::test]
async fn a_restarted_backend_gets_every_packet_sent_meanwhile_in_order_once() {
    let s = Switch::start().await;
    let b = s.backend().await;
    let mut a1 = s.agent("a1").await;
    let mut a2 = s.agent("a2").await;
    b.close().await;
    s.wait_metric("switchyard_backend_connected", &[], 0.0)
        .await;
    let mut sent = Vec::new();
    for n in 0..15 {
        let (sock, id) = if n % 3 == 0 {
            (&mut a2, "a2")
        } else {
            (&mut a1, "a1")
        };
        sock.send(live_update(id, "mephisto_bound_live_update", n))
            .await;
        sent.push((id.to_string(), n));
        // A socket's own frames keep their order; across sockets the order
        // is the order the switch saw them, so wait for each.
        s.wait_metric("switchyard_backend_outbox_depth", &[], (n + 1) as f64)
            .await;
    }
    let mut b = s.backend().await;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let p = b.recv_type("mephisto_bound_live_update").await;
        got.push((
            p["subject_id"].as_str().unwrap_or_default().to_string(),
            p["data"]["n"].as_i64().unwrap_or(-1),
        ));
    }
    assert_eq!(got, sent);
    // Once: nothing more arrives, and the outbox is empty.
    s.wait_metric("switchyard_backend_outbox_depth", &[], 0.0)
        .await;
    let end = Instant::now() + Duration::from_millis(500);
    while let Ok(p) = b
        .try_recv(end.saturating_duration_since(Instant::now()))
        .await
    {
        assert_ne!(p["packet_type"], json!("mephisto_bound_live_update"), "{p}");
    }
    // The agents are still served, and the new backend hears them at once.
    served(&mut a1, "a1").await;
    a2.send(live_update("a2", "mephisto_bound_live_update", 99))
        .await;
    assert_eq!(
        b.recv_type("mephisto_bound_live_update").await["data"]["n"],
        json!(99)
    );
    s.stop().await;
}

// A worker's network drops for a few seconds -- PROTOCOL 1.3 (reconnect
// grace) and 1.2 `alive`: the agent's socket closes, the worker reconnects
// within the grace and says `alive`; it keeps its status, gets what the
// backend sent meanwhile in order, and the backend sees the status unchanged
// after the grace has passed.
#[test_deadline::test]
async fn a_worker_back_within_the_grace_keeps_the_task() {
    let grace = Duration::from_secs(2);
    let s = Switch::start_with(|c| {
        c.agent.reconnect_grace_secs = grace.as_secs_f64();
        c.agent.ping_timeout_secs = 10.0;
    })
    .await;
    let mut b = s.backend().await;
    let mut a = s.agent("w").await;
    served(&mut a, "w").await;
    b.send(update_status("w", "in task")).await;
    assert_eq!(
        a.recv_type("update_status").await["data"]["status"],
        json!("in task")
    );
    a.close().await;
    let closed = Instant::now();
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 1.0)
        .await;
    for n in 0..5 {
        b.send(live_update("w", "client_bound_live_update", n))
            .await;
    }
    s.wait_metric("switchyard_packets_queued", &[], 5.0).await;
    assert_eq!(statuses(&mut b).await["w"], json!("in task"));

    let mut a = s.ws().await;
    a.send(alive("w")).await;
    for n in 0..5 {
        let p = a.recv().await;
        assert_eq!(p["packet_type"], json!("client_bound_live_update"), "{p}");
        assert_eq!(p["data"]["n"], json!(n));
    }
    let p = a.recv().await;
    assert_eq!(p["packet_type"], json!("update_status"), "{p}");
    assert_eq!(p["data"]["status"], json!("in task"));
    assert!(
        closed.elapsed() < grace,
        "reconnected only after {:?}",
        closed.elapsed()
    );
    // The worker goes on heartbeating past the end of the grace: the
    // backend never sees it disconnected.
    while closed.elapsed() < grace + Duration::from_millis(700) {
        assert_eq!(served(&mut a, "w").await["status"], json!("in task"));
        assert_eq!(statuses(&mut b).await["w"], json!("in task"));
        // A worker's pace, kept up past the grace: the time passing is the
        // behaviour under test.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.metric("switchyard_packets_queued", &[]).await, 0.0);
    b.send(live_update("w", "client_bound_live_update", 5))
        .await;
    assert_eq!(
        a.recv_type("client_bound_live_update").await["data"]["n"],
        json!(5)
    );
    s.stop().await;
}

// A worker's network drops without a FIN (the old socket stays open and
// never answers) -- PROTOCOL 1.5 "Agents": a new socket's claim probes the
// old one and takes over within `agent.takeover_probe_secs`; the worker
// keeps its status and gets what was queued.
#[test_deadline::test]
async fn a_worker_behind_a_half_open_socket_takes_the_task_back_quickly() {
    let probe = Duration::from_secs(1);
    let s = Switch::start_with(|c| {
        c.agent.takeover_probe_secs = probe.as_secs_f64();
        c.agent.ping_timeout_secs = 10.0;
    })
    .await;
    let mut b = s.backend().await;
    let silent =
        half_open_client(&s, r#"{"packet_type":"alive","subject_id":"h","data":{}}"#).await;
    s.wait_metric("switchyard_agents", &[("status", "none")], 1.0)
        .await;
    b.send(update_status("h", "in task")).await;
    s.wait_metric("switchyard_agents", &[("status", "in task")], 1.0)
        .await;
    b.send(live_update("h", "client_bound_live_update", 1))
        .await;

    let t = Instant::now();
    let mut again = s.ws().await;
    again.send(alive("h")).await;
    let p = again.recv_type("update_status").await;
    assert_eq!(p["data"]["status"], json!("in task"));
    assert!(
        t.elapsed() < probe + Duration::from_secs(2),
        "takeover took {:?}",
        t.elapsed()
    );
    s.wait_metric("switchyard_rebinds_total", &[], 1.0).await;
    // The packet written into the silent socket may be lost with it; what
    // the backend sends now goes to the new socket.
    b.send(live_update("h", "client_bound_live_update", 2))
        .await;
    loop {
        let p = again.recv_type("client_bound_live_update").await;
        if p["data"]["n"] == json!(2) {
            break;
        }
        assert_eq!(p["data"]["n"], json!(1), "{p}");
    }
    assert_eq!(served(&mut again, "h").await["status"], json!("in task"));
    assert_eq!(statuses(&mut b).await["h"], json!("in task"));
    drop(silent);
    s.stop().await;
}

// Mephisto PR 830 (timed-out agents are never marked and clog the router)
// -- PROTOCOL 1.3 (ping timeout): agents `in task` that stop sending
// heartbeats after at least one are reported `disconnect` by
// `request_statuses` once the ping timeout passed and are sent an
// `update_status`; a live agent is served promptly throughout.
#[test_deadline::test]
async fn timed_out_agents_are_marked_disconnect_and_never_clog_the_router() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let ids: Vec<String> = (0..6).map(|i| format!("gone{i}")).collect();
    let mut gone = Vec::new();
    for id in &ids {
        let mut a = s.agent(id).await;
        served(&mut a, id).await;
        b.send(update_status(id, "in task")).await;
        assert_eq!(
            a.recv_type("update_status").await["data"]["status"],
            json!("in task")
        );
        gone.push(a);
    }
    let mut live = s.agent("live").await;
    served(&mut live, "live").await;
    b.send(update_status("live", "in task")).await;
    live.recv_type("update_status").await;

    // The live worker heartbeats; the others are silent.
    let deadline = Instant::now() + WAIT;
    let last = loop {
        served(&mut live, "live").await;
        let st = statuses(&mut b).await;
        assert_eq!(st["live"], json!("in task"), "{st}");
        if ids.iter().all(|id| st[id] == json!("disconnect")) {
            break st;
        }
        assert!(Instant::now() < deadline, "never all disconnected: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(last.as_object().map(|o| o.len()), Some(ids.len() + 1));
    for (id, a) in ids.iter().zip(gone.iter_mut()) {
        let p = a.recv_type("update_status").await;
        assert_eq!(p["subject_id"], json!(id));
        assert_eq!(p["data"]["status"], json!("disconnect"));
    }
    s.wait_metric(
        "switchyard_agents",
        &[("status", "disconnect")],
        ids.len() as f64,
    )
    .await;
    // Marking them did not slow anyone down.
    for _ in 0..5 {
        assert_eq!(served(&mut live, "live").await["status"], json!("in task"));
    }
    let (status, _) = get_json(&s.url("/is_alive")).await;
    assert_eq!(status, 200);
    s.stop().await;
}

// Mephisto issue 327 (the router and the backend disagree about statuses)
// -- PROTOCOL 1.2 `update_status`, `request_statuses`, `heartbeat` and 1.3:
// after update_status packets, a disconnect and reconnect, and an agent
// lost past its grace, `request_statuses` returns for every agent the
// status its last update_status said (or `disconnect` where the router
// decided it), each agent's heartbeat reply and its own last
// `update_status` say the same, and so does the per-status gauge.
#[test_deadline::test]
async fn statuses_seen_by_router_backend_and_agents_agree() {
    let grace = Duration::from_millis(1500);
    let s = Switch::start_with(|c| {
        c.agent.reconnect_grace_secs = grace.as_secs_f64();
        c.agent.ping_timeout_secs = 30.0;
    })
    .await;
    let mut b = s.backend().await;
    let mut socks = Vec::new();
    for id in ["a1", "a2", "a3", "a4"] {
        socks.push((id, s.agent(id).await));
    }
    let steps = [
        ("a1", "waiting"),
        ("a2", "onboarding"),
        ("a1", "in task"),
        ("a3", "in task"),
        ("a4", "accepted"),
        ("a2", "waiting"),
        ("a1", "completed"),
        ("a4", "status of a newer Mephisto"),
    ];
    for (id, status) in steps {
        b.send(update_status(id, status)).await;
    }
    // Each agent gets its own updates, in the order sent.
    for (id, sock) in socks.iter_mut() {
        for (_, status) in steps.iter().filter(|(i, _)| i == id) {
            let p = sock.recv_type("update_status").await;
            assert_eq!(p["data"]["status"], json!(status), "{id}: {p}");
        }
    }
    let mut socks: std::collections::HashMap<&str, Ws> = socks.into_iter().collect();

    // a2 drops and comes back within the grace; a3 drops for good.
    let a2 = socks.remove("a2").unwrap();
    a2.close().await;
    let a3 = socks.remove("a3").unwrap();
    a3.close().await;
    let dropped = Instant::now();
    let mut a2 = s.ws().await;
    a2.send(alive("a2")).await;
    assert_eq!(
        a2.recv_type("update_status").await["data"]["status"],
        json!("waiting")
    );
    assert!(dropped.elapsed() < grace, "{:?}", dropped.elapsed());
    socks.insert("a2", a2);

    let expected = json!({
        "a1": "completed",
        "a2": "waiting",
        "a3": "disconnect",
        "a4": "status of a newer Mephisto",
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let st = statuses(&mut b).await;
        if st == expected {
            break;
        }
        // Until a3's grace runs out it keeps its last status; nothing else
        // may differ at any time.
        let mut before = expected.clone();
        before["a3"] = json!("in task");
        assert_eq!(st, before, "statuses diverged");
        assert!(Instant::now() < deadline, "a3 never disconnected: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Until past a2's grace as well: the rebind kept its status.
    while dropped.elapsed() < grace + Duration::from_millis(500) {
        assert_eq!(statuses(&mut b).await, expected);
        // The backend's polling pace until past the grace: the time
        // passing is the behaviour under test.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each agent's heartbeat reply says what the backend sees.
    for (id, sock) in socks.iter_mut() {
        let reply = served(sock, id).await;
        assert_eq!(reply["status"], expected[*id], "{id}");
    }
    for (status, n) in [
        ("completed", 1.0),
        ("waiting", 1.0),
        ("disconnect", 1.0),
        // Statuses the switch does not know share one label (the gauge's
        // label set stays bounded whatever the backend sends).
        ("other", 1.0),
        ("in task", 0.0),
        ("onboarding", 0.0),
    ] {
        s.wait_metric("switchyard_agents", &[("status", status)], n)
            .await;
    }
    assert_eq!(statuses(&mut b).await, expected);
    s.stop().await;
}
