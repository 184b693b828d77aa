//! `Cluster`: this switch's member of the cluster (`CLUSTER.md` section
//! 2, "Actors"). One per process, on the System arbiter (the NATS client's
//! task lives on the runtime that connected it, and that one lives as long
//! as the process).
//!
//! Owns the publish window (every packet this switch stores in JetStream,
//! until its PubAck), the membership (heartbeats on `sy.ctl.hb`), and the
//! purges that acknowledge what a switch has written to its sockets.
//! Handles `Publish`, `Purge`, `GetClusterInfo`, and its own timers and
//! heartbeat subscription.
//!
//! Publishing keeps order without holding the actor: the actor numbers
//! each packet and hands it to one sending task, which publishes one after
//! another on the connection (stream order = publish order) and leaves
//! each acknowledgement to a task of its own, so a full acknowledgement
//! window in the client never blocks the sending (the deadlock of
//! `CLUSTER.md` section 1, pitfall 1).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::config::ClusterConfig;
use super::link::{self, Link, LinkError};
use super::membership::{Heard, Membership};
use super::metrics::ClusterMetrics;
use super::room::WindowRoom;
use super::statuses;
use super::window::PublishWindow;
use futures_util::StreamExt;

/// Largest heartbeat read; anything longer is not one of ours.
const MAX_HEARTBEAT_BYTES: usize = 1024;

/// Which stream a publish goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `sy.backend`: read in order by the switch holding the backend.
    Backend,
    /// `sy.mbox.<agent>`: the agent's durable queue.
    Mailbox(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Backend => "backend",
            Target::Mailbox(_) => "mailbox",
        }
    }
}

struct Outgoing {
    kind: &'static str,
    subject: String,
    payload: Bytes,
    /// Carries `Sy-Origin`: this switch holds the HTTP request the
    /// packet belongs to.
    origin: bool,
}

/// One publish for the sending task: its window sequence and id.
struct Send {
    n: u64,
    id: String,
    subject: String,
    payload: Bytes,
    origin: Option<String>,
}

/// The header naming the switch that holds an HTTP request's reply.
pub const ORIGIN_HEADER: &str = "Sy-Origin";

/// What every switch says once a heartbeat interval.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub node: String,
    pub boot: u64,
    /// Agents the switch holds, for dashboards.
    #[serde(default)]
    pub agents: u64,
    /// Whether it holds the backend's socket.
    #[serde(default)]
    pub has_backend: bool,
}

impl Heartbeat {
    /// A heartbeat as read from `sy.ctl.hb`: anything longer than one of
    /// ours, or not one, is None.
    pub fn parse(bytes: &[u8]) -> Option<Heartbeat> {
        super::parse_bounded(bytes, MAX_HEARTBEAT_BYTES)
    }
}

/// One switch of the cluster, as its last heartbeat told.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SwitchInfo {
    pub node: String,
    pub agents: u64,
    pub has_backend: bool,
    /// This switch.
    pub me: bool,
}

/// A cluster as this switch sees it, for dashboards and tests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterInfo {
    pub node: String,
    pub connected: bool,
    pub nodes: usize,
    pub publish_pending: usize,
    /// Every live switch, this one included, by name.
    pub switches: Vec<SwitchInfo>,
}

pub struct Cluster {
    link: Link,
    node: String,
    boot: u64,
    config: ClusterConfig,
    metrics: Arc<ClusterMetrics>,
    switch_metrics: Arc<crate::metrics::Metrics>,
    membership: Membership,
    /// What each live switch's last heartbeat said (bounded by the
    /// membership: a switch it does not track is not kept).
    told: std::collections::BTreeMap<String, (u64, bool)>,
    window: PublishWindow<Outgoing>,
    /// Past a full window, in arrival order (bounded by the window's size
    /// again; past that, counted and dropped).
    waiting: VecDeque<Outgoing>,
    room: Arc<WindowRoom>,
    sender: mpsc::UnboundedSender<Send>,
    connected: bool,
    /// A publish failed: send every unacknowledged one again on the next
    /// tick while connected.
    retry_due: bool,
    sent_at: std::collections::HashMap<u64, Instant>,
    /// Told when another switch takes one of this switch's agents.
    directory: Option<crate::mailbox::CountedRecipient<AgentMoved>>,
    /// Asked for this switch's agents' statuses.
    statuses: Option<crate::mailbox::CountedRecipient<LocalStatuses>>,
    /// Told of agents this switch adopts from a switch gone down.
    adopt: Option<crate::mailbox::CountedRecipient<AdoptAgent>>,
    /// Told to have every local agent read its mailbox again.
    catch_up: Option<crate::mailbox::CountedRecipient<CatchUp>>,
}

