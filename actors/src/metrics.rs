//! Every metric of the switch, named in one place (DESIGN house rule 10),
//! and the actor probes behind `/metrics/actors`.
//!
//! One `Metrics` value is made by `start()` and handed to every actor as an
//! `Arc`: there is no global registry, so two switches in one test process
//! keep separate counters.
//!
//! Mailbox depth: actix does not expose a queue length, so every send goes
//! through a [`Mailbox`](crate::mailbox::Mailbox) (which counts `sent`) and every handler opens a
//! [`Handling`] guard (which counts `handled`); depth is the difference.
//! Those two counters are the actor's own. Handling times and per-message
//! counts are kept per thread and per actor kind until `/metrics` is read
//! (`ThreadLocal`): then the per-kind series are brought up to date from
//! every thread's cell. A message thus costs no write to a counter that
//! handlers on another thread write too (on two threads, such a counter's
//! cache line moves with every write), and an idle actor holds no
//! histogram of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::local::LocalHistogram;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::Serialize;

/// Metric names, as scraped from `/metrics`.
pub mod names {
    pub const ACTORS_LIVE: &str = "switchyard_actors_live";
    pub const ACTOR_MESSAGES: &str = "switchyard_actor_messages_total";
    pub const ACTOR_MAILBOX_DEPTH: &str = "switchyard_actor_mailbox_depth";
    pub const ACTOR_HANDLE_SECONDS: &str = "switchyard_actor_handle_seconds";
    pub const AGENTS_BY_STATUS: &str = "switchyard_agents";
    pub const CONNECTIONS_OPEN: &str = "switchyard_connections_open";
    pub const HEARTBEATS: &str = "switchyard_heartbeats_total";
    pub const REBINDS: &str = "switchyard_rebinds_total";
    pub const PACKETS_QUEUED: &str = "switchyard_packets_queued";
    pub const PACKETS_QUEUED_TOTAL: &str = "switchyard_packets_queued_total";
    pub const PACKETS_FORWARDED: &str = "switchyard_packets_forwarded_total";
    pub const PACKETS_DROPPED: &str = "switchyard_packets_dropped_total";
    pub const PACKETS_UNKNOWN: &str = "switchyard_packets_unknown_total";
    pub const BACKEND_CONNECTED: &str = "switchyard_backend_connected";
    pub const BACKEND_OUTBOX_DEPTH: &str = "switchyard_backend_outbox_depth";
    pub const BACKEND_REFUSED: &str = "switchyard_backend_refused_total";
    pub const SENDER_PAUSES: &str = "switchyard_sender_pauses_total";
    pub const MALFORMED_INPUT: &str = "switchyard_malformed_input_total";
    pub const HTTP_REQUESTS: &str = "switchyard_http_requests_total";
    pub const UPLOADED_FILES: &str = "switchyard_uploaded_files_total";
    pub const MESH_LINK_UP: &str = "switchyard_mesh_link_up";
    pub const UART_RECONNECTS: &str = "switchyard_uart_reconnects_total";
    pub const UART_FRAMES: &str = "switchyard_uart_frames_total";
    pub const UART_BYTES: &str = "switchyard_uart_bytes_total";
    pub const UART_FRAME_ERRORS: &str = "switchyard_uart_frame_errors_total";
    pub const MESH_FRAMES_REJECTED: &str = "switchyard_mesh_frames_rejected_total";
    pub const DATA_ENTRIES_REJECTED: &str = "switchyard_data_entries_rejected_total";
    pub const NODE_UPDATES: &str = "switchyard_node_updates_total";
    pub const NODE_MESSAGES: &str = "switchyard_node_messages_total";
    pub const NODES: &str = "switchyard_nodes";
    pub const HISTORY_RECORDS: &str = "switchyard_history_records_total";
    pub const HISTORY_ERRORS: &str = "switchyard_history_errors_total";
    pub const EVENTS_PUBLISHED: &str = "switchyard_events_published_total";
    pub const CLIENT_REQUESTS: &str = "switchyard_client_requests_total";
    pub const CLIENT_ERRORS: &str = "switchyard_client_errors_total";
    pub const CLIENT_PUSHES: &str = "switchyard_client_pushes_total";
    pub const CLIENT_PUSHES_DROPPED: &str = "switchyard_client_pushes_dropped_total";
    pub const CLIENT_LISTENERS: &str = "switchyard_client_listeners";
    pub const MONITOR_SUBSCRIBERS: &str = "switchyard_monitor_subscribers";
    pub const MONITOR_EVENTS_SENT: &str = "switchyard_monitor_events_sent_total";
    pub const MONITOR_EVENTS_DROPPED: &str = "switchyard_monitor_events_dropped_total";
    pub const UPLINK_RECONNECTS: &str = "switchyard_uplink_reconnects_total";
    pub const UPLINK_BUFFERED: &str = "switchyard_uplink_buffered";
    pub const UPLINK_DROPPED: &str = "switchyard_uplink_dropped_total";
    pub const UPLINK_CONNECTED: &str = "switchyard_uplink_connected";
    pub const GATEWAY_CONNECTED: &str = "switchyard_gateway_connected";
    pub const GATEWAY_EVENTS_IN: &str = "switchyard_gateway_events_in_total";
    pub const GATEWAY_DUPLICATES: &str = "switchyard_gateway_duplicates_total";
    pub const GATEWAY_REFUSED: &str = "switchyard_gateway_refused_total";
    pub const GATEWAY_BAD_FRAMES: &str = "switchyard_gateway_bad_frames_total";
    pub const ROUTER_REFUSED: &str = "switchyard_router_refused_total";
    pub const BACKEND_OUTBOX_BYTES: &str = "switchyard_backend_outbox_bytes";
    pub const PACKETS_QUEUED_BYTES: &str = "switchyard_packets_queued_bytes";
    pub const STATUS_SWEEPS: &str = "switchyard_status_sweeps_total";
    pub const FRAMES_REFUSED: &str = "switchyard_frames_refused_total";
    pub const PEERS_CUT: &str = "switchyard_peers_cut_total";
    pub const CONNECTIONS_REFUSED: &str = "switchyard_connections_refused_total";
    pub const ACCEPT_ERRORS: &str = "switchyard_accept_errors_total";
    pub const ADMIN_REFUSED: &str = "switchyard_admin_refused_total";
    pub const MESSAGE_BUDGET_REFUSED: &str = "switchyard_message_budget_refused_total";
    pub const MESSAGE_BUDGET_BYTES: &str = "switchyard_message_budget_bytes";
    pub const GATEWAY_REJECTED: &str = "switchyard_gateway_rejected_total";
    pub const GATEWAY_EVENTS_REJECTED: &str = "switchyard_gateway_events_rejected_total";
    pub const PENDING_COMMANDS_EXPIRED: &str = "switchyard_pending_commands_expired_total";
    pub const PENDING_COMMANDS_REFUSED: &str = "switchyard_pending_commands_refused_total";
    pub const UPLINK_BUFFERED_BYTES: &str = "switchyard_uplink_buffered_bytes";
    pub const HISTORY_DROPPED: &str = "switchyard_history_dropped_total";
    pub const HISTORY_FILES_REMOVED: &str = "switchyard_history_files_removed_total";
    pub const HISTORY_WARM_SKIPPED: &str = "switchyard_history_warm_skipped_total";
    pub const HISTORY_WARM_RECORDS: &str = "switchyard_history_warm_records_total";
    pub const UART_WRITES_DROPPED: &str = "switchyard_uart_writes_dropped_total";
    pub const STATE_SAVED: &str = "switchyard_state_saved_total";
    pub const STATE_RESTORED: &str = "switchyard_state_restored_total";
    pub const STATE_SKIPPED: &str = "switchyard_state_skipped_total";
    pub const STATE_SET_ASIDE: &str = "switchyard_state_set_aside_total";
    pub const STATE_ERRORS: &str = "switchyard_state_errors_total";
}

