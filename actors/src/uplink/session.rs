//! `GatewaySession`: one gateway's WebSocket on `/gateway` (central side,
//! PROTOCOL 5, 1.5).
//!
//! Decodes the gateway's binary envelopes with a byte limit (bad ones are
//! counted and ignored, the connection stays; one over the limit closes it
//! with 1009), hands them to `GatewayServer`, and writes what the server
//! sends back. A session is refused with 1008 as soon as it opens when this
//! switch has no gateway token set, or when the token is missing or wrong.
//! A session speaks for the one gateway name its first `Hello` gave; a
//! `Hello` with another name, or a name the server refuses, closes it with
//! 1008. What a session hands the server is handled before its next frame
//! is read, so one session never has more than one message in the
//! server's mailbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;

use super::gateway::{
    GatewayEvent, GatewayGone, GatewayHello, GatewayRefused, GatewayResult, GatewayServer,
};
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::wire::uplink::{Envelope, UplinkError};

/// Link label of `switchyard_connections_open` for gateway sockets.
pub const LINK_GATEWAY: &str = "gateway";

/// What the upgrade request's token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayToken {
    /// This switch has no gateway token: `/gateway` takes no one.
    NotSet,
    /// Missing or wrong.
    Wrong,
    Ok,
}

/// A gateway session's time and size bounds.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Largest frame (bytes); over it: 1009.
    pub max_frame_bytes: usize,
    /// A session that has not said `Hello` by then is closed with 1008.
    pub hello_timeout: Duration,
    /// How often the switch pings the gateway.
    pub ping_interval: Duration,
    /// Silence (no frame, no pong) after which the session is closed.
    pub ping_timeout: Duration,
}

pub struct GatewaySession {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    server: Mailbox<GatewayServer>,
    token: GatewayToken,
    limits: SessionLimits,
    max_frame_bytes: usize,
    last_heard: Instant,
    peer: String,
    id: u64,
    gateway: Option<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An envelope for the gateway.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendEnvelope(pub Envelope);

/// The server refused this session's claim: close with 1008 and the reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseGateway(pub String);

impl GatewaySession {
    pub fn new(
        metrics: Arc<Metrics>,
        server: Mailbox<GatewayServer>,
        token: GatewayToken,
        limits: SessionLimits,
        peer: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let probe = metrics.probe("GatewaySession", peer.clone());
        GatewaySession {
            metrics,
            probe,
            server,
            token,
            limits,
            max_frame_bytes: limits.max_frame_bytes,
            last_heard: Instant::now(),
            peer,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            gateway: None,
            shutdown,
        }
    }

    fn close(&mut self, code: ws::CloseCode, why: &str, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(why.into()),
        }));
        ctx.stop();
    }

    /// Closes with 1008; the server counts and logs (rate-limited).
    fn refuse(&mut self, reason: &'static str, why: &str, ctx: &mut ws::WebsocketContext<Self>) {
        self.server.do_send(GatewayRefused {
            reason,
            peer: self.peer.clone(),
        });
        self.close(ws::CloseCode::Policy, why, ctx);
    }

    fn on_binary(&mut self, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        let env = match Envelope::decode_limited(bytes, self.max_frame_bytes) {
            Ok(e) => e,
            Err(e) => {
                self.metrics
                    .gateway_bad_frames
                    .with_label_values(&[e.kind()])
                    .inc();
                if let UplinkError::TooLarge(limit) = e {
                    // A frame that claims more than the limit is not a
                    // mistake a gateway of this switch makes.
                    return self.close(
                        ws::CloseCode::Size,
                        &format!("envelope over {limit} bytes"),
                        ctx,
                    );
                }
                log::debug!("gateway {:?}: ignored a frame: {e}", self.gateway);
                return;
            }
        };
        match (env, &self.gateway) {
            (Envelope::Hello { gateway, .. }, Some(bound)) if gateway != *bound => {
                self.refuse(
                    "second_name",
                    "one gateway session speaks for one name",
                    ctx,
                );
            }
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
                let told = self.server.send(GatewayHello {
                    gateway,
                    epoch,
                    resume,
                    session_id: self.id,
                    session: me,
                });
                ctx.wait(told.into_actor(self).map(|_, _, _| ()));
            }
            (Envelope::Event { seq, event, .. }, Some(g)) => {
                // One event in flight per session: the next frame is read
                // once this one is applied, so a flooding gateway fills no
                // mailbox (its bytes wait in its own socket).
                let applied = self.server.send(GatewayEvent {
                    gateway: g.clone(),
                    session_id: self.id,
                    seq,
                    event,
                });
                ctx.wait(applied.into_actor(self).map(|_, _, _| ()));
            }
            (Envelope::CommandResult { id, outcome }, Some(g)) => {
                let told = self.server.send(GatewayResult {
                    gateway: g.clone(),
                    id,
                    outcome,
                });
                ctx.wait(told.into_actor(self).map(|_, _, _| ()));
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
        crate::shutdown::close_on_shutdown(self, ctx, self.shutdown.clone());
        // Refused after the upgrade, before a byte of the peer's is read.
        match self.token {
            GatewayToken::Ok => {}
            GatewayToken::NotSet => self.refuse(
                "token_not_set",
                "this switch takes no gateways (no gateway token set)",
                ctx,
            ),
            GatewayToken::Wrong => self.refuse("bad_token", "gateway token missing or wrong", ctx),
        }
        // A session that never says who it is does not stay.
        ctx.run_later(self.limits.hello_timeout, |act, ctx| {
            if act.gateway.is_none() {
                act.refuse("no_hello", "no hello in time", ctx);
            }
        });
        // Keep-alive: ping, and drop a gateway that went silent.
        let timeout = self.limits.ping_timeout;
        ctx.run_interval(self.limits.ping_interval, move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                act.metrics
                    .gateway_rejected
                    .with_label_values(&["ping_timeout"])
                    .inc();
                log::info!(
                    "gateway {:?} from {}: silent for {:?}, closing",
                    act.gateway,
                    act.peer,
                    act.last_heard.elapsed()
                );
                act.close(ws::CloseCode::Away, "ping timeout", ctx);
            } else {
                ctx.ping(b"");
            }
        });
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

impl Handler<CloseGateway> for GatewaySession {
    type Result = ();
    fn handle(&mut self, msg: CloseGateway, ctx: &mut Self::Context) {
        let _h = self.probe.handling("CloseGateway");
        // The name was never this session's: nothing to give back.
        self.gateway = None;
        self.close(ws::CloseCode::Policy, &msg.0, ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for GatewaySession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let _h = self.probe.handling_unqueued("Frame");
        if self.token != GatewayToken::Ok {
            return;
        }
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Binary(b)) => self.on_binary(&b, ctx),
            Ok(ws::Message::Text(_)) => {
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
            Err(ws::ProtocolError::Overflow) => {
                // The frame's header announced more than the limit; its
                // payload is never read.
                self.metrics
                    .gateway_bad_frames
                    .with_label_values(&["too_large"])
                    .inc();
                self.close(
                    ws::CloseCode::Size,
                    &format!("frame over {} bytes", self.max_frame_bytes),
                    ctx,
                );
            }
            Err(e) => {
                log::debug!("gateway session: protocol error {e}");
                self.close(ws::CloseCode::Protocol, "protocol error", ctx);
            }
        }
    }
}