/// The handle the rest of the switch holds.
#[derive(Clone)]
pub struct ClusterHandle {
    pub addr: Addr<Cluster>,
    pub link: Link,
    pub node: String,
    pub config: ClusterConfig,
    pub metrics: Arc<ClusterMetrics>,
    /// Whether the publish window takes more: sessions pause reading
    /// their sockets while it does not.
    pub room: Arc<WindowRoom>,
}

impl ClusterHandle {
    /// Stores a packet in its agent's mailbox (`sy.mbox.<agent>`), read by
    /// whichever switch holds the agent. Serialised here, on the sender's
    /// thread, not in the one `Cluster` actor.
    pub fn to_mailbox(&self, packet: crate::wire::Packet) {
        self.store(packet, false, Target::Mailbox);
    }

    /// Stores a packet in the backend stream, read by whichever switch
    /// holds the backend; `origin`: an HTTP request's packet whose reply
    /// this switch waits for.
    pub fn to_backend(&self, packet: crate::wire::Packet, origin: bool) {
        self.store(packet, origin, |_| Target::Backend);
    }

    /// Serialises `packet` and hands it to the `Cluster` actor for the
    /// stream `target` names from the packet's subject.
    fn store(&self, mut packet: crate::wire::Packet, origin: bool, target: fn(String) -> Target) {
        let payload = packet.to_text(crate::clock::now_secs()).into();
        self.addr.do_send(Publish {
            target: target(packet.subject_id),
            payload,
            origin,
        });
    }
}

