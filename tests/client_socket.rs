//! PROTOCOL 3 over real TCP, against the simulated mesh (and a pty root
//! where a test needs to control the traffic).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchyard_actors::network::events::SwitchEvent;
use switchyard_actors::network::GetRobots;
use switchyard_actors::testing::{wait_event, EventProbe};
use switchyard_actors::wire::client_api::{parse_get_answer, ClientMessage, ClientRequest};
use switchyard_actors::wire::frame::{FrameCodec, FrameItem};
use switchyard_actors::wire::mesh::{parse_data_payload, DataEntry, RootMessage};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::common::*;
use crate::mesh::MeshSwitch;

/// A client of the client socket.
struct Client {
    framed: Framed<TcpStream, FrameCodec>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client::over(TcpStream::connect(addr).await.expect("connects")).await
    }

    async fn over(stream: TcpStream) -> Client {
        Client {
            framed: Framed::new(stream, FrameCodec::new(1 << 20)),
        }
    }

    async fn send_raw(&mut self, frame_bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(frame_bytes).await.unwrap();
    }

    async fn send(&mut self, r: &ClientRequest) {
        self.framed.send(r.encode()).await.unwrap();
    }

    async fn next(&mut self) -> ClientMessage {
        loop {
            let item = tokio::time::timeout(WAIT, self.framed.next())
                .await
                .expect("a frame in time")
                .expect("connection open")
                .expect("readable");
            if let FrameItem::Frame(f) = item {
                return ClientMessage::parse(&f).expect("a valid client message");
            }
        }
    }

    /// The next answer (S or F), skipping pushes.
    async fn answer(&mut self) -> ClientMessage {
        loop {
            let m = self.next().await;
            if matches!(m, ClientMessage::Ok(_) | ClientMessage::Fail(_)) {
                return m;
            }
        }
    }

    async fn ask(&mut self, r: &ClientRequest) -> ClientMessage {
        self.send(r).await;
        self.answer().await
    }

    async fn ok(&mut self, r: &ClientRequest) -> Vec<u8> {
        match self.ask(r).await {
            ClientMessage::Ok(p) => p,
            other => panic!("{r:?}: {other:?}"),
        }
    }

    async fn fail(&mut self, r: &ClientRequest) -> String {
        match self.ask(r).await {
            ClientMessage::Fail(reason) => reason,
            other => panic!("{r:?}: expected F, got {other:?}"),
        }
    }
}

async fn sim_switch() -> Switch {
    let s = Switch::start_with(|c| {
        c.uart = "sim".into();
        c.sim.interval_secs = 0.1;
    })
    .await;
    s.wait_metric("switchyard_nodes", &[("status", "active")], 6.0)
        .await;
    s
}

fn tcp(s: &Switch) -> std::net::SocketAddr {
    s.running.tcp_addr.expect("client socket on")
}