/// Label values of `switchyard_state_saved_total{kind}` and
/// `switchyard_state_restored_total{kind}`.
pub mod state_kind {
    pub const AGENTS: &str = "agents";
    pub const AGENT_PACKETS: &str = "agent_packets";
    pub const OUTBOX_PACKETS: &str = "outbox_packets";
}

/// Label values of `switchyard_peers_cut_total{reason}`.
pub mod cut_reason {
    /// Bytes waited for the socket and none were taken for the timeout.
    pub const STALLED: &str = "stalled";
    /// A client sent nothing for the idle timeout.
    pub const IDLE: &str = "idle";
    /// A WebSocket peer sent nothing, not even a pong to the switch's
    /// pings, for the ping timeout.
    pub const PING_TIMEOUT: &str = "ping_timeout";
}

/// Label values of `switchyard_packets_dropped_total{reason}`.
pub mod drop_reason {
    pub const AGENT_QUEUE_FULL: &str = "agent_queue_full";
    pub const BACKEND_OUTBOX_FULL: &str = "backend_outbox_full";
    /// Cluster mode: JetStream acknowledged nothing for a whole publish
    /// window and its queue (NATS gone for long under load).
    pub const CLUSTER_WINDOW_FULL: &str = "cluster_window_full";
    /// Cluster mode: NATS refused a packet larger than its `max_payload`.
    pub const CLUSTER_TOO_LARGE: &str = "cluster_too_large";
    pub const UNMATCHED_AGENT_DETAILS: &str = "unmatched_agent_details";
    pub const AGENT_REMOVED: &str = "agent_removed";
    pub const OVERLOADED: &str = "overloaded";
    /// Queued for an agent that had no socket until its idle expiry.
    pub const AGENT_EXPIRED: &str = "agent_expired";
    /// A request to the backend whose HTTP request timed out first.
    pub const STALE_REQUEST: &str = "stale_request";
    /// For a new agent past the switch's bound on agents.
    pub const AGENT_LIMIT: &str = "agent_limit";
    /// A `log_error` for an absent backend past the share of the outbox
    /// such reports may hold (anyone can cause them).
    pub const LOG_ERROR_SHARE: &str = "log_error_share";
}