impl Cluster {
    /// Connects to NATS, makes the shared objects and starts the actor on
    /// the current arbiter. An unreachable server or one without
    /// JetStream is an error: the switch does not start half a member.
    pub async fn join(
        config: ClusterConfig,
        node: String,
        switch_metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<ClusterHandle, LinkError> {
        config.check().map_err(LinkError::Config)?;
        let metrics = Arc::new(
            ClusterMetrics::register(&switch_metrics.registry)
                .map_err(|e| LinkError::Config(format!("cluster metrics: {e}")))?,
        );
        // The actor is made after the connection; the connection's events
        // reach it through this slot once it exists.
        let slot: Arc<Mutex<Option<Recipient<LinkChanged>>>> = Arc::new(Mutex::new(None));
        let events_slot = Arc::clone(&slot);
        let gauge = metrics.connected.clone();
        let link = link::connect(&config, &node, move |event| {
            match event {
                link::LinkEvent::Up => gauge.set(1),
                link::LinkEvent::Down => gauge.set(0),
                link::LinkEvent::Lagged => {}
            }
            if let Some(r) = events_slot.lock().ok().and_then(|s| s.clone()) {
                r.do_send(LinkChanged { event });
            }
        })
        .await?;
        metrics.connected.set(1);
        // A boot number no earlier process of this node had: the time.
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(WindowRoom::default());
        let addr = Cluster::create({
            let room = Arc::clone(&room);
            let link = link.clone();
            let node = node.clone();
            let config = config.clone();
            let metrics = Arc::clone(&metrics);
            move |ctx| {
                spawn_sender(link.js.clone(), rx, ctx.address());
                Cluster {
                    membership: Membership::new(&node, config.node_timeout(), config.max_nodes),
                    told: std::collections::BTreeMap::new(),
                    window: PublishWindow::new(&node, boot, config.publish_window),
                    waiting: VecDeque::new(),
                    room,
                    sender: tx,
                    connected: true,
                    retry_due: false,
                    sent_at: std::collections::HashMap::new(),
                    directory: None,
                    statuses: None,
                    adopt: None,
                    catch_up: None,
                    link,
                    node,
                    boot,
                    config,
                    metrics,
                    switch_metrics,
                }
            }
        });
        if let Ok(mut s) = slot.lock() {
            *s = Some(addr.clone().recipient());
        }
        log::info!(
            "cluster: joined as {node} (prefix {}, {} replica(s))",
            config.prefix,
            config.replicas
        );
        Ok(ClusterHandle {
            addr,
            link,
            node,
            config,
            metrics,
            room,
        })
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut down = Vec::new();
        for (node, _) in self.membership.expire(now) {
            log::warn!("cluster: switch {node} went silent; counted down");
            self.metrics.nodes_down.inc();
            down.push(node);
        }
        if !down.is_empty() && self.membership.adopts() {
            self.adopt_agents_of(down, ctx);
        }
        self.metrics.nodes.set(self.membership.count() as i64);
        self.told.retain(|node, _| self.membership.is_live(node));
        let hb = Heartbeat {
            node: self.node.clone(),
            boot: self.boot,
            agents: self.local_agents(),
            has_backend: self.switch_metrics.backend_connected.get() == 1,
        };
        let Ok(body) = serde_json::to_vec(&hb) else {
            return;
        };
        let client = self.link.client.clone();
        let subject = self.link.names.heartbeats();
        ctx.spawn(
            async move {
                // Core NATS: a lost heartbeat is the next one's job.
                let _ = client.publish(subject, body.into()).await;
            }
            .into_actor(self),
        );
    }

    fn heard(&mut self, msg: async_nats::Message, ctx: &mut Context<Self>) {
        let Some(hb) = Heartbeat::parse(&msg.payload) else {
            self.metrics
                .malformed
                .with_label_values(&["heartbeat"])
                .inc();
            log::warn!(
                "cluster: a heartbeat of {} bytes not understood; skipped",
                msg.payload.len()
            );
            return;
        };
        let heard = self.membership.heard(&hb.node, hb.boot, Instant::now());
        if !matches!(heard, Heard::Refused | Heard::Me) {
            self.told
                .insert(hb.node.clone(), (hb.agents, hb.has_backend));
        }
        match heard {
            Heard::Joined => log::info!("cluster: switch {} joined", hb.node),
            Heard::Restarted { .. } => {
                log::warn!("cluster: switch {} restarted", hb.node);
                self.metrics.nodes_down.inc();
                // Its agents went with its previous process.
                if self.membership.adopts() {
                    self.adopt_agents_of(vec![hb.node.clone()], ctx);
                }
            }
            Heard::Refused => {
                self.metrics
                    .malformed
                    .with_label_values(&["node_limit"])
                    .inc();
            }
            Heard::Alive | Heard::Me => {}
        }
        self.metrics.nodes.set(self.membership.count() as i64);
    }

    fn take(&mut self, out: Outgoing) {
        // Cheap copies (`Bytes`), taken before the window owns the packet.
        let (subject, payload, origin) = (out.subject.clone(), out.payload.clone(), out.origin);
        match self.window.push(out) {
            Ok(n) => {
                let send = Send {
                    n,
                    id: self.window.id(n),
                    subject,
                    payload,
                    origin: origin.then(|| self.node.clone()),
                };
                self.sent_at.insert(n, Instant::now());
                let _ = self.sender.send(send);
                if self.window.is_full() {
                    // Pause the senders now, before anything has to wait.
                    self.room.set_full(true);
                }
            }
            Err(out) => {
                self.room.set_full(true);
                if self.waiting.len() >= self.config.publish_window {
                    self.switch_metrics
                        .dropped(crate::metrics::drop_reason::CLUSTER_WINDOW_FULL, 1);
                    log::warn!(
                        "cluster: publish window and its queue full ({} each); a {} packet dropped",
                        self.config.publish_window,
                        out.kind
                    );
                } else {
                    self.waiting.push_back(out);
                }
            }
        }
        self.metrics
            .publish_window
            .set(self.window.pending() as i64);
    }

    /// Agents this switch holds (its live `Agent` actors).
    fn local_agents(&self) -> u64 {
        self.switch_metrics
            .actors_live
            .with_label_values(&["Agent"])
            .get()
            .max(0) as u64
    }

    /// Sends every unacknowledged publish again, in order, with its id.
    fn retry(&mut self) {
        if !self.retry_due || !self.connected {
            return;
        }
        self.retry_due = false;
        for (n, o) in self.window.unacked() {
            self.metrics.publish_retries.inc();
            let _ = self.sender.send(Send {
                n,
                id: self.window.id(n),
                subject: o.subject.clone(),
                payload: o.payload.clone(),
                origin: o.origin.then(|| self.node.clone()),
            });
        }
    }
}

/// What JetStream answered to a publish.
type AckOutcome = Result<
    async_nats::jetstream::publish::PublishAck,
    (async_nats::jetstream::context::PublishErrorKind, String),
>;

/// The answer to publish `n` of the window.
type AckResult = (u64, AckOutcome);

/// The one sending task: publishes in the order it is given. Each
/// acknowledgement is awaited by a second task, which reports them to the
/// actor in batches (one message for every acknowledgement ready at once,
/// not one task and one message per publish). The two are apart so that
/// the sender, waiting for room in the client's acknowledgement window,
/// never stops the acknowledgements that make that room (`CLUSTER.md`
/// section 1, pitfall 1).
fn spawn_sender(
    js: async_nats::jetstream::Context,
    mut rx: mpsc::UnboundedReceiver<Send>,
    me: Addr<Cluster>,
) {
    let (pending_tx, mut pending_rx) = mpsc::unbounded_channel();
    actix::spawn(async move {
        while let Some(s) = rx.recv().await {
            let mut publish = PublishMessage::build().message_id(&s.id).payload(s.payload);
            if let Some(origin) = &s.origin {
                publish = publish.header(ORIGIN_HEADER, origin.as_str());
            }
            let n = s.n;
            let ack = match js.send_publish(s.subject, publish).await {
                Ok(ack) => futures_util::future::Either::Left(async move {
                    (n, ack.await.map_err(|e| (e.kind(), e.to_string())))
                }),
                Err(e) => futures_util::future::Either::Right(std::future::ready((
                    n,
                    Err((e.kind(), e.to_string())),
                ))),
            };
            if pending_tx.send(ack).is_err() {
                break;
            }
        }
    });
    actix::spawn(async move {
        use futures_util::stream::FuturesUnordered;
        use futures_util::FutureExt;
        let mut waiting = FuturesUnordered::new();
        let mut sender_gone = false;
        loop {
            if sender_gone && waiting.is_empty() {
                break;
            }
            tokio::select! {
                next = pending_rx.recv(), if !sender_gone => match next {
                    Some(ack) => waiting.push(ack),
                    // The sender ended (the switch stops): the
                    // acknowledgements on their way are still awaited.
                    None => sender_gone = true,
                },
                Some(first) = waiting.next(), if !waiting.is_empty() => {
                    let mut batch: Vec<AckResult> = vec![first];
                    while let Some(Some(more)) = waiting.next().now_or_never() {
                        batch.push(more);
                    }
                    me.do_send(Acked(batch));
                }
            }
        }
    });
}

impl Actor for Cluster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.heartbeat(ctx);
        ctx.run_interval(self.config.heartbeat(), |act, ctx| act.heartbeat(ctx));
        ctx.run_interval(Duration::from_millis(500), |act, _| act.retry());
        for subject in [self.link.names.heartbeats(), self.link.names.statuses()] {
            let client = self.link.client.clone();
            ctx.wait(
                async move { client.subscribe(subject).await }
                    .into_actor(self)
                    .map(|sub, _, ctx| match sub {
                        Ok(sub) => {
                            ctx.add_stream(sub);
                        }
                        Err(e) => log::error!("cluster: cannot subscribe: {e}"),
                    }),
            );
        }
    }
}

