//! PROTOCOL 1.5, 2 and 5 against hostile peers: a gateway that lies about
//! lengths, names, nodes and clocks, a gateway that never answers, and the
//! history files on disk. Every attack goes through a real socket (or the
//! real data directory), and each test checks that the switch lives, that
//! memory stays bounded, that others are still served, that the attacker
//! is refused clearly and that a counter moved.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchyard_actors::wire::uplink::{Envelope, UplinkEvent, VERSION};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

const TOKEN: &str = "gw-secret";

/// The test process's resident memory (the in-process switch's with it).
fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn central(tweak: impl FnOnce(&mut switchyard::Config)) -> Switch {
    Switch::start_with(|c| {
        c.gateway_token = Some(TOKEN.into());
        tweak(c);
    })
    .await
}

/// A raw gateway session on `/gateway` presenting `token`.
async fn gateway_ws(s: &Switch, token: Option<&str>) -> Ws {
    let mut req = format!("ws://{}/gateway", s.running.http_addr)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    Ws::connect_request(req).await
}

async fn send_env(ws: &mut Ws, env: &Envelope) {
    ws.stream
        .send(Message::Binary(env.encode()))
        .await
        .expect("send");
}

/// A gateway that said hello as `name` and got its first ack.
async fn hello(s: &Switch, name: &str) -> Ws {
    let mut g = gateway_ws(s, Some(TOKEN)).await;
    send_env(
        &mut g,
        &Envelope::Hello {
            gateway: name.into(),
            epoch: 1,
            resume: 1,
        },
    )
    .await;
    s.wait_metric("switchyard_gateway_connected", &[("gateway", name)], 1.0)
        .await;
    g
}

/// GET /is_alive answered within a bound: the switch serves others.
async fn served(s: &Switch) {
    let t = Instant::now();
    let (status, _, _) = get(&s.url("/is_alive")).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

// PROTOCOL 1.5, 5: one 13-byte frame whose string length says 2^50 bytes
// is refused by the decoder's byte limit (no allocation): the session is
// closed with 1009, the switch lives, its memory does not move, another
// gateway keeps being served.
#[test_deadline::test]
async fn a_13_byte_frame_claiming_a_petabyte_closes_the_session_and_nothing_else() {
    let s = central(|_| {}).await;
    let mut honest = hello(&s, "honest").await;
    let before = vm_rss_kib();
    let mut g = gateway_ws(&s, Some(TOKEN)).await;
    let frame = vec![VERSION, 0, 0xFD, 0, 0, 0, 0, 0, 0, 4, 0, b'a', b'b'];
    assert_eq!(frame.len(), 13);
    g.stream.send(Message::Binary(frame)).await.unwrap();
    assert_eq!(g.closed_with().await, 1009);
    s.wait_metric(
        "switchyard_gateway_bad_frames_total",
        &[("kind", "too_large")],
        1.0,
    )
    .await;
    served(&s).await;
    let grown = vm_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    // The honest gateway's events still apply.
    send_env(
        &mut honest,
        &Envelope::Event {
            seq: 1,
            ts: 1.0,
            event: UplinkEvent::NodeData {
                node: 7,
                entries: vec![("HUM".into(), vec![40])],
            },
        },
    )
    .await;
    s.wait_metric(
        "switchyard_gateway_events_in_total",
        &[("gateway", "honest")],
        1.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 1.5: with no gateway token set, `/gateway` takes no one: the
// upgrade is accepted and closed with 1008 at once, and counted.
#[test_deadline::test]
async fn with_no_gateway_token_set_every_gateway_is_refused() {
    let s = Switch::start().await;
    assert!(s.running.config.gateway_token.is_none());
    let mut g = gateway_ws(&s, Some("anything")).await;
    assert_eq!(g.closed_with().await, 1008);
    // The same 13-byte frame never reaches a decoder.
    let mut g = gateway_ws(&s, None).await;
    let _ = g
        .stream
        .send(Message::Binary(vec![
            VERSION, 0, 0xFD, 0, 0, 0, 0, 0, 0, 4, 0, b'a', b'b',
        ]))
        .await;
    assert_eq!(g.closed_with().await, 1008);
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "token_not_set")],
        2.0,
    )
    .await;
    s.assert_not_counted(
        "switchyard_gateway_bad_frames_total",
        &[("kind", "too_large")],
    )
    .await;
    served(&s).await;
    s.stop().await;
}

