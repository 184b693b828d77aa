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
pub mod channel;
pub mod flow;
pub mod log_limit;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod socket;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod uart;
pub mod uplink;
pub mod wire;

/// Seconds since the Unix epoch, as the router's `*_timestamp` fields use.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch (what `mephisto-task` compares with
/// `Date.now()`).
pub fn now_ms() -> i64 {
    (now_secs() * 1000.0) as i64
}

/// Resolves when the switch is shutting down (the watch turns true or its
/// sender is gone).
pub async fn until_shutdown(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await;
}

/// Closes a WebSocket actor's socket with 1001 (going away) and stops the
/// actor when the switch shuts down: every socket the switch serves does so.
pub fn close_on_shutdown<A>(
    act: &A,
    ctx: &mut actix_web_actors::ws::WebsocketContext<A>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) where
    A: actix::Actor<Context = actix_web_actors::ws::WebsocketContext<A>>,
{
    use actix::prelude::*;
    use actix_web_actors::ws;
    ctx.spawn(until_shutdown(shutdown).into_actor(act).map(
        |_, _, ctx: &mut ws::WebsocketContext<A>| {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Away,
                description: Some("switch shutting down".into()),
            }));
            ctx.stop();
        },
    ));
}
