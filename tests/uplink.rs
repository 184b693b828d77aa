//! PROTOCOL 5 and the Channel contract: two switches in one test, a
//! central one and an edge one whose mesh root is the test's pty.

use actix::Actor;
use futures_util::SinkExt;
use serde_json::{json, Value};
use switchyard_actors::channel::websocket::WebsocketChannel;
use switchyard_actors::channel::{
    ChannelConfig, ChannelNotice, ChannelSend, IsAlive, IsClosed, OpenChannel, SendOutcome,
};
use switchyard_actors::network::events::SwitchEvent;
use switchyard_actors::testing::{wait_event, EventProbe, NoticeProbe};
use switchyard_actors::wire::mesh::{DataEntry, RootMessage};
use switchyard_actors::wire::uplink::{Envelope, UplinkEvent};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::mesh::MeshSwitch;

const TOKEN: &str = "gw-secret";

async fn central_at(addr: std::net::SocketAddr) -> Switch {
    Switch::start_with(move |c| {
        c.http = addr;
        c.gateway_token = Some(TOKEN.into());
    })
    .await
}

async fn edge_to(central: &Switch, token: &str) -> MeshSwitch {
    edge_to_with(central, token, |_| {}).await
}

/// An edge `edge-1` uplinked to `central`, its config then `tweak`ed.
async fn edge_to_with(
    central: &Switch,
    token: &str,
    tweak: impl FnOnce(&mut switchyard::Config),
) -> MeshSwitch {
    let url = format!("ws://{}/gateway", central.running.http_addr);
    let token = token.to_string();
    MeshSwitch::start_with(move |c| {
        c.uplink.url = Some(url);
        c.uplink.gateway_id = Some("edge-1".into());
        c.uplink.token = Some(token);
        c.uplink.channel.reconnect_min_secs = 0.05;
        c.uplink.channel.reconnect_max_secs = 0.3;
        tweak(c);
    })
    .await
}

/// A central switch and an edge uplinked to it, connected.
async fn central_with_edge() -> (Switch, MeshSwitch) {
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let edge = edge_to(&central, TOKEN).await;
    central
        .wait_metric(
            "switchyard_gateway_connected",
            &[("gateway", "edge-1")],
            1.0,
        )
        .await;
    (central, edge)
}

/// `SEND-` through the central's HTTP API to node `node` of gateway
/// `edge-1`: asserts the edge's root gets it as sent, answers `S`, and
/// returns the HTTP answer.
async fn send_through_central(
    central: &Switch,
    edge: &mut MeshSwitch,
    node: u16,
    text: &str,
) -> (u16, Value) {
    let url = central.url(&format!("/api/nodes/edge-1/{node:#06x}/send"));
    let body = json!({ "text": text });
    let req = actix_web::rt::spawn(async move { post_json(&url, body).await });
    let (mut root, cmd) = edge.root.take().unwrap().recv_command().await;
    assert_eq!(
        cmd,
        switchyard_actors::wire::mesh::Command::Send {
            dst: node,
            message: text.as_bytes().to_vec()
        }
    );
    root.send(&RootMessage::Result {
        node: 0,
        outcome: Ok(()),
    });
    edge.root = Some(root);
    req.await.unwrap()
}

/// The SEQ numbers the central holds for node 1 of gateway `edge-1`, in
/// order (none while it does not know the node).
async fn seqs_at(central: &Switch) -> Vec<u32> {
    let url = central.url("/api/nodes/edge-1/1/history?type=SEQ&limit=1000");
    let (status, h) = get_json(&url).await;
    if status != 200 {
        return Vec::new();
    }
    h["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| u32::from_str_radix(s["raw"].as_str().unwrap(), 16).unwrap())
        .collect()
}

fn seq_frame(n: u32) -> RootMessage {
    RootMessage::Data {
        node: 1,
        entries: vec![DataEntry::new("SEQ", n.to_be_bytes().to_vec())],
    }
}

// PROTOCOL 5: node data from the edge appears at the central, keyed by
// the gateway. (PROTOCOL sets no delivery time: the wait has a deadline,
// no wall-clock bound that a loaded machine would break.)
#[test_deadline::test]
async fn edge_node_data_appears_at_the_central() {
    let (central, mut edge) = central_with_edge().await;
    edge.root().send(&RootMessage::Data {
        node: 2,
        entries: vec![DataEntry::new("HUM", vec![61])],
    });
    let url = central.url("/api/nodes/edge-1/0x0002");
    wait_for("the edge's node data at the central", || {
        let url = url.clone();
        async move {
            let (status, body) = get_json(&url).await;
            status == 200 && body["latest"]["HUM"]["value"] == json!({"percent": 61})
        }
    })
    .await;
    let (_, v) = get_json(&url).await;
    assert_eq!(v["gateway"], json!("edge-1"), "{v}");
    let (_, all) = get_json(&central.url("/api/nodes")).await;
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["gateway"] == json!("edge-1") && n["addr"] == json!(2)));
    central
        .wait_metric(
            "switchyard_gateway_events_in_total",
            &[("gateway", "edge-1")],
            2.0,
        )
        .await;
    edge.s.stop().await;
    central.stop().await;
}

