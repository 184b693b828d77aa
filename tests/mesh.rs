//! PROTOCOL 2 over a real pseudo-terminal: the test holds the root's end
//! of a `TTYPort::pair` and the switch opens the other end by path.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{json, Value};
use serialport::{SerialPort, TTYPort};
use switchyard_actors::network::events::SwitchEvent;
use switchyard_actors::network::GetMeshInfo;
use switchyard_actors::testing::{wait_event, EventProbe};
use switchyard_actors::wire::frame::{encode_to_vec, FrameCodec, FrameItem};
use switchyard_actors::wire::mesh::{Command, DataEntry, RootMessage};
use tokio_util::codec::Decoder;

use crate::common::*;

/// The root node's end of the serial line.
pub struct Root {
    master: TTYPort,
    _slave: TTYPort,
    pub device: String,
}

impl Root {
    pub fn open() -> Root {
        let (mut master, slave) = TTYPort::pair().expect("pty pair");
        master.set_timeout(Duration::from_millis(50)).unwrap();
        let device = slave.name().expect("pty name");
        Root {
            master,
            _slave: slave,
            device,
        }
    }

    pub fn send(&mut self, m: &RootMessage) {
        self.send_raw(&encode_to_vec(&m.encode()));
    }

    /// Writes all of `bytes`, waiting (up to a deadline) while the pty's
    /// buffer is full.
    pub fn send_raw(&mut self, mut bytes: &[u8]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !bytes.is_empty() {
            match self.master.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the switch stopped reading"
                    );
                }
                Err(e) => panic!("pty write: {e}"),
            }
        }
    }

    /// Reads the next command, asserts it is `expected`, and answers it
    /// with the root's result `outcome` (node 0: the root itself).
    pub async fn answer_command(self, expected: Command, outcome: Result<(), String>) -> Root {
        let (mut root, cmd) = self.recv_command().await;
        assert_eq!(cmd, expected);
        root.send(&RootMessage::Result { node: 0, outcome });
        root
    }

    /// The next command the switch writes, read off the test's thread so
    /// the switch's actors keep running.
    pub async fn recv_command(self) -> (Root, Command) {
        actix_web::rt::task::spawn_blocking(move || {
            let mut root = self;
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 256];
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                if let Ok(Some(FrameItem::Frame(f))) = codec.decode(&mut buf) {
                    let cmd = Command::parse(&f).expect("a valid command");
                    return (root, cmd);
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no command from the switch"
                );
                if let Ok(n) = root.master.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        })
        .await
        .unwrap()
    }
}

/// A switch whose `--uart` is a symlink to the test's pty, so the test can
/// swap the device underneath (port lost, port back).
pub struct MeshSwitch {
    pub s: Switch,
    pub root: Option<Root>,
    pub link: PathBuf,
}