// PROTOCOL 3: every request, with the answer bytes section 3 gives.
#[test_deadline::test]
async fn every_request_is_answered_as_the_protocol_says() {
    let s = sim_switch().await;
    let mut events = EventProbe::subscribe(&s.running.router.network);
    let mut c = Client::connect(tcp(&s)).await;

    let v: Value = serde_json::from_slice(&c.ok(&ClientRequest::NodeStatus).await).unwrap();
    assert_eq!(v["node_amount"], json!(6));
    assert_eq!(v["node_addr_list"], json!([1, 2, 3, 4, 5, 6]));
    assert_eq!(v["node_status_list"], json!(vec!["active"; 6]));

    let ninfo = c.ok(&ClientRequest::NetInfo).await;
    assert!(
        ninfo.len() < 1024,
        "NINFO fits a spec client's frame limit: {}",
        ninfo.len()
    );
    let v: Value = serde_json::from_slice(&ninfo).unwrap();
    assert_eq!(v["link_up"], json!(true));
    assert_eq!(v["nodes"].as_array().unwrap().len(), 6);
    assert!(v["frames"]["in"].as_u64().unwrap() > 0);
    assert!(v["uptime_secs"].as_f64().unwrap() >= 0.0);

    assert_eq!(c.ok(&ClientRequest::ActiveCount).await, vec![0, 6]);

    let p = c
        .ok(&ClientRequest::Get {
            data_type: "TMP".into(),
            node: 0,
        })
        .await;
    let (t, items) = parse_get_answer(&p).unwrap();
    assert_eq!(t, "TMP");
    assert_eq!(p[3], 2, "TMP is 2 bytes");
    assert_eq!(
        items.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let p = c
        .ok(&ClientRequest::Get {
            data_type: "GPS".into(),
            node: 3,
        })
        .await;
    let (_, items) = parse_get_answer(&p).unwrap();
    assert_eq!((items.len(), items[0].0, items[0].1.len()), (1, 3, 6));
    assert_eq!(
        c.fail(&ClientRequest::Get {
            data_type: "XYZ".into(),
            node: 0
        })
        .await,
        "no XYZ data"
    );
    assert_eq!(
        c.fail(&ClientRequest::Get {
            data_type: "TMP".into(),
            node: 9
        })
        .await,
        "no TMP data for node 0x0009"
    );

    assert_eq!(
        c.ok(&ClientRequest::Send {
            dst: 3,
            message: b"hi".to_vec()
        })
        .await,
        b""
    );
    assert_eq!(
        c.ok(&ClientRequest::SendTracked {
            dst: 3,
            message: b"hi".to_vec()
        })
        .await,
        b""
    );
    assert_eq!(
        c.fail(&ClientRequest::Send {
            dst: 9,
            message: b"x".to_vec()
        })
        .await,
        "node 0x0009 unknown"
    );
    assert_eq!(
        c.ok(&ClientRequest::Broadcast {
            message: b"all".to_vec()
        })
        .await,
        b""
    );
    assert_eq!(c.ok(&ClientRequest::Restart).await, b"");
    assert_eq!(c.ok(&ClientRequest::Clean).await, b"");

    assert_eq!(
        c.ok(&ClientRequest::WriteLog {
            text: "robot 7 docked".into()
        })
        .await,
        b""
    );
    let robots = json!([{"id": 1, "name": "r1", "state": "idle", "node": 3}]);
    assert_eq!(
        c.ok(&ClientRequest::WriteRobots {
            json: robots.to_string().into_bytes()
        })
        .await,
        b""
    );
    assert!(c
        .fail(&ClientRequest::WriteRobots {
            json: b"{not json".to_vec()
        })
        .await
        .contains("invalid JSON"));
    assert!(c
        .fail(&ClientRequest::WriteRobots {
            json: b"[{\"id\": 1}]".to_vec()
        })
        .await
        .contains("lacks"));
    assert_eq!(
        s.running.router.network.send(GetRobots).await.unwrap(),
        robots
    );
    let (mut log, mut rob) = (false, false);
    wait_event(&mut events, "log and robots events", WAIT, |e| {
        match e {
            SwitchEvent::Log { text, .. } => log |= text == "robot 7 docked",
            SwitchEvent::Robots { .. } => rob = true,
            _ => {}
        }
        (log && rob).then_some(())
    })
    .await;
    s.wait_metric(
        "switchyard_client_requests_total",
        &[("command", "[GET]")],
        4.0,
    )
    .await;
    s.stop().await;
}

// PROTOCOL 3 LISTN: every listener gets M, D and tracked-send results,
// and no result of an untracked send.
#[test_deadline::test]
async fn listeners_receive_messages_data_and_results() {
    let s = sim_switch().await;
    let mut l1 = Client::connect(tcp(&s)).await;
    let mut l2 = Client::connect(tcp(&s)).await;
    assert_eq!(l1.ok(&ClientRequest::Listen).await, b"");
    assert_eq!(l2.ok(&ClientRequest::Listen).await, b"");
    s.wait_metric("switchyard_client_listeners", &[], 2.0).await;
    let mut sender = Client::connect(tcp(&s)).await;
    // An untracked send first: its result is the sender's answer only, so
    // the first result a listener gets is the tracked send's.
    sender
        .ok(&ClientRequest::Send {
            dst: 3,
            message: b"quiet".to_vec(),
        })
        .await;
    sender
        .ok(&ClientRequest::SendTracked {
            dst: 2,
            message: b"ping".to_vec(),
        })
        .await;
    for l in [&mut l1, &mut l2] {
        let (mut data, mut msg, mut result) = (false, false, false);
        // Data keeps coming from the simulated mesh, so a missing kind of
        // push shows as this deadline, not as a quiet socket.
        let deadline = tokio::time::Instant::now() + 3 * WAIT;
        while !(data && msg && result) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "every kind of push in time: data {data}, message {msg}, result {result}"
            );
            match l.next().await {
                ClientMessage::PushData { src, payload } => {
                    let e = parse_data_payload(&payload).unwrap();
                    assert!((1..=6).contains(&src));
                    assert_eq!(e.len(), 4);
                    data = true;
                }
                ClientMessage::PushMessage { src: 2, message }
                    if message == b"node 0x0002 got: ping" =>
                {
                    msg = true
                }
                ClientMessage::PushResult { node, outcome } => {
                    assert_eq!(
                        (node, outcome),
                        (2, Ok(())),
                        "a listener gets tracked sends' results only"
                    );
                    result = true
                }
                _ => {}
            }
        }
    }
    s.stop().await;
}

