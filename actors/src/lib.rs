//! # switchyard-actors
//!
//! The actors of switchyard, the messages they exchange, and the pure wire
//! layer beneath them. The HTTP routes, the WebSocket upgrades and the
//! transport that writes sessions' frames to their TCP sockets live in the
//! `switchyard` crate (`src/http/`); everything they talk to is here.
//!
//! # Layout
//!
//! ## Actors
//!
//! | actor | one per | owns | file |
//! |---|---|---|---|
//! | `AgentDirectory` | switch | the routing table (agent id -> `AgentLocation`: a local `Agent`; in cluster mode packets for agents go to their mailbox stream instead, wherever the agent lives), making agents up to `max_agents`, one `request_statuses` sweep at a time, agents adopted from a dead switch | `directory/mod.rs` |
//! | `Agent` | agent id | its `AgentState` (status, liveness), its `Delivery` (the bound socket, the bounded queue of undelivered packets, its `Shortcut`), reconnect-grace and idle-expiry timers, a takeover claim waiting for a probe | `agent/actor.rs` |
//! | `WsSession` | WebSocket on `/` | parsing and writing packets, its `Claims` (role, agent ids it bound), the agents it has cached, protocol ping, close codes | `agent/session.rs` |
//! | `BackendLink` | switch | the backend's socket and the ordered bounded outbox in front of it (its `Delivery`), HTTP requests waiting for `agent_details` by `request_id` | `agent/backend.rs` |
//! | `NetworkManager` | switch | the mesh (`MeshState`: node cache, root nodes, link state), the history log's writer thread, the event subscribers, the robots' status, gateways' nodes | `network/mod.rs` |
//! | `UartManager` | serial port | the port, its reader and writer threads, the frame codec, reconnect with backoff, commands waiting for the root's answer | `uart/mod.rs` |
//! | `SocketManager` | TCP listener | accepting (at most `max_connections`), the set of listening connections | `socket/mod.rs` |
//! | `ClientConnection` | TCP connection | ordered answers, the bounded push queue, one write pump | `socket/connection.rs` |
//! | `Monitor` | switch | the `/monitor` subscribers, each with its filter, its socket's `Flow` and a bounded event queue | `monitor/mod.rs` |
//! | `MonitorSession` | `/monitor` WebSocket | writing what `Monitor` hands it, the peer's `{"subscribe": [...]}`, protocol ping | `monitor/session.rs` |
//! | `Uplink` | edge switch | the numbered events not yet acknowledged (`EventBuffer`), the `WebsocketChannel` to the central switch | `uplink/mod.rs` |
//! | `GatewayServer` | central switch | the known gateways (`GatewayTable`: session, sequence gate, nodes), commands waiting for a gateway's result (`PendingCommands`) | `uplink/gateway.rs` |
//! | `GatewaySession` | `/gateway` WebSocket | the token check, decoding envelopes within a byte limit, the one gateway name it speaks for | `uplink/session.rs` |
//! | `WebsocketChannel` | outbound WebSocket | the connection, its `Lifecycle`, messages kept while it is down | `channel/websocket.rs` |
//! | `MqttBridge` | switch, with `--mqtt` | the MQTT client and its connection, what waits for the broker (`Outbound`), the nodes and types it has described to Home Assistant, the command topics' rate buckets | `mqtt/mod.rs` |
//! | `Cluster` | switch, in cluster mode | the NATS connection and JetStream handles (`Link`), the publish window, heartbeats and `Membership`, the watch on agents' owners, `request_statuses` across switches, adoption of a dead switch's agents | `cluster/actor.rs` |
//!
//! Beside them, the plain structs that decide, tested without a runtime:
//! `AgentState` (`agent/state.rs`, PROTOCOL 1.3), `Claims` and `BackendGate`
//! (`agent/claims.rs`, 1.5), `Delivery` (`agent/delivery.rs`: write now or
//! keep, in order), `RoutingTable` and `StatusSweeps` (`directory/routing.rs`),
//! `MeshState` (`network/mesh.rs`), `NodeCache` (`network/node_cache.rs`),
//! `GatewayTable` and `PendingCommands` (`uplink/gateway.rs`), `EventBuffer`
//! (`uplink/mod.rs`), `Lifecycle` (`channel/mod.rs`), and the state file's
//! `decode` (`agent/snapshot.rs`). Also there: `agent/shortcut.rs`
//! (`Shortcut`, `Detour`, `Ticket`, `Relay`), `agent/mod.rs`
//! (`RouterContext`, the router's configs, `Resume`), `network/history.rs`
//! (the history log's files and writer thread), `network/events.rs`
//! (`SwitchEvent`), `monitor/json.rs` (events as PROTOCOL 4 JSON) and the
//! Channel contract's messages in `channel/mod.rs` (`OpenChannel`,
//! `ChannelSend`, `ChannelNotice`, ...), kept by `WebsocketChannel` and
//! `UartManager`. The simulated mesh (`uart/sim.rs`) is a peer on the far
//! end of a pseudo-terminal, on its own thread, not an actor.
//!
//! ## Support modules (they name no actor)
//!
//! - `clock.rs`: `now_secs`, `now_ms`; plain structs take times as arguments.
//! - `shutdown.rs`: `until_shutdown`, `close_on_shutdown` (WebSockets close with 1001).
//! - `mailbox.rs`: `Mailbox`, an address with its `ActorProbe` (every send
//!   through it counted, so mailbox depth is known), for a `WsSession` its
//!   socket's `Flow`, for an owner its `Shortcut`; `CountedRecipient`.
//! - `outbox.rs`: `Outbox`, the bounded FIFO that drops its oldest (items and
//!   bytes; *spare* items hold only a share).
//! - `backoff.rs`: capped exponential backoff, for `channel::Lifecycle`.
//! - `rng.rs`: the seeded generator of the simulated mesh and of reconnect jitter.
//! - `flow.rs`: `Flow`, a socket's bytes sent by the switch and not yet taken
//!   by the transport, and the waiters to wake when room returns.
//! - `log_limit.rs`: `LogLimit`, at most one log line per interval per kind.
//! - `metrics.rs`: every metric name in one place, `Metrics`, the actor probes.
//! - `wire/`: pure codecs: `frame.rs` (0xFF/0xFE/0xFA, PROTOCOL 2.1),
//!   `mesh.rs` (2.2, 2.3), `data_types.rs` (2.4), `packet.rs` (1.1),
//!   `client_api.rs` (3), `uplink.rs` (5, bincode envelopes).
//!
//! `cluster/` is cluster mode on NATS JetStream (`CLUSTER.md`; feature
//! `cluster`, nothing of it runs without `--cluster`): its decisions in
//! plain structs, `names.rs` (subjects, streams, buckets; agent ids as
//! subject tokens), `membership.rs` (live switches from heartbeats, who
//! adopts a dead one's agents), `window.rs` (publishes awaiting their
//! PubAck, with idempotent message ids), `acks.rs` (what was handed to a
//! socket from a stream, so may be purged), `statuses.rs` (the
//! scatter-gather's parts); and its IO, `link.rs` (connecting, the shared
//! streams and buckets), `mailbox.rs` (an agent's mailbox read back, owner
//! records), `actor.rs` (`Cluster`). In cluster mode `Agent` reads its
//! mailbox stream while it owns the agent, and `BackendLink` reads the
//! backend stream while it holds the backend (`agent/backend_feed.rs`).
//!
//! `mqtt/` is the MQTT bridge (`--mqtt`; nothing of it runs without it):
//! `topics.rs` (topics and payloads), `discovery.rs` (Home Assistant
//! discovery configs), `commands.rs` (command payloads, per-topic rate
//! buckets), `outbound.rs` (what waits for the broker, in order, bounded),
//! all pure; `mod.rs` is the `MqttBridge` actor.
//!
//! `testing.rs` (feature `test-util`, and the crate's own tests) may name
//! every actor: event probes, `TestRouter`, `FakePeer`.
//!
//! # Message flows
//!
//! Agent router (PROTOCOL 1); the first three lines are the steady state,
//! with no central mailbox on the way:
//!
//! ```text
//!   agent  ──ws──> WsSession ──Relay──> BackendLink ──Deliver──> backend WsSession      (mephisto_bound_live_update, log_error)
//!   backend ──ws──> WsSession ──Relay──> Agent ──Deliver──> agent WsSession              (client_bound_live_update, update_status)
//!   shortcut, while the owner holds nothing back: WsSession ──Deliver──> peer WsSession
//!   first packet for an id: WsSession ──BindAgent | RouteHeartbeat | RouteToAgent──> AgentDirectory
//!       ──AgentAlive | AgentHeartbeat | Relay──> Agent, and AgentDirectory ──AgentBound──> WsSession (cached)
//!   alive / heartbeat: Agent ──Deliver (queued packets, update_status, the reply)──> WsSession
//!   backend: WsSession ──BackendAlive | BackendClosed | AgentDetails──> BackendLink
//!   request_statuses: WsSession ──RequestStatuses──> AgentDirectory ──CheckLiveness──> every Agent;
//!       AgentDirectory ──ToBackend(return_statuses)──> BackendLink
//!   HTTP: ──RegisterRequest | CancelRequest | ToBackend──> BackendLink; after a submit ──RemoveAgent──>
//!       AgentDirectory ──RetireAgent──> Agent; idle expiry: Agent ──AgentRetired──> AgentDirectory
//!   claims (1.5): Agent ──ProbeLiveness | CloseSocket──> old WsSession, ──ClaimRefused──> claimer
//!   socket gone: WsSession ──SocketClosed──> Agent
//!   events: Agent (status), BackendLink (presence) ──Publish──> NetworkManager
//! ```
//!
//! In cluster mode (the shortcut off), across switches:
//!
//! ```text
//!   agent-bound:   backend WsSession ──RouteToAgent──> AgentDirectory ──Publish(Mailbox)──> Cluster ──JetStream sy.mbox.<agent>──>
//!                  RePublish sy.live.<agent> ──> the owner's Agent (gaps read back from the stream) ──Deliver──> agent WsSession
//!   backend-bound: Agent, WsSession ──ToBackend | Relay──> BackendLink ──Publish(Backend)──> Cluster ──JetStream sy.backend──>
//!                  the holder's BackendLink (ordered consumer, FromStream) ──Deliver──> backend WsSession
//!   acknowledgement: Agent, BackendLink ──Purge (below what left their queue)──> Cluster, every ack interval
//!   ownership: Agent (bound) ──KV put──> sy_agents; Cluster (watch) ──AgentMoved──> AgentDirectory ──> the old Agent
//!   request_statuses: AgentDirectory ──GatherStatuses──> Cluster ──sy.ctl.statuses──> each Cluster ──LocalStatuses──> AgentDirectory
//!   a switch down: Cluster (Membership) ──CAS on sy_agents──> ──AdoptAgent──> AgentDirectory
//!   HTTP requests: BackendLink publishes with Sy-Origin; the holder's BackendLink sends agent_details to sy.node.<origin>.details
//! ```
//!
//! Mesh link (PROTOCOL 2):
//!
//! ```text
//!   root ──serial──> reader thread ──UartBytes──> UartManager ──ChannelNotice::Inbound──> NetworkManager
//!       ──SwitchEvent──> Monitor, SocketManager, Uplink;  updates also go to the history writer thread
//!   link up / down: UartManager ──ChannelNotice::Opened | Reconnected | Lost──> NetworkManager
//!   HTTP, ClientConnection, Uplink ──MeshCommand──> NetworkManager ──SendCommand──> UartManager
//!       ──> writer thread ──serial──> root; the root's [R] / [N] answers the waiting SendCommand,
//!       and an [R] is also told as ChannelNotice::Answered before its frame (a tracked send's
//!       result reaches listeners in the order the root spoke)
//! ```
//!
//! Client socket (PROTOCOL 3):
//!
//! ```text
//!   client ──TCP──> SocketManager (accept) ──> one ClientConnection per connection
//!   ClientConnection ──MeshCommand | GetMeshInfo | GetLatest | SetRobots | Publish(Log)──> NetworkManager
//!       one answer frame per request, in order
//!   LISTN: ClientConnection ──Listening──> SocketManager; closed: ──ConnectionClosed──> SocketManager
//!   NetworkManager ──SwitchEvent──> SocketManager ──Push (encoded once)──> each listening ClientConnection
//! ```
//!
//! Monitor (PROTOCOL 4):
//!
//! ```text
//!   MonitorSession ──Join | SetFilter | Leave──> Monitor
//!   on Join: Monitor ──GetMeshInfo, GetRobots──> NetworkManager, ──ListAgents──> AgentDirectory,
//!       ──GetBackendInfo──> BackendLink: a snapshot goes first
//!   NetworkManager ──SwitchEvent──> Monitor (JSON once) ──MonitorText──> MonitorSession ──ws──> dashboard
//! ```
//!
//! Uplink (PROTOCOL 5):
//!
//! ```text
//!   edge:    NetworkManager ──SwitchEvent──> Uplink ──ChannelSend(Envelope::Event)──> WebsocketChannel ──ws──>
//!            (re)connected: ChannelNotice::Opened | Reconnected ──> Uplink: Hello, then every unacknowledged Event
//!   central: GatewaySession ──GatewayHello | GatewayEvent | GatewayResult | GatewayGone | GatewayRefused──> GatewayServer
//!            GatewayServer ──GatewayMessage | ForgetGateway | Publish──> NetworkManager ──SwitchEvent──> subscribers
//!            GatewayServer ──SendEnvelope(Ack | Command) | CloseGateway──> GatewaySession ──ws──>
//!   edge:    WebsocketChannel ──ChannelNotice::Inbound──> Uplink (Ack: forget; Command: ──MeshCommand──> NetworkManager)
//!   HTTP on the central switch ──GatewayCommand──> GatewayServer, answered by the edge's CommandResult
//! ```
//!
//! # Backpressure
//!
//! A WebSocket session actor runs only when the transport pulls its output,
//! so a peer that stops reading freezes it, mailbox and all. Every router
//! and monitor socket therefore has a `Flow` (`flow.rs`): senders count each
//! frame's bytes as they send it (`Flow::wrote`, so bytes still in the
//! session's mailbox count as in flight), and the transport's `Pump`
//! (`src/http/transport.rs`) counts the data frames it pulls out of the
//! session (`Flow::took`). The pump pulls only while less than `OUT_HIGH`
//! bytes wait for the TCP socket, and when bytes wait and none could be
//! written for the stall timeout (the session ping timeout) it ends the
//! connection itself and the session stops (a `WsSession` tells its agents,
//! `SocketClosed`, or the `BackendLink`, `BackendClosed`).
//!
//! The owners keep what the socket cannot take. `Agent` and `BackendLink`
//! write through their `Delivery` (`agent/delivery.rs`): a packet goes out
//! at once only when nothing waits before it and the socket has fewer than
//! `max_in_flight_bytes` in flight; otherwise it is kept, in order, in a
//! bounded `Outbox` (oldest dropped and counted; an `Agent` also reports
//! each drop to the backend as a `log_error`). With the socket full, the
//! owner asks its `Flow` to wake it at half the bound, and the transport's
//! side sends it `Resume`, upon which it drains in order. Keeping a packet
//! closes the owner's `Shortcut`; while the `BackendLink`'s bound socket is
//! full, an agent session that had to hand it a packet stops reading its
//! own socket until the `BackendLink` is no longer full or `MAX_PAUSE` (1 s)
//! passes
//! (`Shortcut::until_room`, `agent/shortcut.rs`), so agents' packets wait in
//! their TCP buffers instead of the outbox. A session also refuses, with
//! an `overloaded` error, live updates, `update_status` and `log_error`
//! while the `Agent`'s or the `BackendLink`'s mailbox holds more than
//! `max_mailbox_depth` messages.
//!
//! The monitor hands a subscriber events only while its socket's `Flow`
//! shows fewer than `in_flight_bytes`; the rest wait in that subscriber's
//! queue of at most `queue_limit` events (oldest dropped, counted), offered
//! again every 50 ms, and a subscriber that lost events gets one `lagged`
//! event (`dropped`: how many) before the next one. Elsewhere the bound is
//! in the reading: the serial reader thread hands `UartManager` one chunk
//! at a time, and `UartManager` takes the next once `NetworkManager` has
//! handled the last one's frames; a `GatewaySession` reads its next frame
//! once `GatewayServer` has applied its last event. A `ClientConnection`
//! drops its oldest pushes, and cuts a client when a write does not
//! complete within `write_timeout_secs`.
//!
//! # Mailboxes, not locks, and the shortcut
//!
//! Actors reach each other only through mailboxes. The one exception is the
//! shortcut (`agent/shortcut.rs`, which states its invariant): while an
//! `Agent` or the `BackendLink` would write a packet to its socket at once
//! itself, its `Delivery` publishes that socket in its `Shortcut` (behind an
//! `RwLock`), and sessions write to it directly (`Deliver`), past the
//! owner's mailbox: one crossing fewer per packet. Past an `Agent` only live
//! updates go this way; status changes are the agent's to see.
//! Only the owner opens and closes it, a sender's `Detour` keeps its
//! packets in order, and `[session] shortcut = false` (`--no-shortcut`)
//! keeps it closed so its gain can be measured. Apart from it, actors share
//! metrics, each socket's `Flow`, the backend's last ping time (an atomic)
//! and the backend gate (a mutex a session asks once per backend `alive`).
//!
//! Dependencies point one way: actors use [`wire`] (pure codecs, no IO, no
//! clock) and the support modules; `cluster` names no other actor (it
//! reaches the directory through `CountedRecipient`s of its own messages). No two top-level modules need each
//! other except `directory` and `agent` (`actors/tests/module_cycles.rs`
//! reads the sources and checks it).

pub mod agent;
pub mod backoff;
pub mod channel;
pub mod clock;
pub mod cluster;
pub mod directory;
pub mod flow;
pub mod log_limit;
pub mod mailbox;
pub mod metrics;
pub mod monitor;
pub mod mqtt;
pub mod network;
pub mod node_send;
pub mod outbox;
pub mod rng;
pub mod shutdown;
pub mod socket;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod uart;
pub mod uplink;
pub mod wire;