impl MeshSwitch {
    pub async fn start() -> MeshSwitch {
        MeshSwitch::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut switchyard::Config)) -> MeshSwitch {
        let root = Root::open();
        let linkdir = tempfile::tempdir().unwrap().keep();
        let link = linkdir.join("root-tty");
        std::os::unix::fs::symlink(&root.device, &link).unwrap();
        let l = link.to_string_lossy().into_owned();
        let s = Switch::start_with(move |c| {
            c.uart = l;
            tweak(c);
        })
        .await;
        s.wait_metric("switchyard_mesh_link_up", &[], 1.0).await;
        MeshSwitch {
            s,
            root: Some(root),
            link,
        }
    }

    pub fn root(&mut self) -> &mut Root {
        self.root.as_mut().unwrap()
    }

    pub async fn node(&self, addr: &str) -> Value {
        let (status, v) = get_json(&self.s.url(&format!("/api/nodes/{addr}"))).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Waits until node `addr` shows `data_type` with `value`.
    pub async fn wait_value(&self, addr: &str, data_type: &str, value: Value) -> Value {
        let url = self.s.url(&format!("/api/nodes/{addr}"));
        let mut last = Value::Null;
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            let (status, v) = get_json(&url).await;
            if status == 200 && v["latest"][data_type]["value"] == value {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("node {addr} never showed {data_type} = {value}; last {last}");
    }
}

fn data(node: u16, entries: &[(&str, &[u8])]) -> RootMessage {
    RootMessage::Data {
        node,
        entries: entries
            .iter()
            .map(|(t, raw)| DataEntry {
                data_type: t.to_string(),
                raw: raw.to_vec(),
            })
            .collect(),
    }
}

fn tmp(centi: i16) -> Vec<u8> {
    centi.to_be_bytes().to_vec()
}

// PROTOCOL 2.2 [D] and 2.4: every built-in data type decoded, big-endian.
#[test_deadline::test]
async fn built_in_data_types_are_decoded() {
    let mut m = MeshSwitch::start().await;
    // lon -0.1278 -> -1278 = 0xFFFB02; lat 51.5074 -> 515074 = 0x07DC02
    let gps = [0xFF, 0xFB, 0x02, 0x07, 0xDC, 0x02];
    m.root().send(&data(
        0x0102,
        &[
            ("GPS", &gps),
            ("TMP", &tmp(-1234)),
            ("HUM", &[77]),
            ("BAT", &[0x0F, 0xA0]),
        ],
    ));
    let v = m
        .wait_value("0x0102", "BAT", json!({"millivolts": 4000}))
        .await;
    assert_eq!(
        v["latest"]["GPS"]["value"],
        json!({"lon": -0.1278, "lat": 51.5074})
    );
    assert_eq!(v["latest"]["GPS"]["raw"], json!("fffb0207dc02"));
    assert_eq!(v["latest"]["TMP"]["value"], json!({"celsius": -12.34}));
    assert_eq!(v["latest"]["HUM"]["value"], json!({"percent": 77}));
    assert_eq!(v["status"], json!("active"));
    assert_eq!(v["address"], json!("0x0102"));
    // Decimal addresses work too.
    assert_eq!(m.node("258").await["address"], json!("0x0102"));
    m.s.wait_metric("switchyard_node_updates_total", &[], 4.0)
        .await;
    m.s.wait_metric("switchyard_nodes", &[("status", "active")], 1.0)
        .await;
    // The one node is active, so none is inactive (PROTOCOL 2.5): the
    // gauges split the nodes, they do not count one twice.
    assert_eq!(
        m.s.metric("switchyard_nodes", &[("status", "inactive")])
            .await,
        0.0
    );
    m.s.stop().await;
}

// PROTOCOL 2.4: an unknown type is kept raw; a length that disagrees with
// the type is rejected and counted, the frame's other entries kept.
#[test_deadline::test]
async fn unknown_types_stay_raw_and_bad_lengths_are_counted() {
    let mut m = MeshSwitch::start().await;
    m.root().send(&data(
        7,
        &[
            ("XYZ", &[1, 2, 3, 0xFF]),
            ("TMP", &[1, 2, 3]),
            ("HUM", &[42]),
        ],
    ));
    let v = m.wait_value("7", "HUM", json!({"percent": 42})).await;
    assert_eq!(v["latest"]["XYZ"]["raw"], json!("010203ff"));
    assert_eq!(v["latest"]["XYZ"]["value"], Value::Null);
    assert!(v["latest"].get("TMP").is_none(), "{v}");
    m.s.wait_metric(
        "switchyard_data_entries_rejected_total",
        &[("reason", "length_mismatch")],
        1.0,
    )
    .await;
    m.s.stop().await;
}

// PROTOCOL 2.4: user data types from a file.
#[test_deadline::test]
async fn user_data_types_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("types.toml");
    std::fs::write(
        &file,
        "[[type]]\nname = \"PRS\"\nlen = 4\nfields = [{ name = \"hpa\", kind = \"u32\", scale = 0.01 }]\n",
    )
    .unwrap();
    let mut m = MeshSwitch::start_with(move |c| c.mesh.data_types = Some(file)).await;
    m.root()
        .send(&data(3, &[("PRS", &101_325u32.to_be_bytes())]));
    m.wait_value("3", "PRS", json!({"hpa": 1013.25})).await;
    m.s.stop().await;
}

// PROTOCOL 2.2 [M]: a node's message goes to every subscriber.
#[test_deadline::test]
async fn node_messages_reach_subscribers() {
    let mut m = MeshSwitch::start().await;
    let mut events = EventProbe::subscribe(&m.s.running.router.network);
    m.root().send(&RootMessage::Message {
        node: 5,
        text: b"hello \xff".to_vec(),
    });
    let got = wait_event(&mut events, "a node_message event", WAIT, |e| match e {
        SwitchEvent::NodeMessage { key, message, .. } => Some((key.addr, message.to_vec())),
        _ => None,
    })
    .await;
    assert_eq!(got, (5, b"hello \xff".to_vec()));
    m.s.wait_metric("switchyard_node_messages_total", &[], 1.0)
        .await;
    m.s.stop().await;
}