impl StreamHandler<async_nats::Message> for Cluster {
    fn handle(&mut self, msg: async_nats::Message, ctx: &mut Context<Self>) {
        if msg.subject.as_str() == self.link.names.statuses() {
            self.asked_statuses(msg, ctx);
        } else {
            self.heard(msg, ctx);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The client resubscribes across reconnects; the stream ends only
        // when the client is gone.
        log::warn!("cluster: heartbeat subscription ended");
    }
}

/// The NATS connection went, came back, or dropped messages.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkChanged {
    pub event: link::LinkEvent,
}

impl Handler<LinkChanged> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: LinkChanged, _: &mut Context<Self>) {
        match msg.event {
            link::LinkEvent::Down => self.connected = false,
            link::LinkEvent::Up => {
                self.connected = true;
                if self.window.pending() > 0 {
                    // What was sent into the dead connection may be lost:
                    // send it again, JetStream keeps one copy per id.
                    self.retry_due = true;
                    self.retry();
                }
            }
            link::LinkEvent::Lagged => {}
        }
        // Live copies published while this switch was away (or dropped by
        // its client) are read back from the mailboxes.
        if msg.event != link::LinkEvent::Down {
            if let Some(c) = &self.catch_up {
                c.do_send(CatchUp);
            }
        }
    }
}

