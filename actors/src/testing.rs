//! Test helpers behind the `test-util` feature (and for the crate's own
//! tests): probes that let a test see what the switch publishes without a
//! monitor or a client socket, and fakes that drive the router's and the
//! monitor's actors through their real WebSocket sessions without HTTP or
//! TCP (`TestRouter`, `FakePeer`), so timers can run on a paused clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_codec::{Decoder, Encoder};
use actix_http::error::PayloadError;
use actix_http::ws::{Codec, Frame};
use actix_web_actors::ws::{self, WebsocketContext};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use crate::agent::{
    Agent, AgentInfo, AttachNetwork, BackendInfo, BackendLink, GetAgentInfo, GetBackendInfo,
    RouterConfig, RouterContext, SessionOrigin, WsSession,
};
use crate::directory::{AgentDirectory, AgentLocation, LocateAgent};
use crate::flow::Flow;
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::monitor::{Monitor, MonitorConfig, MonitorSession};
use crate::network::events::SwitchEvent;
use crate::network::mesh::{MeshConfig, MeshState};
use crate::network::{NetworkManager, NetworkSetup, Subscribe};
use crate::wire::DataTypes;

/// Collects every `SwitchEvent` into a channel.
pub struct EventProbe {
    tx: mpsc::UnboundedSender<SwitchEvent>,
}

impl Actor for EventProbe {
    type Context = Context<Self>;
}

impl Handler<SwitchEvent> for EventProbe {
    type Result = ();
    fn handle(&mut self, msg: SwitchEvent, _: &mut Context<Self>) {
        let _ = self.tx.send(msg);
    }
}

impl EventProbe {
    /// Subscribes a new probe to `network` and returns its receiving end.
    pub fn subscribe(network: &Mailbox<NetworkManager>) -> mpsc::UnboundedReceiver<SwitchEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = EventProbe { tx }.start();
        network.do_send(Subscribe(probe.recipient()));
        rx
    }
}

