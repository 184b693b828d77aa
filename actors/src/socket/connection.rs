//! `ClientConnection`: one TCP connection of the client socket
//! (PROTOCOL 3).
//!
//! Reads frames with the mesh link's codec, answers each request with
//! exactly one frame, in order (a request that waits on the mesh holds the
//! next one back: `ctx.wait`), and, once it said `LISTN`, writes the pushes
//! `SocketManager` hands it. Writes go out through one pump: answers are
//! never dropped; pushes wait in a bounded queue that drops its oldest when
//! the client reads slower than the mesh talks, so a slow client never slows
//! the switch. Handles the request stream, `Push`.
//!
//! Time bounds (PROTOCOL 1.5): a write the client does not take within
//! `write_timeout_secs` cuts the connection (a client that stopped reading
//! its answers or pushes); a connection that has not said `LISTN` and sends
//! nothing for `idle_timeout_secs` is told `F` and closed. A listening
//! connection is not idle for not sending: it is there to read.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedRead;

use super::{ConnectionClosed, Listening, SocketConfig, SocketManager, LINK_CLIENT};
use crate::mailbox::Mailbox;
use crate::metrics::{cut_reason, ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{GetLatest, GetMeshInfo, MeshCommand, NetworkManager, Publish, SetRobots};
use crate::outbox::Outbox;
use crate::wire::client_api::{fail, get_answer, ok, ClientRequest};
use crate::wire::frame::{encode_frame, FrameCodec, FrameItem};
use crate::wire::mesh::Command;

pub struct ClientConnection {
    id: u64,
    peer: SocketAddr,
    config: SocketConfig,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    manager: Mailbox<SocketManager>,
    writer: Option<OwnedWriteHalf>,
    writing: bool,
    answers: VecDeque<Bytes>,
    pushes: Outbox<Bytes>,
    listening: bool,
    /// The client closed its sending side: stop once everything is written.
    read_closed: bool,
    /// When the client last sent a frame (or connected).
    last_heard: Instant,
}

impl ClientConnection {
    #[allow(clippy::too_many_arguments)] // each is a distinct collaborator
    pub fn spawn(
        id: u64,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        config: SocketConfig,
        metrics: Arc<Metrics>,
        network: Mailbox<NetworkManager>,
        manager: Mailbox<SocketManager>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let (read, write) = stream.into_split();
        let probe = metrics.probe("ClientConnection", peer.to_string());
        ClientConnection::create(move |ctx| {
            ctx.add_stream(FramedRead::new(
                read,
                FrameCodec::new(config.max_frame_bytes),
            ));
            ctx.spawn(
                actix::fut::wrap_future::<_, ClientConnection>(crate::shutdown::until_shutdown(
                    shutdown,
                ))
                .map(|_, _, ctx: &mut Context<ClientConnection>| ctx.stop()),
            );
            ClientConnection {
                id,
                peer,
                pushes: Outbox::new(config.push_queue_limit),
                config,
                metrics,
                probe,
                network,
                manager,
                writer: Some(write),
                writing: false,
                answers: VecDeque::new(),
                listening: false,
                read_closed: false,
                last_heard: Instant::now(),
            }
        });
    }

    fn answer(&mut self, content: Vec<u8>, ctx: &mut Context<Self>) {
        if self.answers.len() >= self.config.answer_backlog_limit {
            self.metrics
                .client_errors
                .with_label_values(&["answer_backlog"])
                .inc();
            log::warn!(
                "client {}: {} answers left unread; closing the connection",
                self.peer,
                self.answers.len()
            );
            ctx.stop();
            return;
        }
        self.answers.push_back(frame(&content));
        self.pump(ctx);
    }

    fn refuse(&mut self, kind: &'static str, reason: &str, ctx: &mut Context<Self>) {
        self.metrics.client_errors.with_label_values(&[kind]).inc();
        log::info!("client {}: {reason}", self.peer);
        self.answer(fail(reason), ctx);
    }

    /// Writes what is waiting, answers first, one batch at a time.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let mut batch = BytesMut::new();
        while batch.len() < 64 * 1024 {
            match self.answers.pop_front().or_else(|| self.pushes.pop()) {
                Some(b) => batch.extend_from_slice(&b),
                None => break,
            }
        }
        if batch.is_empty() {
            self.writer = Some(writer);
            if self.read_closed {
                ctx.stop();
            }
            return;
        }
        self.writing = true;
        let limit = self.config.write_timeout();
        let fut = async move {
            let r = tokio::time::timeout(limit, writer.write_all(&batch)).await;
            (writer, r)
        };
        ctx.spawn(fut.into_actor(self).map(move |(writer, r), act, ctx| {
            act.writing = false;
            match r {
                Ok(Ok(())) => {
                    act.writer = Some(writer);
                    act.pump(ctx);
                }
                Ok(Err(e)) => {
                    log::debug!("client {}: write failed: {e}", act.peer);
                    ctx.stop();
                }
                Err(_) => {
                    // The client stopped reading: it is cut, not waited for.
                    act.metrics
                        .peers_cut
                        .with_label_values(&[LINK_CLIENT, cut_reason::STALLED])
                        .inc();
                    log::info!(
                        "client {}: took nothing written to it for {limit:?}; disconnected",
                        act.peer
                    );
                    ctx.stop();
                }
            }
        }));
    }

    fn handle_request(&mut self, request: ClientRequest, ctx: &mut Context<Self>) {
        let name = request_name(&request);
        self.metrics
            .client_requests
            .with_label_values(&[name])
            .inc();
        match request {
            ClientRequest::Listen => {
                if !self.listening {
                    self.listening = true;
                    self.manager.do_send(Listening {
                        id: self.id,
                        connection: Mailbox::new(ctx.address(), Arc::clone(&self.probe)),
                    });
                }
                self.answer(ok(b""), ctx);
            }
            ClientRequest::WriteLog { text } => {
                self.network.do_send(Publish(SwitchEvent::Log {
                    ts: crate::clock::now_secs(),
                    text,
                }));
                self.answer(ok(b""), ctx);
            }
            ClientRequest::WriteRobots { json } => match parse_robots(&json) {
                Ok(robots) => {
                    self.network.do_send(SetRobots(robots));
                    self.answer(ok(b""), ctx);
                }
                Err(e) => self.refuse("bad_robots", &e, ctx),
            },
            ClientRequest::NodeStatus => {
                let req = self.network.send(GetMeshInfo);
                self.wait_answer(ctx, async move {
                    let info = req.await.map_err(|e| e.to_string())?;
                    let body = json!({
                        "node_amount": info.node_amount,
                        "node_addr_list": info.nodes.iter().map(|n| n.addr).collect::<Vec<_>>(),
                        "node_status_list": info.nodes.iter().map(|n| n.status.as_str()).collect::<Vec<_>>(),
                        "gateway_list": info.nodes.iter().map(|n| n.gateway.clone()).collect::<Vec<_>>(),
                    });
                    Ok(ok(body.to_string().as_bytes()))
                });
            }
            ClientRequest::NetInfo => {
                let req = self.network.send(GetMeshInfo);
                let m = Arc::clone(&self.metrics);
                self.wait_answer(ctx, async move {
                    let info = req.await.map_err(|e| e.to_string())?;
                    // Compact, to stay within the 1024-byte frame limit for
                    // a dozen nodes: values are one `[GET]` away.
                    let now = crate::clock::now_secs();
                    let nodes: Vec<_> = info
                        .nodes
                        .iter()
                        .map(|n| {
                            json!({
                                "address": n.address,
                                "status": n.status.as_str(),
                                "age_secs": ((now - n.last_seen) * 10.0).round() / 10.0,
                            })
                        })
                        .collect();
                    let body = json!({
                        "nodes": nodes,
                        "node_amount": info.node_amount,
                        "active_nodes": info.active_nodes,
                        "root_nodes": info.root_nodes,
                        "link_up": info.link_up,
                        "link": info.link,
                        "uptime_secs": info.uptime_secs,
                        "frames": frame_counters(&m),
                    });
                    Ok(ok(body.to_string().as_bytes()))
                });
            }
            ClientRequest::ActiveCount => {
                let req = self.network.send(GetMeshInfo);
                self.wait_answer(ctx, async move {
                    let info = req.await.map_err(|e| e.to_string())?;
                    let n = u16::try_from(info.active_nodes).unwrap_or(u16::MAX);
                    Ok(ok(&n.to_be_bytes()))
                });
            }
            ClientRequest::Get { data_type, node } => {
                let req = self.network.send(GetLatest {
                    data_type: data_type.clone(),
                    node: (node != 0).then_some(node),
                });
                self.wait_answer(ctx, async move {
                    let latest = req.await.map_err(|e| e.to_string())?;
                    let values: Vec<_> = latest.into_iter().map(|(a, s)| (a, s.raw)).collect();
                    get_answer(&data_type, &values).ok_or_else(|| match node {
                        0 => format!("no {data_type} data"),
                        n => format!("no {data_type} data for node 0x{n:04x}"),
                    })
                });
            }
            relay => {
                let (command, node) = match relay {
                    ClientRequest::Send { dst, message } => {
                        (Command::Send { dst, message }, Some(dst))
                    }
                    ClientRequest::SendTracked { dst, message } => {
                        (Command::SendTracked { dst, message }, Some(dst))
                    }
                    ClientRequest::Broadcast { message } => (Command::Broadcast { message }, None),
                    ClientRequest::Restart => (Command::Restart, None),
                    _ => (Command::Clean, None),
                };
                let req = self.network.send(MeshCommand { command, node });
                self.wait_answer(ctx, async move {
                    match req.await {
                        Ok(Ok(_)) => Ok(ok(b"")),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                });
            }
        }
    }

    /// Runs `fut` before anything else this connection has to do, so
    /// answers keep the order of requests.
    fn wait_answer(
        &mut self,
        ctx: &mut Context<Self>,
        fut: impl std::future::Future<Output = Result<Vec<u8>, String>> + 'static,
    ) {
        ctx.wait(fut.into_actor(self).map(|r, act, ctx| match r {
            Ok(content) => act.answer(content, ctx),
            Err(reason) => {
                act.metrics
                    .client_errors
                    .with_label_values(&["failed"])
                    .inc();
                act.answer(fail(&reason), ctx);
            }
        }));
    }
}

fn frame(content: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(content.len() + 8);
    encode_frame(content, &mut b);
    b.freeze()
}

fn request_name(r: &ClientRequest) -> &'static str {
    match r {
        ClientRequest::Send { .. } => "SEND-",
        ClientRequest::SendTracked { .. } => "SENDI",
        ClientRequest::Broadcast { .. } => "BCAST",
        ClientRequest::Restart => "RST-R",
        ClientRequest::Clean => "CLEAN",
        ClientRequest::NodeStatus => "NSTAT",
        ClientRequest::NetInfo => "NINFO",
        ClientRequest::Get { .. } => "[GET]",
        ClientRequest::ActiveCount => "ACT-C",
        ClientRequest::WriteLog { .. } => "W-LOG",
        ClientRequest::WriteRobots { .. } => "W-RBT",
        ClientRequest::Listen => "LISTN",
    }
}

