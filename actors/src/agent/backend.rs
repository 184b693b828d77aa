//! `BackendLink`: the one link to the backend (PROTOCOL 1.2, 1.4, 1.5).
//!
//! Owns the backend's socket and the ordered bounded outbox of packets
//! waiting for it (its `Delivery`, with the shortcut's state), and the HTTP
//! requests waiting for an `agent_details` answer,
//! keyed by `request_id`. Handles `BackendAlive`, `BackendClosed`,
//! `ToBackend`, `RegisterRequest`, `CancelRequest`, `AgentDetails`,
//! `GetBackendInfo`. Talks to the backend `WsSession`; `Agent`s and the
//! HTTP handlers talk to it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::delivery::{Bound, Delivery, Outcome, Step};
use super::session::{CloseSocket, PeerSocket, WsSession};
use super::shortcut::Relay;
use super::snapshot::StoredPacket;
use super::{wait_for_room, Resume};
use super::{BackendConfig, SessionConfig};
use crate::log_limit::{held_note, LogLimit};
use crate::mailbox::Mailbox;
use crate::metrics::{drop_reason, ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{NetworkManager, Publish};
use crate::outbox::Outbox;
use crate::wire::{Packet, PacketType};

/// The share of the backend outbox (1 in N of its items and bytes) that
/// `log_error` reports may hold while the backend is away.
const LOG_ERROR_SHARE: usize = 4;

pub struct BackendLink {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    /// The backend socket and the outbox in front of it; its shortcut is
    /// open while the socket is bound and the outbox is empty: agent
    /// sessions then write live updates to it directly.
    delivery: Delivery<PeerSocket>,
    pending: HashMap<String, oneshot::Sender<Packet>>,
    /// How often `pending` is swept of requests whose HTTP side is gone.
    request_timeout: std::time::Duration,
    /// Where to announce connects and disconnects (set once the manager
    /// exists: it is started after this link).
    network: Option<Mailbox<NetworkManager>>,
    /// A full outbox drops a packet per packet in: logged once a second.
    overflow_log: LogLimit,
    /// The switch is stopping: HTTP requests waiting for the backend are
    /// answered at once (their reply dropped, which the handler answers
    /// with 503), new ones too.
    closing: bool,
    /// Cluster mode: packets for the backend go through the backend
    /// stream, and this switch reads it while it holds the backend.
    #[cfg(feature = "cluster")]
    feed: Option<super::backend_feed::Feed>,
}

impl BackendLink {
    pub fn new(config: BackendConfig, session: &SessionConfig, metrics: Arc<Metrics>) -> Self {
        let probe = metrics.probe("BackendLink", "backend");
        // `log_error` reports come from any browser: a flood of them may
        // fill a quarter of the outbox, never push submits out.
        let outbox = Outbox::with_bytes(config.outbox_limit, config.outbox_bytes_limit)
            .with_spare_share(LOG_ERROR_SHARE);
        let delivery = Delivery::new(outbox, session.max_in_flight_bytes as u64, session.shortcut)
            .with_spare(|p| p.packet_type == PacketType::LogError);
        BackendLink {
            delivery,
            request_timeout: config.request_timeout(),
            metrics,
            probe,
            pending: HashMap::new(),
            network: None,
            overflow_log: LogLimit::per_second(),
            closing: false,
            #[cfg(feature = "cluster")]
            feed: None,
        }
    }

    pub fn start_link(
        config: BackendConfig,
        session: &SessionConfig,
        metrics: Arc<Metrics>,
    ) -> Mailbox<BackendLink> {
        if !session.shortcut {
            log::info!(
                "shortcut off ([session] shortcut = false): every live update crosses its Agent's or the BackendLink's mailbox"
            );
        }
        let link = BackendLink::new(config, session, metrics);
        let probe = Arc::clone(&link.probe);
        let shortcut = Arc::clone(link.delivery.shortcut());
        Mailbox::new(link.start(), probe).with_shortcut(shortcut)
    }

    /// Announces a backend connecting or going away.
    fn connected_changed(&self) {
        let connected = self.delivery.socket().is_some();
        self.metrics.backend_connected.set(connected as i64);
        if let Some(n) = &self.network {
            n.do_send(Publish(SwitchEvent::Backend {
                ts: crate::clock::now_secs(),
                connected,
            }));
        }
    }

    /// Writes to the backend, or keeps the packet in order until it can
    /// take it (or the next backend connects). In cluster mode: stores it
    /// in the backend stream, which the backend's switch reads.
    fn deliver(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        #[cfg(feature = "cluster")]
        if let Some(feed) = &self.feed {
            let origin = is_request(&packet, |_| true);
            feed.cluster.to_backend(packet, origin);
            return;
        }
        self.deliver_here(packet, ctx);
    }

    /// Writes to this switch's backend socket, or keeps the packet in the
    /// outbox in order until it can take it.
    fn deliver_here(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        let sent = self.with_outbox(|d| d.send(packet));
        let step = self.performed(sent);
        self.follow(step, ctx);
    }

    /// Sends waiting packets, in order, while the backend keeps up.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let step = self.with_outbox(Delivery::drain);
        self.follow(step, ctx);
    }

    fn follow(&mut self, step: Step, ctx: &mut Context<Self>) {
        match step {
            Step::Idle => {}
            Step::WaitForRoom { at } => wait_for_room(&mut self.delivery, &self.probe, at, ctx),
            Step::Lost => {
                log::warn!("backend socket gone without notice; queueing for the next one");
                self.connected_changed();
            }
        }
    }

    /// Runs `f` on the delivery and sets the outbox gauges if the outbox
    /// changed meanwhile.
    fn with_outbox<T>(&mut self, f: impl FnOnce(&mut Delivery<PeerSocket>) -> T) -> T {
        let q = self.delivery.queue();
        let (len, bytes) = (q.len(), q.bytes());
        let out = f(&mut self.delivery);
        let q = self.delivery.queue();
        if (q.len(), q.bytes()) != (len, bytes) {
            self.metrics.backend_outbox_depth.set(q.len() as i64);
            self.metrics.backend_outbox_bytes.set(q.bytes() as i64);
            #[cfg(feature = "cluster")]
            if let Some(feed) = &mut self.feed {
                feed.settle(q.len());
                if feed.takes_batch(q.len(), q.limit()) {
                    feed.has_room();
                }
            }
        }
        out
    }

    /// Counts and logs what keeping a packet refused or pushed out.
    fn performed(&mut self, out: Outcome) -> Step {
        let outbox = self.delivery.queue();
        if let Some(refused) = out.refused {
            self.metrics.dropped(drop_reason::LOG_ERROR_SHARE, 1);
            if let Some(held) = self.overflow_log.admit(std::time::Instant::now()) {
                log::warn!(
                    "backend outbox: `log_error` reports hold their share ({} of {} packets): dropped the newest, for {}{}",
                    outbox.spare(),
                    outbox.limit(),
                    refused.subject_id,
                    held_note(held)
                );
            }
        }
        if let Some(o) = out.overflow {
            self.metrics
                .dropped(drop_reason::BACKEND_OUTBOX_FULL, o.dropped.len() as u64);
            if let Some(held) = self.overflow_log.admit(std::time::Instant::now()) {
                let old = &o.dropped[0];
                log::warn!(
                    "backend outbox full ({} packets, {} bytes at most): dropped its oldest `{}` packet for {}{}",
                    outbox.limit(),
                    outbox.bytes_limit(),
                    old.packet_type.as_str(),
                    old.subject_id,
                    held_note(held)
                );
            }
        }
        out.step
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.delivery.queue().is_empty() {
            log::info!(
                "backend connected: delivering {} queued packets",
                self.delivery.queue().len()
            );
        }
        self.drain(ctx);
    }
}