// PROTOCOL 1.5, 5: a gateway name is bound to its session: a second
// session claiming a connected name is refused, one session cannot speak
// for a second name, and names are plain and short.
#[test_deadline::test]
async fn gateway_names_are_checked_and_bound_to_their_session() {
    let s = central(|_| {}).await;
    let mut owner = hello(&s, "edge-a").await;
    // A second session claiming edge-a.
    let mut thief = gateway_ws(&s, Some(TOKEN)).await;
    send_env(
        &mut thief,
        &Envelope::Hello {
            gateway: "edge-a".into(),
            epoch: 2,
            resume: 1,
        },
    )
    .await;
    assert_eq!(thief.closed_with().await, 1008);
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "name_taken")],
        1.0,
    )
    .await;
    // The owner still speaks for edge-a.
    assert_eq!(
        s.metric("switchyard_gateway_connected", &[("gateway", "edge-a")])
            .await,
        1.0
    );
    // The owner tries a second name.
    send_env(
        &mut owner,
        &Envelope::Hello {
            gateway: "edge-b".into(),
            epoch: 1,
            resume: 1,
        },
    )
    .await;
    assert_eq!(owner.closed_with().await, 1008);
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "second_name")],
        1.0,
    )
    .await;
    // Names that are not plain and short.
    for bad in ["", "a/b", &"x".repeat(65)] {
        let mut g = gateway_ws(&s, Some(TOKEN)).await;
        send_env(
            &mut g,
            &Envelope::Hello {
                gateway: bad.to_string(),
                epoch: 1,
                resume: 1,
            },
        )
        .await;
        assert_eq!(g.closed_with().await, 1008);
    }
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "bad_name")],
        3.0,
    )
    .await;
    served(&s).await;
    s.stop().await;
}

// PROTOCOL 1.5, 5: the number of gateways is bounded.
#[test_deadline::test]
async fn the_number_of_connected_gateways_is_bounded() {
    let s = central(|c| c.gateway.max_gateways = 2).await;
    let _a = hello(&s, "a").await;
    let mut b = hello(&s, "b").await;
    send_env(
        &mut b,
        &Envelope::Event {
            seq: 1,
            ts: 0.0,
            event: UplinkEvent::NodeMessage {
                node: 9,
                message: b"hi".to_vec(),
            },
        },
    )
    .await;
    wait_for("b's node", || {
        let u = s.url("/api/nodes/b/9");
        async move { get_json(&u).await.0 == 200 }
    })
    .await;
    s.wait_metric("switchyard_nodes", &[("status", "active")], 1.0)
        .await;
    let mut c = gateway_ws(&s, Some(TOKEN)).await;
    send_env(
        &mut c,
        &Envelope::Hello {
            gateway: "c".into(),
            epoch: 1,
            resume: 1,
        },
    )
    .await;
    assert_eq!(c.closed_with().await, 1008);
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "too_many_gateways")],
        1.0,
    )
    .await;
    // b leaves: c takes its place, and b's nodes leave the cache with it.
    b.close().await;
    s.wait_metric("switchyard_gateway_connected", &[("gateway", "b")], 0.0)
        .await;
    let _c = hello(&s, "c").await;
    wait_for("b forgotten", || {
        let u = s.url("/api/nodes/b/9");
        async move { get_json(&u).await.0 == 404 }
    })
    .await;
    // The forgotten nodes leave the gauges too (PROTOCOL 5: the central
    // cache holds a gateway's nodes while it is there).
    s.wait_metric("switchyard_nodes", &[("status", "active")], 0.0)
        .await;
    s.wait_metric("switchyard_nodes", &[("status", "inactive")], 0.0)
        .await;
    s.stop().await;
}