/// `W-RBT`'s list of `{id, name, state, node}`.
fn parse_robots(json: &[u8]) -> Result<serde_json::Value, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("W-RBT: invalid JSON: {e}"))?;
    let list = v
        .as_array()
        .ok_or_else(|| "W-RBT: expected a JSON list of robots".to_string())?;
    for r in list {
        for key in ["id", "name", "state", "node"] {
            if r.get(key).is_none() {
                return Err(format!("W-RBT: a robot lacks `{key}`"));
            }
        }
    }
    Ok(v)
}

fn frame_counters(m: &Metrics) -> serde_json::Value {
    let errors: serde_json::Map<String, serde_json::Value> =
        ["outside_frame", "restarted", "bad_escape", "too_long"]
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    json!(m.uart_frame_errors.with_label_values(&[k]).get()),
                )
            })
            .collect();
    json!({
        "in": m.uart_frames.with_label_values(&["in"]).get(),
        "out": m.uart_frames.with_label_values(&["out"]).get(),
        "bytes_in": m.uart_bytes.with_label_values(&["in"]).get(),
        "bytes_out": m.uart_bytes.with_label_values(&["out"]).get(),
        "errors": errors,
    })
}

impl Actor for ClientConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics
            .connections_open
            .with_label_values(&[LINK_CLIENT])
            .inc();
        log::debug!("client {}: connected", self.peer);
        if let Some(idle) = self.config.idle_timeout() {
            ctx.run_interval(idle / 4, move |act, ctx| {
                if act.listening || act.read_closed || act.last_heard.elapsed() < idle {
                    return;
                }
                act.metrics
                    .peers_cut
                    .with_label_values(&[LINK_CLIENT, cut_reason::IDLE])
                    .inc();
                log::info!("client {}: idle for {idle:?}; closing", act.peer);
                act.read_closed = true;
                act.answer(fail(&format!("idle for {idle:?}, closing")), ctx);
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.metrics
            .connections_open
            .with_label_values(&[LINK_CLIENT])
            .dec();
        self.manager.do_send(ConnectionClosed { id: self.id });
        log::debug!("client {}: closed", self.peer);
        self.probe.retire();
    }
}

impl StreamHandler<Result<FrameItem, std::io::Error>> for ClientConnection {
    fn handle(&mut self, item: Result<FrameItem, std::io::Error>, ctx: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("Frame");
        self.last_heard = Instant::now();
        match item {
            Ok(FrameItem::Frame(content)) => match ClientRequest::parse(&content) {
                Ok(request) => self.handle_request(request, ctx),
                Err(e) => self.refuse(e.kind(), &e.to_string(), ctx),
            },
            Ok(FrameItem::Error(e)) => {
                let kind = e.kind();
                let reason = match e {
                    crate::wire::frame::FrameError::OutsideFrame { bytes } => {
                        format!("{bytes} bytes outside a frame discarded")
                    }
                    crate::wire::frame::FrameError::TooLong { max } => {
                        format!("frame longer than {max} bytes dropped")
                    }
                    other => format!("bad frame dropped ({})", other.kind()),
                };
                self.refuse(kind, &reason, ctx);
            }
            Err(e) => {
                log::debug!("client {}: read failed: {e}", self.peer);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The client closed its sending side: answer what it asked, then go.
        self.read_closed = true;
        self.pump(ctx);
    }
}

/// An event for a listening connection, already framed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push(pub Bytes);

impl Handler<Push> for ClientConnection {
    type Result = ();
    fn handle(&mut self, msg: Push, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("Push");
        if self.pushes.push(msg.0).is_some() {
            self.metrics.client_pushes_dropped.inc();
        }
        self.pump(ctx);
    }
}