/// Waits up to `within` for the first event `pick` makes something of, and
/// returns that; the events before it are passed over. Amid the mesh's
/// steady stream of events a test waits for one, so a failure says what
/// was awaited and what came instead, and a stream that ended fails at
/// once instead of spinning until the deadline.
pub async fn wait_event<T>(
    events: &mut mpsc::UnboundedReceiver<SwitchEvent>,
    what: &str,
    within: Duration,
    mut pick: impl FnMut(&SwitchEvent) -> Option<T>,
) -> T {
    const KEPT: usize = 3;
    let mut passed = 0usize;
    let mut recent: std::collections::VecDeque<String> = Default::default();
    let found = timeout(within, async {
        while let Some(e) = events.recv().await {
            if let Some(t) = pick(&e) {
                return Some(t);
            }
            passed += 1;
            if recent.len() == KEPT {
                recent.pop_front();
            }
            let mut seen = format!("{e:?}");
            seen.truncate(seen.floor_char_boundary(200));
            recent.push_back(seen);
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        Ok(None) => panic!("{what}: the event stream ended after {passed} other events"),
        Err(_) => panic!(
            "{what}: not within {within:?}; {passed} other events came, the last: {recent:?}"
        ),
    }
}

/// Collects a channel's notices into a channel of the test's.
pub struct NoticeProbe {
    tx: mpsc::UnboundedSender<crate::channel::ChannelNotice>,
}

impl Actor for NoticeProbe {
    type Context = Context<Self>;
}

impl Handler<crate::channel::ChannelNotice> for NoticeProbe {
    type Result = ();
    fn handle(&mut self, msg: crate::channel::ChannelNotice, _: &mut Context<Self>) {
        let _ = self.tx.send(msg);
    }
}

impl NoticeProbe {
    /// A recipient for a channel's owner, and the notices it gets.
    pub fn start() -> (
        Recipient<crate::channel::ChannelNotice>,
        mpsc::UnboundedReceiver<crate::channel::ChannelNotice>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        (NoticeProbe { tx }.start().recipient(), rx)
    }
}

/// How long a fake peer waits for a frame before the test fails. Under a
/// paused clock the runtime skips ahead once nothing else can run, so a
/// missing frame fails the test at once instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(120);

/// The far end of one WebSocket session, without HTTP or TCP: the session
/// actor runs in its real `WebsocketContext`, reads the masked frames this
/// peer writes, and its output is decoded here as a browser would. The
/// pump counts what it takes into the session's `Flow` (data frames only,
/// as the transport does), and a peer that stops reading freezes the
/// session as a stalled socket does.
pub struct FakePeer {
    inbound: Option<mpsc::UnboundedSender<Result<Bytes, PayloadError>>>,
    frames: mpsc::UnboundedReceiver<Frame>,
    reading: watch::Sender<bool>,
    encoder: Codec,
}

impl FakePeer {
    /// Starts `actor` as a WebSocket session whose peer is the returned
    /// value; `flow` is the session's (counted as the transport does).
    pub fn open<A>(actor: A, flow: Option<Arc<Flow>>) -> FakePeer
    where
        A: Actor<Context = WebsocketContext<A>>
            + StreamHandler<Result<ws::Message, ws::ProtocolError>>,
    {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (reading, mut gate) = watch::channel(true);
        let inbound = futures_util::stream::unfold(in_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut out = Box::pin(WebsocketContext::with_codec(actor, inbound, Codec::new()));
        actix::spawn(async move {
            let mut decoder = Codec::new().client_mode();
            let mut buf = BytesMut::new();
            loop {
                if !*gate.borrow_and_update() {
                    if gate.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                let chunk = tokio::select! {
                    biased;
                    changed = gate.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                    chunk = out.next() => chunk,
                };
                let Some(Ok(chunk)) = chunk else {
                    return;
                };
                buf.extend_from_slice(&chunk);
                loop {
                    let before = buf.len();
                    let Ok(Some(frame)) = decoder.decode(&mut buf) else {
                        break;
                    };
                    let data = matches!(
                        frame,
                        Frame::Text(_) | Frame::Binary(_) | Frame::Continuation(_)
                    );
                    if let (true, Some(f)) = (data, &flow) {
                        f.took(before - buf.len());
                    }
                    let _ = out_tx.send(frame);
                }
            }
        });
        FakePeer {
            inbound: Some(in_tx),
            frames: out_rx,
            reading,
            encoder: Codec::new().client_mode(),
        }
    }

    /// Writes one text frame (masked, as a browser does).
    pub fn send_text(&mut self, text: &str) {
        let mut buf = BytesMut::new();
        self.encoder
            .encode(ws::Message::Text(text.to_string().into()), &mut buf)
            .expect("a text frame encodes");
        if let Some(tx) = &self.inbound {
            let _ = tx.send(Ok(buf.freeze()));
        }
    }

    pub fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// A router packet (PROTOCOL 1.1) of `packet_type` for `subject_id`.
    pub fn send_packet(&mut self, packet_type: &str, subject_id: &str, data: Value) {
        self.send_json(&json!({
            "packet_type": packet_type,
            "subject_id": subject_id,
            "data": data,
            "client_timestamp": null,
        }));
    }

    /// The peer goes away without a close frame (its end of the stream).
    pub fn vanish(&mut self) {
        self.inbound = None;
    }

    /// Waits until the session has stopped and its output ended.
    pub async fn until_closed(&mut self) {
        let end = async { while self.frames.recv().await.is_some() {} };
        timeout(WAIT, end)
            .await
            .expect("the session should have closed");
    }

    /// The peer stops taking the session's output (its socket fills).
    pub fn stop_reading(&self) {
        self.reading.send_replace(false);
    }

    pub fn read_again(&self) {
        self.reading.send_replace(true);
    }

    /// The next text frame, skipping control frames; fails the test if
    /// none comes within `WAIT` or the session ends.
    pub async fn next_text(&mut self) -> String {
        loop {
            match timeout(WAIT, self.frames.recv()).await {
                Ok(Some(Frame::Text(b))) => {
                    return String::from_utf8(b.to_vec()).expect("text frames are UTF-8")
                }
                Ok(Some(Frame::Close(reason))) => panic!("the session closed: {reason:?}"),
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the session ended"),
                Err(_) => panic!("no text frame within {WAIT:?}"),
            }
        }
    }

    pub async fn next_json(&mut self) -> Value {
        let text = self.next_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next packet of `packet_type`, skipping others.
    pub async fn next_packet(&mut self, packet_type: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["packet_type"] == packet_type {
                return v;
            }
        }
    }

    /// The text frames already here, without waiting.
    pub fn texts_so_far(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(frame) = self.frames.try_recv() {
            if let Frame::Text(b) = frame {
                out.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
        out
    }
}

/// Waits, without moving the clock, until `check` holds: it asks again
/// and again, letting the actors run in between. Panics if it does not hold
/// after many turns.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..10_000 {
        if check().await {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never true: {what}");
}

/// The router's actors (`AgentDirectory`, `NetworkManager`, `BackendLink`) with no HTTP
/// server, no mesh link and no history on disk; sockets are `FakePeer`s.
pub struct TestRouter {
    pub rctx: Arc<RouterContext>,
    pub metrics: Arc<Metrics>,
    _shutdown: watch::Sender<bool>,
    next_peer: u32,
}

impl TestRouter {
    pub fn start(config: RouterConfig) -> TestRouter {
        let metrics = Metrics::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let backend = BackendLink::start_link(
            config.backend.clone(),
            &config.session,
            Arc::clone(&metrics),
        );
        let setup = NetworkSetup {
            mesh: MeshState::new(&MeshConfig::default(), DataTypes::builtin()),
            history: None,
        };
        let network = NetworkManager::start_link(
            Arc::clone(&metrics),
            metrics.probe("NetworkManager", "switch"),
            setup,
        );
        let m = Arc::clone(&metrics);
        let rctx = AgentDirectory::start_with(
            |directory| RouterContext::new(config, m, directory, network, backend, shutdown_rx),
            metrics.probe("AgentDirectory", "switch"),
        );
        rctx.backend.do_send(AttachNetwork(rctx.network.clone()));
        TestRouter {
            rctx,
            metrics,
            _shutdown: shutdown,
            next_peer: 0,
        }
    }

    /// A new socket on `/` (an agent's or, once it says `alive` as
    /// `mephisto`, the backend's), from 127.0.0.1.
    pub fn socket(&mut self) -> FakePeer {
        self.next_peer += 1;
        let flow = Arc::new(Flow::default());
        let session = WsSession::new(
            Arc::clone(&self.rctx),
            SessionOrigin {
                token_ok: false,
                peer: format!("127.0.0.1:{}", self.next_peer),
                ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            },
            Arc::clone(&flow),
        );
        FakePeer::open(session, Some(flow))
    }

    /// A socket bound to agent `agent_id`: it said `alive` and got its
    /// `update_status`.
    pub async fn agent_socket(&mut self, agent_id: &str) -> FakePeer {
        let mut peer = self.socket();
        peer.send_packet("alive", agent_id, json!({}));
        peer.next_packet("update_status").await;
        peer
    }

    /// A socket that is the backend: it said `alive` as `mephisto` and the
    /// link has taken it.
    pub async fn backend_socket(&mut self) -> FakePeer {
        let mut peer = self.socket();
        peer.send_packet("alive", crate::wire::MEPHISTO, json!({}));
        let r: &TestRouter = self;
        until("the backend is connected", move || async move {
            r.backend_info().await.connected
        })
        .await;
        peer
    }

    /// The agent's actor, if the switch knows it.
    pub async fn agent(&self, agent_id: &str) -> Option<Mailbox<Agent>> {
        let location = self
            .rctx
            .directory
            .send(LocateAgent {
                agent_id: agent_id.into(),
            })
            .await
            .expect("the directory answers")?;
        match location {
            AgentLocation::Local(agent) => Some(agent),
        }
    }

    pub async fn agent_info(&self, agent_id: &str) -> AgentInfo {
        let agent = self.agent(agent_id).await.expect("the agent is known");
        agent.send(GetAgentInfo).await.expect("the agent answers")
    }

    pub async fn backend_info(&self) -> BackendInfo {
        self.rctx
            .backend
            .send(GetBackendInfo)
            .await
            .expect("the backend link answers")
    }

    /// Every event the switch publishes from now on.
    pub fn events(&self) -> mpsc::UnboundedReceiver<SwitchEvent> {
        EventProbe::subscribe(&self.rctx.network)
    }

    /// A `Monitor` on this router's manager and backend link.
    pub fn monitor(&self, config: MonitorConfig) -> Mailbox<Monitor> {
        Monitor::start_link(
            config,
            Arc::clone(&self.metrics),
            self.rctx.network.clone(),
            self.rctx.directory.clone(),
            self.rctx.backend.clone(),
        )
    }

    /// A `/monitor` subscriber of `monitor`; its first frame is the
    /// snapshot.
    pub fn subscriber(&mut self, monitor: &Mailbox<Monitor>) -> FakePeer {
        self.next_peer += 1;
        let flow = Arc::new(Flow::default());
        let session = MonitorSession::new(
            Arc::clone(&self.metrics),
            monitor.clone(),
            self.rctx.shutdown.clone(),
            format!("127.0.0.1:{}", self.next_peer),
            Arc::clone(&flow),
            &self.rctx.config.session,
        );
        FakePeer::open(session, Some(flow))
    }
}

/// The mask of every client frame the tests build by hand.
pub const CLIENT_MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// The header of a masked client frame (RFC 6455 5.2): first byte `first`
/// (FIN and opcode), announcing `len` bytes of payload in the shortest
/// length form, then `CLIENT_MASK`. What follows it on the wire is the
/// payload passed through [`mask_payload`].
pub fn client_frame_header(first: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first];
    match len {
        n if n < 126 => h.push(0x80 | n as u8),
        n if n < 65_536 => {
            h.push(0x80 | 126);
            h.extend((n as u16).to_be_bytes());
        }
        n => {
            h.push(0x80 | 127);
            h.extend(n.to_be_bytes());
        }
    }
    h.extend(CLIENT_MASK);
    h
}

/// `payload` masked with `CLIENT_MASK` (RFC 6455 5.3), as it follows a
/// [`client_frame_header`].
pub fn mask_payload(payload: &[u8]) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ CLIENT_MASK[i % 4])
        .collect()
}

/// A whole masked client frame: `first` is FIN and opcode (0x81 a final
/// text frame, 0x01 a first text fragment, 0x80 a last continuation).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = client_frame_header(first, payload.len() as u64);
    f.extend(mask_payload(payload));
    f
}