// PROTOCOL 2.2, 2.5, 5: gateway data passes the serial link's own checks
// and is stamped with the central's clock: a timestamp of 1e18 neither
// names a history file nor keeps a node active, bad data types and
// over-long messages are rejected and counted, and a gateway speaks for a
// bounded number of nodes.
#[test_deadline::test]
async fn gateway_data_is_checked_like_serial_data_and_stamped_here() {
    let s = central(|c| c.gateway.max_nodes_per_gateway = 3).await;
    let mut g = hello(&s, "liar").await;
    let mut seq = 0;
    let mut ev = |event: UplinkEvent| {
        seq += 1;
        Envelope::Event {
            seq,
            ts: 1e18,
            event,
        }
    };
    let events = vec![
        ev(UplinkEvent::NodeData {
            node: 1,
            entries: vec![("HUM".into(), vec![50])],
        }),
        // Not 3 printable ASCII characters.
        ev(UplinkEvent::NodeData {
            node: 1,
            entries: vec![("HUMIDITY".into(), vec![50])],
        }),
        // Longer than a mesh message can be.
        ev(UplinkEvent::NodeMessage {
            node: 1,
            message: vec![b'x'; 1000],
        }),
        // A length its declared type does not have: the entry is dropped.
        ev(UplinkEvent::NodeData {
            node: 2,
            entries: vec![("TMP".into(), vec![1, 2, 3, 4, 5])],
        }),
        ev(UplinkEvent::NodeMessage {
            node: 3,
            message: b"hi".to_vec(),
        }),
        // A fourth and fifth node: over the bound.
        ev(UplinkEvent::NodeMessage {
            node: 4,
            message: b"hi".to_vec(),
        }),
        ev(UplinkEvent::NodeMessage {
            node: 5,
            message: b"hi".to_vec(),
        }),
    ];
    for e in &events {
        send_env(&mut g, e).await;
    }
    s.wait_metric(
        "switchyard_gateway_events_in_total",
        &[("gateway", "liar")],
        7.0,
    )
    .await;
    s.wait_metric(
        "switchyard_gateway_events_rejected_total",
        &[("kind", "bad_data_type")],
        1.0,
    )
    .await;
    s.wait_metric(
        "switchyard_gateway_events_rejected_total",
        &[("kind", "message_too_long")],
        1.0,
    )
    .await;
    s.wait_metric(
        "switchyard_gateway_events_rejected_total",
        &[("kind", "too_many_nodes")],
        2.0,
    )
    .await;
    s.wait_metric(
        "switchyard_data_entries_rejected_total",
        &[("reason", "length_mismatch")],
        1.0,
    )
    .await;
    // Stamped with this switch's clock.
    let now = switchyard_actors::clock::now_secs();
    let (status, node) = get_json(&s.url("/api/nodes/liar/1")).await;
    assert_eq!(status, 200, "{node}");
    let last_seen = node["last_seen"].as_f64().unwrap();
    assert!((last_seen - now).abs() < 60.0, "last_seen {last_seen}");
    assert_eq!(node["latest"]["HUM"]["value"], json!({"percent": 50}));
    let (_, all) = get_json(&s.url("/api/nodes")).await;
    let liars: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["gateway"] == json!("liar"))
        .collect();
    assert_eq!(liars.len(), 3, "{all}");
    // The history file is named by this switch's day.
    let history = s.running.config.data_dir.join("history");
    let today = format!(
        "{}.jsonl",
        switchyard_actors::network::history::utc_day(now)
    );
    wait_for("history written", || {
        let p = history.join(&today);
        async move { p.exists() }
    })
    .await;
    let names: Vec<String> = std::fs::read_dir(&history)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| *n == today || n.starts_with(&today[..7])),
        "{names:?}"
    );
    served(&s).await;
    s.stop().await;
}