impl Actor for BackendLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // An HTTP request that went away cancels its entry; should that
        // message be lost, the entry goes at the next sweep all the same.
        let every = self
            .request_timeout
            .max(std::time::Duration::from_millis(100));
        ctx.run_interval(every, |act, _| {
            act.pending.retain(|_, reply| !reply.is_closed());
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

impl Handler<Resume> for BackendLink {
    type Result = ();
    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) {
        // Sent from the transport's side, not through a `Mailbox`.
        let _h = self.probe.handling_unqueued("Resume");
        let step = self.with_outbox(Delivery::resume);
        self.follow(step, ctx);
    }
}

/// A socket said `alive` as `mephisto` (and passed the token check).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendAlive {
    pub session: Mailbox<WsSession>,
}

impl Handler<BackendAlive> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: BackendAlive, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("BackendAlive");
        match self.delivery.bind(PeerSocket::to_backend(msg.session)) {
            Bound::Same => return,
            Bound::Replaced(old) => {
                log::info!("a newer backend socket replaces the current one");
                old.session
                    .do_send(CloseSocket::normal("replaced by a newer backend socket"));
            }
            Bound::New => {
                log::info!("backend connected");
                self.connected_changed();
            }
        }
        #[cfg(feature = "cluster")]
        self.hold_backend(ctx);
        self.flush(ctx);
    }
}