/// Live copies may have been missed (NATS came back, or the client
/// dropped some): every local agent reads its mailbox past what it has
/// seen.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct CatchUp;

/// A packet to store in a stream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub target: Target,
    pub payload: Bytes,
    /// The packet is an HTTP request's (`register_agent`,
    /// `submit_onboarding`) whose reply this switch waits for.
    pub origin: bool,
}

impl Handler<Publish> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        let subject = match &msg.target {
            Target::Backend => self.link.names.backend(),
            Target::Mailbox(agent) => self.link.names.mailbox(agent),
        };
        self.take(Outgoing {
            kind: msg.target.kind(),
            subject,
            payload: msg.payload,
            origin: msg.origin,
        });
    }
}

/// Acknowledgements that came in together.
#[derive(Message)]
#[rtype(result = "()")]
struct Acked(Vec<AckResult>);

/// JetStream's "maximum messages per subject exceeded": an agent's mailbox
/// is full.
const MAILBOX_FULL: &str = "10077";

impl Handler<Acked> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: Acked, ctx: &mut Context<Self>) {
        for (n, result) in msg.0 {
            self.acked(n, result, ctx);
        }
        self.refill();
        self.metrics
            .publish_window
            .set(self.window.pending() as i64);
    }
}

impl Cluster {
    fn acked(&mut self, n: u64, result: AckOutcome, ctx: &mut Context<Self>) {
        match result {
            Ok(ack) => {
                if let Some(at) = self.sent_at.remove(&n) {
                    self.metrics
                        .js_ack_seconds
                        .observe(at.elapsed().as_secs_f64());
                }
                if ack.duplicate {
                    self.metrics.duplicate_acks.inc();
                }
                if let Some(o) = self.window.ack(n) {
                    self.metrics.published.with_label_values(&[o.kind]).inc();
                }
            }
            Err((PublishErrorKind::MaxPayloadExceeded, e)) => {
                // Sending it again cannot help.
                self.sent_at.remove(&n);
                if let Some(o) = self.window.ack(n) {
                    self.switch_metrics
                        .dropped(crate::metrics::drop_reason::CLUSTER_TOO_LARGE, 1);
                    log::warn!(
                        "cluster: a {} packet of {} bytes is larger than NATS takes ({e}); dropped",
                        o.kind,
                        o.payload.len()
                    );
                }
            }
            Err((_, e)) if e.contains(MAILBOX_FULL) => self.mailbox_full(n, ctx),
            Err((_, e)) => {
                if !self.retry_due {
                    log::warn!("cluster: publish not acknowledged ({e}); will send again");
                }
                self.retry_due = true;
            }
        }
    }

    /// Publishes waiting for room in the window go in; once it has
    /// drained to half, the paused sockets read again (half: they resume
    /// into room for a burst, not into the next full window).
    fn refill(&mut self) {
        while !self.window.is_full() {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.take(next);
        }
        if self.waiting.is_empty() && self.window.pending() <= self.config.publish_window / 2 {
            self.room.set_full(false);
        }
    }

