//! PROTOCOL 4: `/monitor` over real WebSockets.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard_actors::wire::mesh::{DataEntry, RootMessage};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::mesh::MeshSwitch;

fn monitor_url(s: &Switch) -> String {
    format!("ws://{}/monitor", s.running.http_addr)
}

/// The next monitor event with `event == name` (skipping others).
async fn next_event(m: &mut Ws, name: &str) -> Value {
    loop {
        let v = m.recv().await;
        if v["event"] == json!(name) {
            return v;
        }
    }
}

fn hum(node: u16, n: u8) -> RootMessage {
    RootMessage::Data {
        node,
        entries: vec![DataEntry::new("HUM", vec![n])],
    }
}

// PROTOCOL 4: the snapshot on connect.
#[test_deadline::test]
async fn a_new_subscriber_gets_a_snapshot() {
    let mut m = MeshSwitch::start().await;
    m.root().send(&hum(1, 33));
    m.wait_value("1", "HUM", json!({"percent": 33})).await;
    let _b = m.s.backend().await;
    let _a = m.s.agent("agent-7").await;
    let mut mon = Ws::connect(&monitor_url(&m.s)).await;
    let snap = mon.recv().await;
    assert_eq!(snap["event"], json!("snapshot"));
    assert!(snap["ts"].as_f64().unwrap() > 1.6e9);
    assert_eq!(snap["nodes"][0]["address"], json!("0x0001"));
    assert_eq!(
        snap["nodes"][0]["latest"]["HUM"]["value"],
        json!({"percent": 33})
    );
    assert_eq!(snap["agents"][0]["agent_id"], json!("agent-7"));
    assert_eq!(snap["agents"][0]["status"], json!("none"));
    assert_eq!(snap["agents"][0]["is_alive"], json!(true));
    assert_eq!(snap["backend"]["connected"], json!(true));
    assert_eq!(snap["links"]["mesh"], json!("up"));
    assert_eq!(snap["robots"], json!([]));
    m.s.stop().await;
}

// PROTOCOL 4: every event kind as it happens.
#[test_deadline::test]
async fn every_event_kind_reaches_subscribers() {
    let mut m = MeshSwitch::start().await;
    let mut mon = Ws::connect(&monitor_url(&m.s)).await;
    assert_eq!(mon.recv().await["event"], json!("snapshot"));

    m.root().send(&hum(2, 40));
    let e = next_event(&mut mon, "node_status").await;
    assert_eq!(
        (e["address"].clone(), e["status"].clone()),
        (json!("0x0002"), json!("active"))
    );
    let e = next_event(&mut mon, "node_data").await;
    assert_eq!(e["node"], json!(2));
    assert_eq!(e["type"], json!("HUM"));
    assert_eq!(e["raw"], json!("28"));
    assert_eq!(e["value"], json!({"percent": 40}));

    m.root().send(&RootMessage::Message {
        node: 2,
        text: b"hello".to_vec(),
    });
    let e = next_event(&mut mon, "node_message").await;
    assert_eq!(
        (e["text"].clone(), e["hex"].clone()),
        (json!("hello"), json!("68656c6c6f"))
    );

    let mut b = m.s.backend().await;
    assert_eq!(
        next_event(&mut mon, "backend").await["connected"],
        json!(true)
    );
    let _a = m.s.agent("ag").await;
    let e = next_event(&mut mon, "agent_status").await;
    assert_eq!(
        (e["agent_id"].clone(), e["status"].clone()),
        (json!("ag"), json!("none"))
    );
    b.send(update_status("ag", "in task")).await;
    assert_eq!(
        next_event(&mut mon, "agent_status").await["status"],
        json!("in task")
    );
    b.close().await;
    assert_eq!(
        next_event(&mut mon, "backend").await["connected"],
        json!(false)
    );

    // log and robots from a client program.
    use switchyard_actors::wire::client_api::ClientRequest;
    use switchyard_actors::wire::frame::encode_to_vec;
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(m.s.running.tcp_addr.unwrap())
        .await
        .unwrap();
    tcp.write_all(&encode_to_vec(
        &ClientRequest::WriteLog {
            text: "from a client".into(),
        }
        .encode(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut mon, "log").await["text"],
        json!("from a client")
    );
    let robots = json!([{"id": 1, "name": "r", "state": "busy", "node": 2}]);
    tcp.write_all(&encode_to_vec(
        &ClientRequest::WriteRobots {
            json: robots.to_string().into_bytes(),
        }
        .encode(),
    ))
    .await
    .unwrap();
    assert_eq!(next_event(&mut mon, "robots").await["robots"], robots);

    // The result of a tracked send.
    let url = m.s.url("/api/nodes/2/send");
    let req = actix_web::rt::spawn(async move {
        post_json(&url, json!({"text": "t", "tracked": true})).await
    });
    let (mut root, _) = m.root.take().unwrap().recv_command().await;
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Ok(()),
    });
    assert_eq!(req.await.unwrap().0, 200);
    let e = next_event(&mut mon, "command_result").await;
    assert_eq!(
        (e["address"].clone(), e["command"].clone(), e["ok"].clone()),
        (json!("0x0002"), json!("SENDI"), json!(true))
    );

    // The link going down.
    drop(root);
    let e = next_event(&mut mon, "link").await;
    assert_eq!(
        (e["link"].clone(), e["state"].clone()),
        (json!("mesh"), json!("down"))
    );
    m.s.stop().await;
}

