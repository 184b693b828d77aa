//! The cluster's metrics (`CLUSTER.md` section 2, "Metrics"), registered
//! into the switch's registry only when `--cluster` is given: a switch
//! without it shows none of them.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub mod names {
    pub const CONNECTED: &str = "switchyard_cluster_connected";
    pub const NODES: &str = "switchyard_cluster_nodes";
    pub const PUBLISH_WINDOW: &str = "switchyard_cluster_publish_window";
    pub const PUBLISH_RETRIES: &str = "switchyard_cluster_publish_retries_total";
    pub const DUPLICATE_ACKS: &str = "switchyard_cluster_duplicate_acks_total";
    pub const PUBLISHED: &str = "switchyard_cluster_published_total";
    pub const RECEIVED: &str = "switchyard_cluster_received_total";
    pub const REPLAYED: &str = "switchyard_cluster_replayed_total";
    pub const GAP_REPAIRS: &str = "switchyard_cluster_gap_repairs_total";
    pub const ADOPTED_AGENTS: &str = "switchyard_cluster_adopted_agents_total";
    pub const STATUSES_PARTIAL: &str = "switchyard_cluster_statuses_partial_total";
    pub const MALFORMED: &str = "switchyard_cluster_malformed_total";
    pub const NODES_DOWN: &str = "switchyard_cluster_nodes_down_total";
    pub const JS_ACK_SECONDS: &str = "switchyard_cluster_js_ack_seconds";
}

pub struct ClusterMetrics {
    pub connected: IntGauge,
    pub nodes: IntGauge,
    pub publish_window: IntGauge,
    pub publish_retries: IntCounter,
    pub duplicate_acks: IntCounter,
    /// Publishes JetStream acknowledged, by stream kind (`mailbox`,
    /// `backend`).
    pub published: IntCounterVec,
    /// Packets read from JetStream and handed to a local socket's owner,
    /// by stream kind.
    pub received: IntCounterVec,
    pub replayed: IntCounter,
    pub gap_repairs: IntCounter,
    pub adopted_agents: IntCounter,
    pub statuses_partial: IntCounter,
    /// What came over NATS and was not understood (a heartbeat, a stored
    /// packet, a KV record), by kind: never trusted, counted and skipped.
    pub malformed: IntCounterVec,
    pub nodes_down: IntCounter,
    pub js_ack_seconds: Histogram,
}

impl ClusterMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<ClusterMetrics> {
        use crate::metrics::registered as reg;
        let gauge = |n: &str, h: &str| reg(r, IntGauge::new(n, h)?);
        let counter = |n: &str, h: &str| reg(r, IntCounter::new(n, h)?);
        let counter_vec =
            |n: &str, h: &str, l: &[&str]| reg(r, IntCounterVec::new(Opts::new(n, h), l)?);
        Ok(ClusterMetrics {
            connected: gauge(names::CONNECTED, "1 while the switch is connected to NATS")?,
            nodes: gauge(
                names::NODES,
                "Switches of the cluster alive, this one included",
            )?,
            publish_window: gauge(
                names::PUBLISH_WINDOW,
                "Publishes JetStream has not acknowledged yet",
            )?,
            publish_retries: counter(
                names::PUBLISH_RETRIES,
                "Publishes sent again after a failed or missing acknowledgement",
            )?,
            duplicate_acks: counter(
                names::DUPLICATE_ACKS,
                "Publishes JetStream had already stored (a retry that had landed)",
            )?,
            published: counter_vec(
                names::PUBLISHED,
                "Packets stored in JetStream, by stream",
                &["stream"],
            )?,
            received: counter_vec(
                names::RECEIVED,
                "Packets read from JetStream for a local socket, by stream",
                &["stream"],
            )?,
            replayed: counter(
                names::REPLAYED,
                "Packets read back from an agent's mailbox when it was claimed",
            )?,
            gap_repairs: counter(
                names::GAP_REPAIRS,
                "Live copies missed and fetched back from the mailbox stream",
            )?,
            adopted_agents: counter(
                names::ADOPTED_AGENTS,
                "Agents of a switch gone down taken over by this one",
            )?,
            statuses_partial: counter(
                names::STATUSES_PARTIAL,
                "request_statuses answered without every switch's reply",
            )?,
            malformed: counter_vec(
                names::MALFORMED,
                "Messages from NATS not understood and skipped, by kind",
                &["kind"],
            )?,
            nodes_down: counter(names::NODES_DOWN, "Switches seen going down")?,
            js_ack_seconds: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        names::JS_ACK_SECONDS,
                        "Time from a publish to JetStream's acknowledgement",
                    )
                    .buckets(vec![5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 0.1, 1.0]),
                )?,
            )?,
        })
    }
}