/// Label values of `switchyard_router_refused_total{reason}`: claims and
/// requests of a router socket or HTTP request refused (PROTOCOL 1.5).
pub mod refusal {
    /// A backend-only packet from a socket that is not the backend.
    pub const NOT_BACKEND: &str = "not_backend";
    /// An agent-to-backend packet for an id the socket did not bind.
    pub const UNBOUND_AGENT: &str = "unbound_agent";
    /// A socket tried to bind more agent ids than allowed.
    pub const TOO_MANY_IDS: &str = "too_many_ids";
    /// An agent id longer than allowed.
    pub const ID_TOO_LONG: &str = "id_too_long";
    /// An agent socket claimed the backend, or the backend an agent.
    pub const ROLE_CHANGE: &str = "role_change";
    /// A new agent past the switch's bound on agents.
    pub const AGENT_LIMIT: &str = "agent_limit";
    /// A claim on an agent whose socket still answers.
    pub const TAKEOVER: &str = "takeover";
    /// A packet with more top-level fields than allowed.
    pub const TOO_MANY_FIELDS: &str = "too_many_fields";
    /// `request_statuses` that waited for a running sweep and was replaced
    /// by a newer one before its own sweep (answered by that one's).
    pub const STATUSES_COALESCED: &str = "statuses_coalesced";
    /// An HTTP request waiting for the backend while the switch stops
    /// (answered 503).
    pub const SHUTTING_DOWN: &str = "shutting_down";
}

/// Statuses PROTOCOL 1.3 names; any other string the backend sends is
/// stored as is but counted under `other` so the label set stays bounded.
pub const KNOWN_STATUSES: &[&str] = &[
    "none",
    "accepted",
    "onboarding",
    "waiting",
    "in task",
    "completed",
    "disconnect",
    "timeout",
    "partner disconnect",
    "expired",
    "returned",
    "approved",
    "soft_rejected",
    "rejected",
    "mephisto disconnect",
];

/// Adds each non-zero count to `counter` under its label: the tallies a
/// read of untrusted input returns (lines skipped, packets refused) by kind.
pub fn count_each(counter: &IntCounterVec, counts: &[(&str, usize)]) {
    for &(label, n) in counts {
        if n > 0 {
            counter.with_label_values(&[label]).inc_by(n as u64);
        }
    }
}

