//! # switchyard-actors
//!
//! The actors of switchyard, the messages they exchange, and the pure wire
//! layer beneath them.
//!
//! ## Layout
//!
//! | actor | one per | owns | module |
//! |---|---|---|---|
//! | `NetworkManager` | switch | the routing table (agent id -> `Agent`) | [`network`] |
//! | `Agent` | agent id | status, liveness timers, the queue of undelivered packets | [`agent`] |
//! | `WsSession` | WebSocket | parsing and writing packets, protocol ping, close codes | [`agent`] |
//! | `BackendLink` | switch | the backend socket, its ordered bounded outbox, pending HTTP requests | [`agent`] |
//! | `UartManager` | serial port | the port, the reader thread, framing, reconnect with backoff | [`uart`] |
//! | `SocketManager` | TCP listener | accepting, the set of listening connections | [`socket`] |
//! | `ClientConnection` | TCP connection | ordered answers, the bounded push queue | [`socket`] |
//! | `Monitor` | switch | the `/monitor` subscribers | [`monitor`] |
//! | `Uplink` | edge switch | unacknowledged events, the `WebsocketChannel` to the central switch | [`uplink`] |
//! | `GatewayServer` | central switch | connected gateways, their sequence gates, pending commands | [`uplink`] |
//! | `GatewaySession` | gateway WebSocket | decoding envelopes | [`uplink`] |
//! | `MonitorSession` | `/monitor` WebSocket | its filter and bounded event queue | [`monitor`] |
//!
//! `NetworkManager` also owns the mesh node cache and history log, and the
//! list of event subscribers. The simulated mesh ([`uart::sim`]) is a peer on
//! the far end of a pseudo-terminal, not an actor.
//!
//! Message flow on the agent router (PROTOCOL 1):
//!
//! ```text
//!   browser ──ws──> WsSession ──Relay──> BackendLink ──Deliver──> WsSession ──ws──> backend
//!   backend ──ws──> WsSession ──Relay──> Agent ──Deliver──> WsSession ──ws──> browser
//!   live updates, while BackendLink / Agent hold nothing back: WsSession ──Deliver──> WsSession (their Shortcut)
//!   first packet of a socket for an agent: WsSession ──BindAgent / RouteToAgent──> NetworkManager ──> Agent
//! ```
//!
//! The shortcut halves the thread hand-offs per round trip; the owner
//! alone opens and closes it, so queueing, ordering and reconnection stay
//! its decisions (see `agent/shortcut.rs`).
//!
//! On the mesh link (PROTOCOL 2):
//!
//! ```text
//!   root ──serial──> reader thread ──UartBytes──> UartManager ──RootMessageReceived──> NetworkManager ──SwitchEvent──> subscribers
//!   HTTP / client ──MeshCommand──> NetworkManager ──SendCommand──> UartManager ──serial──> root
//! ```
//!
//! Dependencies point one way: actors use [`wire`] (pure codecs, no IO, no
//! clock) and [`metrics`] (every metric name, in one place).

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
#[cfg(feature = "test-util")]
pub mod testing;
pub mod uart;
pub mod uplink;
pub mod wire;