// PROTOCOL 1.5, 5: a gateway that never answers its commands: each waits
// at most the command timeout and is then answered and forgotten; past
// the bound of waiting commands new ones are refused at once.
#[test_deadline::test]
async fn commands_a_gateway_never_answers_expire_and_are_bounded() {
    let s = central(|c| {
        c.gateway.command_timeout_secs = 0.5;
        c.gateway.max_pending_commands = 1;
    })
    .await;
    let mut g = hello(&s, "mute").await;
    send_env(
        &mut g,
        &Envelope::Event {
            seq: 1,
            ts: 0.0,
            event: UplinkEvent::NodeMessage {
                node: 1,
                message: b"hi".to_vec(),
            },
        },
    )
    .await;
    wait_for("node known", || {
        let url = s.url("/api/nodes/mute/1");
        async move { get_json(&url).await.0 == 200 }
    })
    .await;
    let url = s.url("/api/nodes/mute/1/send");
    let u2 = url.clone();
    let t = Instant::now();
    let first = actix_web::rt::spawn(async move { post_json(&u2, json!({"text": "a"})).await });
    // The first command reaches the gateway (and is never answered).
    let cmd = tokio::time::timeout(WAIT, async {
        loop {
            match g.stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(Envelope::Command { id, .. }) = Envelope::decode(&b) {
                        return id;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("gateway socket: {other:?}"),
            }
        }
    })
    .await
    .expect("a command");
    assert!(cmd > 0);
    let (status, body) = post_json(&url, json!({"text": "b"})).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("too many"),
        "{body}"
    );
    s.wait_metric(
        "switchyard_pending_commands_refused_total",
        &[("link", "gateway")],
        1.0,
    )
    .await;
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    s.wait_metric(
        "switchyard_pending_commands_expired_total",
        &[("link", "gateway")],
        1.0,
    )
    .await;
    // The slot is free again: the next command is sent, not refused.
    let u3 = url.clone();
    let third = actix_web::rt::spawn(async move { post_json(&u3, json!({"text": "c"})).await });
    assert_eq!(third.await.unwrap().0, 504);
    assert_eq!(
        s.metric(
            "switchyard_pending_commands_refused_total",
            &[("link", "gateway")]
        )
        .await,
        1.0
    );
    served(&s).await;
    s.stop().await;
}

fn history_line(ts: f64, node: u16, v: u8) -> String {
    format!(
        "{{\"ts\":{ts},\"node\":{node},\"type\":\"HUM\",\"raw\":\"{v:02x}\",\"value\":{{\"percent\":{v}}}}}\n"
    )
}

