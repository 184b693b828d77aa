//! WebSocket upgrades over raw TCP (PROTOCOL 1.1, 4, 5): the handshake as
//! bytes on the wire, frames sent before the answer, refused handshakes, and
//! peers that vanish.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

fn handshake(path: &str, key: Option<&str>) -> String {
    let key = key
        .map(|k| format!("Sec-WebSocket-Key: {k}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

async fn connect(s: &Switch) -> TcpStream {
    TcpStream::connect(s.running.http_addr)
        .await
        .expect("connect")
}

/// Reads an HTTP response head byte by byte (what follows it, the first
/// frames of a session, stays in the socket) and as much body as
/// `Content-Length` says; returns (status, head, body).
async fn read_response(io: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(Duration::from_secs(10), io.read_u8())
            .await
            .expect("response in time")
            .unwrap_or_else(|e| panic!("closed before a response head ({e}): {head:?}"));
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.expect("the body");
    (status, head, body)
}

/// Reads server frames up to the next text frame (pings are skipped).
async fn read_text_frame(io: &mut TcpStream) -> Value {
    loop {
        let mut h = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut h))
            .await
            .expect("frame in time")
            .expect("frame header");
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7f {
            126 => io.read_u16().await.unwrap() as usize,
            127 => io.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await.unwrap();
        match h[0] {
            0x89 => continue,
            0x81 => return serde_json::from_slice(&payload).expect("JSON"),
            op => panic!("unexpected frame {op:#x}: {payload:?}"),
        }
    }
}

// Frames written right behind the upgrade request, before its answer, are
// the session's first frames: none is lost and they keep their order.
#[test_deadline::test]
async fn frames_sent_with_the_handshake_are_read_in_order() {
    let s = Switch::start().await;
    let mut io = connect(&s).await;
    let mut bytes = handshake("/", Some("dGhlIHNhbXBsZSBub25jZQ==")).into_bytes();
    bytes.extend(client_frame(0x81, b"{not json"));
    bytes.extend(client_frame(0x81, b"[1,2]"));
    io.write_all(&bytes).await.unwrap();
    let (status, head, _) = read_response(&mut io).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert_eq!(
        read_text_frame(&mut io).await["kind"],
        json!("invalid_json")
    );
    assert_eq!(
        read_text_frame(&mut io).await["kind"],
        json!("not_an_object")
    );
    s.wait_metric(
        "switchyard_http_requests_total",
        &[("route", "/"), ("status", "101")],
        1.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.1: a packet is one WebSocket text message, which a client may
// send in fragments (RFC 6455 5.4): the switch puts it together and
// answers it as one packet. A binary message stays refused in fragments.
#[test_deadline::test]
async fn a_message_sent_in_fragments_is_one_packet() {
    let s = Switch::start().await;
    let mut io = connect(&s).await;
    io.write_all(handshake("/", Some("dGhlIHNhbXBsZSBub25jZQ==")).as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut io).await;
    assert_eq!(status, 101, "{head}");
    let alive = br#"{"packet_type": "alive", "subject_id": "f1", "data": {}}"#;
    let (first, rest) = alive.split_at(20);
    let (middle, last) = rest.split_at(15);
    let mut frames = client_frame(0x01, first);
    frames.extend(client_frame(0x00, middle));
    frames.extend(client_frame(0x80, last));
    io.write_all(&frames).await.unwrap();
    let p = read_text_frame(&mut io).await;
    assert_eq!(p["packet_type"], json!("update_status"), "{p}");
    assert_eq!(p["subject_id"], json!("f1"), "{p}");
    let mut frames = client_frame(0x02, b"{}");
    frames.extend(client_frame(0x80, b"[]"));
    io.write_all(&frames).await.unwrap();
    let e = read_text_frame(&mut io).await;
    assert_eq!(e["kind"], json!("binary_frame"), "{e}");
    s.stop().await;
}

// A handshake that is not one gets the HTTP error it earns, counted by
// route and status; a WebSocket path asked without an upgrade says why.
#[test_deadline::test]
async fn refused_handshakes_get_http_errors_and_are_counted() {
    let s = Switch::start().await;

    let mut io = connect(&s).await;
    io.write_all(handshake("/monitor", None).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut io).await;
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&body).to_lowercase();
    assert!(body.contains("key"), "the missing key is named: {body}");

    let mut io = connect(&s).await;
    io.write_all(handshake("/nowhere", Some("dGhlIHNhbXBsZSBub25jZQ==")).as_bytes())
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut io).await;
    assert_eq!(status, 404);

    let (status, _, body) = get(&s.url("/gateway")).await;
    assert_eq!(status, 400);
    assert!(body.to_lowercase().contains("upgrade"), "{body}");

    for (route, status) in [
        ("/monitor", "400"),
        ("unmatched", "404"),
        ("/gateway", "400"),
    ] {
        s.wait_metric(
            "switchyard_http_requests_total",
            &[("route", route), ("status", status)],
            1.0,
        )
        .await;
    }
    // The switch still serves sockets.
    let mut a = s.agent("a1").await;
    a.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    assert_eq!(a.recv().await["packet_type"], json!("heartbeat"));
    s.stop().await;
}

// A peer that resets its connection ends its session: the socket is no
// longer counted open, and the others go on.
#[test_deadline::test]
async fn a_reset_connection_ends_its_session() {
    let s = Switch::start().await;
    let mut keep = s.agent("keep").await;
    let mut io = connect(&s).await;
    io.write_all(handshake("/", Some("dGhlIHNhbXBsZSBub25jZQ==")).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut io).await.0, 101);
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 2.0)
        .await;
    // Linger 0: close() sends a reset instead of a FIN. (Deprecated because
    // a non-zero linger blocks the thread on drop; zero does not.)
    #[allow(deprecated)]
    io.set_linger(Some(Duration::ZERO)).unwrap();
    drop(io);
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 1.0)
        .await;
    keep.send(json!({"packet_type": "heartbeat", "subject_id": "keep", "data": {}}))
        .await;
    assert_eq!(keep.recv().await["packet_type"], json!("heartbeat"));
    s.stop().await;
}
