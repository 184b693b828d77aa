//! Hostile peers at the edge (PROTOCOL 1.5 "Trust and limits"): oversized
//! frame headers, peers that stop reading, too many connections, the
//! operators' surface, and the client socket's time and count bounds. Each
//! test attacks through a real socket and checks that the switch lives,
//! stays within its memory, keeps serving an honest peer, tells the
//! attacker why, and counts it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchyard_actors::wire::client_api::{ClientMessage, ClientRequest};
use switchyard_actors::wire::frame::{FrameCodec, FrameItem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::common::*;

/// Generous for a noisy 2-core machine.
const LONG: Duration = Duration::from_secs(20);

/// The test process's resident memory (the switch runs in it), in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sends a WebSocket handshake for `path` and reads the answer's head;
/// returns the status and the socket.
async fn raw_upgrade(addr: SocketAddr, path: &str) -> (u16, TcpStream) {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    io.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(LONG, io.read_u8())
            .await
            .expect("an answer in time")
            .expect("an answer head");
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, io)
}

/// Reads server frames until a close frame; returns its code.
async fn read_close<R: AsyncReadExt + Unpin>(io: &mut R, within: Duration) -> u16 {
    tokio::time::timeout(within, async {
        loop {
            let mut h = [0u8; 2];
            io.read_exact(&mut h).await.expect("a frame before the end");
            let len = match h[1] & 0x7f {
                126 => io.read_u16().await.unwrap() as usize,
                127 => io.read_u64().await.unwrap() as usize,
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            io.read_exact(&mut payload).await.unwrap();
            if h[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    })
    .await
    .expect("a close frame in time")
}

/// Streams up to `max` bytes of junk into `wr` until the switch stops
/// taking them; returns how many went.
fn stream_junk(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    max: usize,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0;
        while sent < max {
            match tokio::time::timeout(Duration::from_secs(5), wr.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        sent
    })
}

async fn is_alive_within(s: &Switch, bound: Duration) {
    let t = Instant::now();
    let (status, body) = get_json(&s.url("/is_alive")).await;
    assert_eq!((status, body), (200, json!({"status": "Alive!"})));
    assert!(t.elapsed() < bound, "/is_alive took {:?}", t.elapsed());
}

async fn wait_metric_long(s: &Switch, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let what = format!("{name}{labels:?} at {at_least} or more");
    wait_for_within(&what, LONG, || async {
        s.counted(name, labels).await >= at_least
    })
    .await;
}

// PROTOCOL 1.5 "Bounds": a frame header announcing 4 GiB on `/` is closed
// with 1009 at once; what the peer streams after it is not kept.
#[test_deadline::test]
async fn a_4_gib_frame_header_on_the_router_is_closed_with_1009_before_its_payload() {
    let s = Switch::start().await;
    let mut victim = s.agent("victim").await;
    let rss0 = vm_rss_kib();
    let (status, mut io) = raw_upgrade(s.running.http_addr, "/").await;
    assert_eq!(status, 101);
    let t = Instant::now();
    io.write_all(&client_frame_header(0x82, 4 << 30))
        .await
        .unwrap();
    let (mut rd, wr) = io.into_split();
    let junk = stream_junk(wr, 160 << 20);
    assert_eq!(read_close(&mut rd, LONG).await, 1009);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    heartbeat_within(&mut victim, "victim", Duration::from_secs(5)).await;
    let sent = junk.await.unwrap();
    let grown_mib = vm_rss_kib().saturating_sub(rss0) / 1024;
    assert!(
        grown_mib < 64,
        "the switch grew {grown_mib} MiB while the peer streamed {} MiB",
        sent >> 20
    );
    s.wait_metric(
        "switchyard_frames_refused_total",
        &[("link", "router")],
        1.0,
    )
    .await;
    heartbeat_within(&mut victim, "victim", Duration::from_secs(5)).await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": continuation frames count toward their message;
// a continuation header that takes the message past the limit closes with
// 1009 before its payload is read, on `/`, `/monitor` and `/gateway`.
#[test_deadline::test]
async fn a_fragmented_message_past_the_limit_is_closed_with_1009_on_every_endpoint() {
    let s = Switch::start_with(|c| c.gateway_token = Some("gw-secret".into())).await;
    for (path, link) in [
        ("/", "router"),
        ("/monitor", "monitor"),
        ("/gateway?token=gw-secret", "gateway"),
    ] {
        let (status, mut io) = raw_upgrade(s.running.http_addr, path).await;
        assert_eq!(status, 101, "{path}");
        let opcode = if link == "gateway" { 0x02 } else { 0x01 };
        // A first fragment well within every limit, then a continuation
        // announcing 1 GiB more.
        io.write_all(&client_frame(opcode, &[b' '; 1000]))
            .await
            .unwrap();
        io.write_all(&client_frame_header(0x80, 1 << 30))
            .await
            .unwrap();
        let (mut rd, wr) = io.into_split();
        let junk = stream_junk(wr, 32 << 20);
        assert_eq!(read_close(&mut rd, LONG).await, 1009, "{path}");
        let _ = junk.await;
        s.wait_metric("switchyard_frames_refused_total", &[("link", link)], 1.0)
            .await;
        is_alive_within(&s, Duration::from_secs(5)).await;
    }
    s.stop().await;
}

// Fragments that each fit, but whose sum does not, are refused when the
// header that passes the limit arrives (PROTOCOL 1.5 "Bounds").
#[test_deadline::test]
async fn many_small_fragments_count_as_one_message() {
    let s = Switch::start_with(|c| c.ws.monitor_max_frame_bytes = 10_000).await;
    let (status, mut io) = raw_upgrade(s.running.http_addr, "/monitor").await;
    assert_eq!(status, 101);
    io.write_all(&client_frame(0x01, &[b' '; 4000]))
        .await
        .unwrap();
    io.write_all(&client_frame(0x00, &[b' '; 4000]))
        .await
        .unwrap();
    io.write_all(&client_frame_header(0x00, 4000))
        .await
        .unwrap();
    assert_eq!(read_close(&mut io, LONG).await, 1009);
    s.wait_metric(
        "switchyard_frames_refused_total",
        &[("link", "monitor")],
        1.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": a peer that stops reading is disconnected within
// the ping timeout, though its session, frozen behind the full socket,
// cannot keep a deadline of its own. The honest agent and the backend are
// served all along.
#[test_deadline::test]
async fn an_agent_that_stops_reading_is_cut_within_the_ping_timeout() {
    let s = Switch::start_with(|c| {
        c.session.ping_timeout_secs = 3.0;
        c.session.ping_interval_secs = 0.5;
    })
    .await;
    let mut backend = s.backend().await;
    let mut victim = s.agent("victim").await;
    // The attacker binds an agent, then never reads again.
    let mut slow = s.small_buffer_ws().await;
    slow.send(alive("slow")).await;
    slow.recv_type("update_status").await;
    let big = "x".repeat(60 * 1024);
    for i in 0..200 {
        backend
            .send(json!({
                "packet_type": "client_bound_live_update",
                "subject_id": "slow",
                "data": {"i": i, "pad": big},
            }))
            .await;
    }
    // The victim's heartbeats go on meanwhile, each answered in time. The
    // backend reads what it is sent (the reports of the slow agent's
    // dropped packets among it), as a backend does.
    let deadline = Instant::now() + LONG;
    let cut = [("link", "router"), ("reason", "stalled")];
    while s.counted("switchyard_peers_cut_total", &cut).await < 1.0 {
        assert!(Instant::now() < deadline, "the slow reader was not cut");
        while backend.try_recv(Duration::from_millis(20)).await.is_ok() {}
        heartbeat_within(&mut victim, "victim", Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    heartbeat_within(&mut victim, "victim", Duration::from_secs(5)).await;
    is_alive_within(&s, Duration::from_secs(5)).await;
    assert_eq!(s.metric("switchyard_backend_connected", &[]).await, 1.0);
    drop(slow);
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": sockets on `/` are bounded; past the bound the
// socket is closed with 1013 after the upgrade (never an HTTP error on `/`,
// PROTOCOL 1.6), and a freed slot is reused. Loopback peers (a reverse
// proxy on this host) are not bounded per address, only in total.
#[test_deadline::test]
async fn sockets_past_the_connection_limit_are_closed_with_1013() {
    let s = Switch::start_with(|c| {
        c.ws.max_connections = 3;
        c.ws.max_connections_per_ip = 1;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(s.ws().await);
    }
    let mut refused = s.ws().await;
    assert_eq!(refused.closed_with().await, 1013);
    s.wait_metric(
        "switchyard_connections_refused_total",
        &[("link", "router"), ("limit", "total")],
        1.0,
    )
    .await;
    // Loopback is not bounded per address.
    s.assert_not_counted(
        "switchyard_connections_refused_total",
        &[("link", "router"), ("limit", "per_ip")],
    )
    .await;
    // The ones in use still work.
    let mut a = held.pop().unwrap();
    a.send(alive("a1")).await;
    a.recv_type("update_status").await;
    heartbeat_within(&mut a, "a1", Duration::from_secs(5)).await;
    // A slot freed is a slot to take.
    held.pop().unwrap().close().await;
    let url = s.url("/metrics");
    wait_for("a slot freed", || {
        let url = url.clone();
        async move {
            metric_at(&url, "switchyard_connections_open", &[("link", "router")]).await <= 2.0
        }
    })
    .await;
    let mut again = s.agent("a2").await;
    heartbeat_within(&mut again, "a2", Duration::from_secs(5)).await;
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": the refusal past the connection limit is one
// close frame (1013), then the end of the connection.
#[test_deadline::test]
async fn a_refused_socket_gets_one_close_frame_then_the_end() {
    let s = Switch::start_with(|c| c.ws.max_connections = 1).await;
    let _held = s.agent("a1").await;
    let (status, mut io) = raw_upgrade(s.running.http_addr, "/").await;
    assert_eq!(status, 101);
    let mut rest = Vec::new();
    tokio::time::timeout(LONG, io.read_to_end(&mut rest))
        .await
        .expect("the end of the connection")
        .expect("a clean end");
    assert!(
        rest.len() >= 4 && rest[0] == 0x88,
        "a close frame: {rest:?}"
    );
    assert_eq!(rest.len(), 2 + rest[1] as usize, "one frame: {rest:?}");
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1013);
    s.stop().await;
}

// PROTOCOL 4 and 1.5: monitor subscribers are bounded; past it: 1013.
#[test_deadline::test]
async fn monitor_subscribers_past_the_limit_are_closed_with_1013() {
    let s = Switch::start_with(|c| c.monitor.max_subscribers = 2).await;
    let url = format!("ws://{}/monitor", s.running.http_addr);
    let _a = Ws::connect(&url).await;
    let _b = Ws::connect(&url).await;
    let mut c = Ws::connect(&url).await;
    assert_eq!(c.closed_with().await, 1013);
    s.wait_metric(
        "switchyard_connections_refused_total",
        &[("link", "monitor"), ("limit", "total")],
        1.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 5 and 1.5: gateway sessions are bounded; past it: 1013.
#[test_deadline::test]
async fn gateway_sessions_past_the_limit_are_closed_with_1013() {
    let s = Switch::start_with(|c| {
        c.gateway_token = Some("gw-secret".into());
        c.ws.max_gateway_sessions = 1;
    })
    .await;
    let (status, _first) = raw_upgrade(s.running.http_addr, "/gateway?token=gw-secret").await;
    assert_eq!(status, 101);
    let (status, mut second) = raw_upgrade(s.running.http_addr, "/gateway?token=gw-secret").await;
    assert_eq!(status, 101);
    assert_eq!(read_close(&mut second, LONG).await, 1013);
    s.wait_metric(
        "switchyard_connections_refused_total",
        &[("link", "gateway"), ("limit", "total")],
        1.0,
    )
    .await;
    is_alive_within(&s, Duration::from_secs(5)).await;
    s.stop().await;
}

fn with_bearer(url: &str, token: &str) -> awc::ClientRequest {
    http()
        .get(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
}

async fn status_and_json(req: awc::ClientRequest) -> (u16, Value) {
    let mut res = req.send().await.expect("an answer");
    let body = res.body().limit(1 << 22).await.unwrap_or_default();
    (
        res.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

// PROTOCOL 1.5 "Operators' surface": with --admin-token, `/api/*`,
// `/metrics/actors`, `/dashboard` and `/monitor` need it (Bearer header
// or ?token=); `/metrics` stays open and names no agent.
#[test_deadline::test]
async fn the_operators_surface_needs_the_admin_token() {
    let s = Switch::start_with(|c| c.admin_token = Some("op-secret".into())).await;
    let mut agent = s.agent("agent-id-that-must-not-leak").await;
    for path in ["/api/agents", "/metrics/actors", "/api/nodes", "/dashboard"] {
        let (status, body) = status_and_json(http().get(s.url(path))).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("token"),
            "{path}: {body}"
        );
        let (status, _) = status_and_json(with_bearer(&s.url(path), "wrong")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let mut res = with_bearer(&s.url(path), "op-secret").send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path} with the token");
        let _ = res.body().limit(1 << 22).await;
    }
    let (status, body) = get_json(&s.url("/api/agents?token=op-secret")).await;
    assert_eq!(status, 200);
    assert!(body.to_string().contains("agent-id-that-must-not-leak"));
    s.wait_metric(
        "switchyard_admin_refused_total",
        &[("reason", "bad_token")],
        8.0,
    )
    .await;
    // The dashboard page passes its token on to its script and style.
    let (status, _, page) = get(&s.url("/dashboard?token=op-secret")).await;
    assert_eq!(status, 200);
    assert!(page.contains("/dashboard/dashboard.js?token=op-secret"));
    for asset in ["dashboard.js", "dashboard.css"] {
        let (status, _, _) = get(&s.url(&format!("/dashboard/{asset}?token=op-secret"))).await;
        assert_eq!(status, 200, "{asset} as the page links it");
    }
    // /monitor: refused before the upgrade without the token, served with it.
    let (status, _) = raw_upgrade(s.running.http_addr, "/monitor").await;
    assert_eq!(status, 401);
    let mut m = Ws::connect(&format!(
        "ws://{}/monitor?token=op-secret",
        s.running.http_addr
    ))
    .await;
    m.recv().await;
    // /metrics is open and carries no agent id.
    let (status, _, metrics) = get(&s.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(!metrics.contains("agent-id-that-must-not-leak"));
    heartbeat_within(
        &mut agent,
        "agent-id-that-must-not-leak",
        Duration::from_secs(5),
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.5 "Operators' surface": on a listener that is not loopback
// and with no admin token, the surface is refused with 403 and says how
// to open it; the agent API is served as before.
#[test_deadline::test]
async fn a_public_listener_without_an_admin_token_refuses_the_operators_surface() {
    let s = Switch::start_with(|c| c.http = "0.0.0.0:0".parse().unwrap()).await;
    let base = format!("http://127.0.0.1:{}", s.running.http_addr.port());
    for path in ["/api/agents", "/metrics/actors", "/dashboard"] {
        let (status, body) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 403, "{path}");
        let e = body["error"].as_str().unwrap_or("");
        assert!(e.contains("--admin-token") && e.contains("loopback"), "{e}");
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", s.running.http_addr.port())
        .parse()
        .unwrap();
    let (status, _) = raw_upgrade(addr, "/monitor").await;
    assert_eq!(status, 403);
    let (status, body) = get_json(&format!("{base}/is_alive")).await;
    assert_eq!((status, body), (200, json!({"status": "Alive!"})));
    let (status, _, _) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let refused = metric_at(
        &format!("{base}/metrics"),
        "switchyard_admin_refused_total",
        &[("reason", "no_admin_token")],
    )
    .await;
    assert_eq!(refused, 4.0);
    s.stop().await;
}

async fn client(addr: SocketAddr) -> Framed<TcpStream, FrameCodec> {
    Framed::new(
        TcpStream::connect(addr).await.expect("connects"),
        FrameCodec::new(1 << 20),
    )
}

/// The next message on a client connection, or None when it closed.
async fn client_next(c: &mut Framed<TcpStream, FrameCodec>) -> Option<ClientMessage> {
    loop {
        match tokio::time::timeout(LONG, c.next())
            .await
            .expect("a frame or the end in time")
        {
            Some(Ok(FrameItem::Frame(f))) => return ClientMessage::parse(&f).ok(),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

// PROTOCOL 3 and 1.5: client connections are bounded; one past the bound
// is told `F` and closed, and the others are served.
#[test_deadline::test]
async fn client_connections_past_the_limit_get_f_and_are_closed() {
    let s = Switch::start_with(|c| c.socket.max_connections = 2).await;
    let addr = s.running.tcp_addr.unwrap();
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    a.send(ClientRequest::ActiveCount.encode()).await.unwrap();
    assert!(matches!(
        client_next(&mut a).await,
        Some(ClientMessage::Ok(_))
    ));
    b.send(ClientRequest::ActiveCount.encode()).await.unwrap();
    assert!(matches!(
        client_next(&mut b).await,
        Some(ClientMessage::Ok(_))
    ));
    let mut c = client(addr).await;
    match client_next(&mut c).await {
        Some(ClientMessage::Fail(reason)) => assert!(reason.contains("too many"), "{reason}"),
        other => panic!("expected F, got {other:?}"),
    }
    assert!(client_next(&mut c).await.is_none(), "closed after F");
    s.wait_metric(
        "switchyard_connections_refused_total",
        &[("link", "client"), ("limit", "total")],
        1.0,
    )
    .await;
    // A freed slot is taken again.
    drop(a);
    let url = s.url("/metrics");
    wait_for("a client slot freed", || {
        let url = url.clone();
        async move { metric_at(&url, "switchyard_connections_open", &[("link", "client")]).await <= 1.0 }
    })
    .await;
    let mut d = client(addr).await;
    d.send(ClientRequest::ActiveCount.encode()).await.unwrap();
    assert!(matches!(
        client_next(&mut d).await,
        Some(ClientMessage::Ok(_))
    ));
    s.stop().await;
}

// PROTOCOL 3 and 1.5: a connection that sends nothing is told `F` and
// closed after the idle timeout; a listening one is not.
#[test_deadline::test]
async fn idle_client_connections_time_out_but_listeners_do_not() {
    let idle_timeout = Duration::from_secs(1);
    let s = Switch::start_with(|c| c.socket.idle_timeout_secs = idle_timeout.as_secs_f64()).await;
    let addr = s.running.tcp_addr.unwrap();
    let mut listener = client(addr).await;
    listener.send(ClientRequest::Listen.encode()).await.unwrap();
    assert!(matches!(
        client_next(&mut listener).await,
        Some(ClientMessage::Ok(_))
    ));
    let t = Instant::now();
    let mut idle = client(addr).await;
    match client_next(&mut idle).await {
        Some(ClientMessage::Fail(reason)) => assert!(reason.contains("idle"), "{reason}"),
        other => panic!("expected F, got {other:?}"),
    }
    // The timer from both sides: not before the idle timeout, and by it
    // (checked every quarter of it) with room for a loaded box.
    assert_timer(
        "the idle cut",
        t.elapsed(),
        idle_timeout,
        Duration::from_secs(2),
    );
    assert!(client_next(&mut idle).await.is_none(), "closed after F");
    s.wait_metric(
        "switchyard_peers_cut_total",
        &[("link", "client"), ("reason", "idle")],
        1.0,
    )
    .await;
    // Well past the timeout the listener is still served.
    listener
        .send(ClientRequest::ActiveCount.encode())
        .await
        .unwrap();
    loop {
        match client_next(&mut listener).await {
            Some(ClientMessage::Ok(_)) => break,
            Some(ClientMessage::Fail(f)) => panic!("listener refused: {f}"),
            Some(_) => continue,
            None => panic!("listener closed"),
        }
    }
    s.stop().await;
}

// PROTOCOL 3 and 1.5: a client that stops reading its answers is cut
// within the write timeout; other clients are served meanwhile.
#[test_deadline::test]
async fn a_client_that_stops_reading_is_cut() {
    let s = Switch::start_with(|c| {
        c.socket.write_timeout_secs = 1.0;
        c.socket.answer_backlog_limit = 1_000_000;
    })
    .await;
    let addr = s.running.tcp_addr.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock.connect(addr).await.unwrap();
    // Thousands of requests, no answer read.
    let req = switchyard_actors::wire::frame::encode_to_vec(&ClientRequest::NetInfo.encode());
    let all: Vec<u8> = req
        .iter()
        .copied()
        .cycle()
        .take(req.len() * 20_000)
        .collect();
    let writer = tokio::spawn(async move {
        let _ = tokio::time::timeout(LONG, slow.write_all(&all)).await;
        slow
    });
    wait_metric_long(
        &s,
        "switchyard_peers_cut_total",
        &[("link", "client"), ("reason", "stalled")],
        1.0,
    )
    .await;
    let mut honest = client(addr).await;
    honest
        .send(ClientRequest::ActiveCount.encode())
        .await
        .unwrap();
    assert!(matches!(
        client_next(&mut honest).await,
        Some(ClientMessage::Ok(_))
    ));
    drop(writer.await);
    s.stop().await;
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command's closing parenthesis: state is field 3,
    // utime and stime fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

// PROTOCOL 1.5 "Bounds": at the open-file limit the client socket's accept
// loop backs off instead of spinning on a listener that stays readable.
// The switch runs as a child process under a small `ulimit -n`, and is
// sent more connections than it has descriptors for.
#[test_deadline::test]
async fn at_the_open_file_limit_the_accept_loop_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, tcp_port) = (free_port(), free_port());
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .args(["--tcp", &format!("127.0.0.1:{tcp_port}")])
        .args(["--uart", "none", "--http-workers", "1"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the switch starts");
    let pid = child.id();
    let addr: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    wait_for_within("the client socket to open", LONG, || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    // Far more connections than descriptors: the kernel completes them in
    // the listen backlog, and the switch's accepts fail with EMFILE.
    let mut held = Vec::new();
    for _ in 0..150 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            held.push(c);
        }
    }
    let errors_seen = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("accept failed")
            .count()
    };
    wait_for_within("accepts to fail", LONG, || async { errors_seen() > 0 }).await;
    let (cpu0, lines0, t0) = (cpu_ticks(pid), errors_seen(), Instant::now());
    // The behaviour under test is what the switch does over time at the
    // limit: this wait is the measuring window, not a synchronisation.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = cpu_ticks(pid) - cpu0;
    let lines = errors_seen() - lines0;
    let secs = t0.elapsed().as_secs_f64();
    // A spinning loop burns most of a core and logs a line per failure.
    assert!(
        (ticks as f64) < 0.2 * 100.0 * secs,
        "{ticks} ticks of CPU in {secs:.1} s at the open-file limit"
    );
    assert!(
        lines <= 2 * secs.ceil() as usize + 2,
        "{lines} log lines in {secs:.1} s"
    );
    // Descriptors freed, the switch serves clients again and counted the
    // failed accepts.
    drop(held);
    let deadline = Instant::now() + LONG;
    loop {
        let mut c = client(addr).await;
        c.send(ClientRequest::ActiveCount.encode()).await.unwrap();
        if let Ok(Some(ClientMessage::Ok(_))) =
            tokio::time::timeout(Duration::from_secs(2), client_next(&mut c)).await
        {
            break;
        }
        assert!(Instant::now() < deadline, "not served after the limit");
    }
    let errors = metric_at(
        &format!("http://127.0.0.1:{http_port}/metrics"),
        "switchyard_accept_errors_total",
        &[("link", "client")],
    )
    .await;
    assert!(errors >= 1.0, "accept errors counted: {errors}");
    let _ = child.kill();
    let _ = child.wait();
}

// PROTOCOL 4 and 1.5 "Bounds": a monitor subscriber that stops reading is
// disconnected within the ping timeout; another subscriber keeps getting
// its events.
#[test_deadline::test]
async fn a_monitor_subscriber_that_stops_reading_is_cut() {
    let s = Switch::start_with(|c| c.session.ping_timeout_secs = 3.0).await;
    let url = format!("ws://{}/monitor", s.running.http_addr);
    // The honest subscriber reads all along, and says when it saw the
    // event sent after the cut.
    let mut honest = Ws::connect(&url).await;
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let reader = actix_web::rt::spawn(async move {
        let mut seen_tx = Some(seen_tx);
        while let Ok(e) = honest.try_recv(LONG * 2).await {
            if e["text"] == json!("after the cut") {
                if let Some(tx) = seen_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(s.running.http_addr).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(
        url.as_str(),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    // Log events of a kilobyte each, through the client socket, far more
    // than the kernel's buffers hold; the slow subscriber reads none.
    let addr = s.running.tcp_addr.unwrap();
    let logger = client(addr).await;
    let text = "l".repeat(1000);
    let batch: Vec<u8> = (0..1000)
        .flat_map(|_| {
            switchyard_actors::wire::frame::encode_to_vec(
                &ClientRequest::WriteLog { text: text.clone() }.encode(),
            )
        })
        .collect();
    let (mut answers, mut requests) = logger.into_inner().into_split();
    let drain = actix_web::rt::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(answers.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let deadline = Instant::now() + LONG;
    let cut = [("link", "monitor"), ("reason", "stalled")];
    let mut batches = 0;
    while s.counted("switchyard_peers_cut_total", &cut).await < 1.0 {
        assert!(Instant::now() < deadline, "the slow subscriber was not cut");
        if batches < 12 {
            requests.write_all(&batch).await.unwrap();
            batches += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // An event after the cut reaches the honest subscriber.
    requests
        .write_all(&switchyard_actors::wire::frame::encode_to_vec(
            &ClientRequest::WriteLog {
                text: "after the cut".into(),
            }
            .encode(),
        ))
        .await
        .unwrap();
    tokio::time::timeout(LONG, seen_rx)
        .await
        .expect("the honest subscriber got the event in time")
        .expect("the honest subscriber read on");
    assert_eq!(
        s.metric("switchyard_peers_cut_total", &cut).await,
        1.0,
        "only the slow one"
    );
    is_alive_within(&s, Duration::from_secs(5)).await;
    drop(slow);
    drain.abort();
    reader.abort();
    s.stop().await;
}

/// Reads server frames until a close frame; returns the opcodes of the
/// frames before it, and the close frame's code and reason.
async fn frames_to_close<R: AsyncReadExt + Unpin>(
    io: &mut R,
    within: Duration,
) -> (Vec<u8>, u16, String) {
    tokio::time::timeout(within, async {
        let mut before = Vec::new();
        loop {
            let mut h = [0u8; 2];
            io.read_exact(&mut h).await.expect("a frame before the end");
            let len = match h[1] & 0x7f {
                126 => io.read_u16().await.unwrap() as usize,
                127 => io.read_u64().await.unwrap() as usize,
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            io.read_exact(&mut payload).await.unwrap();
            match h[0] & 0x0f {
                0x8 => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = String::from_utf8_lossy(&payload[2..]).to_string();
                    return (before, code, reason);
                }
                op => before.push(op),
            }
        }
    })
    .await
    .expect("a close frame in time")
}

/// Writes a log line through the client socket and waits until a monitor
/// subscriber's reader hands it on through `logs`.
async fn log_seen(
    logger: &mut Framed<TcpStream, FrameCodec>,
    logs: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    text: String,
) {
    logger
        .send(ClientRequest::WriteLog { text: text.clone() }.encode())
        .await
        .unwrap();
    assert!(client_next(logger).await.is_some(), "the log was taken");
    loop {
        let got = tokio::time::timeout(Duration::from_secs(5), logs.recv())
            .await
            .unwrap_or_else(|_| panic!("the subscriber got {text:?} in time"))
            .expect("the subscriber reads on");
        if got == text {
            return;
        }
    }
}

// PROTOCOL 1.5 "Bounds" and 4: a `/monitor` subscriber that completed the
// upgrade and then went silent (as a host that vanished without a FIN: it
// answers no ping) is closed with 1001 once the ping timeout has passed
// (at the next ping interval's tick), while its socket is far from full; a
// subscriber that only listens (its client answers the pings) is kept and
// gets every event.
#[test_deadline::test]
async fn a_monitor_subscriber_that_answers_no_ping_is_closed_after_the_ping_timeout() {
    const PING_TIMEOUT: Duration = Duration::from_secs(3);
    let s = Switch::start_with(|c| {
        c.session.ping_timeout_secs = PING_TIMEOUT.as_secs_f64();
        c.session.ping_interval_secs = 0.5;
    })
    .await;
    let url = format!("ws://{}/monitor", s.running.http_addr);
    // The listener never sends a frame of its own; its client answers the
    // switch's pings as it reads. It hands on the text of every log event.
    let mut listener = Ws::connect(&url).await;
    let (logs_tx, mut logs) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = actix_web::rt::spawn(async move {
        while let Ok(e) = listener.try_recv(LONG * 2).await {
            if e["event"] == json!("log") {
                if let Some(text) = e["text"].as_str() {
                    if logs_tx.send(text.to_string()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    s.wait_metric("switchyard_monitor_subscribers", &[], 1.0)
        .await;

    // The silent one: upgraded, then never reads nor writes a byte.
    let connecting = Instant::now();
    let (status, mut silent) = raw_upgrade(s.running.http_addr, "/monitor").await;
    assert_eq!(status, 101);
    let upgraded = Instant::now();
    s.wait_metric("switchyard_monitor_subscribers", &[], 2.0)
        .await;

    // Log events go out all along; the listener gets each in turn.
    let mut logger = client(s.running.tcp_addr.unwrap()).await;
    let cut = [("link", "monitor"), ("reason", "ping_timeout")];
    let deadline = upgraded + LONG;
    let mut i = 0;
    while s.counted("switchyard_peers_cut_total", &cut).await < 1.0 {
        assert!(Instant::now() < deadline, "the silent subscriber was kept");
        log_seen(&mut logger, &mut logs, format!("before the cut {i}")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let silent_for = connecting.elapsed();
    assert!(
        silent_for >= PING_TIMEOUT,
        "closed after {silent_for:?}, before the ping timeout"
    );
    let bound = PING_TIMEOUT + Duration::from_secs(4);
    assert!(
        upgraded.elapsed() < bound,
        "closed after {:?}, expected within {bound:?}",
        upgraded.elapsed()
    );

    // What the silent one would have read: the switch's pings, then 1001.
    let (before, code, reason) = frames_to_close(&mut silent, LONG).await;
    assert!(before.contains(&0x9), "pinged before the close: {before:?}");
    assert_eq!((code, reason.as_str()), (1001, "ping timeout"));
    s.wait_metric("switchyard_monitor_subscribers", &[], 1.0)
        .await;
    s.wait_metric("switchyard_connections_open", &[("link", "monitor")], 1.0)
        .await;

    // The listener, silent but for its pongs for longer than the ping
    // timeout, is still served.
    log_seen(&mut logger, &mut logs, "after the cut".into()).await;
    assert_eq!(
        s.metric("switchyard_peers_cut_total", &cut).await,
        1.0,
        "only the silent one"
    );
    // Cut for its silence, not for a full socket.
    s.assert_not_counted(
        "switchyard_peers_cut_total",
        &[("link", "monitor"), ("reason", "stalled")],
    )
    .await;
    reader.abort();
    s.stop().await;
}

// PROTOCOL 1.5 "Bounds": large messages being read are bounded switch-wide
// in bytes, so many sockets each sending up to the frame limit cannot add
// up without bound; the socket past the budget is closed with 1013, and
// the budget comes back as messages complete.
#[test_deadline::test]
async fn large_messages_in_progress_share_a_bounded_budget() {
    let s = Switch::start_with(|c| c.ws.message_budget_bytes = 1024 * 1024).await;
    let mut victim = s.agent("victim").await;
    let frame_len: u64 = 500 * 1024;
    let part = mask_payload(&vec![b'x'; 400 * 1024]);
    let open_partial = || async {
        let (status, mut io) = raw_upgrade(s.running.http_addr, "/").await;
        assert_eq!(status, 101);
        io.write_all(&client_frame_header(0x81, frame_len))
            .await
            .unwrap();
        io.write_all(&part).await.unwrap();
        io
    };
    let budget = |at_least: f64| {
        let url = s.url("/metrics");
        async move {
            let what = format!("a message budget in use of {at_least} bytes or more");
            wait_for_within(&what, LONG, || async {
                metric_at(&url, "switchyard_message_budget_bytes", &[]).await >= at_least
            })
            .await;
        }
    };
    let mut first = open_partial().await;
    let _second = open_partial().await;
    budget(800_000.0).await;
    let mut third = open_partial().await;
    assert_eq!(read_close(&mut third, LONG).await, 1013);
    s.wait_metric(
        "switchyard_message_budget_refused_total",
        &[("link", "router")],
        1.0,
    )
    .await;
    heartbeat_within(&mut victim, "victim", Duration::from_secs(5)).await;
    // The first message completes: its bytes go back, and a new large
    // message fits again.
    first
        .write_all(&vec![b'x' ^ 7; frame_len as usize - part.len()])
        .await
        .unwrap();
    let url = s.url("/metrics");
    wait_for("the first message's bytes given back", || {
        let url = url.clone();
        async move { metric_at(&url, "switchyard_message_budget_bytes", &[]).await < 500_000.0 }
    })
    .await;
    let _fourth = open_partial().await;
    budget(800_000.0).await;
    assert_eq!(
        s.metric(
            "switchyard_message_budget_refused_total",
            &[("link", "router")]
        )
        .await,
        1.0
    );
    heartbeat_within(&mut victim, "victim", Duration::from_secs(5)).await;
    s.stop().await;
}

// PROTOCOL 3 and 1.5: a listening connection is not idle for not sending,
// but one that stops reading its pushes is cut within the write timeout;
// the switch goes on serving other clients.
#[test_deadline::test]
async fn a_listener_that_stops_reading_its_pushes_is_cut() {
    use switchyard_actors::wire::mesh::RootMessage;
    let mut m = crate::mesh::MeshSwitch::start_with(|c| {
        c.socket.write_timeout_secs = 1.0;
        c.socket.idle_timeout_secs = 0.5;
    })
    .await;
    let addr = m.s.running.tcp_addr.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Framed::new(sock.connect(addr).await.unwrap(), FrameCodec::new(1 << 20));
    slow.send(ClientRequest::Listen.encode()).await.unwrap();
    assert!(matches!(
        client_next(&mut slow).await,
        Some(ClientMessage::Ok(_))
    ));
    // Node messages of 900 bytes, far more than the kernel's buffers hold,
    // written from a thread of their own (the pty blocks when full).
    let mut root = m.root.take().unwrap();
    let sender = actix_web::rt::task::spawn_blocking(move || {
        for _ in 0..20_000 {
            root.send(&RootMessage::Message {
                node: 1,
                text: vec![b'm'; 900],
            });
        }
        root
    });
    let deadline = Instant::now() + LONG;
    let cut = [("link", "client"), ("reason", "stalled")];
    while m.s.counted("switchyard_peers_cut_total", &cut).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the slow listener was not cut: {}",
            get(&m.s.url("/metrics"))
                .await
                .2
                .lines()
                .filter(|l| l.starts_with("switchyard_client")
                    || l.starts_with("switchyard_node_messages")
                    || l.starts_with("switchyard_uart_frames")
                    || l.starts_with("switchyard_peers_cut"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A listener is not idle for not sending.
    m.s.assert_not_counted(
        "switchyard_peers_cut_total",
        &[("link", "client"), ("reason", "idle")],
    )
    .await;
    let mut honest = client(addr).await;
    honest
        .send(ClientRequest::ActiveCount.encode())
        .await
        .unwrap();
    loop {
        match client_next(&mut honest).await {
            Some(ClientMessage::Ok(_)) => break,
            Some(ClientMessage::Fail(f)) => panic!("refused: {f}"),
            Some(_) => continue,
            None => panic!("closed"),
        }
    }
    m.root = Some(sender.await.unwrap());
    drop(slow);
    m.s.stop().await;
}

// A peer whose connection is reset while the switch still has bytes for it
// is gone: its session ends at once and is not counted as a stalled reader
// (PROTOCOL 1.5 "Bounds": the stall cut is for a peer that stops reading).
#[test_deadline::test]
async fn a_reset_with_bytes_queued_ends_the_session_as_gone_not_stalled() {
    let s = Switch::start_with(|c| {
        c.session.ping_timeout_secs = 3.0;
        c.session.max_in_flight_bytes = 64 * 1024;
    })
    .await;
    let mut b = s.backend().await;
    let mut slow = s.small_buffer_ws().await;
    slow.send(alive("slow")).await;
    slow.recv_type("update_status").await;
    let filler = "z".repeat(50 * 1024);
    for n in 0..100 {
        b.send(
            json!({"packet_type": "client_bound_live_update", "subject_id": "slow",
                      "data": {"n": n, "filler": filler}}),
        )
        .await;
    }
    // Far more than the buffers between us: the rest waits in the switch.
    s.wait_metric_at_least("switchyard_packets_queued", &[], 1.0)
        .await;
    // Linger 0: the close is a reset. (Deprecated because a non-zero
    // linger blocks the thread on drop; zero does not.)
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = slow.stream.get_ref() {
        #[allow(deprecated)]
        tcp.set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(slow);
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 1.0)
        .await;
    s.assert_not_counted(
        "switchyard_peers_cut_total",
        &[("link", "router"), ("reason", "stalled")],
    )
    .await;
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    let r = b.recv_type("return_statuses").await;
    assert!(r["data"]["slow"].is_string(), "{r}");
    s.stop().await;
}