/// The backend's socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendClosed {
    pub session: Mailbox<WsSession>,
}

impl Handler<BackendClosed> for BackendLink {
    type Result = ();
    // The context serves the cluster's hand-over only.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    fn handle(&mut self, msg: BackendClosed, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("BackendClosed");
        if matches!(self.delivery.socket(), Some(s) if s.session.same(&msg.session)) {
            log::warn!("backend disconnected; packets for it wait in the outbox");
            self.delivery.unbind();
            self.connected_changed();
            #[cfg(feature = "cluster")]
            self.let_backend_go(ctx);
        }
    }
}

/// A packet for the backend.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToBackend(pub Packet);

impl Handler<ToBackend> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: ToBackend, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("ToBackend");
        self.deliver(msg.0, ctx);
    }
}

impl Handler<Relay> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: Relay, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("Relay");
        // The ticket is dropped after the packet is delivered or kept.
        self.deliver(msg.packet, ctx);
    }
}

/// An HTTP request sends `packet` to the backend and waits for the
/// `agent_details` carrying `request_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterRequest {
    pub request_id: String,
    pub packet: Packet,
    pub reply: oneshot::Sender<Packet>,
}

impl Handler<RegisterRequest> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: RegisterRequest, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("RegisterRequest");
        if self.closing {
            // Dropping the reply answers the request (503); its packet
            // must not reach a backend later.
            self.metrics.refused(crate::metrics::refusal::SHUTTING_DOWN);
            return;
        }
        self.pending.insert(msg.request_id, msg.reply);
        self.deliver(msg.packet, ctx);
    }
}

/// The HTTP request gave up waiting (timeout or client gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelRequest {
    pub request_id: String,
}

impl Handler<CancelRequest> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: CancelRequest, _: &mut Context<Self>) {
        let _h = self.probe.handling("CancelRequest");
        self.pending.remove(&msg.request_id);
        // Its packet, if it still waits for the backend, must not reach it
        // later: the HTTP request has been answered 408 already.
        let id = msg.request_id.as_str();
        let removed = self.with_outbox(|d| d.remove_where(|p| is_request(p, |r| r == id)));
        if removed > 0 {
            self.metrics
                .dropped(drop_reason::STALE_REQUEST, removed as u64);
            log::info!(
                "request {id}: timed out while waiting for the backend; removed from the outbox"
            );
        }
    }
}

/// The backend's answer to a `register_agent` or `submit_onboarding`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentDetails(pub Packet);