// PROTOCOL 4: `{"subscribe": [...]}` filters.
#[test_deadline::test]
async fn subscribers_may_filter() {
    let mut m = MeshSwitch::start().await;
    let mut mon = Ws::connect(&monitor_url(&m.s)).await;
    mon.recv().await;
    mon.send(json!({"subscribe": ["node_message"]})).await;
    assert_eq!(mon.recv().await, json!({"subscribed": ["node_message"]}));
    for n in 0..5 {
        m.root().send(&hum(3, n));
    }
    m.root().send(&RootMessage::Message {
        node: 3,
        text: b"only this".to_vec(),
    });
    let e = mon.recv().await;
    assert_eq!(
        (e["event"].clone(), e["text"].clone()),
        (json!("node_message"), json!("only this"))
    );
    mon.send_text("nonsense".into()).await;
    assert!(mon.recv().await["error"].is_string());
    m.s.wait_metric_at_least(
        "switchyard_malformed_input_total",
        &[("kind", "monitor_request")],
        1.0,
    )
    .await;
    m.s.stop().await;
}

/// A `/monitor` subscriber whose kernel receive buffer is tiny: it stalls
/// as soon as the test stops reading it (pongs included).
async fn stalled_subscriber(
    s: &Switch,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let tcp = sock.connect(s.running.http_addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(monitor_url(s).as_str(), tcp)
        .await
        .unwrap();
    ws
}

/// One frame (under the 1024-byte limit) of node 1 that makes four
/// node_data events of ~540 bytes, each `raw` starting with `seq`.
fn big_frame(seq: u32) -> RootMessage {
    let mut raw = seq.to_be_bytes().to_vec();
    raw.extend([0x42; 196]);
    let entries = ["SEQ", "BLA", "BLB", "BLC"]
        .iter()
        .map(|t| DataEntry::new(*t, raw.clone()))
        .collect();
    RootMessage::Data { node: 1, entries }
}

// PROTOCOL 4: a deliberately slow subscriber gets `lagged` (once, with the
// count) while a fast one misses nothing.
#[test_deadline::test]
async fn a_slow_subscriber_lags_and_a_fast_one_misses_nothing() {
    let mut m = MeshSwitch::start_with(|c| {
        // Room for the fast subscriber to ride out a busy CPU.
        c.monitor.queue_limit = 2000;
        c.monitor.in_flight_bytes = 64 * 1024;
        // The slow subscriber reads nothing, pongs included, until the
        // fast one is done: on a loaded machine that may take longer than
        // the usual ping timeout, which would cut it (PROTOCOL 4) before
        // the rule under test is seen.
        c.session.ping_timeout_secs = 120.0;
    })
    .await;
    let url = monitor_url(&m.s);
    let mut slow = stalled_subscriber(&m.s).await;
    let mut fast = Ws::connect(&url).await;
    assert_eq!(fast.recv().await["event"], json!("snapshot"));
    m.s.wait_metric_at_least("switchyard_monitor_subscribers", &[], 2.0)
        .await;

    // Each frame (under the 1024-byte limit) makes four events of ~540
    // bytes: 13 MB in all, more than
    // the kernel buffers a stalled socket's way.
    const N: u32 = 6000;
    // The fast subscriber paces the writer: at most WINDOW frames ahead of
    // what it has read, so a busy CPU cannot make it the slow one. The slow
    // subscriber reads nothing until the end, whatever the pace.
    const WINDOW: u32 = 200;
    let (credit, credits) = std::sync::mpsc::channel::<()>();
    let mut root = m.root.take().unwrap();
    let writer = actix_web::rt::task::spawn_blocking(move || {
        for i in 0..N {
            if i >= WINDOW && credits.recv().is_err() {
                break;
            }
            root.send(&big_frame(i));
        }
        root
    });
    let mut next = 0u32;
    while next < N {
        let e = next_event(&mut fast, "node_data").await;
        if e["type"] != json!("SEQ") {
            continue;
        }
        let raw = e["raw"].as_str().unwrap();
        let seq = u32::from_str_radix(&raw[..8], 16).unwrap();
        assert_eq!(seq, next, "in order, none missing");
        next += 1;
        let _ = credit.send(());
    }
    m.root = Some(writer.await.unwrap());
    m.s.wait_metric_at_least("switchyard_monitor_events_dropped_total", &[], 1.0)
        .await;

    // Now the slow one reads: it hears of its loss once.
    let mut lagged = Vec::new();
    let mut last_seq = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while last_seq != Some(N - 1) {
        let msg = tokio::time::timeout_at(deadline, slow.next())
            .await
            .expect("the slow subscriber catches up")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["event"] == json!("lagged") {
                lagged.push(v["dropped"].as_u64().unwrap());
            } else if v["event"] == json!("node_data") && v["type"] == json!("SEQ") {
                let raw = v["raw"].as_str().unwrap();
                last_seq = Some(u32::from_str_radix(&raw[..8], 16).unwrap());
            }
        }
    }
    assert!(
        !lagged.is_empty() && lagged.iter().all(|d| *d > 0),
        "{lagged:?}"
    );
    let dropped =
        m.s.metric("switchyard_monitor_events_dropped_total", &[])
            .await;
    assert_eq!(lagged.iter().sum::<u64>() as f64, dropped);
    let _ = slow.close(None).await;
    m.s.stop().await;
}

