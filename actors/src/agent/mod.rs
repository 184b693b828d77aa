//! The agent router (PROTOCOL 1): one `Agent` per agent id, one
//! `WsSession` per WebSocket, one `BackendLink` for the backend.
//!
//! Steady-state flow, with no central mailbox on the way:
//!
//! ```text
//! agent socket -> WsSession -> BackendLink -> backend WsSession
//! backend socket -> WsSession -> Agent -> agent WsSession
//! ```
//!
//! and for live updates, while the `BackendLink` or the `Agent` holds
//! nothing back, session to session by its `Shortcut` (see `shortcut.rs`;
//! `[session] shortcut = false` turns it off).
//!
//! Both owners of a socket, `Agent` and `BackendLink`, deliver by one rule:
//! their `Delivery` (`delivery.rs`) owns the bound socket, the bounded
//! queue in front of it and the shortcut's state, and says what to do next.
//!
//! `AgentDirectory` is asked only to find or create an agent (the first
//! packet of a socket, or for an agent the backend session has not cached
//! yet), to remove one, and for `request_statuses`. Events (an agent's
//! status, the backend's presence) go to `NetworkManager`'s subscribers.

mod actor;
#[cfg(test)]
mod actor_tests;
mod backend;
#[cfg(feature = "cluster")]
mod backend_feed;
#[cfg(test)]
mod backend_tests;
pub mod claims;
mod delivery;
#[cfg(test)]
mod model_tests;
mod session;
mod shortcut;
pub mod snapshot;
pub mod state;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use actor::{
    Agent, AgentAlive, AgentHeartbeat, AgentInfo, CheckLiveness, ExportAgent, GetAgentInfo,
    RetireAgent, SocketClosed, ToClient,
};
#[cfg(feature = "cluster")]
pub use backend::AttachCluster;
pub use backend::{
    AgentDetails, AttachNetwork, BackendAlive, BackendClosed, BackendInfo, BackendLink,
    CancelRequest, CloseRequests, ExportOutbox, GetBackendInfo, RegisterRequest, RestoreOutbox,
    ToBackend,
};

pub use claims::{BackendGate, BackendRefusal, ClaimError, Claims, Role};
pub use session::{
    deliver, AgentBound, ClaimRefused, CloseSocket, Deliver, PeerSocket, ProbeLiveness,
    SessionOrigin, WsSession, TO_AGENT, TO_BACKEND,
};
pub use shortcut::{Detour, Relay, Shortcut, Ticket};
pub use snapshot::StateConfig;

use crate::directory::AgentDirectory;
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::network::NetworkManager;

/// How a sender finds the [`Shortcut`] an owner (`Agent`, `BackendLink`)
/// publishes beside its mailbox.
pub trait OwnerShortcut {
    fn shortcut(&self) -> Option<&Shortcut>;
    /// The same, shared: for a sender that waits on it.
    fn shortcut_shared(&self) -> Option<Arc<Shortcut>>;
}

impl<A: actix::Actor> OwnerShortcut for Mailbox<A> {
    fn shortcut(&self) -> Option<&Shortcut> {
        self.shortcut_of::<Shortcut>()
    }

    fn shortcut_shared(&self) -> Option<Arc<Shortcut>> {
        Mailbox::shortcut_shared::<Shortcut>(self)
    }
}

/// A socket its owner (`Agent`, `BackendLink`) keeps packets for has room
/// again: sent by the socket's `Flow`, from the transport's side.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Resume;

