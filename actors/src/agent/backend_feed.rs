//! `BackendLink` in cluster mode (`CLUSTER.md` section 2, "Backend-bound").
//!
//! Every backend-bound packet of every switch is stored in one stream,
//! `sy.backend`, in the order each switch took it. The switch holding the
//! backend's socket reads the stream in order with one ordered consumer and
//! writes to the socket through its usual outbox; every `ack_interval` it
//! purges the stream below what it has handed to the socket (the purge is
//! the acknowledgement: no consumer state to keep). When the backend goes
//! to another switch, that one reads from the first packet not purged:
//! nothing acknowledged is lost, and what is repeated is at most one
//! `ack_interval` of traffic.
//!
//! `Feed` is the bookkeeping (which stream sequences are still in the
//! outbox, what was handed over, what was purged) and the reader task.
//! The reader waits while the outbox is full, so the stream, not memory,
//! holds a backlog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::StreamExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::session::PeerSocket;
use crate::cluster::acks::{Acks, FlowMark};
use crate::cluster::mailbox::stored_packet;
use crate::cluster::{ClusterHandle, Purge, Target};
use crate::wire::Packet;

/// The KV key of the backend's holder, in the cluster bucket.
pub const BACKEND_KEY: &str = "backend";

pub struct Feed {
    pub cluster: ClusterHandle,
    reader: Option<actix::prelude::SpawnHandle>,
    /// What went into the outbox from the stream, and what left it.
    acks: Acks,
    /// Woken when the outbox has room again.
    room: Arc<Notify>,
    /// The reader waits for room (set here, read by the reader).
    paused: Arc<AtomicBool>,
    /// Packets the reader hands over before the actor has taken them:
    /// the outbox pauses the reader while it has less room than this.
    batch: usize,
    /// HTTP requests another switch holds, by `request_id`: where their
    /// `agent_details` goes (bounded; forgotten after the request
    /// timeout, when no one waits any more).
    origins: std::collections::HashMap<String, (String, std::time::Instant)>,
}

/// Requests of other switches remembered at most.
const MAX_ORIGINS: usize = 10_000;

/// Packets handed over at once at most: the reader does not wait for the
/// actor after each one (one wake of the actor takes many).
const MAX_BATCH: usize = 64;

impl Feed {
    /// A feed for an outbox of `outbox_limit` packets.
    pub fn new(cluster: ClusterHandle, outbox_limit: usize) -> Feed {
        Feed {
            cluster,
            reader: None,
            acks: Acks::default(),
            room: Arc::new(Notify::new()),
            paused: Arc::new(AtomicBool::new(false)),
            batch: (outbox_limit / 4).clamp(1, MAX_BATCH),
            origins: std::collections::HashMap::new(),
        }
    }

    /// Whether an outbox holding `len` of `limit` packets takes a whole
    /// batch more (what the reader may have on its way).
    pub fn takes_batch(&self, len: usize, limit: usize) -> bool {
        len + self.batch <= limit
    }

