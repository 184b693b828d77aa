//! `WebsocketChannel`: the Channel contract over an outbound WebSocket
//! (actix's `awc` client). Binary frames carry the owner's messages.
//!
//! Owns the connection, the lifecycle, and the messages kept while it is
//! not alive. Handles `OpenChannel`, `CloseChannel`, `ChannelSend`,
//! `IsAlive`, `IsClosed` and the connection's frames; tells its owner
//! `ChannelNotice`s.

use std::sync::Arc;
use std::time::Duration;

use actix::io::SinkWrite;
use actix::prelude::*;
use actix_http::ws::{Codec, Frame, Message as WsMessage, ProtocolError};
use bytes::Bytes;
use futures_util::stream::{SplitSink, StreamExt};

use super::{
    ChannelConfig, ChannelNotice, ChannelSend, CloseChannel, IsAlive, IsClosed, Lifecycle, Next,
    OpenChannel, SendOutcome,
};
use crate::metrics::Metrics;
use crate::outbox::Outbox;

type Sink = SplitSink<actix_codec::Framed<awc::BoxedSocket, Codec>, WsMessage>;

pub struct WebsocketChannel {
    url: String,
    token: Option<String>,
    owner: Recipient<ChannelNotice>,
    life: Lifecycle,
    kept: Outbox<Bytes>,
    sink: Option<SinkWrite<WsMessage, Sink>>,
    /// Bumped per connection attempt: late results of older ones are ignored.
    attempt: u64,
    metrics: Arc<Metrics>,
    label: String,
}

impl WebsocketChannel {
    /// `label` names the channel in metrics and logs (the gateway id).
    pub fn new(
        url: impl Into<String>,
        token: Option<String>,
        owner: Recipient<ChannelNotice>,
        config: &ChannelConfig,
        metrics: Arc<Metrics>,
        label: impl Into<String>,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        WebsocketChannel {
            url: url.into(),
            token,
            owner,
            life: Lifecycle::new(config, seed),
            kept: Outbox::new(config.buffer_limit),
            sink: None,
            attempt: 0,
            metrics,
            label: label.into(),
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.attempt += 1;
        let attempt = self.attempt;
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let mut req = client
            .ws(self.url.as_str())
            .max_frame_size(16 * 1024 * 1024);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        ctx.spawn(
            async move { req.connect().await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    if act.life.is_closed() || attempt != act.attempt {
                        return;
                    }
                    match res {
                        Ok((_, framed)) => {
                            let (sink, stream) = framed.split();
                            act.sink = Some(SinkWrite::new(sink, ctx));
                            ctx.add_stream(stream);
                            let notice = act.life.connected();
                            log::info!("channel {}: connected to {}", act.label, act.url);
                            act.owner.do_send(notice);
                            act.flush();
                        }
                        Err(e) => act.failed(format!("cannot connect to {}: {e}", act.url), ctx),
                    }
                }),
        );
    }

    fn failed(&mut self, reason: String, ctx: &mut Context<Self>) {
        if let Some(mut s) = self.sink.take() {
            s.close();
        }
        if self.life.is_closed() {
            return;
        }
        let was_alive = self.life.is_alive();
        match self.life.failed() {
            Next::RetryIn(d) => {
                if was_alive {
                    log::warn!(
                        "channel {}: connection lost ({reason}); retrying",
                        self.label
                    );
                    self.owner.do_send(ChannelNotice::Lost { reason });
                } else {
                    log::info!("channel {}: {reason}; retrying in {d:?}", self.label);
                }
                self.metrics
                    .uplink_reconnects
                    .with_label_values(&[&self.label])
                    .inc();
                ctx.run_later(d, |act, ctx| {
                    if !act.life.is_closed() {
                        act.connect(ctx);
                    }
                });
            }
            Next::GiveUp => {
                log::error!(
                    "channel {}: retry budget spent ({reason}); giving up",
                    self.label
                );
                self.owner
                    .do_send(ChannelNotice::CatastrophicDisconnect { reason });
            }
        }
    }