// PROTOCOL 5: a command from the central reaches the node through its
// gateway, and the node's reply comes back.
#[test_deadline::test]
async fn a_central_command_reaches_the_node_and_the_reply_returns() {
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let mut events = EventProbe::subscribe(&central.running.router.network);
    let mut edge = edge_to(&central, TOKEN).await;
    edge.root().send(&RootMessage::Data {
        node: 3,
        entries: vec![DataEntry::new("HUM", vec![1])],
    });
    wait_for("node at central", || {
        let url = central.url("/api/nodes/edge-1/3");
        async move { get_json(&url).await.0 == 200 }
    })
    .await;
    let (status, body) = send_through_central(&central, &mut edge, 3, "from central").await;
    assert_eq!(status, 200, "{body}");
    edge.root().send(&RootMessage::Message {
        node: 3,
        text: b"node 3 says hi".to_vec(),
    });
    let reply = wait_event(
        &mut events,
        "node 3's message through edge-1",
        WAIT,
        |e| match e {
            SwitchEvent::NodeMessage { key, message, .. }
                if key.gateway.as_deref() == Some("edge-1") =>
            {
                Some((key.addr, message.to_vec()))
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(reply, (3, b"node 3 says hi".to_vec()));
    let (status, _) = post_json(
        &central.url("/api/nodes/edge-1/9/send"),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    edge.s.stop().await;
    central.stop().await;
}

// PROTOCOL 5: the central goes away and comes back; the edge reconnects by
// itself and every event produced meanwhile arrives once, in order.
#[test_deadline::test]
async fn events_survive_a_central_restart_once_and_in_order() {
    let (central, mut edge) = central_with_edge().await;
    let addr = central.running.http_addr;
    for n in 0..10 {
        edge.root().send(&seq_frame(n));
    }
    central
        .wait_metric(
            "switchyard_gateway_events_in_total",
            &[("gateway", "edge-1")],
            11.0,
        )
        .await;
    central.stop().await;
    edge.s
        .wait_metric("switchyard_uplink_connected", &[("gateway", "edge-1")], 0.0)
        .await;
    for n in 10..40 {
        edge.root().send(&seq_frame(n));
    }
    edge.s
        .wait_metric("switchyard_uplink_buffered", &[("gateway", "edge-1")], 30.0)
        .await;
    let central = central_at(addr).await;
    edge.s
        .wait_metric("switchyard_uplink_connected", &[("gateway", "edge-1")], 1.0)
        .await;
    edge.s
        .wait_metric("switchyard_uplink_buffered", &[("gateway", "edge-1")], 0.0)
        .await;
    assert_eq!(seqs_at(&central).await, (10..40).collect::<Vec<u32>>());
    assert!(
        edge.s
            .metric(
                "switchyard_uplink_reconnects_total",
                &[("gateway", "edge-1")]
            )
            .await
            >= 1.0
    );
    edge.s.stop().await;
    central.stop().await;
}

// PROTOCOL 5: a wrong token is refused with 1008 and counted.
#[test_deadline::test]
async fn a_wrong_gateway_token_is_refused() {
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let edge = edge_to(&central, "not-the-token").await;
    // At least one refusal, not exactly one: the edge retries every few
    // milliseconds and is refused each time, so the counter moves on
    // while the test looks.
    central
        .wait_metric_at_least("switchyard_gateway_refused_total", &[], 1.0)
        .await;
    // Never connected: its series is absent or 0.
    let connected = central
        .metric_or_absent("switchyard_gateway_connected", &[("gateway", "edge-1")])
        .await;
    assert!(matches!(connected, None | Some(0.0)), "{connected:?}");
    // Closed with 1008 as soon as it opens, before it says anything.
    let mut raw = Ws::connect(&format!("ws://{}/gateway", central.running.http_addr)).await;
    assert_eq!(raw.closed_with().await, 1008);
    edge.s.stop().await;
    central.stop().await;
}

// PROTOCOL 1.5, 5: a gateway presents the gateway token itself: an
// empty token, a prefix of it or it with more after it is closed with
// 1008 at once, and counted.
#[test_deadline::test]
async fn a_gateway_token_must_match_in_full() {
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let base = format!("ws://{}/gateway", central.running.http_addr);
    let tries = ["", "g", "gw-secre", "gw-secret2"];
    for (i, token) in tries.iter().enumerate() {
        let mut g = Ws::connect(&format!("{base}?token={token}")).await;
        assert_eq!(g.closed_with().await, 1008, "token {token:?}");
        central
            .wait_metric("switchyard_gateway_refused_total", &[], (i + 1) as f64)
            .await;
    }
    central.stop().await;
}

// PROTOCOL 5: garbage and wrong-version frames are counted and ignored.
#[test_deadline::test]
async fn garbage_and_wrong_versions_are_counted_and_ignored() {
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let mut req = format!("ws://{}/gateway", central.running.http_addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let mut g = Ws::connect_request(req).await;
    g.stream
        .send(Message::Binary(vec![1, 250, 250, 250]))
        .await
        .unwrap();
    let mut wrong = Envelope::Hello {
        gateway: "g".into(),
        epoch: 1,
        resume: 1,
    }
    .encode();
    wrong[0] = 9;
    g.stream.send(Message::Binary(wrong)).await.unwrap();
    g.stream.send(Message::Binary(vec![])).await.unwrap();
    central
        .wait_metric(
            "switchyard_gateway_bad_frames_total",
            &[("kind", "garbage")],
            1.0,
        )
        .await;
    central
        .wait_metric(
            "switchyard_gateway_bad_frames_total",
            &[("kind", "wrong_version")],
            1.0,
        )
        .await;
    central
        .wait_metric(
            "switchyard_gateway_bad_frames_total",
            &[("kind", "empty")],
            1.0,
        )
        .await;
    // Still open: a proper hello and event go through.
    g.stream
        .send(Message::Binary(
            Envelope::Hello {
                gateway: "g".into(),
                epoch: 1,
                resume: 1,
            }
            .encode(),
        ))
        .await
        .unwrap();
    let ev = Envelope::Event {
        seq: 1,
        ts: 1.0,
        event: UplinkEvent::NodeData {
            node: 5,
            entries: vec![("HUM".into(), vec![9])],
        },
    };
    g.stream.send(Message::Binary(ev.encode())).await.unwrap();
    g.stream.send(Message::Binary(ev.encode())).await.unwrap();
    central
        .wait_metric(
            "switchyard_gateway_events_in_total",
            &[("gateway", "g")],
            1.0,
        )
        .await;
    central
        .wait_metric(
            "switchyard_gateway_duplicates_total",
            &[("gateway", "g")],
            1.0,
        )
        .await;
    central.stop().await;
}

// The Channel contract's lifecycle on `WebsocketChannel` (kept while away,
// bounded, delivered on return) is checked with the serial link's in one
// suite: `channel_suite.rs`.

// The retry budget: a channel that cannot reach its peer gives up with a
// catastrophic disconnect; afterwards it is closed and sends are serious.
#[test_deadline::test]
async fn the_retry_budget_ends_in_a_catastrophic_disconnect() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = switchyard_actors::metrics::Metrics::new();
    let (owner, mut notices) = NoticeProbe::start();
    let cfg = ChannelConfig {
        reconnect_min_secs: 0.02,
        reconnect_max_secs: 0.05,
        retry_budget: 3,
        buffer_limit: 10,
    };
    let ch = WebsocketChannel::new(
        format!("ws://{free}/gateway"),
        None,
        owner,
        &cfg,
        metrics.clone(),
        "b",
    )
    .start();
    ch.do_send(OpenChannel);
    let n = tokio::time::timeout(WAIT, notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(n, ChannelNotice::CatastrophicDisconnect { .. }),
        "{n:?}"
    );
    assert!(ch.send(IsClosed).await.unwrap());
    assert!(!ch.send(IsAlive).await.unwrap());
    assert_eq!(
        ch.send(ChannelSend(vec![1u8].into())).await.unwrap(),
        SendOutcome::Serious
    );
    assert_eq!(metrics.uplink_reconnects.with_label_values(&["b"]).get(), 3);
}

// PROTOCOL 5: the central's client socket shows the gateways' nodes too.
#[test_deadline::test]
async fn the_central_client_socket_shows_gateway_nodes() {
    use switchyard_actors::wire::client_api::{ClientMessage, ClientRequest};
    use switchyard_actors::wire::frame::FrameCodec;
    use tokio_util::codec::Framed;
    let (central, mut edge) = central_with_edge().await;
    let tcp = tokio::net::TcpStream::connect(central.running.tcp_addr.unwrap())
        .await
        .unwrap();
    let mut c = Framed::new(tcp, FrameCodec::new(1 << 20));
    c.send(ClientRequest::Listen.encode()).await.unwrap();
    async fn next(c: &mut Framed<tokio::net::TcpStream, FrameCodec>) -> ClientMessage {
        use futures_util::StreamExt;
        match tokio::time::timeout(WAIT, c.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            switchyard_actors::wire::frame::FrameItem::Frame(b) => {
                ClientMessage::parse(&b).unwrap()
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next(&mut c).await, ClientMessage::Ok(vec![]));
    edge.root().send(&RootMessage::Data {
        node: 4,
        entries: vec![DataEntry::new("HUM", vec![44])],
    });
    match next(&mut c).await {
        ClientMessage::PushData { src: 4, payload } => {
            assert_eq!(payload, vec![1, b'H', b'U', b'M', 1, 44])
        }
        other => panic!("{other:?}"),
    }
    c.send(ClientRequest::NodeStatus.encode()).await.unwrap();
    let v: Value = loop {
        if let ClientMessage::Ok(p) = next(&mut c).await {
            break serde_json::from_slice(&p).unwrap();
        }
    };
    assert_eq!(v["node_addr_list"], json!([4]));
    assert_eq!(v["gateway_list"], json!(["edge-1"]));
    edge.s.stop().await;
    central.stop().await;
}

// PROTOCOL 5 with the simulated mesh at the edge: a command from the
// central reaches the simulated node, and its reply comes back.
#[test_deadline::test]
async fn a_central_command_reaches_a_simulated_node() {
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let mut events = EventProbe::subscribe(&central.running.router.network);
    let url = format!("ws://{}/gateway", central.running.http_addr);
    let edge = Switch::start_with(move |c| {
        c.uart = "sim".into();
        c.sim.interval_secs = 0.1;
        c.uplink.url = Some(url);
        c.uplink.gateway_id = Some("edge-sim".into());
        c.uplink.token = Some(TOKEN.into());
    })
    .await;
    wait_for("the simulated node at the central", || {
        let url = central.url("/api/nodes/edge-sim/0x0003");
        async move { get_json(&url).await.0 == 200 }
    })
    .await;
    let (status, body) = post_json(
        &central.url("/api/nodes/edge-sim/0x0003/send"),
        json!({"text": "ping"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply = wait_event(
        &mut events,
        "the node's reply through edge-sim",
        WAIT,
        |e| match e {
            SwitchEvent::NodeMessage { key, message, .. }
                if key.gateway.as_deref() == Some("edge-sim")
                    && message.starts_with(b"node 0x0003 got") =>
            {
                Some(String::from_utf8_lossy(message).into_owned())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(reply, "node 0x0003 got: ping");
    edge.stop().await;
    central.stop().await;
}

/// A central switch played by the test: it accepts the edge's uplink on a
/// real WebSocket and speaks PROTOCOL 5's envelopes by hand, so it can
/// send the edge every command of 2.3.
struct FakeCentral {
    listener: tokio::net::TcpListener,
}

impl FakeCentral {
    async fn bind() -> FakeCentral {
        FakeCentral {
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/gateway", self.listener.local_addr().unwrap())
    }

    /// The edge's next uplink session.
    async fn accept(&self) -> CentralSide {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the edge connects")
            .unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        CentralSide { ws }
    }
}

struct CentralSide {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl CentralSide {
    async fn send(&mut self, env: &Envelope) {
        self.ws.send(Message::Binary(env.encode())).await.unwrap();
    }

    /// The edge's next envelope; events are acknowledged as a central
    /// switch does.
    async fn next(&mut self) -> Envelope {
        use futures_util::StreamExt;
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("an envelope from the edge")
                .expect("the uplink stays open")
                .unwrap();
            if let Message::Binary(b) = msg {
                let env = Envelope::decode(&b).expect("a valid envelope");
                if let Envelope::Event { seq, .. } = &env {
                    self.send(&Envelope::Ack { seq: *seq }).await;
                }
                return env;
            }
        }
    }

    /// The result of command `id`, passing over events.
    async fn result_of(&mut self, id: u64) -> Result<Vec<u16>, String> {
        loop {
            if let Envelope::CommandResult { id: got, outcome } = self.next().await {
                assert_eq!(got, id, "results come in the order of the commands");
                return outcome;
            }
        }
    }
}

// PROTOCOL 5 and 2.3: the central's commands to an edge other than
// `SEND-` (`SENDI`, `BCAST`, `RST-R`, `CLEAN`, `NINFO`) reach the edge's
// root as themselves, and the root's answer (`[R]` S or F, `[N]`) comes
// back to the central as the command's result.
#[test_deadline::test]
async fn every_central_command_reaches_the_edge_root_and_is_answered() {
    use switchyard_actors::wire::mesh::Command;
    use switchyard_actors::wire::uplink::RemoteCommand;
    let central = FakeCentral::bind().await;
    let url = central.url();
    let mut edge = MeshSwitch::start_with(move |c| {
        c.uplink.url = Some(url);
        c.uplink.gateway_id = Some("edge-c".into());
        c.uplink.token = Some(TOKEN.into());
    })
    .await;
    let mut side = central.accept().await;
    match side.next().await {
        Envelope::Hello { gateway, .. } => assert_eq!(gateway, "edge-c"),
        other => panic!("expected hello, got {other:?}"),
    }
    // Node 3 is known at the edge (commands to a node check it).
    edge.root().send(&RootMessage::Data {
        node: 3,
        entries: vec![DataEntry::new("HUM", vec![1])],
    });
    edge.wait_value("3", "HUM", json!({"percent": 1})).await;

    // (node, the central's command, what the root gets, the root's
    // answer, the result the central gets)
    type Case = (
        u16,
        RemoteCommand,
        Command,
        RootMessage,
        Result<Vec<u16>, String>,
    );
    let ok = || RootMessage::Result {
        node: 0,
        outcome: Ok(()),
    };
    let cases: Vec<Case> = vec![
        (
            3,
            RemoteCommand::SendTracked {
                message: b"tracked".to_vec(),
            },
            Command::SendTracked {
                dst: 3,
                message: b"tracked".to_vec(),
            },
            ok(),
            Ok(vec![]),
        ),
        (
            0,
            RemoteCommand::Broadcast {
                message: b"all".to_vec(),
            },
            Command::Broadcast {
                message: b"all".to_vec(),
            },
            ok(),
            Ok(vec![]),
        ),
        (
            0,
            RemoteCommand::Restart,
            Command::Restart,
            RootMessage::Result {
                node: 0,
                outcome: Err("restart refused".into()),
            },
            Err("restart refused".into()),
        ),
        (0, RemoteCommand::Clean, Command::Clean, ok(), Ok(vec![])),
        (
            0,
            RemoteCommand::NetInfo,
            Command::NetInfo,
            RootMessage::NetworkInfo {
                node: 0,
                nodes: vec![1, 3, 0x0a0b],
            },
            Ok(vec![1, 3, 0x0a0b]),
        ),
    ];
    let mut root = edge.root.take().unwrap();
    for (id, (node, remote, at_root, answer, outcome)) in cases.into_iter().enumerate() {
        let id = id as u64 + 1;
        side.send(&Envelope::Command {
            id,
            node,
            command: remote,
        })
        .await;
        let (mut r, cmd) = root.recv_command().await;
        assert_eq!(cmd, at_root, "command {id}");
        r.send(&answer);
        root = r;
        match (side.result_of(id).await, outcome) {
            (Err(got), Err(want)) => assert!(got.contains(&want), "{id}: {got}"),
            (got, want) => assert_eq!(got, want, "command {id}"),
        }
    }
    edge.root = Some(root);
    // One frame to the root per command.
    assert_eq!(
        edge.s
            .metric("switchyard_uart_frames_total", &[("direction", "out")])
            .await,
        5.0
    );
    edge.s.stop().await;
}

// PROTOCOL 5: while the uplink is down the edge keeps its events bounded
// (`channel.buffer_limit` events): past the bound the oldest are dropped
// and counted, and the kept ones arrive at the central once, in order,
// after it reconnects.
#[test_deadline::test]
async fn the_edge_buffer_drops_its_oldest_past_the_bound_and_delivers_the_rest_in_order() {
    const LIMIT: u32 = 10;
    const SENT: u32 = 15;
    let central = Switch::start_with(|c| c.gateway_token = Some(TOKEN.into())).await;
    let addr = central.running.http_addr;
    let mut edge = edge_to_with(&central, TOKEN, |c| {
        c.uplink.channel.buffer_limit = LIMIT as usize;
    })
    .await;
    let gw = [("gateway", "edge-1")];
    // Node 1 known and active before the outage: during it, only its data
    // makes events.
    edge.root().send(&seq_frame(1000));
    wait_for("node 1 at the central", || async {
        seqs_at(&central).await == [1000]
    })
    .await;
    edge.s
        .wait_metric("switchyard_uplink_buffered", &gw, 0.0)
        .await;
    central.stop().await;
    edge.s
        .wait_metric("switchyard_uplink_connected", &gw, 0.0)
        .await;
    for n in 0..SENT {
        edge.root().send(&seq_frame(n));
    }
    edge.s
        .wait_metric(
            "switchyard_uplink_dropped_total",
            &gw,
            f64::from(SENT - LIMIT),
        )
        .await;
    edge.s
        .wait_metric("switchyard_uplink_buffered", &gw, f64::from(LIMIT))
        .await;
    let central = central_at(addr).await;
    edge.s
        .wait_metric("switchyard_uplink_connected", &gw, 1.0)
        .await;
    edge.s
        .wait_metric("switchyard_uplink_buffered", &gw, 0.0)
        .await;
    assert_eq!(
        seqs_at(&central).await,
        (SENT - LIMIT..SENT).collect::<Vec<u32>>()
    );
    assert_eq!(
        edge.s.metric("switchyard_uplink_dropped_total", &gw).await,
        f64::from(SENT - LIMIT),
        "nothing more dropped on the way"
    );
    central
        .assert_not_counted("switchyard_gateway_duplicates_total", &gw)
        .await;
    edge.s.stop().await;
    central.stop().await;
}

// PROTOCOL 5: an edge that restarts (a new process: its numbering starts
// again under a new epoch) is taken back by the central: its new events
// are applied, none counted as a duplicate of the old session's, and the
// central's commands reach the new edge's root.
#[test_deadline::test]
async fn a_restarted_edge_is_taken_back_by_the_central() {
    let (central, mut edge) = central_with_edge().await;
    let gw = [("gateway", "edge-1")];
    for n in 0..5 {
        edge.root().send(&seq_frame(n));
    }
    wait_for("the first edge's events at the central", || async {
        seqs_at(&central).await == (0..5).collect::<Vec<u32>>()
    })
    .await;
    let events_before = central
        .metric("switchyard_gateway_events_in_total", &gw)
        .await;
    edge.s.stop().await;
    central
        .wait_metric("switchyard_gateway_connected", &gw, 0.0)
        .await;

    // The same gateway, a new process and a new root.
    let mut edge = edge_to(&central, TOKEN).await;
    central
        .wait_metric("switchyard_gateway_connected", &gw, 1.0)
        .await;
    for n in 5..10 {
        edge.root().send(&seq_frame(n));
    }
    wait_for("the restarted edge's events at the central", || async {
        seqs_at(&central).await == (0..10).collect::<Vec<u32>>()
    })
    .await;
    central
        .wait_metric_at_least(
            "switchyard_gateway_events_in_total",
            &gw,
            events_before + 5.0,
        )
        .await;
    central
        .assert_not_counted("switchyard_gateway_duplicates_total", &gw)
        .await;

    // A command from the central reaches the new edge's root.
    let (status, body) = send_through_central(&central, &mut edge, 1, "again").await;
    assert_eq!(status, 200, "{body}");
    edge.s.stop().await;
    central.stop().await;
}
