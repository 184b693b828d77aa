//! `GatewaySession`: one gateway's WebSocket on `/gateway` (central side).
//!
//! Decodes the gateway's binary envelopes (bad ones are counted and
//! ignored, the connection stays), hands them to `GatewayServer`, and
//! writes what the server sends back. A gateway without the required token
//! is closed with 1008 at its first frame.

use std::sync::Arc;

use actix::prelude::*;
use actix_web_actors::ws;

use super::gateway::{GatewayEvent, GatewayGone, GatewayHello, GatewayResult, GatewayServer};
use crate::metrics::{ActorProbe, Mailbox, Metrics};
use crate::wire::uplink::Envelope;

/// Link label of `switchyard_connections_open` for gateway sockets.
pub const LINK_GATEWAY: &str = "gateway";

pub struct GatewaySession {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    server: Mailbox<GatewayServer>,
    token_ok: bool,
    id: u64,
    gateway: Option<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An envelope for the gateway.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendEnvelope(pub Envelope);

impl GatewaySession {
    pub fn new(
        metrics: Arc<Metrics>,
        server: Mailbox<GatewayServer>,
        token_ok: bool,
        peer: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let probe = metrics.probe("GatewaySession", peer);
        GatewaySession {
            metrics,
            probe,
            server,
            token_ok,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            gateway: None,
            shutdown,
        }
    }

    fn refuse(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.metrics.gateway_refused.inc();
        log::warn!("gateway refused: missing or wrong gateway token");
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Policy,
            description: Some("gateway token missing or wrong".into()),
        }));
        ctx.stop();
    }

    fn on_binary(&mut self, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        if !self.token_ok {
            return self.refuse(ctx);
        }
        let env = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                self.metrics
                    .gateway_bad_frames
                    .with_label_values(&[e.kind()])
                    .inc();
                log::warn!("gateway {:?}: ignored a frame: {e}", self.gateway);
                return;
            }
        };
        match (env, &self.gateway) {
            (
                Envelope::Hello {
                    gateway,
                    epoch,
                    resume,
                },
                _,
            ) => {
                self.gateway = Some(gateway.clone());
                let me = Mailbox::new(ctx.address(), Arc::clone(&self.probe));
                self.server.do_send(GatewayHello {
                    gateway,
                    epoch,
                    resume,
                    session_id: self.id,
                    session: me,
                });
            }
            (Envelope::Event { seq, ts, event }, Some(g)) => self.server.do_send(GatewayEvent {
                gateway: g.clone(),
                seq,
                ts,
                event,
            }),
            (Envelope::CommandResult { id, outcome }, Some(_)) => {
                self.server.do_send(GatewayResult { id, outcome })
            }
            (other, _) => {
                // Events before `Hello` come again in the replay after it.
                self.metrics
                    .gateway_bad_frames
                    .with_label_values(&["unexpected"])
                    .inc();
                log::debug!("gateway session: ignored {other:?}");
            }
        }
    }
}

impl Actor for GatewaySession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics
            .connections_open
            .with_label_values(&[LINK_GATEWAY])
            .inc();
        crate::close_on_shutdown(self, ctx, self.shutdown.clone());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics
            .connections_open
            .with_label_values(&[LINK_GATEWAY])
            .dec();
        if let Some(g) = self.gateway.take() {
            self.server.do_send(GatewayGone {
                gateway: g,
                session_id: self.id,
            });
        }
        self.probe.retire();
    }
}

impl Handler<SendEnvelope> for GatewaySession {
    type Result = ();
    fn handle(&mut self, msg: SendEnvelope, ctx: &mut Self::Context) {
        let _h = self.probe.handling("SendEnvelope");
        ctx.binary(msg.0.encode());
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for GatewaySession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let _h = self.probe.handling_unqueued("Frame");
        match msg {
            Ok(ws::Message::Binary(b)) => self.on_binary(&b, ctx),
            Ok(ws::Message::Text(_)) => {
                if !self.token_ok {
                    return self.refuse(ctx);
                }
                self.metrics
                    .gateway_bad_frames
                    .with_label_values(&["text"])
                    .inc();
            }
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(r)) => {
                ctx.close(r);
                ctx.stop();
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!("gateway session: protocol error {e}");
                ctx.stop();
            }
        }
    }
}