    fn write(&mut self, msg: Bytes) -> bool {
        match self.sink.as_mut() {
            Some(s) if !s.closed() => s.write(WsMessage::Binary(msg)).is_ok(),
            _ => false,
        }
    }

    fn flush(&mut self) {
        while self.life.is_alive() {
            let Some(m) = self.kept.pop() else { break };
            if !self.write(m.clone()) {
                self.kept.push_front(m);
                break;
            }
        }
        self.buffered_gauge();
    }

    fn keep(&mut self, msg: Bytes) {
        if self.kept.push(msg).is_some() {
            self.metrics
                .uplink_dropped
                .with_label_values(&[&self.label])
                .inc();
        }
        self.buffered_gauge();
    }

    fn buffered_gauge(&self) {
        self.metrics
            .uplink_buffered
            .with_label_values(&[&self.label])
            .set(self.kept.len() as i64);
    }
}

impl Actor for WebsocketChannel {
    type Context = Context<Self>;
}

impl actix::io::WriteHandler<ProtocolError> for WebsocketChannel {
    fn error(&mut self, err: ProtocolError, _: &mut Self::Context) -> Running {
        log::warn!("channel {}: write failed: {err}", self.label);
        Running::Continue
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamHandler<Result<Frame, ProtocolError>> for WebsocketChannel {
    fn handle(&mut self, item: Result<Frame, ProtocolError>, ctx: &mut Context<Self>) {
        match item {
            Ok(Frame::Binary(b)) => self.owner.do_send(ChannelNotice::Inbound(b)),
            Ok(Frame::Text(b)) => self.owner.do_send(ChannelNotice::Inbound(b)),
            Ok(Frame::Ping(p)) => {
                if let Some(s) = self.sink.as_mut() {
                    let _ = s.write(WsMessage::Pong(p));
                }
            }
            Ok(Frame::Close(reason)) => {
                let why = reason
                    .map(|r| format!("closed by peer ({:?})", r.code))
                    .unwrap_or_else(|| "closed by peer".into());
                if self.sink.is_some() {
                    self.failed(why, ctx);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if self.sink.is_some() {
                    self.failed(format!("protocol error: {e}"), ctx);
                }
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // One connection ended; the channel lives on (never the default
        // stop).
        if self.sink.is_some() {
            self.failed("connection ended".into(), ctx);
        }
    }
}

impl Handler<OpenChannel> for WebsocketChannel {
    type Result = ();
    fn handle(&mut self, _: OpenChannel, ctx: &mut Context<Self>) {
        if self.life.open() {
            self.connect(ctx);
        }
    }
}

impl Handler<CloseChannel> for WebsocketChannel {
    type Result = ();
    fn handle(&mut self, _: CloseChannel, ctx: &mut Context<Self>) {
        self.life.close();
        if let Some(mut s) = self.sink.take() {
            let _ = s.write(WsMessage::Close(None));
            s.close();
        }
        self.kept.take_all();
        self.buffered_gauge();
        // The actor stays to answer `IsClosed`; it stops when its owner
        // lets go of it.
        let _ = ctx;
    }
}

impl Handler<ChannelSend> for WebsocketChannel {
    type Result = MessageResult<ChannelSend>;
    fn handle(&mut self, msg: ChannelSend, _: &mut Context<Self>) -> Self::Result {
        if self.life.is_alive() && self.kept.is_empty() && self.write(msg.0.clone()) {
            return MessageResult(SendOutcome::Delivered);
        }
        let outcome = self.life.undeliverable();
        if outcome == SendOutcome::Transient {
            self.keep(msg.0);
            self.flush();
        }
        MessageResult(outcome)
    }
}

impl Handler<IsAlive> for WebsocketChannel {
    type Result = bool;
    fn handle(&mut self, _: IsAlive, _: &mut Context<Self>) -> bool {
        self.life.is_alive()
    }
}

impl Handler<IsClosed> for WebsocketChannel {
    type Result = bool;
    fn handle(&mut self, _: IsClosed, _: &mut Context<Self>) -> bool {
        self.life.is_closed()
    }
}