    /// An agent's mailbox is full (PROTOCOL 1.3: past the bound the
    /// oldest packet goes, counted and reported to the backend): its
    /// oldest is purged and the publish sent again.
    fn mailbox_full(&mut self, n: u64, ctx: &mut Context<Self>) {
        let Some(subject) = self
            .window
            .unacked()
            .find(|(m, _)| *m == n)
            .map(|(_, o)| o.subject.clone())
        else {
            return;
        };
        self.switch_metrics
            .dropped(crate::metrics::drop_reason::AGENT_QUEUE_FULL, 1);
        log::warn!(
            "cluster: mailbox {subject} full ({} packets); its oldest dropped",
            link::MAILBOX_LIMIT
        );
        let agent = subject
            .rsplit('.')
            .next()
            .and_then(super::names::id_of)
            .unwrap_or_default();
        let mut report = crate::wire::Packet::new(
            crate::wire::PacketType::LogError,
            agent.clone(),
            serde_json::json!({
                "error_type": "agent-queue-overflow",
                "text": format!(
                    "switchyard: agent {agent} had {} undelivered packets; dropped the oldest",
                    link::MAILBOX_LIMIT
                ),
            }),
        );
        let payload: Bytes = report.to_text(crate::clock::now_secs()).into();
        let stream = self.link.mailboxes.clone();
        ctx.spawn(
            async move {
                let _ = stream
                    .purge()
                    .filter(subject)
                    .keep((link::MAILBOX_LIMIT - 1) as u64)
                    .await;
            }
            .into_actor(self)
            .map(move |(), act, _| {
                act.retry_due = true;
                act.retry();
                act.take(Outgoing {
                    kind: "backend",
                    subject: act.link.names.backend(),
                    payload,
                    origin: false,
                });
            }),
        );
    }
}

/// Acknowledge what a switch wrote to a socket: delete the target's
/// messages below `below` (the purge is the ack, `CLUSTER.md`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Purge {
    pub target: Target,
    pub below: u64,
}

impl Handler<Purge> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: Purge, ctx: &mut Context<Self>) {
        let (stream, subject) = match &msg.target {
            Target::Backend => (self.link.backend.clone(), self.link.names.backend()),
            Target::Mailbox(agent) => (self.link.mailboxes.clone(), self.link.names.mailbox(agent)),
        };
        let below = msg.below;
        ctx.spawn(
            async move {
                if let Err(e) = stream.purge().filter(subject).sequence(below).await {
                    // The next purge covers this one.
                    log::debug!("cluster: purge below {below} failed: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

#[derive(Message)]
#[rtype(result = "ClusterInfo")]
pub struct GetClusterInfo;

impl Handler<GetClusterInfo> for Cluster {
    type Result = MessageResult<GetClusterInfo>;
    fn handle(&mut self, _: GetClusterInfo, _: &mut Context<Self>) -> Self::Result {
        let mut switches: Vec<SwitchInfo> = self
            .membership
            .others()
            .map(|node| {
                let (agents, has_backend) = self.told.get(node).copied().unwrap_or_default();
                SwitchInfo {
                    node: node.to_string(),
                    agents,
                    has_backend,
                    me: false,
                }
            })
            .collect();
        switches.push(SwitchInfo {
            node: self.node.clone(),
            agents: self.local_agents(),
            has_backend: self.switch_metrics.backend_connected.get() == 1,
            me: true,
        });
        switches.sort_by(|a, b| a.node.cmp(&b.node));
        MessageResult(ClusterInfo {
            node: self.node.clone(),
            connected: self.connected,
            nodes: self.membership.count(),
            publish_pending: self.window.pending(),
            switches,
        })
    }
}

/// A graceful stop: what was published is flushed to the server, then the
/// heartbeats stop (the others count this switch down after their node
/// timeout, as for any silent switch).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Cluster {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        let client = self.link.client.clone();
        Box::pin(
            async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                log::info!(
                    "cluster: {} left ({} publishes unacknowledged)",
                    act.node,
                    act.window.pending()
                );
                ctx.stop();
            }),
        )
    }
}

/// Agent `agent_id` is now held by switch `owner` (another one): the
/// directory lets its local agent of that id go.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AgentMoved {
    pub agent_id: String,
    pub owner: String,
}

