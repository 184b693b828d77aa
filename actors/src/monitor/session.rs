//! `MonitorSession`: one `/monitor` WebSocket.
//!
//! A thin writer: the `Monitor` decides what it gets and when (see there
//! for why), this actor writes it and turns the peer's
//! `{"subscribe": [...]}` into a `SetFilter`. It keeps the connection
//! alive as `WsSession` does: a protocol ping every `ping_interval`, and a
//! close with 1001 once nothing (a pong, or any frame) was heard from the
//! peer for `ping_timeout`, so a subscriber whose host vanished without a
//! FIN does not hold its slot until its socket fills.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use serde_json::json;

use super::{Flow, Join, Leave, Monitor, SetFilter};
use crate::agent::SessionConfig;
use crate::mailbox::Mailbox;
use crate::metrics::{cut_reason, ActorProbe, Metrics};

/// Link label of `switchyard_connections_open` for monitor sockets.
pub const LINK_MONITOR: &str = "monitor";

pub struct MonitorSession {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    monitor: Mailbox<Monitor>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    flow: Arc<Flow>,
    id: Option<u64>,
    peer: String,
    ping_interval: Duration,
    ping_timeout: Duration,
    /// When the peer last sent a frame, of any kind.
    last_heard: Instant,
}

/// One JSON text for the peer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MonitorText(pub Arc<str>);

impl MonitorSession {
    /// `session` gives the keep-alive timings, the router sockets' own.
    pub fn new(
        metrics: Arc<Metrics>,
        monitor: Mailbox<Monitor>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        peer: String,
        flow: Arc<Flow>,
        session: &SessionConfig,
    ) -> Self {
        let probe = metrics.probe("MonitorSession", peer.clone());
        MonitorSession {
            metrics,
            probe,
            monitor,
            shutdown,
            flow,
            id: None,
            peer,
            ping_interval: session.ping_interval(),
            ping_timeout: session.ping_timeout(),
            last_heard: Instant::now(),
        }
    }

    fn reply(&mut self, v: serde_json::Value, ctx: &mut ws::WebsocketContext<Self>) {
        let text = v.to_string();
        self.flow.wrote(text.len());
        ctx.text(text);
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let list = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                v.get("subscribe")?.as_array().map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect::<HashSet<String>>()
                })
            });
        match (list, self.id) {
            (Some(events), Some(id)) => {
                let mut names: Vec<&String> = events.iter().collect();
                names.sort();
                self.reply(json!({ "subscribed": names }), ctx);
                self.monitor.do_send(SetFilter { id, events });
            }
            _ => {
                self.metrics.malformed("monitor_request");
                log::info!("monitor: ignored a message that is not {{\"subscribe\": [...]}}");
                self.reply(
                    json!({"error": "expected {\"subscribe\": [event names]}"}),
                    ctx,
                );
            }
        }
    }
}

impl Actor for MonitorSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics
            .connections_open
            .with_label_values(&[LINK_MONITOR])
            .inc();
        let me = Mailbox::new(ctx.address(), Arc::clone(&self.probe));
        let join = self.monitor.send(Join {
            session: me,
            flow: Arc::clone(&self.flow),
        });
        ctx.wait(join.into_actor(self).map(|id, act, ctx| match id {
            Ok(id) => act.id = Some(id),
            Err(_) => ctx.stop(),
        }));
        crate::shutdown::close_on_shutdown(self, ctx, self.shutdown.clone());

        // Protocol keep-alive: ping, and drop a peer that went silent. A
        // subscriber that only listens still answers the pings. (A peer
        // that stops reading freezes this actor, timers included: the
        // transport's stall timeout cuts that one.)
        let timeout = self.ping_timeout;
        ctx.run_interval(self.ping_interval, move |act, ctx| {
            let silent = act.last_heard.elapsed();
            if silent > timeout {
                log::info!("monitor {}: silent for {silent:?}, closing", act.peer);
                act.metrics
                    .peers_cut
                    .with_label_values(&[LINK_MONITOR, cut_reason::PING_TIMEOUT])
                    .inc();
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("ping timeout".into()),
                }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics
            .connections_open
            .with_label_values(&[LINK_MONITOR])
            .dec();
        if let Some(id) = self.id {
            self.monitor.do_send(Leave { id });
        }
        self.probe.retire();
    }
}

impl Handler<MonitorText> for MonitorSession {
    type Result = ();
    fn handle(&mut self, msg: MonitorText, ctx: &mut Self::Context) {
        let _h = self.probe.handling("MonitorText");
        ctx.text(msg.0.to_string());
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for MonitorSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let now = Instant::now();
        let _h = self.probe.handling_unqueued_at("Frame", now);
        self.last_heard = now;
        match msg {
            Ok(ws::Message::Text(t)) => self.on_text(&t, ctx),
            Ok(ws::Message::Ping(b)) => ctx.pong(&b),
            Ok(ws::Message::Close(r)) => {
                ctx.close(r);
                ctx.stop();
            }
            Ok(ws::Message::Binary(_)) | Ok(ws::Message::Continuation(_)) => {
                self.metrics.malformed("monitor_request");
                self.reply(json!({"error": "send JSON text"}), ctx);
            }
            Ok(_) => {}
            Err(e) => {
                log::info!("monitor: protocol error {e}");
                ctx.stop();
            }
        }
    }
}