// PROTOCOL 2.5, 1.5: the history directory as hostile input. Files are
// chosen by the date their name parses to (a far-future name, a name in
// the future and names that do not parse are not read), a directory and a
// FIFO named like day files and bad, over-long and future-stamped lines are
// skipped and counted without blocking the start, files past the retention
// age are deleted, and the warm start streams a large file into the
// bounded cache without holding the file in memory.
#[test_deadline::test]
async fn warm_start_streams_dated_files_and_skips_what_it_cannot_read() {
    use switchyard_actors::network::history::utc_day;
    let now = switchyard_actors::clock::now_secs();
    let day = |d: f64| format!("{}.jsonl", utc_day(now + d * 86_400.0));
    const LINES: usize = 150_000;
    let before = vm_rss_kib();
    let t = Instant::now();
    let s = tokio::time::timeout(
        Duration::from_secs(60),
        Switch::start_with(|c| {
            c.mesh.history_limit = 10;
            c.mesh.warm_days = 3;
            let h = c.data_dir.join("history");
            std::fs::create_dir_all(&h).unwrap();
            let mut today = String::with_capacity(LINES * 80);
            for i in 0..LINES {
                today.push_str(&history_line(
                    now - 100.0 + i as f64 * 1e-4,
                    0x11,
                    (i % 100) as u8,
                ));
            }
            today.push_str("{\"ts\": 1, \"node\": 17, \"ty\n");
            today.push_str(&"y".repeat(200 * 1024));
            today.push('\n');
            today.push_str(&history_line(1e18, 0x96, 1));
            std::fs::write(h.join(day(0.0)), today).unwrap();
            std::fs::create_dir(h.join(day(-1.0))).unwrap();
            let fifo = std::process::Command::new("mkfifo")
                .arg(h.join(day(-2.0)))
                .status()
                .expect("mkfifo");
            assert!(fifo.success());
            std::fs::write(
                h.join("31688740476-10-23.jsonl"),
                history_line(now, 0x99, 1),
            )
            .unwrap();
            std::fs::write(h.join(day(5.0)), history_line(now, 0x98, 1)).unwrap();
            std::fs::write(h.join("notes.jsonl"), history_line(now, 0x95, 1)).unwrap();
            std::fs::write(h.join("2000-01-01.jsonl"), history_line(now, 0x97, 1)).unwrap();
        }),
    )
    .await
    .expect("the switch starts without waiting on the FIFO");
    let took = t.elapsed();
    let grown = vm_rss_kib().saturating_sub(before);
    // The file is ~14 MiB; every record in memory at once would be several
    // times that.
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB at start");
    let (_, nodes) = get_json(&s.url("/api/nodes")).await;
    let addrs: Vec<&Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["addr"])
        .collect();
    assert_eq!(addrs, vec![&json!(0x11)], "{nodes}");
    let (_, h) = get_json(&s.url("/api/nodes/0x0011/history?type=HUM&limit=100")).await;
    assert_eq!(h["samples"].as_array().unwrap().len(), 10, "{h}");
    assert_eq!(
        h["samples"][9]["value"],
        json!({"percent": ((LINES - 1) % 100) as u64}),
        "the newest samples are kept"
    );
    assert_eq!(
        s.metric("switchyard_history_warm_records_total", &[]).await,
        LINES as f64
    );
    assert_eq!(
        s.metric(
            "switchyard_history_warm_skipped_total",
            &[("kind", "bad_line")]
        )
        .await,
        2.0
    );
    assert_eq!(
        s.metric(
            "switchyard_history_warm_skipped_total",
            &[("kind", "long_line")]
        )
        .await,
        1.0
    );
    assert_eq!(
        s.metric(
            "switchyard_history_warm_skipped_total",
            &[("kind", "bad_file")]
        )
        .await,
        2.0
    );
    assert_eq!(
        s.metric(
            "switchyard_history_files_removed_total",
            &[("reason", "age")]
        )
        .await,
        1.0
    );
    let h = s.running.config.data_dir.join("history");
    assert!(!h.join("2000-01-01.jsonl").exists());
    assert!(h.join("31688740476-10-23.jsonl").exists());
    served(&s).await;
    eprintln!("warm start of {LINES} lines took {took:?}, RSS +{grown} KiB");
    s.stop().await;
}