// 100 sending connections at once, each with pipelined requests: every
// answer right and in order.
#[test_deadline::test]
async fn a_hundred_simultaneous_connections_are_all_answered() {
    let s = sim_switch().await;
    let addr = tcp(&s);
    let tasks: Vec<_> = (0..100u16)
        .map(|i| {
            actix_web::rt::spawn(async move {
                let mut c = Client::connect(addr).await;
                let node = i % 6 + 1;
                // Three requests before reading any answer.
                c.send(&ClientRequest::ActiveCount).await;
                c.send(&ClientRequest::Get {
                    data_type: "HUM".into(),
                    node,
                })
                .await;
                c.send(&ClientRequest::Send {
                    dst: 0x0100 + i,
                    message: b"x".to_vec(),
                })
                .await;
                assert_eq!(c.answer().await, ClientMessage::Ok(vec![0, 6]));
                match c.answer().await {
                    ClientMessage::Ok(p) => {
                        let (_, items) = parse_get_answer(&p).unwrap();
                        assert_eq!(items[0].0, node);
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(
                    c.answer().await,
                    ClientMessage::Fail(format!("node 0x{:04x} unknown", 0x0100 + i))
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    s.wait_metric(
        "switchyard_client_requests_total",
        &[("command", "ACT-C")],
        100.0,
    )
    .await;
    s.stop().await;
}

// Bad input: an F with the reason, the connection stays open, counters move.
#[test_deadline::test]
async fn garbage_gets_reasons_and_the_connection_stays() {
    let s = Switch::start().await;
    let mut c = Client::connect(tcp(&s)).await;
    use switchyard_actors::wire::frame::encode_to_vec;
    c.send_raw(&encode_to_vec(b"HELLO")).await;
    assert_eq!(
        c.answer().await,
        ClientMessage::Fail("unknown command \"HELLO\"".into())
    );
    c.send_raw(&encode_to_vec(b"SEND-\x00")).await;
    assert_eq!(
        c.answer().await,
        ClientMessage::Fail("SEND-: arguments too short (need 2 bytes, got 1)".into())
    );
    c.send_raw(&encode_to_vec(&[b'x'; 1100])).await;
    assert_eq!(
        c.answer().await,
        ClientMessage::Fail("frame longer than 1024 bytes dropped".into())
    );
    c.send_raw(b"garbage!").await;
    c.send_raw(&encode_to_vec(b"ACT-C")).await;
    assert_eq!(
        c.answer().await,
        ClientMessage::Fail("8 bytes outside a frame discarded".into())
    );
    assert_eq!(c.answer().await, ClientMessage::Ok(vec![0, 0]));
    let mut long = b"SEND-\x00\x01".to_vec();
    long.extend([b'a'; 256]);
    c.send_raw(&encode_to_vec(&long)).await;
    assert!(matches!(c.answer().await, ClientMessage::Fail(r) if r.contains("too long")));
    // With no mesh link at all.
    assert_eq!(
        c.fail(&ClientRequest::Broadcast {
            message: b"x".to_vec()
        })
        .await,
        "no mesh link on this switch"
    );
    for kind in [
        "unknown_command",
        "truncated",
        "too_long",
        "outside_frame",
        "message_too_long",
    ] {
        s.wait_metric("switchyard_client_errors_total", &[("kind", kind)], 1.0)
            .await;
    }
    s.stop().await;
}

// A listener that does not read loses its oldest pushes (counted); a
// listener that reads gets every one, in order; requests stay answered.
#[test_deadline::test]
async fn a_slow_listener_never_slows_the_others() {
    let mut m = MeshSwitch::start_with(|c| c.socket.push_queue_limit = 2000).await;
    let addr = m.s.running.tcp_addr.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = Client::over(sock.connect(addr).await.unwrap()).await;
    assert_eq!(slow.ok(&ClientRequest::Listen).await, b"");
    let mut fast = Client::connect(addr).await;
    assert_eq!(fast.ok(&ClientRequest::Listen).await, b"");
    m.s.wait_metric("switchyard_client_listeners", &[], 2.0)
        .await;

    // 12000 frames of ~1 KB: far more than the slow socket's buffers and
    // queue hold; the fast reader has 2 MB of queue to ride out a busy CPU.
    const N: u32 = 12000;
    let mut root = m.root.take().unwrap();
    let writer = actix_web::rt::task::spawn_blocking(move || {
        for i in 0..N {
            let mut seq = i.to_be_bytes().to_vec();
            seq.extend([0x55; 246]);
            let entries = vec![
                DataEntry::new("SEQ", seq),
                DataEntry::new("BLB", vec![0xAA; 250]),
                DataEntry::new("BLC", vec![0xAB; 250]),
                DataEntry::new("BLD", vec![0xAC; 250]),
            ];
            root.send(&RootMessage::Data { node: 1, entries });
        }
        root
    });
    let mut next = 0u32;
    while next < N {
        if let ClientMessage::PushData { payload, .. } = fast.next().await {
            let e = parse_data_payload(&payload).unwrap();
            let seq = u32::from_be_bytes(e[0].raw[..4].try_into().unwrap());
            assert_eq!(seq, next, "in order, none missing");
            next += 1;
        }
    }
    m.root = Some(writer.await.unwrap());
    let dropped =
        m.s.metric("switchyard_client_pushes_dropped_total", &[])
            .await;
    assert!(dropped > 0.0, "the slow listener's queue overflowed");
    let mut c = Client::connect(addr).await;
    assert_eq!(c.ok(&ClientRequest::ActiveCount).await, vec![0, 1]);
    drop(slow);
    m.s.stop().await;
}

async fn ctl(args: Vec<String>) -> (i32, String, String) {
    actix_web::rt::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("ctl")
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(addr: std::net::SocketAddr, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["--addr".to_string(), addr.to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

// `switchyard ctl`: readable output, clear errors.
#[test_deadline::test]
async fn ctl_prints_readable_answers_and_clear_errors() {
    let s = sim_switch().await;
    let a = tcp(&s);
    let (code, out, _) = ctl(args(a, &["nodes"])).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("0x0001   active") && out.contains("6 nodes"),
        "{out}"
    );
    let (_, out, _) = ctl(args(a, &["count"])).await;
    assert_eq!(out.trim(), "6");
    let (_, out, _) = ctl(args(a, &["get", "TMP"])).await;
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(out.lines().all(|l| l.contains("TMP  celsius=")), "{out}");
    let (_, out, _) = ctl(args(a, &["get", "GPS", "0x0002"])).await;
    assert!(
        out.starts_with("0x0002  GPS  lon=") && out.contains("lat="),
        "{out}"
    );
    let (_, out, _) = ctl(args(a, &["info"])).await;
    assert!(
        out.contains("mesh link: up") && out.contains("nodes: 6 (6 active)"),
        "{out}"
    );
    let (code, out, _) = ctl(args(a, &["send", "3", "hello"])).await;
    assert_eq!((code, out.trim()), (0, "sent to 0x0003"));
    let (code, _, err) = ctl(args(a, &["send", "0x0009", "hello"])).await;
    assert_eq!(
        (code, err.trim()),
        (1, "switchyard ctl: node 0x0009 unknown")
    );
    let (code, out, _) = ctl(args(a, &["broadcast", "hi"])).await;
    assert_eq!((code, out.trim()), (0, "broadcast sent"));
    let (code, out, _) = ctl(args(a, &["log", "note"])).await;
    assert_eq!((code, out.trim()), (0, "logged"));

    s.stop().await;

    // Nobody listening.
    let (code, _, err) = ctl(args(a, &["count"])).await;
    assert_eq!(
        (code, err.trim().to_string()),
        (1, format!("switchyard ctl: no switch listening on {a}"))
    );
}

// PROTOCOL 3 LISTN through `switchyard ctl listen --json`: one JSON line
// per push, a `D` with its decoded entries and an `M` with its text, each
// asserted (the root is the test's pty, so both pushes always come).
#[test_deadline::test]
async fn ctl_listen_json_prints_each_push_as_a_json_line() {
    let mut m = MeshSwitch::start().await;
    let addr = m.s.running.tcp_addr.unwrap().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--addr", &addr, "listen", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    m.s.wait_metric("switchyard_client_listeners", &[], 1.0)
        .await;
    m.root().send(&RootMessage::Data {
        node: 2,
        entries: vec![DataEntry::new("HUM", vec![55])],
    });
    m.root().send(&RootMessage::Message {
        node: 3,
        text: b"hi there".to_vec(),
    });
    let lines = actix_web::rt::task::spawn_blocking(move || {
        let mut r = std::io::BufReader::new(stdout);
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            lines.push(line);
        }
        lines
    });
    let got = tokio::time::timeout(WAIT, lines).await;
    let _ = child.kill();
    let _ = child.wait();
    let lines = got.expect("two JSON lines from ctl listen").unwrap();
    let d: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        d,
        json!({"event": "D", "node": "0x0002",
               "entries": [{"type": "HUM", "raw": "37", "value": {"percent": 55}}]})
    );
    let msg: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(msg["event"], json!("M"), "{msg}");
    assert_eq!(msg["node"], json!("0x0003"), "{msg}");
    assert_eq!(msg["text"], json!("hi there"), "{msg}");
    m.s.stop().await;
}

// `ctl` tells "mesh link down" when the root is gone.
#[test_deadline::test]
async fn ctl_reports_a_link_down() {
    let mut m = MeshSwitch::start().await;
    m.root().send(&RootMessage::Data {
        node: 1,
        entries: vec![DataEntry::new("HUM", vec![5])],
    });
    m.wait_value("1", "HUM", json!({"percent": 5})).await;
    drop(m.root.take());
    m.s.wait_metric("switchyard_mesh_link_up", &[], 0.0).await;
    let (code, _, err) = ctl(args(m.s.running.tcp_addr.unwrap(), &["send", "1", "x"])).await;
    assert_eq!((code, err.trim()), (1, "switchyard ctl: mesh link down"));
    m.s.stop().await;
}

// PROTOCOL 2.5 and 3 `ACT-C` / `NSTAT`: a node not heard from within the
// node timeout is `inactive`; `ACT-C` answers the number of *active*
// nodes (2 bytes, big-endian), not of all nodes, and `NSTAT` lists every
// node with its status.
#[test_deadline::test]
async fn active_count_and_node_status_tell_inactive_nodes() {
    let mut m = MeshSwitch::start_with(|c| c.mesh.node_timeout_secs = 1.0).await;
    m.root().send(&RootMessage::Data {
        node: 1,
        entries: vec![DataEntry::new("HUM", vec![1])],
    });
    m.s.wait_metric("switchyard_nodes", &[("status", "inactive")], 1.0)
        .await;
    // Node 2 speaks now; it is asked about well within its timeout.
    m.root().send(&RootMessage::Data {
        node: 2,
        entries: vec![DataEntry::new("HUM", vec![2])],
    });
    m.s.wait_metric("switchyard_nodes", &[("status", "active")], 1.0)
        .await;
    let mut c = Client::connect(tcp(&m.s)).await;
    assert_eq!(c.ok(&ClientRequest::ActiveCount).await, vec![0, 1]);
    let v: Value = serde_json::from_slice(&c.ok(&ClientRequest::NodeStatus).await).unwrap();
    assert_eq!(v["node_amount"], json!(2), "{v}");
    assert_eq!(v["node_addr_list"], json!([1, 2]), "{v}");
    assert_eq!(v["node_status_list"], json!(["inactive", "active"]), "{v}");
    // Both silent past the timeout: ACT-C is 0, NSTAT still lists both.
    m.s.wait_metric("switchyard_nodes", &[("status", "inactive")], 2.0)
        .await;
    assert_eq!(c.ok(&ClientRequest::ActiveCount).await, vec![0, 0]);
    let v: Value = serde_json::from_slice(&c.ok(&ClientRequest::NodeStatus).await).unwrap();
    assert_eq!(v["node_amount"], json!(2), "{v}");
    assert_eq!(
        v["node_status_list"],
        json!(["inactive", "inactive"]),
        "{v}"
    );
    m.s.stop().await;
}

// PROTOCOL 2.3 and 3 `RST-R`, `CLEAN`: each is relayed to the root as
// itself (a restart is not a network reset), and the root's `[R]` answer
// (S, or F with its text) is the client's answer.
#[test_deadline::test]
async fn restart_and_clean_reach_the_root_as_themselves() {
    use switchyard_actors::wire::mesh::Command;
    let mut m = MeshSwitch::start().await;
    let mut c = Client::connect(tcp(&m.s)).await;
    c.send(&ClientRequest::Restart).await;
    let (mut root, cmd) = m.root.take().unwrap().recv_command().await;
    assert_eq!(cmd, Command::Restart);
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Ok(()),
    });
    assert_eq!(c.answer().await, ClientMessage::Ok(vec![]));
    c.send(&ClientRequest::Clean).await;
    let (mut root, cmd) = root.recv_command().await;
    assert_eq!(cmd, Command::Clean);
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Err("flash busy".into()),
    });
    match c.answer().await {
        ClientMessage::Fail(reason) => assert!(reason.contains("flash busy"), "{reason}"),
        other => panic!("CLEAN: expected F, got {other:?}"),
    }
    m.root = Some(root);
    m.s.wait_metric(
        "switchyard_client_requests_total",
        &[("command", "RST-R")],
        1.0,
    )
    .await;
    m.s.wait_metric(
        "switchyard_client_requests_total",
        &[("command", "CLEAN")],
        1.0,
    )
    .await;
    m.s.stop().await;
}

// PROTOCOL 3 and 2.3: `SEND-` and `BCAST` from a client reach the root as
// themselves, with their destination and message, and the root's result is
// the client's answer.
#[test_deadline::test]
async fn send_and_broadcast_reach_the_root_as_themselves() {
    use switchyard_actors::wire::mesh::Command;
    let mut m = MeshSwitch::start().await;
    // A SEND- goes only to a node the switch has heard of.
    m.root().send(&RootMessage::Data {
        node: 2,
        entries: vec![DataEntry::new("HUM", vec![1])],
    });
    m.wait_value("2", "HUM", json!({"percent": 1})).await;
    let mut c = Client::connect(tcp(&m.s)).await;
    c.send(&ClientRequest::Send {
        dst: 2,
        message: b"hi".to_vec(),
    })
    .await;
    let send = Command::Send {
        dst: 2,
        message: b"hi".to_vec(),
    };
    let root = m.root.take().unwrap().answer_command(send, Ok(())).await;
    assert_eq!(c.answer().await, ClientMessage::Ok(vec![]));
    c.send(&ClientRequest::Broadcast {
        message: b"all".to_vec(),
    })
    .await;
    let broadcast = Command::Broadcast {
        message: b"all".to_vec(),
    };
    let root = root.answer_command(broadcast, Err("no route".into())).await;
    match c.answer().await {
        ClientMessage::Fail(reason) => assert!(reason.contains("no route"), "{reason}"),
        other => panic!("BCAST: expected F, got {other:?}"),
    }
    m.root = Some(root);
    m.s.stop().await;
}

// PROTOCOL 3: a client may send its requests and close its sending side;
// every request is still answered, in order, and then the switch closes
// the connection (it does not hold it open until the idle timeout).
#[test_deadline::test]
async fn a_client_that_closes_its_sending_side_gets_every_answer_then_the_end() {
    use tokio::io::AsyncWriteExt;
    let s = sim_switch().await;
    let mut c = Client::connect(tcp(&s)).await;
    c.send(&ClientRequest::ActiveCount).await;
    c.send(&ClientRequest::NodeStatus).await;
    c.send(&ClientRequest::ActiveCount).await;
    c.framed.get_mut().shutdown().await.expect("half-close");
    let count = c.answer().await;
    assert!(
        matches!(&count, ClientMessage::Ok(p) if p.len() == 2),
        "{count:?}"
    );
    match c.answer().await {
        ClientMessage::Ok(p) => {
            let v: Value = serde_json::from_slice(&p).expect("NSTAT is JSON");
            assert!(v["node_amount"].is_u64(), "{v}");
        }
        other => panic!("NSTAT: {other:?}"),
    }
    let third = c.answer().await;
    assert!(
        matches!(&third, ClientMessage::Ok(p) if p.len() == 2),
        "ACT-C third, in order: {third:?}"
    );
    let end = tokio::time::timeout(WAIT, c.framed.next())
        .await
        .expect("the switch closes the connection once it has answered");
    assert!(end.is_none(), "nothing after the answers: {end:?}");
    s.stop().await;
}