/// [`delivery::Step::WaitForRoom`]: asks the bound socket's `Flow` to send
/// the actor of `ctx` (known to the flow by its `owner` probe) a [`Resume`]
/// once at most `at` bytes are in flight (at once if that is already so),
/// instead of the owner looking again and again. A session that counts no
/// flow never fills up: the owner's next packet looks again.
fn wait_for_room<A>(
    delivery: &mut delivery::Delivery<PeerSocket>,
    owner: &Arc<crate::metrics::ActorProbe>,
    at: u64,
    ctx: &mut actix::Context<A>,
) where
    A: actix::Actor<Context = actix::Context<A>> + actix::Handler<Resume>,
{
    use actix::AsyncContext;
    let Some(flow) = delivery.socket().and_then(|s| s.session.flow()) else {
        delivery.not_waiting();
        return;
    };
    // Weak: a waiter left on a flow must not keep its owner alive.
    let me = ctx.address().downgrade();
    // The owner's probe is its identity while it lives.
    flow.wake_when_at_most(Arc::as_ptr(owner) as usize, at, move || {
        if let Some(me) = me.upgrade() {
            me.do_send(Resume);
        }
    });
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Timers and bounds of one agent (PROTOCOL 1.3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Seconds an agent may stay without a socket before it is `disconnect`.
    pub reconnect_grace_secs: f64,
    /// Seconds without a heartbeat before a live agent is `disconnect`.
    pub ping_timeout_secs: f64,
    /// Seconds with no socket and an empty queue before the agent is removed.
    pub idle_expiry_secs: f64,
    /// Undelivered packets kept per agent; past it the oldest is dropped.
    pub queue_limit: usize,
    /// Bytes of undelivered packets kept per agent; past it the oldest
    /// are dropped (counted and reported to the backend, as past
    /// `queue_limit`).
    pub queue_bytes_limit: usize,
    /// Agents the switch keeps at once; past it a new agent id is refused
    /// (an error to its socket, counted): every agent costs memory, and a
    /// crowd of sockets must not grow the switch without bound.
    pub max_agents: usize,
    /// Seconds a claim on an agent whose socket is still bound waits for
    /// that socket to answer a ping: if it answers, the claim is refused
    /// (a live worker is not taken over); if not, the claim takes over.
    pub takeover_probe_secs: f64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            reconnect_grace_secs: 10.0,
            ping_timeout_secs: 15.0,
            idle_expiry_secs: 3600.0,
            queue_limit: 10_000,
            queue_bytes_limit: 4 * 1024 * 1024,
            max_agents: 50_000,
            takeover_probe_secs: 2.0,
        }
    }
}

impl AgentConfig {
    pub fn reconnect_grace(&self) -> Duration {
        secs(self.reconnect_grace_secs)
    }
    pub fn idle_expiry(&self) -> Duration {
        secs(self.idle_expiry_secs)
    }
    pub fn ping_timeout_ms(&self) -> i64 {
        (self.ping_timeout_secs * 1000.0) as i64
    }
    pub fn takeover_probe(&self) -> Duration {
        secs(self.takeover_probe_secs)
    }
}

/// The backend link's bounds (PROTOCOL 1.4, 1.5).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// Packets kept for the backend while it is away.
    pub outbox_limit: usize,
    /// Bytes of the packets kept for the backend; past it the oldest are
    /// dropped and counted, as past `outbox_limit`.
    pub outbox_bytes_limit: usize,
    /// Seconds an HTTP request waits for the backend's `agent_details`.
    pub request_timeout_secs: f64,
    /// When set, only a socket presenting this token may be the backend.
    pub token: Option<String>,
    /// Without a token: the networks (CIDR, e.g. `10.0.0.0/8`, or a single
    /// address) the backend may connect from. Empty: the address of the
    /// first backend, from then on (127.0.0.1 and ::1 count as one).
    pub allow: Vec<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            outbox_limit: 100_000,
            outbox_bytes_limit: 64 * 1024 * 1024,
            request_timeout_secs: 30.0,
            token: None,
            allow: Vec::new(),
        }
    }
}

impl BackendConfig {
    pub fn request_timeout(&self) -> Duration {
        secs(self.request_timeout_secs)
    }
}

/// One WebSocket's limits and protocol keep-alive.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Largest text message accepted; a larger one is answered with an
    /// error and the socket stays open.
    pub max_frame_bytes: usize,
    /// Seconds between protocol pings from the switch.
    pub ping_interval_secs: f64,
    /// Seconds without any frame (pong included) before the socket is closed.
    pub ping_timeout_secs: f64,
    /// Bytes written to a socket and not yet taken by its peer, past which
    /// packets wait in the agent's queue (or the backend outbox) instead.
    pub max_in_flight_bytes: usize,
    /// Messages waiting in an agent's or the backend link's mailbox past
    /// which a socket's packets are refused (`overloaded`) rather than
    /// queued without bound.
    pub max_mailbox_depth: u64,
    /// Live updates pass their `Agent` or the `BackendLink` while it holds
    /// nothing back (its `Shortcut`); false: every packet crosses its
    /// owner's mailbox, so the shortcut's gain can be measured.
    pub shortcut: bool,
    /// Top-level fields a packet may have; past it the packet is refused
    /// before its fields are looked at (work per packet stays linear).
    pub max_packet_fields: usize,
    /// Longest agent id, in bytes.
    pub max_agent_id_bytes: usize,
    /// Agent ids one socket may bind (`alive`/`heartbeat`); a browser speaks
    /// for one agent at a time.
    pub max_agents_per_socket: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_bytes: 1024 * 1024,
            ping_interval_secs: 20.0,
            ping_timeout_secs: 60.0,
            max_in_flight_bytes: 1024 * 1024,
            max_mailbox_depth: 10_000,
            shortcut: true,
            max_packet_fields: 64,
            max_agent_id_bytes: 256,
            max_agents_per_socket: 4,
        }
    }
}