/// Names the directory to tell of agents taken by other switches and to
/// ask for its agents' statuses, and starts watching the agents' owners.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachDirectory {
    pub moved: crate::mailbox::CountedRecipient<AgentMoved>,
    pub statuses: crate::mailbox::CountedRecipient<LocalStatuses>,
    pub adopt: crate::mailbox::CountedRecipient<AdoptAgent>,
    pub catch_up: crate::mailbox::CountedRecipient<CatchUp>,
}

impl Handler<AttachDirectory> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: AttachDirectory, ctx: &mut Context<Self>) {
        self.directory = Some(msg.moved);
        self.statuses = Some(msg.statuses);
        self.adopt = Some(msg.adopt);
        self.catch_up = Some(msg.catch_up);
        let store = self.link.agents.clone();
        ctx.spawn(
            async move { store.watch_all().await }.into_actor(self).map(
                |watch, _, ctx| match watch {
                    Ok(w) => {
                        ctx.add_stream(w);
                    }
                    Err(e) => log::error!("cluster: cannot watch the agents' owners: {e}"),
                },
            ),
        );
    }
}

type WatchItem = Result<
    async_nats::jetstream::kv::Entry,
    async_nats::error::Error<async_nats::jetstream::kv::WatcherErrorKind>,
>;

impl StreamHandler<WatchItem> for Cluster {
    fn handle(&mut self, item: WatchItem, _: &mut Context<Self>) {
        let Ok(entry) = item else {
            return;
        };
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            return;
        }
        let record = super::mailbox::Owner::parse(&entry.value);
        let (Some(agent_id), Some(record)) = (super::names::id_of(&entry.key), record) else {
            self.metrics
                .malformed
                .with_label_values(&["owner_record"])
                .inc();
            return;
        };
        if record.owner != self.node {
            if let Some(d) = &self.directory {
                d.do_send(AgentMoved {
                    agent_id,
                    owner: record.owner,
                });
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        log::warn!("cluster: the watch on the agents' owners ended");
    }
}

/// How long the backend's switch waits for the others' statuses.
const STATUSES_WAIT: Duration = Duration::from_millis(250);

/// This switch's agents' statuses, each agent having applied the
/// ping-timeout rule with the backend's last ping at `last_ping_ms`.
#[derive(Message)]
#[rtype(result = "serde_json::Map<String, serde_json::Value>")]
pub struct LocalStatuses {
    pub last_ping_ms: i64,
}

/// Every other switch's agents' statuses, as many as answer within
/// `STATUSES_WAIT` (a partial answer is counted).
#[derive(Message)]
#[rtype(result = "serde_json::Map<String, serde_json::Value>")]
pub struct GatherStatuses {
    pub last_ping_ms: i64,
    /// Agents one switch holds at most (`max_agents`): the bound on what
    /// each switch's answer may add.
    pub per_switch: usize,
}

impl Cluster {
    /// Another switch asks for this one's agents' statuses.
    fn asked_statuses(&mut self, msg: async_nats::Message, ctx: &mut Context<Self>) {
        let (Some(ask), Some(reply)) = (statuses::Ask::parse(&msg.payload), msg.reply) else {
            self.metrics
                .malformed
                .with_label_values(&["statuses_ask"])
                .inc();
            return;
        };
        if ask.from == self.node {
            return;
        }
        let Some(directory) = self.statuses.clone() else {
            return;
        };
        let client = self.link.client.clone();
        let node = self.node.clone();
        ctx.spawn(
            async move {
                let Ok(map) = directory
                    .send(LocalStatuses {
                        last_ping_ms: ask.last_ping_ms,
                    })
                    .await
                else {
                    return;
                };
                for part in statuses::parts(&node, map) {
                    if let Ok(body) = serde_json::to_vec(&part) {
                        let _ = client.publish(reply.clone(), body.into()).await;
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<GatherStatuses> for Cluster {
    type Result = ResponseActFuture<Self, serde_json::Map<String, serde_json::Value>>;
    fn handle(&mut self, msg: GatherStatuses, _: &mut Context<Self>) -> Self::Result {
        let expected: Vec<String> = self.membership.others().map(str::to_string).collect();
        if expected.is_empty() {
            return Box::pin(actix::fut::ready(serde_json::Map::new()));
        }
        let client = self.link.client.clone();
        let subject = self.link.names.statuses();
        let ask = statuses::Ask {
            from: self.node.clone(),
            last_ping_ms: msg.last_ping_ms,
        };
        let per_switch = msg.per_switch;
        Box::pin(
            async move {
                let mut gathered = statuses::Gathered::new(expected, per_switch);
                let inbox = client.new_inbox();
                let Ok(mut sub) = client.subscribe(inbox.clone()).await else {
                    return gathered;
                };
                let body = serde_json::to_vec(&ask).unwrap_or_default();
                if client
                    .publish_with_reply(subject, inbox, body.into())
                    .await
                    .is_ok()
                {
                    let until = tokio::time::Instant::now() + STATUSES_WAIT;
                    while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
                        if gathered.take(&m.payload) {
                            break;
                        }
                    }
                }
                let _ = sub.unsubscribe().await;
                gathered
            }
            .into_actor(self)
            .map(|gathered, act, _| {
                if gathered.refused > 0 {
                    act.metrics
                        .malformed
                        .with_label_values(&["statuses_part"])
                        .inc_by(gathered.refused as u64);
                }
                if !gathered.complete() {
                    act.metrics.statuses_partial.inc();
                    log::warn!(
                        "cluster: request_statuses answered without switch(es) {:?}",
                        gathered.missing()
                    );
                }
                gathered.statuses
            }),
        )
    }
}

/// An agent whose switch went down, now this switch's (`CLUSTER.md`,
/// "Rebind and node loss"): it has no socket, so its reconnect grace
/// starts (then `disconnect`, PROTOCOL 1.3), and whoever it reconnects to
/// claims it as usual.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdoptAgent {
    pub agent_id: String,
    pub status: String,
    pub last_ping_ms: i64,
}

impl Cluster {
    /// Takes over the agents `dead` switches owned: one compare-and-swap
    /// per agent record, so two switches adopting at once (each believing
    /// itself the lowest live id for a moment) take each agent once.
    fn adopt_agents_of(&mut self, dead: Vec<String>, ctx: &mut Context<Self>) {
        let Some(adopt) = self.adopt.clone() else {
            return;
        };
        let store = self.link.agents.clone();
        let me = self.node.clone();
        ctx.spawn(
            async move {
                let mut adopted = Vec::new();
                let Ok(mut keys) = store.keys().await else {
                    return adopted;
                };
                while let Some(Ok(key)) = keys.next().await {
                    let Ok(Some(entry)) = store.entry(key.clone()).await else {
                        continue;
                    };
                    let Some(record) = super::mailbox::Owner::parse(&entry.value) else {
                        continue;
                    };
                    if !dead.contains(&record.owner) {
                        continue;
                    }
                    let Some(agent_id) = super::names::id_of(&key) else {
                        continue;
                    };
                    let mine = super::mailbox::Owner {
                        owner: me.clone(),
                        since: crate::clock::now_secs(),
                        ..record
                    };
                    let Ok(body) = serde_json::to_vec(&mine) else {
                        continue;
                    };
                    if store
                        .update(&key, body.into(), entry.revision)
                        .await
                        .is_ok()
                    {
                        adopted.push(AdoptAgent {
                            agent_id,
                            status: mine.status,
                            last_ping_ms: mine.last_ping_ms,
                        });
                    }
                }
                adopted
            }
            .into_actor(self)
            .map(move |adopted, act, _| {
                if !adopted.is_empty() {
                    log::warn!(
                        "cluster: adopted {} agent(s) of switch(es) gone down",
                        adopted.len()
                    );
                }
                for a in adopted {
                    act.metrics.adopted_agents.inc();
                    adopt.do_send(a);
                }
            }),
        );
    }
}