// PROTOCOL 2.2 [N] and 2.3 NINFO / [R]: commands relayed, answers matched.
#[test_deadline::test]
async fn commands_are_relayed_and_answered() {
    let mut m = MeshSwitch::start().await;
    m.root().send(&data(2, &[("HUM", &[1])]));
    m.wait_value("2", "HUM", json!({"percent": 1})).await;

    // SEND- answered with [R] S -> 200.
    let url = m.s.url("/api/nodes/0x0002/send");
    let req = actix_web::rt::spawn(async move { post_json(&url, json!({"text": "hi"})).await });
    let (mut root, cmd) = m.root.take().unwrap().recv_command().await;
    assert_eq!(
        cmd,
        Command::Send {
            dst: 2,
            message: b"hi".to_vec()
        }
    );
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Ok(()),
    });
    assert_eq!(
        req.await.unwrap(),
        (200, json!({"status": "ok", "command": "SEND-"}))
    );

    // SENDI answered with [R] F -> 502 with the root's text.
    let url = m.s.url("/api/nodes/2/send");
    let req = actix_web::rt::spawn(async move {
        post_json(&url, json!({"text": "again", "tracked": true})).await
    });
    let (mut root, cmd) = root.recv_command().await;
    assert_eq!(
        cmd,
        Command::SendTracked {
            dst: 2,
            message: b"again".to_vec()
        }
    );
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Err("no ack".into()),
    });
    let (status, body) = req.await.unwrap();
    assert_eq!(status, 502);
    assert!(body["error"].as_str().unwrap().contains("no ack"));

    // BCAST.
    let url = m.s.url("/api/broadcast");
    let req = actix_web::rt::spawn(async move { post_json(&url, json!({"text": "all"})).await });
    let (mut root, cmd) = root.recv_command().await;
    assert_eq!(
        cmd,
        Command::Broadcast {
            message: b"all".to_vec()
        }
    );
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Ok(()),
    });
    assert_eq!(req.await.unwrap().0, 200);

    // [N] from the root is kept as the network info.
    root.send(&RootMessage::NetworkInfo {
        node: 0,
        nodes: vec![1, 2, 0x0a0b],
    });
    let network = m.s.running.router.network.clone();
    wait_for("network info", || {
        let n = network.clone();
        async move { n.send(GetMeshInfo).await.unwrap().root_nodes == vec![1, 2, 0x0a0b] }
    })
    .await;
    m.root = Some(root);
    m.s.stop().await;
}

// HTTP errors of the mesh API.
#[test_deadline::test]
async fn mesh_api_errors() {
    let mut m = MeshSwitch::start_with(|c| c.serial.command_timeout_secs = 0.3).await;
    m.root().send(&data(1, &[("HUM", &[1])]));
    m.wait_value("1", "HUM", json!({"percent": 1})).await;
    let (status, body) = post_json(&m.s.url("/api/nodes/0x0009/send"), json!({"text": "x"})).await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "node 0x0009 unknown"}))
    );
    let (status, _) = get_json(&m.s.url("/api/nodes/0x0009")).await;
    assert_eq!(status, 404);
    let (status, _) = post_json(&m.s.url("/api/nodes/zzz/send"), json!({"text": "x"})).await;
    assert_eq!(status, 400);
    let (status, body) = post_json(
        &m.s.url("/api/nodes/1/send"),
        json!({"text": "x".repeat(256)}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("too long"));
    let (status, _) = get_json(&m.s.url("/api/nodes/1/history")).await;
    assert_eq!(status, 400, "history needs a type");
    // The root never answers: 504.
    let (status, _) = post_json(&m.s.url("/api/nodes/1/send"), json!({"text": "x"})).await;
    assert_eq!(status, 504);
    // Link down: 503.
    drop(m.root.take());
    m.s.wait_metric("switchyard_mesh_link_up", &[], 0.0).await;
    let (status, body) = post_json(&m.s.url("/api/nodes/1/send"), json!({"text": "x"})).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], json!("mesh link down"));
    m.s.stop().await;
}