// PROTOCOL 2.3, 1.5: a root that takes commands and never answers (a
// stalled adapter): at most `max_pending_commands` wait, the rest are
// refused at once, each waiter gets a timeout, the entries are forgotten,
// and the switch keeps serving others meanwhile.
#[test_deadline::test]
async fn commands_the_root_never_answers_are_bounded_and_expire() {
    let mut m = crate::mesh::MeshSwitch::start_with(|c| {
        c.serial.command_timeout_secs = 0.5;
        c.serial.max_pending_commands = 3;
    })
    .await;
    m.root()
        .send(&switchyard_actors::wire::mesh::RootMessage::Data {
            node: 1,
            entries: vec![switchyard_actors::wire::mesh::DataEntry::new(
                "HUM",
                vec![5],
            )],
        });
    let node_url = m.s.url("/api/nodes/1");
    wait_for("node 1 known", || {
        let u = node_url.clone();
        async move { get_json(&u).await.0 == 200 }
    })
    .await;
    let url = m.s.url("/api/nodes/1/send");
    let t = Instant::now();
    let reqs: Vec<_> = (0..10)
        .map(|_| {
            let u = url.clone();
            actix_web::rt::spawn(
                async move { post_json(&u, json!({"text": "x".repeat(200)})).await },
            )
        })
        .collect();
    served(&m.s).await;
    let mut statuses = Vec::new();
    for r in reqs {
        statuses.push(r.await.unwrap().0);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![503, 503, 503, 503, 503, 503, 503, 504, 504, 504]
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    m.s.wait_metric(
        "switchyard_pending_commands_refused_total",
        &[("link", "uart")],
        7.0,
    )
    .await;
    m.s.wait_metric(
        "switchyard_pending_commands_expired_total",
        &[("link", "uart")],
        3.0,
    )
    .await;
    // Room again: the next command goes to the root (and times out).
    let (status, body) = post_json(&url, json!({"text": "again"})).await;
    assert_eq!(status, 504, "{body}");
    m.s.stop().await;
}

// PROTOCOL 5, 1.5: while the central switch is away, the edge keeps its
// events bounded in bytes as well as in number: the oldest are dropped and
// counted, the buffer's bytes stay under the bound.
#[test_deadline::test]
async fn the_uplink_buffer_is_bounded_in_bytes_while_the_central_is_away() {
    let free = free_addr();
    const LIMIT: usize = 4096;
    let mut edge = crate::mesh::MeshSwitch::start_with(move |c| {
        c.uplink.url = Some(format!("ws://{free}/gateway"));
        c.uplink.gateway_id = Some("edge-away".into());
        c.uplink.token = Some(TOKEN.into());
        c.uplink.buffer_bytes_limit = LIMIT;
        c.uplink.channel.reconnect_min_secs = 0.05;
        c.uplink.channel.reconnect_max_secs = 0.2;
    })
    .await;
    let m = edge.s.url("/metrics");
    // In batches the pty's buffer holds, while the switch reads them.
    for batch in 0..10u8 {
        for i in 0..10u8 {
            edge.root()
                .send(&switchyard_actors::wire::mesh::RootMessage::Message {
                    node: 1,
                    text: vec![batch * 10 + i; 200],
                });
        }
        let want = f64::from(batch + 1) * 10.0;
        wait_for("messages read", || {
            let m = m.clone();
            async move { metric_at(&m, "switchyard_node_messages_total", &[]).await >= want }
        })
        .await;
    }
    // About 220 bytes per event: at most ~18 fit in 4 KiB.
    wait_for("the oldest events dropped", || {
        let m = m.clone();
        async move {
            metric_at(
                &m,
                "switchyard_uplink_dropped_total",
                &[("gateway", "edge-away")],
            )
            .await
                >= 80.0
        }
    })
    .await;
    let bytes = edge
        .s
        .metric(
            "switchyard_uplink_buffered_bytes",
            &[("gateway", "edge-away")],
        )
        .await;
    assert!(bytes > 0.0 && bytes <= LIMIT as f64, "{bytes}");
    let kept = edge
        .s
        .metric("switchyard_uplink_buffered", &[("gateway", "edge-away")])
        .await;
    assert!(kept < 20.0, "{kept}");
    served(&edge.s).await;
    edge.s.stop().await;
}

// PROTOCOL 2.5, 1.5: a source inventing data types and nodes fills its own
// bounded part of the cache, not the switch's memory: types per node and
// samples per source are bounded, refusals counted.
#[test_deadline::test]
async fn invented_types_and_nodes_are_held_to_the_cache_bounds() {
    let s = central(|c| {
        c.mesh.max_types_per_node = 4;
        c.mesh.max_samples_per_source = 20;
    })
    .await;
    let mut g = hello(&s, "inventor").await;
    let types: Vec<(String, Vec<u8>)> = (0..10).map(|i| (format!("T{i:02}"), vec![i])).collect();
    send_env(
        &mut g,
        &Envelope::Event {
            seq: 1,
            ts: 0.0,
            event: UplinkEvent::NodeData {
                node: 1,
                entries: types,
            },
        },
    )
    .await;
    for n in 2..=30u16 {
        send_env(
            &mut g,
            &Envelope::Event {
                seq: u64::from(n),
                ts: 0.0,
                event: UplinkEvent::NodeData {
                    node: n,
                    entries: vec![("ABC".into(), vec![1])],
                },
            },
        )
        .await;
    }
    s.wait_metric(
        "switchyard_gateway_events_in_total",
        &[("gateway", "inventor")],
        30.0,
    )
    .await;
    s.wait_metric(
        "switchyard_data_entries_rejected_total",
        &[("reason", "too_many_types")],
        6.0,
    )
    .await;
    // 4 samples of node 1, then 16 nodes of one sample: the other 13 refused.
    s.wait_metric(
        "switchyard_data_entries_rejected_total",
        &[("reason", "sample_budget")],
        13.0,
    )
    .await;
    let (_, n1) = get_json(&s.url("/api/nodes/inventor/1")).await;
    assert_eq!(n1["latest"].as_object().unwrap().len(), 4, "{n1}");
    served(&s).await;
    s.stop().await;
}

// PROTOCOL 1.5, 5: a frame over the configured /gateway limit is closed
// with 1009 on its header, before its payload is read (the transport holds
// `/gateway` to `[gateway] max_frame_bytes`), and the switch carries on
// serving gateways.
#[test_deadline::test]
async fn a_gateway_frame_over_the_limit_is_closed_with_1009() {
    let s = central(|c| c.gateway.max_frame_bytes = 64 * 1024).await;
    let before = vm_rss_kib();
    let mut g = gateway_ws(&s, Some(TOKEN)).await;
    let _ = g.stream.send(Message::Binary(vec![1; 64 * 1024 + 1])).await;
    assert_eq!(g.closed_with().await, 1009);
    s.wait_metric(
        "switchyard_frames_refused_total",
        &[("link", "gateway")],
        1.0,
    )
    .await;
    let grown = vm_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    served(&s).await;
    let _ok = hello(&s, "after").await;
    s.stop().await;
}

// PROTOCOL 1.5, 5: time bounds on /gateway: a session that never says
// hello is closed with 1008 after the hello timeout, and a gateway that
// goes silent (answers no ping) is closed after the ping timeout, while a
// live one stays.
#[test_deadline::test]
async fn silent_gateway_sessions_are_closed_in_time() {
    let s = central(|c| {
        c.gateway.hello_timeout_secs = 0.3;
        c.session.ping_interval_secs = 0.2;
        c.session.ping_timeout_secs = 1.0;
    })
    .await;
    let t = Instant::now();
    let mut mute = gateway_ws(&s, Some(TOKEN)).await;
    assert_eq!(mute.closed_with().await, 1008);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "no_hello")],
        1.0,
    )
    .await;
    // Says hello, then reads nothing (so answers no ping).
    let mut silent = hello(&s, "silent").await;
    // A live gateway that keeps reading (and so answers pings).
    let mut live = hello(&s, "live").await;
    let reader = actix_web::rt::spawn(async move {
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(100), live.stream.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    return (false, live)
                }
                _ => {}
            }
        }
        (true, live)
    });
    s.wait_metric(
        "switchyard_gateway_rejected_total",
        &[("reason", "ping_timeout")],
        1.0,
    )
    .await;
    assert_eq!(silent.closed_with().await, 1001);
    let (stayed, _live) = reader.await.unwrap();
    assert!(stayed, "the live gateway was closed");
    assert_eq!(
        s.metric("switchyard_gateway_connected", &[("gateway", "live")])
            .await,
        1.0
    );
    assert_eq!(
        s.metric("switchyard_gateway_connected", &[("gateway", "silent")])
            .await,
        0.0
    );
    s.stop().await;
}