impl Handler<AgentDetails> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: AgentDetails, _: &mut Context<Self>) {
        let _h = self.probe.handling("AgentDetails");
        let packet = msg.0;
        let key = packet
            .data_str("request_id")
            .unwrap_or_else(|| packet.subject_id.clone());
        match self.pending.remove(&key) {
            Some(reply) => {
                if reply.send(packet).is_err() {
                    // The HTTP client went away between the lookup and now.
                    self.metrics
                        .dropped(drop_reason::UNMATCHED_AGENT_DETAILS, 1);
                }
            }
            None => {
                #[cfg(feature = "cluster")]
                if self.forward_details(&key, &packet) {
                    return;
                }
                self.metrics
                    .dropped(drop_reason::UNMATCHED_AGENT_DETAILS, 1);
                log::info!(
                    "agent_details for {key}: no request waits for it (timed out?); dropped"
                );
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendInfo {
    pub connected: bool,
    pub outbox_depth: usize,
    pub pending_requests: usize,
}

#[derive(Message)]
#[rtype(result = "BackendInfo")]
pub struct GetBackendInfo;

impl Handler<GetBackendInfo> for BackendLink {
    type Result = MessageResult<GetBackendInfo>;
    fn handle(&mut self, _: GetBackendInfo, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetBackendInfo");
        MessageResult(BackendInfo {
            connected: self.delivery.socket().is_some(),
            outbox_depth: self.delivery.queue().len(),
            pending_requests: self.pending.len(),
        })
    }
}

/// Names the manager to announce backend connects and disconnects to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachNetwork(pub Mailbox<NetworkManager>);

impl Handler<AttachNetwork> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: AttachNetwork, _: &mut Context<Self>) {
        let _h = self.probe.handling("AttachNetwork");
        self.network = Some(msg.0);
    }
}

/// The switch is stopping: answer every HTTP request waiting for the
/// backend now (each reply dropped: the handler answers 503), refuse new
/// ones, and take their packets out of the outbox (their requests are
/// answered; a backend must not act on them after a restart). Returns how
/// many requests were waiting.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseRequests;

impl Handler<CloseRequests> for BackendLink {
    type Result = usize;
    fn handle(&mut self, _: CloseRequests, _: &mut Context<Self>) -> usize {
        let _h = self.probe.handling("CloseRequests");
        self.closing = true;
        let ids: std::collections::HashSet<String> = self.pending.drain().map(|(k, _)| k).collect();
        if ids.is_empty() {
            return 0;
        }
        self.metrics
            .router_refused
            .with_label_values(&[crate::metrics::refusal::SHUTTING_DOWN])
            .inc_by(ids.len() as u64);
        let removed = self.with_outbox(|d| d.remove_where(|p| is_request(p, |r| ids.contains(r))));
        if removed > 0 {
            self.metrics
                .dropped(drop_reason::STALE_REQUEST, removed as u64);
        }
        log::info!(
            "stopping: {} requests waiting for the backend answered 503",
            ids.len()
        );
        ids.len()
    }
}

/// The outbox, in order, for the state file (a graceful stop).
#[derive(Message)]
#[rtype(result = "Vec<StoredPacket>")]
pub struct ExportOutbox {
    pub now_secs: f64,
}

impl Handler<ExportOutbox> for BackendLink {
    type Result = MessageResult<ExportOutbox>;
    fn handle(&mut self, msg: ExportOutbox, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("ExportOutbox");
        MessageResult(
            self.delivery
                .queue()
                .iter()
                .map(|p| StoredPacket::of(p, msg.now_secs))
                .collect(),
        )
    }
}

/// Packets a previous run kept for the backend: they go before anything
/// kept since (sent at start, before the switch takes input).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreOutbox(pub Vec<Packet>);

impl Handler<RestoreOutbox> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: RestoreOutbox, ctx: &mut Context<Self>) {
        let _h = self.probe.handling("RestoreOutbox");
        let newer = self.with_outbox(Delivery::take_all);
        for p in msg.0.into_iter().chain(newer) {
            let kept = self.with_outbox(|d| d.keep(p));
            let _ = self.performed(kept);
        }
        self.drain(ctx);
    }
}