// PROTOCOL 2.1 on the live link: each resync rule, counted, the link goes on.
#[test_deadline::test]
async fn framing_errors_are_counted_and_the_link_carries_on() {
    let mut m = MeshSwitch::start().await;
    let good = |n: u8| encode_to_vec(&data(1, &[("HUM", &[n])]).encode());
    let mut stream = Vec::new();
    // Garbage outside a frame, then a good frame.
    stream.extend_from_slice(b"noise");
    stream.extend_from_slice(&good(1));
    // 0xFF inside a frame: the partial frame is dropped, the new one counts.
    stream.extend_from_slice(&[0xFF, 0x00, 0x01]);
    stream.extend_from_slice(&good(2));
    // An escape followed by 0xFE: frame error.
    stream.extend_from_slice(&[0xFF, 0x00, 0x01, 0xFA, 0xFE]);
    // A frame longer than the maximum (1024).
    stream.push(0xFF);
    stream.extend([0x41; 1100]);
    stream.push(0xFE);
    // A well-framed but truncated [D] payload (count says 2, one entry).
    let mut bad = vec![0x00, 0x01];
    bad.extend_from_slice(b"[D]");
    bad.extend_from_slice(&[2, b'H', b'U', b'M', 1, 9]);
    stream.extend_from_slice(&encode_to_vec(&bad));
    stream.extend_from_slice(&good(3));
    // One byte at a time, as a slow UART delivers it.
    for chunk in stream.chunks(1) {
        m.root().send_raw(chunk);
    }
    m.wait_value("1", "HUM", json!({"percent": 3})).await;
    let h = m.s.url("/api/nodes/1/history?type=HUM&limit=10");
    let (_, v) = get_json(&h).await;
    let values: Vec<Value> = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"]["percent"].clone())
        .collect();
    assert_eq!(values, vec![json!(1), json!(2), json!(3)]);
    for kind in ["outside_frame", "restarted", "bad_escape", "too_long"] {
        m.s.wait_metric("switchyard_uart_frame_errors_total", &[("kind", kind)], 1.0)
            .await;
    }
    let text = get(&m.s.url("/metrics")).await.2;
    let rejected: f64 = text
        .lines()
        .filter(|l| l.starts_with("switchyard_mesh_frames_rejected_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(rejected, 1.0, "{text}");
    // ... and it is counted under what was wrong with it (DESIGN rule 10:
    // the labels are the contract dashboards and alerts read).
    assert_eq!(
        m.s.metric(
            "switchyard_mesh_frames_rejected_total",
            &[("kind", "truncated")]
        )
        .await,
        1.0
    );
    assert_eq!(m.s.metric("switchyard_mesh_link_up", &[]).await, 1.0);
    m.s.stop().await;
}

// House rule 5: the port closed and reopened -> link down, then up, data
// flows again; never an exit.
#[test_deadline::test]
async fn a_lost_port_is_reopened_with_backoff() {
    let mut m = MeshSwitch::start().await;
    let mut events = EventProbe::subscribe(&m.s.running.router.network);
    m.root().send(&data(1, &[("HUM", &[10])]));
    m.wait_value("1", "HUM", json!({"percent": 10})).await;

    drop(m.root.take());
    m.s.wait_metric("switchyard_mesh_link_up", &[], 0.0).await;
    // The device is gone: a new one appears under the same name.
    let root = Root::open();
    std::fs::remove_file(&m.link).unwrap();
    std::os::unix::fs::symlink(&root.device, &m.link).unwrap();
    m.root = Some(root);
    m.s.wait_metric("switchyard_mesh_link_up", &[], 1.0).await;
    m.root().send(&data(1, &[("HUM", &[11])]));
    m.wait_value("1", "HUM", json!({"percent": 11})).await;
    assert!(m.s.metric("switchyard_uart_reconnects_total", &[]).await >= 1.0);

    let mut states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let SwitchEvent::Link { link, state, .. } = e {
            assert_eq!(link, "mesh");
            states.push(state);
        }
    }
    assert_eq!(states, vec!["down".to_string(), "up".to_string()]);
    m.s.stop().await;
}

// PROTOCOL 2.5: every update is in the history log; after a restart the
// latest values and recent history are back.
#[test_deadline::test]
async fn history_is_back_after_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let dd = data_dir.path().to_path_buf();
    let mut m = MeshSwitch::start_with(move |c| c.data_dir = dd).await;
    for n in 1..=5u8 {
        m.root().send(&data(
            4,
            &[("HUM", &[n]), ("TMP", &tmp(100 * i16::from(n)))],
        ));
    }
    m.wait_value("4", "HUM", json!({"percent": 5})).await;
    m.s.wait_metric("switchyard_history_records_total", &[], 10.0)
        .await;
    m.s.stop().await;

    let dd = data_dir.path().to_path_buf();
    let s = Switch::start_with(move |c| c.data_dir = dd).await;
    let (status, v) = get_json(&s.url("/api/nodes/4")).await;
    assert_eq!(status, 200);
    assert_eq!(v["latest"]["HUM"]["value"], json!({"percent": 5}));
    assert_eq!(v["latest"]["TMP"]["value"], json!({"celsius": 5.0}));
    // Heard seconds ago, well within the node timeout: the warmed node
    // comes back active (PROTOCOL 2.5), not as old as the log.
    assert_eq!(v["status"], json!("active"));
    let (_, h) = get_json(&s.url("/api/nodes/4/history?type=TMP&limit=3")).await;
    let c: Vec<Value> = h["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"]["celsius"].clone())
        .collect();
    assert_eq!(c, vec![json!(3.0), json!(4.0), json!(5.0)]);
    let files: Vec<_> = std::fs::read_dir(data_dir.path().join("history"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    s.stop().await;
}

// PROTOCOL 2.5: a node not heard from within the timeout becomes inactive.
#[test_deadline::test]
async fn silent_nodes_become_inactive() {
    let mut m = MeshSwitch::start_with(|c| c.mesh.node_timeout_secs = 0.5).await;
    let mut events = EventProbe::subscribe(&m.s.running.router.network);
    m.root().send(&data(9, &[("HUM", &[1])]));
    m.wait_value("9", "HUM", json!({"percent": 1})).await;
    // The event first: the gauges are set before it goes out, so whoever
    // hears of the change reads it in /metrics at once (PROTOCOL 2.5 and 4).
    wait_event(
        &mut events,
        "node 9 inactive",
        Duration::from_secs(20),
        |e| match e {
            SwitchEvent::NodeStatus { key, status, .. } => {
                ((key.addr, status.as_str()) == (9, "inactive")).then_some(())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(
        m.s.metric("switchyard_nodes", &[("status", "inactive")])
            .await,
        1.0
    );
    assert_eq!(m.node("9").await["status"], json!("inactive"));
    m.root().send(&data(9, &[("HUM", &[2])]));
    m.s.wait_metric("switchyard_nodes", &[("status", "active")], 1.0)
        .await;
    m.s.stop().await;
}

// The embedded default: the simulated mesh on a pty, through the real
// serial path; a node answers a message sent to it.
#[test_deadline::test]
async fn the_simulated_mesh_runs_by_default() {
    let s = Switch::start_with(|c| {
        c.uart = "sim".into();
        c.sim.interval_secs = 0.2;
    })
    .await;
    let mut events = EventProbe::subscribe(&s.running.router.network);
    s.wait_metric("switchyard_nodes", &[("status", "active")], 6.0)
        .await;
    let (_, nodes) = get_json(&s.url("/api/nodes")).await;
    let n3 = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["addr"] == json!(3))
        .unwrap();
    for t in ["GPS", "TMP", "HUM", "BAT"] {
        assert!(n3["latest"][t]["value"].is_object(), "{t}: {n3}");
    }
    let (status, _) = post_json(&s.url("/api/nodes/0x0003/send"), json!({"text": "status?"})).await;
    assert_eq!(status, 200);
    let reply = wait_event(&mut events, "the node's reply", WAIT, |e| match e {
        SwitchEvent::NodeMessage { key, message, .. }
            if key.addr == 3 && message.starts_with(b"node 0x0003 got") =>
        {
            Some(String::from_utf8_lossy(message).into_owned())
        }
        _ => None,
    })
    .await;
    assert_eq!(reply, "node 0x0003 got: status?");
    assert!(s
        .running
        .uart_path
        .as_deref()
        .unwrap()
        .starts_with("/dev/pts/"));
    s.stop().await;
}

// `switchyard simulate` alone; killing it shows link loss, restarting it
// at the same path shows recovery.
#[test_deadline::test]
async fn the_simulate_command_is_a_root_for_another_switch() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sim-tty");
    let spawn_sim = |link: &PathBuf| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "simulate",
                "--sim-interval",
                "0.1",
                "--sim-nodes",
                "2",
                "--link",
            ])
            .arg(link)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        let sim = KillOnDrop(child);
        assert_eq!(line.trim(), link.to_str().unwrap());
        sim
    };
    let sim = spawn_sim(&link);
    let l = link.to_string_lossy().into_owned();
    let s = Switch::start_with(move |c| c.uart = l).await;
    s.wait_metric("switchyard_nodes", &[("status", "active")], 2.0)
        .await;
    drop(sim);
    s.wait_metric("switchyard_mesh_link_up", &[], 0.0).await;
    let sim = spawn_sim(&link);
    s.wait_metric("switchyard_mesh_link_up", &[], 1.0).await;
    let before = s.metric("switchyard_node_updates_total", &[]).await;
    let url = s.url("/metrics");
    wait_for("data after recovery", || {
        let url = url.clone();
        async move { metric_at(&url, "switchyard_node_updates_total", &[]).await > before }
    })
    .await;
    drop(sim);
    s.stop().await;
}