// PROTOCOL 1.5, 5: a gateway flooding events as fast as its socket goes
// has one event in flight at a time: the network manager's mailbox stays
// small, memory stays bounded, and HTTP is still answered.
#[test_deadline::test]
async fn a_flooding_gateway_fills_no_mailbox() {
    let s = central(|_| {}).await;
    let mut g = hello(&s, "flood").await;
    const N: u64 = 20_000;
    let before = vm_rss_kib();
    let frames: Vec<Vec<u8>> = (1..=N)
        .map(|seq| {
            Envelope::Event {
                seq,
                ts: 0.0,
                event: UplinkEvent::NodeMessage {
                    node: (seq % 50) as u16,
                    message: vec![b'x'; 200],
                },
            }
            .encode()
        })
        .collect();
    let sender = actix_web::rt::spawn(async move {
        for f in frames {
            g.stream.feed(Message::Binary(f)).await.unwrap();
        }
        g.stream.flush().await.unwrap();
        g
    });
    let metrics = s.url("/metrics");
    let mut deepest = 0.0f64;
    let mut done = false;
    let t = Instant::now();
    while !done && t.elapsed() < Duration::from_secs(60) {
        let depth = metric_at(
            &metrics,
            "switchyard_actor_mailbox_depth",
            &[("kind", "NetworkManager")],
        )
        .await;
        deepest = deepest.max(depth);
        done = metric_at(
            &metrics,
            "switchyard_gateway_events_in_total",
            &[("gateway", "flood")],
        )
        .await
            >= N as f64;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(done, "not all events applied");
    let _g = sender.await.unwrap();
    assert!(deepest < 50.0, "NetworkManager mailbox reached {deepest}");
    let grown = vm_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    served(&s).await;
    eprintln!(
        "flood: deepest NetworkManager mailbox {deepest}, RSS +{grown} KiB, {:?}",
        t.elapsed()
    );
    s.stop().await;
}

// PROTOCOL 2.1, 1.5: a root writing frames as fast as the port goes: the
// switch takes the next chunk only once the last one's frames are with the
// network manager, so its mailbox stays small and HTTP is answered.
#[test_deadline::test]
async fn a_flooding_root_fills_no_mailbox() {
    let mut m = crate::mesh::MeshSwitch::start().await;
    let mut root = m.root.take().unwrap();
    const N: usize = 30_000;
    let writer = actix_web::rt::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        for i in 0..N {
            let f = switchyard_actors::wire::mesh::RootMessage::Message {
                node: (i % 20) as u16 + 1,
                text: b"flood".to_vec(),
            };
            bytes.extend_from_slice(&switchyard_actors::wire::frame::encode_to_vec(&f.encode()));
        }
        root.send_raw(&bytes);
        root
    });
    let metrics = m.s.url("/metrics");
    let mut deepest = 0.0f64;
    let mut done = false;
    let t = Instant::now();
    while !done && t.elapsed() < Duration::from_secs(60) {
        let depth = metric_at(
            &metrics,
            "switchyard_actor_mailbox_depth",
            &[("kind", "NetworkManager")],
        )
        .await;
        deepest = deepest.max(depth);
        done = metric_at(&metrics, "switchyard_node_messages_total", &[]).await >= N as f64;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(done, "not all frames applied");
    m.root = Some(writer.await.unwrap());
    // One 4 KiB chunk holds at most a few hundred frames.
    assert!(deepest < 1000.0, "NetworkManager mailbox reached {deepest}");
    served(&m.s).await;
    eprintln!(
        "root flood: deepest NetworkManager mailbox {deepest}, {:?}",
        t.elapsed()
    );
    m.s.stop().await;
}