impl SessionConfig {
    pub fn ping_interval(&self) -> Duration {
        secs(self.ping_interval_secs)
    }
    pub fn ping_timeout(&self) -> Duration {
        secs(self.ping_timeout_secs)
    }
    /// The transport refuses (close 1009) a message past this; between
    /// `max_frame_bytes` and this, the switch answers with an error and keeps
    /// the socket, so one oversized packet does not cost a worker its task.
    pub fn hard_frame_bytes(&self) -> usize {
        self.max_frame_bytes.saturating_mul(8).max(64 * 1024)
    }
}

/// The router's configuration, composed of the actors' own.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    pub agent: AgentConfig,
    pub backend: BackendConfig,
    pub session: SessionConfig,
}

/// What every router actor shares: configuration, metrics, the three
/// well-known actors (where agents live, where events go, the backend),
/// and the backend's last ping time (read by every
/// heartbeat reply, written by `request_statuses`; an atomic, not a lock).
pub struct RouterContext {
    pub config: RouterConfig,
    pub metrics: Arc<Metrics>,
    pub directory: Mailbox<AgentDirectory>,
    pub network: Mailbox<NetworkManager>,
    pub backend: Mailbox<BackendLink>,
    last_mephisto_ping_ms: AtomicI64,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Who may be the backend. Asked once per backend `alive`, by the
    /// session that received it, which must know before it reads on (its
    /// next packet may be backend-only): a lock held for a comparison, not
    /// a round trip through an actor.
    backend_gate: std::sync::Mutex<BackendGate>,
    /// Cluster mode (`--cluster`): set once at start, before any socket.
    #[cfg(feature = "cluster")]
    cluster: std::sync::OnceLock<crate::cluster::ClusterHandle>,
}

impl RouterContext {
    pub fn new(
        config: RouterConfig,
        metrics: Arc<Metrics>,
        directory: Mailbox<AgentDirectory>,
        network: Mailbox<NetworkManager>,
        backend: Mailbox<BackendLink>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Self> {
        // `start` refuses a bad allow list before this; should one reach
        // here all the same, no address is allowed (a token still works).
        let backend_gate = BackendGate::new(config.backend.token.is_some(), &config.backend.allow)
            .unwrap_or_else(|e| {
                log::error!("backend allow list: {e}; only a token holder may be the backend");
                BackendGate::token_only()
            });
        Arc::new(RouterContext {
            backend_gate: std::sync::Mutex::new(backend_gate),
            config,
            metrics,
            directory,
            network,
            backend,
            last_mephisto_ping_ms: AtomicI64::new(crate::clock::now_ms()),
            shutdown,
            #[cfg(feature = "cluster")]
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Whether a socket from `ip` (that presented the token, or not) may be
    /// the backend (PROTOCOL 1.5).
    pub fn admit_backend(
        &self,
        ip: Option<std::net::IpAddr>,
        token_ok: bool,
    ) -> Result<(), BackendRefusal> {
        match self.backend_gate.lock() {
            Ok(mut g) => g.admit(ip, token_ok),
            // A panic while holding it cannot leave a half-made decision.
            Err(p) => p.into_inner().admit(ip, token_ok),
        }
    }

    pub fn last_mephisto_ping_ms(&self) -> i64 {
        self.last_mephisto_ping_ms.load(Ordering::Relaxed)
    }

    /// This switch's member of its cluster, in cluster mode.
    #[cfg(feature = "cluster")]
    pub fn cluster(&self) -> Option<&crate::cluster::ClusterHandle> {
        self.cluster.get()
    }

    /// Makes this switch a cluster member; once, at start.
    #[cfg(feature = "cluster")]
    pub fn set_cluster(&self, cluster: crate::cluster::ClusterHandle) {
        if self.cluster.set(cluster).is_err() {
            log::error!("cluster: joined twice; the first membership is kept");
        }
    }

    pub fn set_last_mephisto_ping_ms(&self, ms: i64) {
        self.last_mephisto_ping_ms.store(ms, Ordering::Relaxed);
    }

    /// The `data` of a heartbeat reply (PROTOCOL 1.2).
    pub fn heartbeat_data(&self, status: Option<&str>) -> serde_json::Value {
        let mut data = serde_json::Map::new();
        data.insert(
            "last_mephisto_ping".into(),
            self.last_mephisto_ping_ms().into(),
        );
        if let Some(s) = status {
            data.insert("status".into(), s.into());
        }
        serde_json::Value::Object(data)
    }
}
