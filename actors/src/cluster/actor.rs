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
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::config::ClusterConfig;
use super::link::{self, Link, LinkError};
use super::membership::{Heard, Membership};
use super::metrics::ClusterMetrics;
use super::window::PublishWindow;

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
}

/// A cluster as this switch sees it, for dashboards and tests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterInfo {
    pub node: String,
    pub connected: bool,
    pub nodes: usize,
    pub publish_pending: usize,
}

pub struct Cluster {
    link: Link,
    node: String,
    boot: u64,
    config: ClusterConfig,
    metrics: Arc<ClusterMetrics>,
    switch_metrics: Arc<crate::metrics::Metrics>,
    membership: Membership,
    window: PublishWindow<Outgoing>,
    /// Past a full window, in arrival order (bounded by the window's size
    /// again; past that, counted and dropped).
    waiting: VecDeque<Outgoing>,
    sender: mpsc::UnboundedSender<Send>,
    connected: bool,
    /// A publish failed: send every unacknowledged one again on the next
    /// tick while connected.
    retry_due: bool,
    sent_at: std::collections::HashMap<u64, Instant>,
    /// Told when another switch takes one of this switch's agents.
    directory: Option<crate::mailbox::CountedRecipient<AgentMoved>>,
}

/// The handle the rest of the switch holds.
#[derive(Clone)]
pub struct ClusterHandle {
    pub addr: Addr<Cluster>,
    pub link: Link,
    pub node: String,
    pub config: ClusterConfig,
    pub metrics: Arc<ClusterMetrics>,
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
        let link = link::connect(&config, &node, move |up| {
            gauge.set(i64::from(up));
            if let Some(r) = events_slot.lock().ok().and_then(|s| s.clone()) {
                r.do_send(LinkChanged { up });
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
        let addr = Cluster::create({
            let link = link.clone();
            let node = node.clone();
            let config = config.clone();
            let metrics = Arc::clone(&metrics);
            move |ctx| {
                spawn_sender(link.js.clone(), rx, ctx.address());
                Cluster {
                    membership: Membership::new(&node, config.node_timeout(), config.max_nodes),
                    window: PublishWindow::new(&node, boot, config.publish_window),
                    waiting: VecDeque::new(),
                    sender: tx,
                    connected: true,
                    retry_due: false,
                    sent_at: std::collections::HashMap::new(),
                    directory: None,
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
        })
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for (node, _) in self.membership.expire(now) {
            log::warn!("cluster: switch {node} went silent; counted down");
            self.metrics.nodes_down.inc();
        }
        self.metrics.nodes.set(self.membership.count() as i64);
        let hb = Heartbeat {
            node: self.node.clone(),
            boot: self.boot,
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

    fn heard(&mut self, msg: async_nats::Message) {
        let hb = (msg.payload.len() <= MAX_HEARTBEAT_BYTES)
            .then(|| serde_json::from_slice::<Heartbeat>(&msg.payload).ok())
            .flatten();
        let Some(hb) = hb else {
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
        match self.membership.heard(&hb.node, hb.boot, Instant::now()) {
            Heard::Joined => log::info!("cluster: switch {} joined", hb.node),
            Heard::Restarted { .. } => {
                log::warn!("cluster: switch {} restarted", hb.node);
                self.metrics.nodes_down.inc();
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
        match self.window.push(out) {
            Ok(n) => {
                let slot = self.window.unacked().last().map(|(_, o)| o);
                if let Some(o) = slot {
                    let send = Send {
                        n,
                        id: self.window.id(n),
                        subject: o.subject.clone(),
                        payload: o.payload.clone(),
                        origin: o.origin.then(|| self.node.clone()),
                    };
                    self.sent_at.insert(n, Instant::now());
                    let _ = self.sender.send(send);
                }
            }
            Err(out) => {
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

/// The one sending task: publishes in the order it is given, and waits
/// for each acknowledgement on a task of its own.
fn spawn_sender(
    js: async_nats::jetstream::Context,
    mut rx: mpsc::UnboundedReceiver<Send>,
    me: Addr<Cluster>,
) {
    actix::spawn(async move {
        while let Some(s) = rx.recv().await {
            let mut publish = PublishMessage::build().message_id(&s.id).payload(s.payload);
            if let Some(origin) = &s.origin {
                publish = publish.header(ORIGIN_HEADER, origin.as_str());
            }
            let me = me.clone();
            match js.send_publish(s.subject, publish).await {
                Ok(ack) => {
                    actix::spawn(async move {
                        let result = ack.await.map_err(|e| e.to_string());
                        me.do_send(Acked { n: s.n, result });
                    });
                }
                Err(e) => me.do_send(Acked {
                    n: s.n,
                    result: Err(e.to_string()),
                }),
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
        let client = self.link.client.clone();
        let subject = self.link.names.heartbeats();
        ctx.wait(
            async move { client.subscribe(subject).await }
                .into_actor(self)
                .map(|sub, _, ctx| match sub {
                    Ok(sub) => {
                        ctx.add_stream(sub);
                    }
                    Err(e) => log::error!("cluster: cannot hear heartbeats: {e}"),
                }),
        );
    }
}

impl StreamHandler<async_nats::Message> for Cluster {
    fn handle(&mut self, msg: async_nats::Message, _: &mut Context<Self>) {
        self.heard(msg);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The client resubscribes across reconnects; the stream ends only
        // when the client is gone.
        log::warn!("cluster: heartbeat subscription ended");
    }
}

/// The NATS connection went or came back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkChanged {
    pub up: bool,
}

impl Handler<LinkChanged> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: LinkChanged, _: &mut Context<Self>) {
        self.connected = msg.up;
        if msg.up && self.window.pending() > 0 {
            // What was sent into the dead connection may be lost: send
            // it again, JetStream keeps one copy per id.
            self.retry_due = true;
            self.retry();
        }
    }
}

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

#[derive(Message)]
#[rtype(result = "()")]
struct Acked {
    n: u64,
    result: Result<async_nats::jetstream::publish::PublishAck, String>,
}

impl Handler<Acked> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: Acked, _: &mut Context<Self>) {
        match msg.result {
            Ok(ack) => {
                if let Some(at) = self.sent_at.remove(&msg.n) {
                    self.metrics
                        .js_ack_seconds
                        .observe(at.elapsed().as_secs_f64());
                }
                if ack.duplicate {
                    self.metrics.duplicate_acks.inc();
                }
                if let Some(o) = self.window.ack(msg.n) {
                    self.metrics.published.with_label_values(&[o.kind]).inc();
                }
                while !self.window.is_full() {
                    let Some(next) = self.waiting.pop_front() else {
                        break;
                    };
                    self.take(next);
                }
            }
            Err(e) => {
                if !self.retry_due {
                    log::warn!("cluster: publish not acknowledged ({e}); will send again");
                }
                self.retry_due = true;
            }
        }
        self.metrics
            .publish_window
            .set(self.window.pending() as i64);
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
        MessageResult(ClusterInfo {
            node: self.node.clone(),
            connected: self.connected,
            nodes: self.membership.count(),
            publish_pending: self.window.pending(),
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

/// Names the directory to tell of agents taken by other switches, and
/// starts watching the agents' owners.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachDirectory(pub crate::mailbox::CountedRecipient<AgentMoved>);

impl Handler<AttachDirectory> for Cluster {
    type Result = ();
    fn handle(&mut self, msg: AttachDirectory, ctx: &mut Context<Self>) {
        self.directory = Some(msg.0);
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