pub fn status_label(status: &str) -> &str {
    if KNOWN_STATUSES.contains(&status) {
        status
    } else {
        "other"
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub actors_live: IntGaugeVec,
    pub actor_messages: IntCounterVec,
    pub actor_mailbox_depth: IntGaugeVec,
    pub actor_handle_seconds: HistogramVec,
    pub agents_by_status: IntGaugeVec,
    pub connections_open: IntGaugeVec,
    pub heartbeats: IntCounter,
    pub rebinds: IntCounter,
    pub packets_queued: IntGauge,
    pub packets_queued_total: IntCounter,
    pub packets_forwarded: IntCounterVec,
    pub packets_dropped: IntCounterVec,
    pub packets_unknown: IntCounterVec,
    pub backend_connected: IntGauge,
    pub backend_outbox_depth: IntGauge,
    pub backend_refused: IntCounter,
    pub sender_pauses: IntCounter,
    pub malformed_input: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub uploaded_files: IntCounter,
    pub mesh_link_up: IntGauge,
    pub uart_reconnects: IntCounter,
    pub uart_frames: IntCounterVec,
    pub uart_bytes: IntCounterVec,
    pub uart_frame_errors: IntCounterVec,
    pub mesh_frames_rejected: IntCounterVec,
    pub data_entries_rejected: IntCounterVec,
    pub node_updates: IntCounter,
    pub node_messages: IntCounter,
    pub nodes: IntGaugeVec,
    pub history_records: IntCounter,
    pub history_errors: IntCounter,
    pub events_published: IntCounterVec,
    pub client_requests: IntCounterVec,
    pub client_errors: IntCounterVec,
    pub client_pushes: IntCounter,
    pub client_pushes_dropped: IntCounter,
    pub client_listeners: IntGauge,
    pub monitor_subscribers: IntGauge,
    pub monitor_events_sent: IntCounter,
    pub monitor_events_dropped: IntCounter,
    pub uplink_reconnects: IntCounterVec,
    pub uplink_buffered: IntGaugeVec,
    pub uplink_dropped: IntCounterVec,
    pub uplink_connected: IntGaugeVec,
    pub gateway_connected: IntGaugeVec,
    pub gateway_events_in: IntCounterVec,
    pub gateway_duplicates: IntCounterVec,
    pub gateway_refused: IntCounter,
    pub gateway_bad_frames: IntCounterVec,
    pub router_refused: IntCounterVec,
    pub backend_outbox_bytes: IntGauge,
    pub packets_queued_bytes: IntGauge,
    pub status_sweeps: IntCounter,
    pub frames_refused: IntCounterVec,
    pub peers_cut: IntCounterVec,
    pub connections_refused: IntCounterVec,
    pub accept_errors: IntCounterVec,
    pub admin_refused: IntCounterVec,
    pub message_budget_refused: IntCounterVec,
    pub message_budget_bytes: IntGauge,
    pub gateway_rejected: IntCounterVec,
    pub gateway_events_rejected: IntCounterVec,
    pub pending_commands_expired: IntCounterVec,
    pub pending_commands_refused: IntCounterVec,
    pub uplink_buffered_bytes: IntGaugeVec,
    pub history_dropped: IntCounter,
    pub history_files_removed: IntCounterVec,
    pub history_warm_skipped: IntCounterVec,
    pub history_warm_records: IntCounter,
    pub uart_writes_dropped: IntCounter,
    pub state_saved: IntCounterVec,
    pub state_restored: IntCounterVec,
    pub state_skipped: IntCounterVec,
    pub state_set_aside: IntCounterVec,
    pub state_errors: IntCounterVec,
    actors: Mutex<HashMap<u64, Arc<ActorProbe>>>,
    /// What the handlers on each thread measured, not yet folded into the
    /// registry (one cell per thread that has run a handler).
    threads: Mutex<Vec<Arc<Mutex<ThreadLocal>>>>,
    /// This registry's number among those of the process (two switches in
    /// one test process keep separate cells).
    serial: u64,
    /// Every actor kind seen, so a kind whose last actor stopped reads 0.
    kinds: Mutex<Vec<&'static str>>,
    next_actor: AtomicU64,
}

/// Registers `c` and hands it back (the metrics of optional parts, the
/// cluster's and the MQTT bridge's, are registered when they start).
pub fn registered<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: T,
) -> prometheus::Result<T> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Names are constants and unique, so registration cannot collide.
    registered(r, c).expect("metric names are unique")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter =
            |name: &str, help: &str| reg(&r, IntCounter::new(name, help).expect("valid metric"));
        let gauge =
            |name: &str, help: &str| reg(&r, IntGauge::new(name, help).expect("valid metric"));
        let m = Metrics {
            actors_live: gauge_vec(names::ACTORS_LIVE, "Live actors per kind", &["kind"]),
            actor_messages: counter_vec(
                names::ACTOR_MESSAGES,
                "Messages handled per actor kind and message type",
                &["kind", "message"],
            ),
            actor_mailbox_depth: gauge_vec(
                names::ACTOR_MAILBOX_DEPTH,
                "Messages sent to actors of a kind and not yet handled",
                &["kind"],
            ),
            actor_handle_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(names::ACTOR_HANDLE_SECONDS, "Time spent in one handler")
                        .buckets(vec![
                            1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25, 1.0,
                        ]),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            agents_by_status: gauge_vec(names::AGENTS_BY_STATUS, "Agents by status", &["status"]),
            connections_open: gauge_vec(
                names::CONNECTIONS_OPEN,
                "Open connections by link",
                &["link"],
            ),
            heartbeats: counter(names::HEARTBEATS, "Agent heartbeats answered"),
            rebinds: counter(names::REBINDS, "Agents rebound to a newer socket"),
            packets_queued: gauge(names::PACKETS_QUEUED, "Packets waiting in agent queues"),
            packets_queued_total: counter(
                names::PACKETS_QUEUED_TOTAL,
                "Packets that had to wait in an agent queue",
            ),
            packets_forwarded: counter_vec(
                names::PACKETS_FORWARDED,
                "Packets written to a socket, by direction",
                &["direction"],
            ),
            packets_dropped: counter_vec(
                names::PACKETS_DROPPED,
                "Packets dropped, by reason",
                &["reason"],
            ),
            packets_unknown: counter_vec(
                names::PACKETS_UNKNOWN,
                "Packets of a type the switch does not handle, by origin",
                &["from"],
            ),
            backend_connected: gauge(names::BACKEND_CONNECTED, "1 while a backend is connected"),
            backend_outbox_depth: gauge(
                names::BACKEND_OUTBOX_DEPTH,
                "Packets waiting for the backend",
            ),
            backend_refused: counter(
                names::BACKEND_REFUSED,
                "Sockets refused as backend (wrong or missing token)",
            ),
            sender_pauses: counter(
                names::SENDER_PAUSES,
                "Times an agent socket stopped reading because the backend socket was full",
            ),
            malformed_input: counter_vec(
                names::MALFORMED_INPUT,
                "Malformed input by kind",
                &["kind"],
            ),
            http_requests: counter_vec(
                names::HTTP_REQUESTS,
                "HTTP requests by route and status",
                &["route", "status"],
            ),
            uploaded_files: counter(names::UPLOADED_FILES, "Files stored from uploads"),
            mesh_link_up: gauge(
                names::MESH_LINK_UP,
                "1 while the serial link to the root is open",
            ),
            uart_reconnects: counter(names::UART_RECONNECTS, "Attempts to reopen the serial port"),
            uart_frames: counter_vec(
                names::UART_FRAMES,
                "Frames on the serial link, by direction",
                &["direction"],
            ),
            uart_bytes: counter_vec(
                names::UART_BYTES,
                "Bytes on the serial link, by direction",
                &["direction"],
            ),
            uart_frame_errors: counter_vec(
                names::UART_FRAME_ERRORS,
                "Framing errors on the serial link, by kind",
                &["kind"],
            ),
            mesh_frames_rejected: counter_vec(
                names::MESH_FRAMES_REJECTED,
                "Well-framed frames from the root whose content was invalid, by kind",
                &["kind"],
            ),
            data_entries_rejected: counter_vec(
                names::DATA_ENTRIES_REJECTED,
                "Data entries dropped from otherwise valid updates, by reason",
                &["reason"],
            ),
            node_updates: counter(names::NODE_UPDATES, "Data entries recorded from nodes"),
            node_messages: counter(names::NODE_MESSAGES, "Messages from nodes"),
            nodes: gauge_vec(names::NODES, "Mesh nodes by status", &["status"]),
            history_records: counter(
                names::HISTORY_RECORDS,
                "Records appended to the history log",
            ),
            history_errors: counter(names::HISTORY_ERRORS, "Failed writes to the history log"),
            events_published: counter_vec(
                names::EVENTS_PUBLISHED,
                "Events published to subscribers, by event",
                &["event"],
            ),
            client_requests: counter_vec(
                names::CLIENT_REQUESTS,
                "Client socket requests, by command",
                &["command"],
            ),
            client_errors: counter_vec(
                names::CLIENT_ERRORS,
                "Client socket requests answered F, by kind",
                &["kind"],
            ),
            client_pushes: counter(names::CLIENT_PUSHES, "Events pushed to listening clients"),
            client_pushes_dropped: counter(
                names::CLIENT_PUSHES_DROPPED,
                "Pushes dropped from slow listeners' queues",
            ),
            client_listeners: gauge(names::CLIENT_LISTENERS, "Listening client connections"),
            monitor_subscribers: gauge(names::MONITOR_SUBSCRIBERS, "Monitor WebSocket subscribers"),
            monitor_events_sent: counter(
                names::MONITOR_EVENTS_SENT,
                "Events written to monitor subscribers",
            ),
            monitor_events_dropped: counter(
                names::MONITOR_EVENTS_DROPPED,
                "Events dropped from slow monitor subscribers' queues",
            ),
            uplink_reconnects: counter_vec(
                names::UPLINK_RECONNECTS,
                "Uplink connection attempts after a loss or failure, by gateway",
                &["gateway"],
            ),
            uplink_buffered: gauge_vec(
                names::UPLINK_BUFFERED,
                "Uplink events not yet acknowledged by the central switch, by gateway",
                &["gateway"],
            ),
            uplink_dropped: counter_vec(
                names::UPLINK_DROPPED,
                "Uplink events dropped from a full buffer, by gateway",
                &["gateway"],
            ),
            uplink_connected: gauge_vec(
                names::UPLINK_CONNECTED,
                "1 while the uplink to the central switch is up, by gateway",
                &["gateway"],
            ),
            gateway_connected: gauge_vec(
                names::GATEWAY_CONNECTED,
                "1 while a gateway is connected to this (central) switch",
                &["gateway"],
            ),
            gateway_events_in: counter_vec(
                names::GATEWAY_EVENTS_IN,
                "Events applied from a gateway",
                &["gateway"],
            ),
            gateway_duplicates: counter_vec(
                names::GATEWAY_DUPLICATES,
                "Replayed or out-of-order gateway events not applied, by gateway",
                &["gateway"],
            ),
            gateway_refused: counter(names::GATEWAY_REFUSED, "Gateways refused (token)"),
            gateway_bad_frames: counter_vec(
                names::GATEWAY_BAD_FRAMES,
                "Undecodable uplink frames, by kind",
                &["kind"],
            ),
            router_refused: counter_vec(
                names::ROUTER_REFUSED,
                "Router claims and requests refused (PROTOCOL 1.5), by reason",
                &["reason"],
            ),
            backend_outbox_bytes: gauge(
                names::BACKEND_OUTBOX_BYTES,
                "Bytes of the packets waiting for the backend",
            ),
            packets_queued_bytes: gauge(
                names::PACKETS_QUEUED_BYTES,
                "Bytes of the packets waiting in agent queues",
            ),
            status_sweeps: counter(
                names::STATUS_SWEEPS,
                "request_statuses sweeps over every agent",
            ),
            frames_refused: counter_vec(
                names::FRAMES_REFUSED,
                "WebSocket frames or messages over the link's limit, closed with 1009 before their payload was read",
                &["link"],
            ),
            peers_cut: counter_vec(
                names::PEERS_CUT,
                "Connections ended by the switch because the peer stopped reading, stayed idle or answered no ping, by link and reason",
                &["link", "reason"],
            ),
            connections_refused: counter_vec(
                names::CONNECTIONS_REFUSED,
                "Connections refused past a connection limit, by link and limit",
                &["link", "limit"],
            ),
            accept_errors: counter_vec(
                names::ACCEPT_ERRORS,
                "Failed accepts on a listener (each followed by a backoff), by link",
                &["link"],
            ),
            admin_refused: counter_vec(
                names::ADMIN_REFUSED,
                "Requests to the operators' surface refused, by reason",
                &["reason"],
            ),
            message_budget_refused: counter_vec(
                names::MESSAGE_BUDGET_REFUSED,
                "WebSockets closed with 1013 because large messages being read held the whole budget, by link",
                &["link"],
            ),
            message_budget_bytes: gauge(
                names::MESSAGE_BUDGET_BYTES,
                "Bytes of large or fragmented WebSocket messages being read, switch-wide",
            ),
            gateway_rejected: counter_vec(
                names::GATEWAY_REJECTED,
                "Gateway sessions or claims refused, by reason",
                &["reason"],
            ),
            gateway_events_rejected: counter_vec(
                names::GATEWAY_EVENTS_REJECTED,
                "Gateway events that failed the mesh link's own validation, by kind",
                &["kind"],
            ),
            pending_commands_expired: counter_vec(
                names::PENDING_COMMANDS_EXPIRED,
                "Commands whose answer never came, removed after the command timeout, by link",
                &["link"],
            ),
            pending_commands_refused: counter_vec(
                names::PENDING_COMMANDS_REFUSED,
                "Commands refused because too many were already waiting, by link",
                &["link"],
            ),
            uplink_buffered_bytes: gauge_vec(
                names::UPLINK_BUFFERED_BYTES,
                "Bytes of uplink events not yet acknowledged by the central switch, by gateway",
                &["gateway"],
            ),
            history_dropped: counter(
                names::HISTORY_DROPPED,
                "History records dropped because the history writer fell behind",
            ),
            history_files_removed: counter_vec(
                names::HISTORY_FILES_REMOVED,
                "History day files deleted by retention, by reason",
                &["reason"],
            ),
            history_warm_skipped: counter_vec(
                names::HISTORY_WARM_SKIPPED,
                "History lines or files skipped while warming the cache, by kind",
                &["kind"],
            ),
            history_warm_records: counter(
                names::HISTORY_WARM_RECORDS,
                "History records read back into the node cache at start",
            ),
            uart_writes_dropped: counter(
                names::UART_WRITES_DROPPED,
                "Frames for the root dropped because the serial writer queue was full",
            ),
            state_saved: counter_vec(
                names::STATE_SAVED,
                "Router state written to the state file on a graceful stop, by kind",
                &["kind"],
            ),
            state_restored: counter_vec(
                names::STATE_RESTORED,
                "Router state read back from the state file at start, by kind",
                &["kind"],
            ),
            state_skipped: counter_vec(
                names::STATE_SKIPPED,
                "Items of a readable state file not restored (unparsable packet, bad or surplus agent, past a queue bound), by reason",
                &["reason"],
            ),
            state_set_aside: counter_vec(
                names::STATE_SET_ASIDE,
                "State files moved aside unread at start (too large, damaged, other format or version), by reason",
                &["reason"],
            ),
            state_errors: counter_vec(
                names::STATE_ERRORS,
                "State file operations that failed, by operation",
                &["op"],
            ),
            registry: r,
            actors: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            kinds: Mutex::new(Vec::new()),
            next_actor: AtomicU64::new(1),
        };
        for s in KNOWN_STATUSES.iter().chain(std::iter::once(&"other")) {
            m.agents_by_status.with_label_values(&[s]).set(0);
        }
        Arc::new(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.collect_probes();
        let mut buf = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The live actors' probes, taken out of the lock so that reading them
    /// (and taking each probe's own lock) does not hold up actors starting
    /// or stopping.
    fn live_probes(&self) -> Vec<Arc<ActorProbe>> {
        match self.actors.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Folds what the live actors measured into the registry, and sets
    /// `switchyard_actor_mailbox_depth{kind}` to the sum over the live
    /// actors of that kind (0 for a kind with none left).
    fn collect_probes(&self) {
        let mut sums: HashMap<&'static str, u64> = HashMap::new();
        if let Ok(kinds) = self.kinds.lock() {
            sums.extend(kinds.iter().map(|k| (*k, 0)));
        }
        self.flush_threads();
        for p in self.live_probes() {
            *sums.entry(p.kind).or_default() += p.depth();
        }
        for (kind, depth) in sums {
            self.actor_mailbox_depth
                .with_label_values(&[kind])
                .set(depth as i64);
        }
    }

    pub fn malformed(&self, kind: &str) {
        self.malformed_input.with_label_values(&[kind]).inc();
    }

    pub fn refused(&self, reason: &str) {
        self.router_refused.with_label_values(&[reason]).inc();
    }

    pub fn dropped(&self, reason: &str, n: u64) {
        self.packets_dropped.with_label_values(&[reason]).inc_by(n);
    }

    /// Registers a starting actor and returns its probe.
    pub fn probe(self: &Arc<Self>, kind: &'static str, id: impl Into<String>) -> Arc<ActorProbe> {
        let key = self.next_actor.fetch_add(1, Ordering::Relaxed);
        let probe = Arc::new(ActorProbe {
            key,
            kind,
            id: id.into(),
            started_at: crate::clock::now_secs(),
            sent: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            metrics: Arc::clone(self),
        });
        self.actors_live.with_label_values(&[kind]).inc();
        if let Ok(mut kinds) = self.kinds.lock() {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if let Ok(mut map) = self.actors.lock() {
            map.insert(key, Arc::clone(&probe));
        }
        probe
    }

    /// A snapshot of every live actor, for `/metrics/actors`.
    pub fn actor_snapshot(&self) -> ActorSnapshot {
        let probes = self.live_probes();
        let mut actors: Vec<ActorInfo> = probes
            .iter()
            .map(|p| ActorInfo {
                kind: p.kind,
                id: p.id.clone(),
                mailbox_depth: p.depth(),
                handled: p.handled.load(Ordering::Relaxed),
                started_at: p.started_at,
            })
            .collect();
        actors.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        let mut totals: HashMap<&'static str, KindTotals> = HashMap::new();
        for a in &actors {
            let t = totals.entry(a.kind).or_default();
            t.live += 1;
            t.mailbox_depth += a.mailbox_depth;
            t.handled += a.handled;
        }
        ActorSnapshot { totals, actors }
    }
}

#[derive(Serialize, Debug)]
pub struct ActorSnapshot {
    pub totals: HashMap<&'static str, KindTotals>,
    pub actors: Vec<ActorInfo>,
}

#[derive(Serialize, Debug, Default)]
pub struct KindTotals {
    pub live: u64,
    pub mailbox_depth: u64,
    pub handled: u64,
}

#[derive(Serialize, Debug)]
pub struct ActorInfo {
    pub kind: &'static str,
    pub id: String,
    pub mailbox_depth: u64,
    pub handled: u64,
    pub started_at: f64,
}

/// One actor's counters: what was sent to it and what it has handled.
/// What its handlers measured (time, message counts) goes to its thread's
/// `ThreadLocal`, not here: an idle actor keeps no histogram of its own.
pub struct ActorProbe {
    key: u64,
    pub kind: &'static str,
    pub id: String,
    pub started_at: f64,
    sent: AtomicU64,
    handled: AtomicU64,
    retired: AtomicBool,
    metrics: Arc<Metrics>,
}

/// Numbers the `Metrics` of this process.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's cell of each `Metrics` it has recorded into.
    static CELLS: std::cell::RefCell<Vec<(u64, Arc<Mutex<ThreadLocal>>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// What the handlers on one thread measured since `/metrics` was last
/// read, per actor kind. The thread's own, so a handler writes no counter
/// that handlers on other threads write too (a shared counter's cache line
/// would move with every message); only this thread and a scrape take its
/// lock. Folded into the registry when `/metrics` is read.
#[derive(Default)]
struct ThreadLocal {
    kinds: Vec<(&'static str, Local)>,
}

struct Local {
    histogram: LocalHistogram,
    /// The kind's per-message counters, looked up once per message type
    /// (a label lookup in the registry costs a lock and two string hashes;
    /// this is a short scan by pointer), with the count not yet added.
    counters: Vec<(&'static str, IntCounter, u64)>,
}

impl Local {
    fn flush(&mut self) {
        self.histogram.flush();
        for (_, c, n) in &mut self.counters {
            if *n > 0 {
                c.inc_by(std::mem::take(n));
            }
        }
    }
}

impl Metrics {
    /// Runs `f` on this thread's cell, made and registered on its first use
    /// (without an `Arc` clone per message: the cell is borrowed).
    fn with_thread_cell(&self, f: impl FnOnce(&mut ThreadLocal)) {
        CELLS.with(|cells| {
            let mut cells = cells.borrow_mut();
            let i = match cells.iter().position(|(s, _)| *s == self.serial) {
                Some(i) => i,
                None => {
                    let cell = Arc::new(Mutex::new(ThreadLocal::default()));
                    if let Ok(mut all) = self.threads.lock() {
                        all.push(Arc::clone(&cell));
                    }
                    cells.push((self.serial, cell));
                    cells.len() - 1
                }
            };
            let cell = cells[i].1.lock();
            if let Ok(mut t) = cell {
                f(&mut t);
            }
        });
    }

    /// Counts one handled `message` of an actor of `kind` that took
    /// `seconds`.
    fn record(&self, kind: &'static str, message: &'static str, seconds: f64) {
        self.with_thread_cell(|t| {
            let i = match t
                .kinds
                .iter()
                .position(|(k, _)| std::ptr::eq(*k, kind) || *k == kind)
            {
                Some(i) => i,
                None => {
                    let histogram = self.actor_handle_seconds.with_label_values(&[kind]).local();
                    t.kinds.push((
                        kind,
                        Local {
                            histogram,
                            counters: Vec::new(),
                        },
                    ));
                    t.kinds.len() - 1
                }
            };
            let local = &mut t.kinds[i].1;
            local.histogram.observe(seconds);
            match local
                .counters
                .iter_mut()
                .find(|(m, _, _)| std::ptr::eq(*m, message) || *m == message)
            {
                Some((_, _, n)) => *n += 1,
                None => {
                    let c = self.actor_messages.with_label_values(&[kind, message]);
                    local.counters.push((message, c, 1));
                }
            }
        });
    }

    /// Adds what every thread measured to the registry.
    fn flush_threads(&self) {
        let cells: Vec<Arc<Mutex<ThreadLocal>>> = match self.threads.lock() {
            Ok(all) => all.clone(),
            Err(_) => return,
        };
        for cell in cells {
            if let Ok(mut t) = cell.lock() {
                for (_, local) in &mut t.kinds {
                    local.flush();
                }
            }
        }
    }
}

impl ActorProbe {
    pub fn depth(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.handled.load(Ordering::Relaxed))
    }

    pub(crate) fn on_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_send_failed(&self) {
        self.sent.fetch_sub(1, Ordering::Relaxed);
    }

    /// Opens the guard a handler holds while it runs.
    pub fn handling(self: &Arc<Self>, message: &'static str) -> Handling {
        self.handling_since(message, Instant::now())
    }

    fn handling_since(self: &Arc<Self>, message: &'static str, started: Instant) -> Handling {
        Handling {
            probe: Arc::clone(self),
            message,
            started,
        }
    }

    /// For input that does not pass through the mailbox (stream items such
    /// as WebSocket frames): counted as sent and handled at once.
    pub fn handling_unqueued(self: &Arc<Self>, message: &'static str) -> Handling {
        self.handling_unqueued_at(message, Instant::now())
    }

    /// [`ActorProbe::handling_unqueued`] from the caller's own reading of
    /// the clock (a WebSocket session reads it once per frame).
    pub fn handling_unqueued_at(self: &Arc<Self>, message: &'static str, now: Instant) -> Handling {
        self.on_sent();
        self.handling_since(message, now)
    }

    /// Called from the actor's `stopped()`: it leaves `/metrics/actors` and
    /// whatever was still in its mailbox leaves the depth gauge.
    pub fn retire(&self) {
        if self.retired.swap(true, Ordering::Relaxed) {
            return;
        }
        self.metrics
            .actors_live
            .with_label_values(&[self.kind])
            .dec();
        if let Ok(mut map) = self.metrics.actors.lock() {
            map.remove(&self.key);
        }
    }
}

/// Held for the duration of one handler: counts it and times it.
pub struct Handling {
    probe: Arc<ActorProbe>,
    message: &'static str,
    started: Instant,
}

impl Drop for Handling {
    fn drop(&mut self) {
        let p = &self.probe;
        if !p.retired.load(Ordering::Relaxed) {
            p.handled.fetch_add(1, Ordering::Relaxed);
        }
        p.metrics
            .record(p.kind, self.message, self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(m: &Metrics, kind: &str, message: &str) -> f64 {
        let text = m.render();
        let series = format!(
            "{}{{kind=\"{kind}\",message=\"{message}\"}} ",
            names::ACTOR_MESSAGES
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    // Handlers on several threads each count into their own cell; a scrape
    // adds every cell up, and two switches in one process never mix.
    #[test]
    fn what_threads_measure_is_folded_on_every_scrape_and_kept_per_switch() {
        let a = Metrics::new();
        let b = Metrics::new();
        let probe = a.probe("Agent", "x");
        std::thread::scope(|s| {
            for _ in 0..3 {
                let probe = Arc::clone(&probe);
                s.spawn(move || {
                    for _ in 0..10 {
                        drop(probe.handling("Relay"));
                    }
                });
            }
        });
        drop(b.probe("Agent", "y").handling("Relay"));
        assert_eq!(count(&a, "Agent", "Relay"), 30.0);
        assert_eq!(count(&b, "Agent", "Relay"), 1.0);
        // Counted once: a second scrape adds nothing new.
        assert_eq!(count(&a, "Agent", "Relay"), 30.0);
        // A handler after the actor stopped still counts, at the next scrape.
        probe.retire();
        drop(probe.handling("Relay"));
        assert_eq!(count(&a, "Agent", "Relay"), 31.0);
        assert!(a
            .render()
            .contains("switchyard_actor_handle_seconds_count{kind=\"Agent\"} 31"));
    }
}
