//! `MqttBridge`: the mesh on an MQTT broker (`--mqtt`; README, "Into your
//! home or lab"). Nothing of it runs without `--mqtt`.
//!
//! It subscribes to `NetworkManager`'s events and publishes every node's
//! data, status and messages, the links' states and its own availability
//! (`topics.rs`), with Home Assistant discovery configs for every node and
//! data type (`discovery.rs`). Commands published to a node's `send` topic
//! or to `broadcast` go to the mesh as the HTTP API's do, after the checks
//! of `commands.rs`, and their results are published back.
//!
//! The MQTT protocol is rumqttc's. The client starts every connection
//! with a clean session and is made anew for each one, so nothing handed
//! to a connection that died can leak into the next: what the bridge
//! publishes stays in its own bounded `Outbound` until the broker has it,
//! and goes again, in order, after a reconnection (`outbound.rs`). The
//! bridge never waits for the broker: a slow or absent broker fills that
//! buffer (oldest dropped, counted), never the mesh's or agents' mailboxes.

pub mod commands;
pub mod discovery;
pub mod metrics;
pub mod outbound;
pub mod topics;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backoff::Backoff;
use crate::log_limit::LogLimit;
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::node_cache::{NodeKey, NodeStatus};
use crate::network::{GetMeshInfo, NetworkManager, Publish, Subscribe};
use crate::node_send::NodeSend;
use crate::uart::CommandError;
use crate::uplink::GatewayServer;
use commands::{parse_send, RateLimits, Refusal, SendRequest};
use discovery::Discovery;
use metrics::{drop_reason, MqttMetrics};
use outbound::{Message, Outbound};
use topics::{Target, Topics};

/// Largest packet read from the broker. A command payload is read only
/// up to `MAX_COMMAND_BYTES` and refused past it, with an answer; a packet
/// past this bound cannot be answered: rumqttc closes the connection on
/// it, and the bridge reconnects with backoff (the broker does not send it
/// again to a clean session).
const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// Largest packet written: a data update or discovery config is far less.
const MAX_OUTGOING_PACKET: usize = 256 * 1024;
/// Messages handed to the client and not yet done.
const WINDOW: usize = 64;
/// Nodes whose status and data types the bridge remembers (for discovery
/// and for republishing statuses after a reconnection).
const MAX_NODES: usize = 8_192;
/// Data types remembered per node.
const MAX_TYPES_PER_NODE: usize = 16;
/// Commands waiting for the mesh's answer at once.
const MAX_WAITING_COMMANDS: usize = 64;
/// Home Assistant's `online` makes the discovery configs go out again at
/// most this often.
const REPUBLISH_EVERY: Duration = Duration::from_secs(10);
/// Topics with a command rate bucket.
const MAX_RATE_TOPICS: usize = 4096;

/// The `[mqtt]` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883, TLS).
    pub url: Option<String>,
    /// Default: `switchyard-HOST-PORT` of `--http`.
    pub client_id: Option<String>,
    /// The first level of every topic.
    pub prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM certificates trusted for `mqtts://` (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// QoS of what the bridge publishes: 0 or 1.
    pub qos: u8,
    /// Data updates and messages retained (statuses, links, availability
    /// and discovery always are).
    pub retain: bool,
    pub keepalive_secs: u64,
    /// Home Assistant discovery configs.
    pub discovery: bool,
    pub discovery_prefix: String,
    /// Messages kept while the broker is away or slow; past it the oldest
    /// are dropped and counted.
    pub buffer_limit: usize,
    pub buffer_bytes_limit: usize,
    /// Commands accepted per topic: a rate per second and a burst.
    pub commands_per_sec: f64,
    pub command_burst: u32,
    /// Reconnection backoff, doubling from min to max.
    pub reconnect_min_secs: f64,
    pub reconnect_max_secs: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: None,
            client_id: None,
            prefix: "switchyard".into(),
            username: None,
            password: None,
            ca_file: None,
            qos: 1,
            retain: false,
            keepalive_secs: 30,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            buffer_limit: 10_000,
            buffer_bytes_limit: 8 * 1024 * 1024,
            commands_per_sec: 5.0,
            command_burst: 10,
            reconnect_min_secs: 0.25,
            reconnect_max_secs: 30.0,
        }
    }
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Broker {
    pub fn parse(url: &str) -> Result<Broker, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!(
                "{url:?}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        // `[::1]:1883`, `host:1883`, `host`.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{url:?}: bad port")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            None => default_port,
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("{url:?}: bad host {host:?}"));
        }
        Ok(Broker { host, port, tls })
    }
}