    /// Request `request_id`'s reply goes to switch `origin`.
    pub fn remember_origin(&mut self, request_id: String, origin: String) {
        if self.origins.len() >= MAX_ORIGINS {
            // Full of requests whose answers never came: the oldest go.
            let oldest = self
                .origins
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.origins.remove(&k);
            }
        }
        self.origins
            .insert(request_id, (origin, std::time::Instant::now()));
    }

    /// The switch holding request `request_id`, if another one does.
    pub fn origin_of(&mut self, request_id: &str) -> Option<String> {
        self.origins.remove(request_id).map(|(o, _)| o)
    }

    /// Forgets requests older than `timeout` (their HTTP side answered).
    pub fn forget_origins(&mut self, timeout: std::time::Duration) {
        self.origins.retain(|_, (_, at)| at.elapsed() <= timeout);
    }

    /// The reader is told the outbox is full: it waits for `has_room`.
    pub fn pause(&mut self) {
        self.paused.store(true, Ordering::Release);
    }

    /// The outbox has room: a waiting reader goes on.
    pub fn has_room(&mut self) {
        if self.paused.swap(false, Ordering::AcqRel) {
            self.room.notify_one();
        }
    }

    /// Packet `seq` was read from the stream: whether to take it (a
    /// sequence already taken is not).
    pub fn received(&mut self, seq: u64) -> bool {
        self.acks.read(seq)
    }

    /// The outbox now holds `queued` packets: the others were handed over.
    pub fn settle(&mut self, queued: usize) {
        self.acks.settle(queued);
    }

    /// Acknowledges what the bound socket's transport has taken.
    pub fn purge(&mut self, socket: Option<&PeerSocket>) {
        if let Some(below) = self.acks.tick(flow_mark(socket)) {
            self.cluster.addr.do_send(Purge {
                target: Target::Backend,
                below,
            });
        }
    }

    /// Reads again from a new consumer, past what was taken: after NATS
    /// came back, a consumer of the server that went may be gone with it.
    pub fn restart<A>(&mut self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>> + Handler<FromStream>,
    {
        if let Some(h) = self.reader.take() {
            ctx.cancel_future(h);
            self.paused.store(false, Ordering::Release);
            self.start(ctx);
        }
    }

    /// Stops reading (the socket went): what was not handed over stays in
    /// the stream for the next holder.
    pub fn stop<A: Actor<Context = Context<A>>>(&mut self, ctx: &mut Context<A>) {
        if let Some(h) = self.reader.take() {
            ctx.cancel_future(h);
        }
        // Nothing more is purged: what the socket may not have written
        // goes to the next reader again. It starts from the stream's first
        // packet not purged.
        self.acks = Acks::default();
        self.paused.store(false, Ordering::Release);
    }

    /// Reads the stream from its first packet not purged (or past what
    /// this reader has taken), handing each to the actor as `FromStream`.
    pub fn start<A>(&mut self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>> + Handler<FromStream>,
    {
        if self.reader.is_some() {
            return;
        }
        let deliver_policy = match self.acks.seen() {
            0 => async_nats::jetstream::consumer::DeliverPolicy::All,
            seen => async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seen + 1,
            },
        };
        let stream = self.cluster.link.backend.clone();
        let subject = self.cluster.link.names.backend();
        let room = Arc::clone(&self.room);
        let paused = Arc::clone(&self.paused);
        let in_flight = Arc::new(Semaphore::new(self.batch));
        let metrics = Arc::clone(&self.cluster.metrics);
        let me = ctx.address();
        let task = async move {
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: subject,
                    deliver_policy,
                    ..Default::default()
                })
                .await;
            let mut messages = match consumer {
                Ok(c) => match c.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        log::error!("cluster: cannot read the backend stream: {e}");
                        return;
                    }
                },
                Err(e) => {
                    log::error!("cluster: cannot read the backend stream: {e}");
                    return;
                }
            };
            while let Some(next) = messages.next().await {
                let m = match next {
                    Ok(m) => m,
                    Err(e) => {
                        // The ordered consumer remakes itself after a
                        // gap or a reconnect; it says so here.
                        log::debug!("cluster: backend stream: {e}");
                        continue;
                    }
                };
                let Some(seq) = m.info().ok().map(|i| i.stream_sequence) else {
                    continue;
                };
                let Some(packet) = stored_packet(&m.message.payload) else {
                    metrics
                        .malformed
                        .with_label_values(&["stored_packet"])
                        .inc();
                    log::warn!("cluster: backend stream message {seq} is no packet; skipped");
                    continue;
                };
                metrics.received.with_label_values(&["backend"]).inc();
                let origin = m
                    .message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(crate::cluster::actor::ORIGIN_HEADER))
                    .map(|v| v.as_str().to_string());
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    return;
                };
                // The outbox has no room for a batch: wait until it has.
                // Looked at with a place held, so what is on its way to
                // the actor is the rest of the batch at most; looked at
                // again after each wake (a wake may be an old one).
                while paused.load(Ordering::Acquire) {
                    room.notified().await;
                }
                if !me.connected() {
                    return;
                }
                // Not `send`: no wait for the actor after each packet (the
                // batch's places bound what is on its way).
                me.do_send(FromStream {
                    seq,
                    packet,
                    origin,
                    _taken: permit,
                });
            }
        };
        self.reader = Some(ctx.spawn(actix::fut::wrap_future(task)));
    }
}

/// The bound socket's flow, for an ack tick.
pub fn flow_mark(socket: Option<&PeerSocket>) -> Option<FlowMark> {
    let flow = socket?.session.flow()?;
    let (written, taken) = flow.totals();
    Some(FlowMark {
        flow: Arc::as_ptr(flow) as usize,
        written,
        taken,
    })
}

/// A packet read from the backend stream, for the local backend socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromStream {
    pub seq: u64,
    pub packet: Packet,
    /// The switch holding the HTTP request this packet belongs to.
    pub origin: Option<String>,
    /// The reader's hold on one of its batch's places, given back when
    /// the actor has taken the packet.
    pub _taken: OwnedSemaphorePermit,
}
