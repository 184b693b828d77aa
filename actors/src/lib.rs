//! # switchyard-actors
//!
//! The actors of switchyard, the messages they exchange, and the pure wire
//! layer beneath them.
//!
//! ## Layout
//!
//! | actor | one per | owns | module |
//! |---|---|---|---|
//! | `AgentDirectory` | switch | where every agent lives (agent id -> `AgentLocation`), `request_statuses` sweeps | [`directory`] |
//! | `NetworkManager` | switch | the mesh: node cache, history log, event subscribers, gateways' nodes | [`network`] |
//! | `Agent` | agent id | status, liveness timers, the queue of undelivered packets | [`agent`] |
//! | `WsSession` | WebSocket | parsing and writing packets, protocol ping, close codes | [`agent`] |
//! | `BackendLink` | switch | the backend socket, its ordered bounded outbox, pending HTTP requests | [`agent`] |
//! | `UartManager` | serial port | the port, the reader thread, framing, reconnect with backoff | [`uart`] |
//! | `SocketManager` | TCP listener | accepting, the set of listening connections | [`socket`] |
//! | `ClientConnection` | TCP connection | ordered answers, the bounded push queue | [`socket`] |
//! | `Monitor` | switch | the `/monitor` subscribers, each with its filter and bounded event queue | [`monitor`] |
//! | `Uplink` | edge switch | unacknowledged events, the `WebsocketChannel` to the central switch | [`uplink`] |
//! | `GatewayServer` | central switch | connected gateways, their sequence gates, pending commands | [`uplink`] |
//! | `GatewaySession` | gateway WebSocket | decoding envelopes | [`uplink`] |
//! | `MonitorSession` | `/monitor` WebSocket | writing what `Monitor` hands it, protocol ping | [`monitor`] |
//!
//! The simulated mesh ([`uart::sim`]) is a peer on the far end of a
//! pseudo-terminal, not an actor.
//!
//! Support modules, each depending on no actor: [`clock`] (`now_secs`,
//! `now_ms`), [`shutdown`] (`until_shutdown`, `close_on_shutdown`),
//! [`mailbox`] (`Mailbox`: an address with its probe, every send counted),
//! [`outbox`] (the bounded queue), [`backoff`], [`rng`] (the simulator's
//! generator), [`flow`] (a socket's bytes in flight), [`log_limit`],
//! [`metrics`] (every metric name, in one place).
//!
//! Message flow on the agent router (PROTOCOL 1):
//!
//! ```text
//!   browser ──ws──> WsSession ──Relay──> BackendLink ──Deliver──> WsSession ──ws──> backend
//!   backend ──ws──> WsSession ──Relay──> Agent ──Deliver──> WsSession ──ws──> browser
//!   live updates, while BackendLink / Agent hold nothing back: WsSession ──Deliver──> WsSession (their Shortcut)
//!   first packet of a socket for an agent: WsSession ──BindAgent / RouteToAgent──> AgentDirectory ──> Agent
//! ```
//!
//! The shortcut halves the thread hand-offs per round trip; the owner
//! alone opens and closes it, so queueing, ordering and reconnection stay
//! its decisions (see `agent/shortcut.rs`).
//!
//! On the mesh link (PROTOCOL 2):
//!
//! ```text
//!   root ──serial──> reader thread ──UartBytes──> UartManager ──ChannelNotice::Inbound──> NetworkManager ──SwitchEvent──> subscribers
//!   HTTP / client ──MeshCommand──> NetworkManager ──SendCommand──> UartManager ──serial──> root
//! ```
//!
//! Dependencies point one way: actors use [`wire`] (pure codecs, no IO, no
//! clock) and the support modules. No two top-level modules need each
//! other except `directory` and `agent` (`tests/module_cycles.rs` reads
//! the sources and checks it).

pub mod agent;
pub mod backoff;
pub mod channel;
pub mod clock;
pub mod directory;
pub mod flow;
pub mod log_limit;
pub mod mailbox;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod outbox;
pub mod rng;
pub mod shutdown;
pub mod socket;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod uart;
pub mod uplink;
pub mod wire;