fn valid_prefix(p: &str) -> bool {
    !p.is_empty() && !p.contains(['+', '#']) && !p.starts_with('/') && !p.ends_with('/')
}

impl MqttConfig {
    /// Checks what a start would trip on.
    pub fn validate(&self) -> Result<Broker, String> {
        let url = self.url.as_deref().ok_or("no broker URL")?;
        let broker = Broker::parse(url)?;
        if self.qos > 1 {
            return Err(format!("mqtt qos {}: use 0 or 1", self.qos));
        }
        if !valid_prefix(&self.prefix) {
            return Err(format!(
                "mqtt prefix {:?}: not empty, no + # or leading/trailing /",
                self.prefix
            ));
        }
        if self.discovery && !valid_prefix(&self.discovery_prefix) {
            return Err(format!(
                "mqtt discovery_prefix {:?}: not empty, no + # or leading/trailing /",
                self.discovery_prefix
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("mqtt password without a username".into());
        }
        if !(self.commands_per_sec.is_finite() && self.commands_per_sec >= 0.0) {
            return Err("mqtt commands_per_sec must be a number >= 0".into());
        }
        let secs_ok = |s: f64| s.is_finite() && (0.0..=86_400.0).contains(&s);
        if !secs_ok(self.reconnect_min_secs) || !secs_ok(self.reconnect_max_secs) {
            return Err("mqtt reconnect_min_secs and reconnect_max_secs: 0 to 86400".into());
        }
        Ok(broker)
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate in it", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system certificate rustls cannot read is skipped, as
                // every rustls client does.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What the bridge remembers of a node.
#[derive(Debug, Default)]
struct NodeSeen {
    status: Option<NodeStatus>,
    /// Each data type with a value of it (what its discovery is made from).
    types: BTreeMap<String, Value>,
}

/// A command on its way to the mesh: its outcome.
type CommandRun = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CommandError>>>>;

/// Where re-publishing the retained state has got to: the switch's own
/// (its device, its links), then each node in order.
#[derive(Debug, Clone)]
enum Republish {
    Switch,
    Node(NodeKey),
}

/// One thing the connection's poll loop reports.
enum LinkEvent {
    Event(Event),
    Lost(ConnectionError),
}

/// `/api/mqtt` and the dashboard's tile.
#[derive(Debug, Clone, Serialize)]
pub struct MqttStatus {
    pub broker: String,
    pub client_id: String,
    pub prefix: String,
    pub connected: bool,
    pub connected_since: Option<f64>,
    pub last_error: Option<String>,
    pub buffered: usize,
    pub buffered_bytes: usize,
    pub buffer_limit: usize,
    pub buffer_bytes_limit: usize,
    pub published: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub commands_ok: u64,
    pub commands_failed: u64,
    pub commands_refused: u64,
    pub nodes: usize,
    pub discovery: bool,
}

#[derive(Message)]
#[rtype(result = "MqttStatus")]
pub struct GetMqttStatus;

pub struct MqttBridge {
    config: MqttConfig,
    url: String,
    broker: Broker,
    client_id: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    topics: Topics,
    discovery: Discovery,
    metrics: MqttMetrics,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    gateways: Mailbox<GatewayServer>,
    client: Option<AsyncClient>,
    connected: bool,
    attempts: u64,
    backoff: Backoff,
    outbound: Outbound,
    nodes: BTreeMap<NodeKey, NodeSeen>,
    links: BTreeMap<String, String>,
    limits: RateLimits,
    /// The retained state still to publish again after a (re)connection
    /// or Home Assistant's restart.
    republish: Option<Republish>,
    /// When Home Assistant's `online` last made the configs go out again.
    last_birth: Option<Instant>,
    waiting_commands: usize,
    last_error: Option<String>,
    connected_since: Option<f64>,
    lost_log: LogLimit,
    refused_log: LogLimit,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl MqttBridge {
    /// Checks the settings, registers the metrics and starts the bridge.
    pub fn start_link(
        config: MqttConfig,
        client_id: String,
        metrics: &Arc<Metrics>,
        network: Mailbox<NetworkManager>,
        gateways: Mailbox<GatewayServer>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Mailbox<MqttBridge>, String> {
        let broker = config.validate()?;
        let tls = if broker.tls {
            Some(tls_config(config.ca_file.as_deref())?)
        } else {
            None
        };
        let mm = MqttMetrics::register(&metrics.registry).map_err(|e| e.to_string())?;
        let topics = Topics::new(&config.prefix, &config.discovery_prefix);
        let probe = metrics.probe("MqttBridge", client_id.clone());
        let bridge = MqttBridge {
            url: config.url.clone().unwrap_or_default(),
            broker,
            discovery: Discovery::new(topics.clone(), &client_id),
            client_id,
            tls,
            topics,
            metrics: mm,
            probe: Arc::clone(&probe),
            network,
            gateways,
            client: None,
            connected: false,
            attempts: 0,
            backoff: Backoff::new(
                Duration::from_secs_f64(config.reconnect_min_secs),
                Duration::from_secs_f64(config.reconnect_max_secs),
            ),
            outbound: Outbound::new(config.buffer_limit, config.buffer_bytes_limit, WINDOW),
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            limits: RateLimits::new(
                config.commands_per_sec,
                config.command_burst,
                MAX_RATE_TOPICS,
            ),
            republish: None,
            last_birth: None,
            waiting_commands: 0,
            last_error: None,
            connected_since: None,
            lost_log: LogLimit::every(Duration::from_secs(30)),
            refused_log: LogLimit::per_second(),
            shutdown,
            config,
        };
        Ok(Mailbox::new(bridge.start(), probe))
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        o.set_keep_alive(Duration::from_secs(self.config.keepalive_secs.max(5)));
        o.set_clean_session(true);
        o.set_last_will(LastWill::new(
            self.topics.availability(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        o.set_inflight(WINDOW as u16);
        o.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        if let Some(user) = &self.config.username {
            o.set_credentials(user, self.config.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::clone(tls)),
            ));
        }
        o
    }

    /// A new client and connection; its poll loop reports to this actor
    /// until the connection fails once.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if *self.shutdown.borrow() {
            return;
        }
        if self.attempts > 0 {
            self.metrics.reconnects.inc();
        }
        self.attempts += 1;
        // Room for the window and the subscriptions of a connection.
        let (client, eventloop) = AsyncClient::new(self.options(), WINDOW + 16);
        let events = futures_util::stream::unfold(Some(eventloop), |state| async move {
            let mut el = state?;
            match el.poll().await {
                Ok(ev) => Some((LinkEvent::Event(ev), Some(el))),
                // The loop ends with its first error: the next connection
                // is this actor's decision, after a backoff.
                Err(e) => Some((LinkEvent::Lost(e), None)),
            }
        });
        ctx.add_stream(events);
        self.client = Some(client);
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.connected_since = Some(crate::clock::now_secs());
        self.last_error = None;
        self.backoff.reset();
        self.metrics.connected.set(1);
        log::info!(
            "mqtt: connected to {} as {}; {} messages to send",
            self.url,
            self.client_id,
            self.outbound.len()
        );
        if let Some(c) = &self.client {
            let subs = self
                .topics
                .subscriptions(self.config.discovery)
                .into_iter()
                .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
            if let Err(e) = c.try_subscribe_many(subs) {
                log::warn!("mqtt: cannot subscribe to the command topics: {e}");
            }
        }
        // First the switch is online; then what waited, in order; and the
        // retained state again (discovery, statuses, links), so a broker
        // that forgot it (restarted without persistence) is current.
        let online = self.retained(self.topics.availability(), "online");
        self.outbound.push_front(vec![online]);
        self.republish = Some(Republish::Switch);
        self.network.do_send(Publish(SwitchEvent::Link {
            ts: crate::clock::now_secs(),
            link: "mqtt".into(),
            state: "up".into(),
        }));
        self.pump();
    }

    fn on_lost(&mut self, e: ConnectionError, ctx: &mut Context<Self>) {
        let was = self.connected;
        self.connected = false;
        self.connected_since = None;
        self.client = None;
        self.metrics.connected.set(0);
        let again = self.outbound.link_lost();
        let text = e.to_string();
        if was || self.lost_log.admit(Instant::now()).is_some() {
            log::warn!(
                "mqtt: {} {}: {text}; {again} messages go again, {} wait",
                self.url,
                if was { "lost" } else { "unreachable" },
                self.outbound.len()
            );
        }
        self.last_error = Some(text);
        if was {
            self.network.do_send(Publish(SwitchEvent::Link {
                ts: crate::clock::now_secs(),
                link: "mqtt".into(),
                state: "down".into(),
            }));
        }
        self.gauges();
        if *self.shutdown.borrow() {
            ctx.stop();
            return;
        }
        let delay = self.backoff.next_delay();
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// Queues the retained state again, a node at a time, while the buffer
    /// is less than half full: however many nodes there are, it never
    /// pushes what waits out of the buffer, nor holds it all at once.
    fn feed_republish(&mut self) {
        while let Some(at) = self.republish.take() {
            if self.outbound.len() >= self.outbound.limit() / 2 {
                self.republish = Some(at);
                return;
            }
            let next = match at {
                Republish::Switch => {
                    if self.config.discovery {
                        let configs = self.discovery.bridge_configs();
                        for m in self.discovery_messages(configs) {
                            self.queue(m);
                        }
                    }
                    let links: Vec<Message> = self
                        .links
                        .iter()
                        .map(|(link, state)| self.retained(self.topics.link(link), state))
                        .collect();
                    for m in links {
                        self.queue(m);
                    }
                    self.nodes.keys().next().cloned()
                }
                Republish::Node(key) => {
                    for m in self.node_state(&key) {
                        self.queue(m);
                    }
                    self.nodes
                        .range((std::ops::Bound::Excluded(&key), std::ops::Bound::Unbounded))
                        .next()
                        .map(|(k, _)| k.clone())
                }
            };
            self.republish = next.map(Republish::Node);
        }
    }

    /// A node's retained state: its discovery configs and its status.
    fn node_state(&self, key: &NodeKey) -> Vec<Message> {
        let Some(seen) = self.nodes.get(key) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        if self.config.discovery {
            for (ty, value) in &seen.types {
                v.extend(self.discovery_messages(self.discovery.configs(key, ty, value)));
            }
        }
        if let Some(st) = seen.status {
            v.push(self.retained(self.topics.status(key), st.as_str()));
        }
        v
    }

    /// Hands the client what the window allows.
    fn pump(&mut self) {
        self.feed_republish();
        if !self.connected {
            self.gauges();
            return;
        }
        let Some(client) = &self.client else {
            return;
        };
        while let Some(m) = self.outbound.hand() {
            let qos = if m.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            if client
                .try_publish(m.topic, qos, m.retain, m.payload.to_vec())
                .is_err()
            {
                self.outbound.unhand_last();
                break;
            }
        }
        self.gauges();
    }

    fn gauges(&self) {
        self.metrics.buffered.set(self.outbound.len() as i64);
        self.metrics
            .buffered_bytes
            .set(self.outbound.bytes() as i64);
    }

    fn queue(&mut self, m: Message) {
        let dropped = self.outbound.push(m);
        if dropped > 0 {
            self.metrics
                .dropped
                .with_label_values(&[drop_reason::BUFFER_FULL])
                .inc_by(dropped as u64);
        }
    }

    /// An answer to a command: spare, so a flood of commands cannot push
    /// node data out of the buffer.
    fn answer(&mut self, topic: String, payload: Vec<u8>) {
        let m = Message::new(topic, payload, self.config.qos, false);
        match self.outbound.push_spare(m) {
            Ok(dropped) if dropped > 0 => {
                self.metrics
                    .dropped
                    .with_label_values(&[drop_reason::BUFFER_FULL])
                    .inc_by(dropped as u64);
            }
            Ok(_) => {}
            Err(_) => self
                .metrics
                .dropped
                .with_label_values(&[drop_reason::ANSWERS_FULL])
                .inc(),
        }
        self.pump();
    }

    fn retained(&self, topic: String, payload: &str) -> Message {
        Message::new(topic, payload.as_bytes().to_vec(), 1, true)
    }

    fn discovery_messages(&self, configs: Vec<discovery::Config>) -> Vec<Message> {
        configs
            .into_iter()
            .map(|c| Message::new(c.topic, c.payload.to_string().into_bytes(), 1, true))
            .collect()
    }

    /// The node's entry, if there is room for it.
    fn seen(&mut self, key: &NodeKey) -> Option<&mut NodeSeen> {
        if !self.nodes.contains_key(key) {
            if self.nodes.len() >= MAX_NODES {
                self.metrics
                    .skipped
                    .with_label_values(&["node_limit"])
                    .inc();
                return None;
            }
            self.nodes.insert(key.clone(), NodeSeen::default());
        }
        self.nodes.get_mut(key)
    }

    /// A gateway named `local` would be confused with this switch's mesh.
    fn bridged(&self, key: &NodeKey) -> bool {
        if key.gateway.as_deref() == Some(topics::LOCAL) {
            self.metrics
                .skipped
                .with_label_values(&["gateway_named_local"])
                .inc();
            return false;
        }
        true
    }

    /// A data type seen for the first time: its discovery configs.
    fn learn_type(&mut self, key: &NodeKey, data_type: &str, value: &Value) {
        let discovery = self.config.discovery;
        let Some(seen) = self.seen(key) else {
            return;
        };
        if seen.types.contains_key(data_type) || seen.types.len() >= MAX_TYPES_PER_NODE {
            return;
        }
        seen.types.insert(data_type.to_string(), value.clone());
        if discovery {
            let configs = self.discovery.configs(key, data_type, value);
            for m in self.discovery_messages(configs) {
                self.queue(m);
            }
        }
    }

    fn on_event(&mut self, event: SwitchEvent) {
        let qos = self.config.qos;
        let retain = self.config.retain;
        match event {
            SwitchEvent::NodeData(d) => {
                if !self.bridged(&d.key) {
                    return;
                }
                for item in &d.items {
                    self.learn_type(&d.key, &item.data_type, &item.value);
                    let m = Message::new(
                        self.topics.data(&d.key, &item.data_type),
                        topics::data_payload(d.ts, item),
                        qos,
                        retain,
                    );
                    self.queue(m);
                }
            }
            SwitchEvent::NodeMessage { ts, key, message } => {
                if !self.bridged(&key) {
                    return;
                }
                let m = Message::new(
                    self.topics.message(&key),
                    topics::message_payload(ts, &message),
                    qos,
                    retain,
                );
                self.queue(m);
            }
            SwitchEvent::NodeStatus { key, status, .. } => {
                if !self.bridged(&key) {
                    return;
                }
                if let Some(seen) = self.seen(&key) {
                    seen.status = Some(status);
                }
                let m = self.retained(self.topics.status(&key), status.as_str());
                self.queue(m);
            }
            SwitchEvent::Link { link, state, .. } if link != "mqtt" => {
                // Link names come from the switch (`mesh`, gateways'),
                // bounded by the gateways it keeps.
                if self.links.len() < 1024 || self.links.contains_key(&link) {
                    self.links.insert(link.clone(), state.clone());
                }
                let m = self.retained(self.topics.link(&link), &state);
                self.queue(m);
            }
            SwitchEvent::CommandResult {
                ts,
                key,
                command,
                outcome,
            } => {
                let topic = self.topics.send_result(&key);
                self.answer(topic, topics::delivery_payload(ts, command, &outcome));
            }
            _ => {}
        }
        self.pump();
    }

    fn refuse(&mut self, topic: &str, r: Refusal) {
        self.metrics
            .commands_refused
            .with_label_values(&[r.reason()])
            .inc();
        if self.refused_log.admit(Instant::now()).is_some() {
            log::warn!("mqtt: command on {topic} refused: {r}");
        }
        let text = r.to_string();
        self.answer(
            Topics::result_of(topic),
            topics::result_payload(None, Err(&text)),
        );
    }

    fn on_publish(&mut self, p: rumqttc::Publish, ctx: &mut Context<Self>) {
        if self.config.discovery && p.topic == self.topics.ha_status() {
            // Home Assistant started: it wants every config again.
            // Anyone who may publish there can say it: at most one
            // republication per `REPUBLISH_EVERY`, so it cannot be made to
            // publish every config over and over.
            let now = Instant::now();
            let recent = self
                .last_birth
                .is_some_and(|t| now.duration_since(t) < REPUBLISH_EVERY);
            if p.payload.as_ref() == b"online" && !recent {
                self.last_birth = Some(now);
                self.republish = Some(Republish::Switch);
                self.pump();
            }
            return;
        }
        let target = match self.topics.parse_command(&p.topic) {
            None => return,
            Some(Err(e)) => return self.refuse(&p.topic, Refusal::BadTopic(e.to_string())),
            Some(Ok(t)) => t,
        };
        if p.retain {
            return self.refuse(&p.topic, Refusal::Retained);
        }
        if !self.limits.allow(&p.topic, Instant::now()) {
            return self.refuse(&p.topic, Refusal::RateLimited);
        }
        let broadcast = matches!(target, Target::Broadcast(_));
        let req = match parse_send(&p.payload, broadcast) {
            Ok(r) => r,
            Err(r) => return self.refuse(&p.topic, r),
        };
        if self.waiting_commands >= MAX_WAITING_COMMANDS {
            return self.refuse(&p.topic, Refusal::Busy);
        }
        self.waiting_commands += 1;
        let result_topic = Topics::result_of(&p.topic);
        let (name, fut) = self.run(target, req);
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, _| {
            act.waiting_commands -= 1;
            let outcome = outcome.map_err(|e| e.to_string());
            act.metrics
                .commands
                .with_label_values(&[if outcome.is_ok() { "ok" } else { "failed" }])
                .inc();
            act.answer(
                result_topic,
                topics::result_payload(
                    Some(name),
                    outcome.as_ref().map(|_| ()).map_err(|e| e.as_str()),
                ),
            );
        }));
    }

    /// Sends a command as the HTTP API does (one path,
    /// `node_send::NodeSend`).
    fn run(&self, target: Target, req: SendRequest) -> (&'static str, CommandRun) {
        let SendRequest { message, tracked } = req;
        let send = NodeSend {
            target,
            message,
            tracked,
        };
        let name = send.name();
        let sent = send.run(&self.network, &self.gateways);
        (name, Box::pin(async move { sent.await.map(|_| ()) }))
    }

    fn status(&self) -> MqttStatus {
        let m = &self.metrics;
        let dropped: u64 = [drop_reason::BUFFER_FULL, drop_reason::ANSWERS_FULL]
            .iter()
            .map(|r| m.dropped.with_label_values(&[r]).get())
            .sum();
        let refused: u64 = commands::REASONS
            .iter()
            .map(|r| m.commands_refused.with_label_values(&[r]).get())
            .sum();
        MqttStatus {
            broker: self.url.clone(),
            client_id: self.client_id.clone(),
            prefix: self.config.prefix.clone(),
            connected: self.connected,
            connected_since: self.connected_since,
            last_error: self.last_error.clone(),
            buffered: self.outbound.len(),
            buffered_bytes: self.outbound.bytes(),
            buffer_limit: self.outbound.limit(),
            buffer_bytes_limit: self.outbound.bytes_limit(),
            published: m.published.get(),
            dropped,
            reconnects: m.reconnects.get(),
            commands_ok: m.commands.with_label_values(&["ok"]).get(),
            commands_failed: m.commands.with_label_values(&["failed"]).get(),
            commands_refused: refused,
            nodes: self.nodes.len(),
            discovery: self.config.discovery,
        }
    }
}

impl Actor for MqttBridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.network
            .do_send(Subscribe(ctx.address().recipient::<SwitchEvent>()));
        // What the switch already knows, in one question: its nodes (a warm
        // start from the history log), described and retained from the
        // first connection on, and the mesh link's state (it came up before
        // the bridge subscribed); later changes arrive as events.
        ctx.spawn(
            self.network
                .send(GetMeshInfo)
                .into_actor(self)
                .map(|info, act, _| {
                    let Ok(info) = info else {
                        return;
                    };
                    for n in info.nodes {
                        let key = NodeKey {
                            gateway: n.gateway.clone(),
                            addr: n.addr,
                        };
                        if !act.bridged(&key) {
                            continue;
                        }
                        for (ty, sample) in &n.latest {
                            act.learn_type(&key, ty, &sample.value);
                        }
                        if let Some(seen) = act.seen(&key) {
                            seen.status.get_or_insert(n.status);
                        }
                    }
                    if info.link.is_some() && !act.links.contains_key("mesh") {
                        let state = if info.link_up { "up" } else { "down" };
                        act.links.insert("mesh".into(), state.into());
                        let m = act.retained(act.topics.link("mesh"), state);
                        act.queue(m);
                    }
                    act.pump();
                }),
        );
        self.metrics.connected.set(0);
        self.connect(ctx);
        ctx.spawn(
            crate::shutdown::until_shutdown(self.shutdown.clone())
                .into_actor(self)
                .map(|_, act, ctx| {
                    // Offline said before leaving (the last will says it
                    // when the switch dies without a word).
                    match act.client.take() {
                        Some(c) if act.connected => {
                            let _ = c.try_publish(
                                act.topics.availability(),
                                QoS::AtLeastOnce,
                                true,
                                b"offline".to_vec(),
                            );
                            let _ = c.try_disconnect();
                            // The loop ends once the client has sent both;
                            // a broker that does not answer gets a second.
                            ctx.run_later(Duration::from_secs(1), |_, ctx| ctx.stop());
                        }
                        _ => ctx.stop(),
                    }
                }),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.metrics.connected.set(0);
        self.probe.retire();
    }
}

impl StreamHandler<LinkEvent> for MqttBridge {
    fn handle(&mut self, ev: LinkEvent, ctx: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("LinkEvent");
        match ev {
            LinkEvent::Event(Event::Incoming(Packet::ConnAck(_))) => self.on_connected(),
            LinkEvent::Event(Event::Incoming(Packet::PubAck(a))) => {
                if self.outbound.acked(a.pkid) {
                    self.metrics.published.inc();
                }
                self.pump();
            }
            LinkEvent::Event(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                if self.outbound.written(pkid) {
                    self.metrics.published.inc();
                    self.pump();
                }
            }
            LinkEvent::Event(Event::Incoming(Packet::Publish(p))) => self.on_publish(p, ctx),
            LinkEvent::Event(Event::Incoming(Packet::SubAck(s))) => {
                if s.return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    log::warn!("mqtt: the broker refused a command topic subscription; commands over MQTT may not arrive");
                }
            }
            LinkEvent::Event(_) => {}
            LinkEvent::Lost(e) => self.on_lost(e, ctx),
        }
    }

    /// A connection's loop ended (after its error): the bridge lives on.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<SwitchEvent> for MqttBridge {
    type Result = ();
    fn handle(&mut self, event: SwitchEvent, _: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("SwitchEvent");
        self.on_event(event);
    }
}

impl Handler<GetMqttStatus> for MqttBridge {
    type Result = MessageResult<GetMqttStatus>;
    fn handle(&mut self, _: GetMqttStatus, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetMqttStatus");
        MessageResult(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = |s: &str| Broker::parse(s);
        assert_eq!(
            b("mqtt://127.0.0.1:1884").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(b("mqtts://broker.lan").unwrap().port, 8883);
        assert_eq!(b("mqtt://broker.lan/").unwrap().port, 1883);
        assert_eq!(b("mqtt://[::1]:1999").unwrap().host, "::1");
        assert!(b("http://x").is_err());
        assert!(b("mqtt://").is_err());
        assert!(b("mqtt://h:99999").is_err());
        assert!(b("mqtt://user@h").is_err());
    }

    #[test]
    fn settings_are_checked() {
        let ok = MqttConfig {
            url: Some("mqtt://h".into()),
            ..MqttConfig::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            MqttConfig {
                qos: 2,
                ..ok.clone()
            },
            MqttConfig {
                prefix: "a/#".into(),
                ..ok.clone()
            },
            MqttConfig {
                prefix: "".into(),
                ..ok.clone()
            },
            MqttConfig {
                password: Some("p".into()),
                ..ok.clone()
            },
            MqttConfig {
                url: None,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