/// Reads `m`'s node_data events until one that `f` picks (a minute at most;
/// the reader may lag and lose events, never the newest).
async fn until_seen(m: &mut Ws, f: impl Fn(&Value) -> bool) {
    let seen = async {
        loop {
            let v = m.recv().await;
            if v["event"] == json!("node_data") && f(&v) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), seen)
        .await
        .expect("the reading subscriber gets the event");
}

// PROTOCOL 4: each subscriber's queue is bounded. A subscriber that stops
// reading loses its oldest events; when it reads again it is told once
// (`lagged` with the count) and then gets exactly the queue's bound of the
// newest events, in order: never one more.
#[test_deadline::test]
async fn a_stalled_subscriber_keeps_exactly_its_queue_bound() {
    const LIMIT: usize = 20;
    let mut m = MeshSwitch::start_with(|c| {
        c.monitor.queue_limit = LIMIT;
        c.monitor.in_flight_bytes = 4 * 1024;
        // The stalled subscriber answers no ping until it reads again.
        c.session.ping_timeout_secs = 120.0;
    })
    .await;
    let url = monitor_url(&m.s);
    let mut slow = stalled_subscriber(&m.s).await;
    // A second subscriber that reads all along: once it has the last
    // event, the monitor has offered that event to both.
    let mut sentinel = Ws::connect(&url).await;
    m.s.wait_metric("switchyard_monitor_subscribers", &[], 2.0)
        .await;
    // Batches of big node_data events until one batch is dropped whole
    // but for the queue's room: then nothing is written to the stalled
    // socket any more (the kernel's buffers are full) and its queue is
    // at its bound.
    const FRAMES: u32 = 200;
    let mut root = m.root.take().unwrap();
    let mut seq = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled subscriber's queue never overflowed for a whole batch"
        );
        let before =
            m.s.metric("switchyard_monitor_events_dropped_total", &[])
                .await;
        let first = seq;
        root = actix_web::rt::task::spawn_blocking(move || {
            for s in first..first + FRAMES {
                root.send(&big_frame(s));
            }
            root
        })
        .await
        .unwrap();
        seq += FRAMES;
        let end = format!("{:08x}", seq - 1);
        until_seen(&mut sentinel, |v| {
            v["type"] == json!("BLC") && v["raw"].as_str().is_some_and(|r| r.starts_with(&end))
        })
        .await;
        let dropped =
            m.s.metric("switchyard_monitor_events_dropped_total", &[])
                .await
                - before;
        if dropped >= f64::from(FRAMES * 4) - LIMIT as f64 {
            break;
        }
    }
    // A last batch so that the queue's newest events are known.
    let last = seq + 9;
    for s in seq..=last {
        root.send(&RootMessage::Data {
            node: 1,
            entries: vec![DataEntry::new("SEQ", s.to_be_bytes().to_vec())],
        });
    }
    m.root = Some(root);
    // Every event offered before the stalled subscriber reads again.
    let last_raw = json!(format!("{last:08x}"));
    until_seen(&mut sentinel, |v| v["raw"] == last_raw).await;

    // It reads again: what follows the last `lagged` is the queue.
    let mut after_lagged: Vec<Value> = Vec::new();
    let mut lagged = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, slow.next())
            .await
            .expect("the stalled subscriber catches up")
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["event"] == json!("lagged") {
            lagged.push(v["dropped"].as_u64().unwrap());
            after_lagged.clear();
            continue;
        }
        let is_last = v["raw"] == last_raw;
        after_lagged.push(v);
        if is_last {
            break;
        }
    }
    assert!(
        !lagged.is_empty() && lagged.iter().all(|d| *d > 0),
        "told of its loss: {lagged:?}"
    );
    assert_eq!(
        after_lagged.len(),
        LIMIT,
        "the queue held {} events, its bound is {LIMIT}",
        after_lagged.len()
    );
    // The newest, in order: the last ten SEQ-only frames end the queue.
    let tail: Vec<String> = after_lagged[LIMIT - 10..]
        .iter()
        .map(|v| v["raw"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: Vec<String> = (last - 9..=last).map(|s| format!("{s:08x}")).collect();
    assert_eq!(tail, want);
    let _ = slow.close(None).await;
    m.s.stop().await;
}

// PROTOCOL 4: the built-in dashboard (its page and the script and style it
// links, nothing else) and the APIs it reads, on a loopback listener with
// no admin token.
#[test_deadline::test]
async fn the_dashboard_and_its_apis_are_served() {
    let s = Switch::start().await;
    let (status, ctype, page) = get(&s.url("/dashboard")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains("/dashboard/dashboard.js"), "{page}");
    let assets = [
        (
            "dashboard.js",
            "text/javascript",
            include_str!("../src/assets/dashboard/dashboard.js"),
        ),
        (
            "dashboard.css",
            "text/css",
            include_str!("../src/assets/dashboard/dashboard.css"),
        ),
    ];
    for (name, want_type, want) in assets {
        let (status, ctype, body) = get(&s.url(&format!("/dashboard/{name}"))).await;
        assert_eq!(status, 200, "{name}");
        assert!(ctype.starts_with(want_type), "{name}: {ctype}");
        assert!(body == want, "{name} served as it is");
    }
    let (status, ctype, _) = get(&s.url("/dashboard/nope.js")).await;
    assert_eq!(status, 404);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let _b = s.backend().await;
    let _a = s.agent("a1").await;
    let (status, v) = get_json(&s.url("/api/agents")).await;
    assert_eq!(status, 200);
    assert_eq!(v["agents"][0]["agent_id"], json!("a1"), "{v}");
    assert_eq!(v["agents"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        get_json(&s.url("/api/mqtt")).await,
        (200, json!({"enabled": false}))
    );
    s.stop().await;
}