// PROTOCOL 2.3, 1.5: a stalled adapter (the root end takes no bytes):
// serial writes wait on their own thread behind a bounded queue, frames
// past it are dropped and counted (the command is refused at once), and the
// switch keeps answering HTTP meanwhile.
#[test_deadline::test]
async fn a_stalled_adapter_does_not_stall_the_switch() {
    let mut m = crate::mesh::MeshSwitch::start_with(|c| {
        c.serial.command_timeout_secs = 20.0;
        c.serial.max_pending_commands = 10_000;
        c.serial.write_queue_limit = 4;
    })
    .await;
    m.root()
        .send(&switchyard_actors::wire::mesh::RootMessage::Data {
            node: 1,
            entries: vec![switchyard_actors::wire::mesh::DataEntry::new(
                "HUM",
                vec![5],
            )],
        });
    let node_url = m.s.url("/api/nodes/1");
    wait_for("node 1 known", || {
        let u = node_url.clone();
        async move { get_json(&u).await.0 == 200 }
    })
    .await;
    // The root end is never read from now on: the pty fills up.
    let url = m.s.url("/api/nodes/1/send");
    let reqs: Vec<_> = (0..600)
        .map(|_| {
            let u = url.clone();
            actix_web::rt::spawn(async move {
                let _ = http()
                    .post(&u)
                    .send_json(&json!({"text": "z".repeat(250)}))
                    .await;
            })
        })
        .collect();
    let metrics = m.s.url("/metrics");
    wait_for("frames dropped at the full writer queue", || {
        let u = metrics.clone();
        async move { metric_at(&u, "switchyard_uart_writes_dropped_total", &[]).await >= 1.0 }
    })
    .await;
    // Served while the writer thread is stuck on the port.
    for _ in 0..3 {
        served(&m.s).await;
    }
    for r in reqs {
        r.abort();
    }
    m.s.stop().await;
}