/// A request's packet (`register_agent`, `submit_onboarding`) whose
/// `request_id` `matches`.
fn is_request(p: &Packet, matches: impl Fn(&str) -> bool) -> bool {
    matches!(
        p.packet_type,
        PacketType::RegisterAgent | PacketType::SubmitOnboarding
    ) && p.data_str("request_id").is_some_and(|id| matches(&id))
}

/// Cluster mode (`CLUSTER.md`, "Backend-bound"): this switch's part of
/// the one backend of the cluster.
#[cfg(feature = "cluster")]
mod cluster_mode {
    use super::*;
    use crate::agent::backend_feed::{Feed, FromStream, BACKEND_KEY};
    use crate::cluster::ClusterHandle;
    use futures_util::StreamExt;

    /// Who holds the backend, in the cluster bucket.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Holder {
        owner: String,
        since: f64,
    }

    impl BackendLink {
        /// A backend socket is bound here: this switch holds the backend
        /// (the newest socket wins, as on one switch; the switch that
        /// held it sees the lease change and closes its socket), and
        /// reads the backend stream.
        pub(super) fn hold_backend(&mut self, ctx: &mut Context<Self>) {
            let Some(feed) = &mut self.feed else {
                return;
            };
            let lease = Holder {
                owner: feed.cluster.node.clone(),
                since: crate::clock::now_secs(),
            };
            let store = feed.cluster.link.cluster.clone();
            feed.start(ctx);
            if let Ok(body) = serde_json::to_vec(&lease) {
                // Not tied to this actor: the lease is written even if the
                // link stops meanwhile.
                actix::spawn(async move {
                    if let Err(e) = store.put(BACKEND_KEY, body.into()).await {
                        log::warn!("cluster: cannot record the backend's holder: {e}");
                    }
                });
            }
        }

        /// The backend socket went: stop reading; what was not handed
        /// over waits in the stream for the next holder.
        /// `agent_details` for a request another switch holds: sent to
        /// it. Whether the request was another switch's.
        pub(super) fn forward_details(&mut self, request_id: &str, packet: &Packet) -> bool {
            let Some(feed) = &mut self.feed else {
                return false;
            };
            let Some(origin) = feed.origin_of(request_id) else {
                return false;
            };
            let client = feed.cluster.link.client.clone();
            let subject = feed.cluster.link.names.node_details(&origin);
            let body: bytes::Bytes = packet.clone().to_text(crate::clock::now_secs()).into();
            actix::spawn(async move {
                // Core NATS: the request waits on that switch now; lost,
                // it is answered 408 there, as on one switch.
                if let Err(e) = client.publish(subject, body).await {
                    log::warn!("cluster: agent_details for switch {origin} not sent: {e}");
                }
            });
            true
        }

        pub(super) fn let_backend_go(&mut self, ctx: &mut Context<Self>) {
            if let Some(feed) = &mut self.feed {
                feed.stop(ctx);
                // The stream keeps these; the next holder reads them.
                let _ = self.with_outbox(Delivery::take_all);
            }
        }
    }

    /// Makes this link a member of the cluster (once, at start).
    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct AttachCluster(pub ClusterHandle);

    impl Handler<AttachCluster> for BackendLink {
        type Result = ();
        fn handle(&mut self, msg: AttachCluster, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("AttachCluster");
            let every = msg.0.config.ack_interval();
            let store = msg.0.link.cluster.clone();
            let client = msg.0.link.client.clone();
            let details = msg.0.link.names.node_details(&msg.0.node);
            let limit = self.delivery.queue().limit();
            self.feed = Some(Feed::new(msg.0, limit));
            ctx.run_interval(every, |act, _| {
                let timeout = act.request_timeout;
                if let Some(feed) = &mut act.feed {
                    feed.purge(act.delivery.socket());
                    feed.forget_origins(timeout);
                }
            });
            // `agent_details` for this switch's HTTP requests, from the
            // switch holding the backend.
            ctx.spawn(
                async move { client.subscribe(details).await }
                    .into_actor(self)
                    .map(|sub, _, ctx| match sub {
                        Ok(s) => {
                            ctx.add_stream(s);
                        }
                        Err(e) => log::error!("cluster: cannot hear agent_details: {e}"),
                    }),
            );
            // Who holds the backend, as it changes.
            ctx.spawn(
                async move { store.watch(BACKEND_KEY).await }
                    .into_actor(self)
                    .map(|watch, _, ctx| match watch {
                        Ok(w) => {
                            ctx.add_stream(w.filter_map(|e| async move { e.ok() }));
                        }
                        Err(e) => log::error!("cluster: cannot watch the backend's holder: {e}"),
                    }),
            );
        }
    }

    impl StreamHandler<async_nats::jetstream::kv::Entry> for BackendLink {
        fn handle(&mut self, entry: async_nats::jetstream::kv::Entry, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("BackendHolder");
            let Some(feed) = &self.feed else {
                return;
            };
            let holder = (entry.value.len() <= 1024)
                .then(|| serde_json::from_slice::<Holder>(&entry.value).ok())
                .flatten();
            let Some(holder) = holder else {
                if !entry.value.is_empty() {
                    feed.cluster
                        .metrics
                        .malformed
                        .with_label_values(&["backend_holder"])
                        .inc();
                }
                return;
            };
            if holder.owner == feed.cluster.node {
                return;
            }
            if let Some(old) = self.delivery.socket().cloned() {
                self.delivery.unbind();
                log::info!(
                    "the backend connected to switch {}; closing its socket here",
                    holder.owner
                );
                old.session.do_send(CloseSocket::normal(
                    "replaced by a newer backend socket on another switch",
                ));
                self.connected_changed();
                self.let_backend_go(ctx);
            }
        }

        fn finished(&mut self, _: &mut Context<Self>) {
            log::warn!("cluster: the watch on the backend's holder ended");
        }
    }

    /// NATS came back: read the backend stream with a new consumer.
    impl Handler<crate::cluster::CatchUp> for BackendLink {
        type Result = ();
        fn handle(&mut self, _: crate::cluster::CatchUp, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("CatchUp");
            if let Some(feed) = &mut self.feed {
                feed.restart(ctx);
            }
        }
    }

    /// `agent_details` sent here by the switch holding the backend.
    impl StreamHandler<async_nats::Message> for BackendLink {
        fn handle(&mut self, msg: async_nats::Message, ctx: &mut Context<Self>) {
            match crate::cluster::mailbox::stored_packet(&msg.payload) {
                Some(p) if p.packet_type == PacketType::AgentDetails => {
                    <Self as Handler<AgentDetails>>::handle(self, AgentDetails(p), ctx);
                }
                _ => {
                    if let Some(feed) = &self.feed {
                        feed.cluster
                            .metrics
                            .malformed
                            .with_label_values(&["agent_details"])
                            .inc();
                    }
                }
            }
        }

        fn finished(&mut self, _: &mut Context<Self>) {}
    }

    impl Handler<FromStream> for BackendLink {
        type Result = ();
        fn handle(&mut self, msg: FromStream, ctx: &mut Context<Self>) {
            let _h = self.probe.handling("FromStream");
            if let Some(feed) = &mut self.feed {
                if !feed.received(msg.seq) {
                    return;
                }
                if let Some(origin) = msg.origin {
                    if origin != feed.cluster.node {
                        if let Some(id) = msg.packet.data_str("request_id") {
                            feed.remember_origin(id, origin);
                        }
                    }
                }
            }
            self.deliver_here(msg.packet, ctx);
            let q = self.delivery.queue();
            let (len, limit) = (q.len(), q.limit());
            if let Some(feed) = &mut self.feed {
                feed.settle(len);
                if !feed.takes_batch(len, limit) {
                    feed.pause();
                }
            }
        }
    }
}

#[cfg(feature = "cluster")]
pub use cluster_mode::AttachCluster;
