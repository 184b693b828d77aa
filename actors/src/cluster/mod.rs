//! Cluster mode's decisions: several switches as one on NATS JetStream
//! (`CLUSTER.md`). House rule 3 keeps them in plain structs, tested
//! without a runtime or a server:
//!
//! - `names.rs`: every subject, stream and bucket name, and the injective
//!   mapping from an agent id (any string a peer chose) to a subject token;
//! - `membership.rs`: which switches are alive, from their heartbeats, and
//!   which one adopts a dead switch's agents;
//! - `acks.rs`: what was handed to a socket from a stream, so may be
//!   purged;
//! - `statuses.rs`: `request_statuses` across switches, in parts;
//! - `window.rs`: the bounded window of publishes JetStream has not yet
//!   acknowledged, with the message ids that make a retry idempotent.
//!
//! and the parts that talk to NATS (feature `cluster`):
//!
//! - `config.rs`: `[cluster]`;
//! - `link.rs`: the connection and the shared streams and buckets;
//! - `actor.rs`: the `Cluster` actor (publish window, heartbeats, purges);
//! - `mailbox.rs`: an agent's mailbox read back, and who owns the agent;
//! - `metrics.rs`: `switchyard_cluster_*`, registered only in cluster mode.
//!
//! Nothing of them runs in a switch started without `--cluster`.

pub mod acks;
#[cfg(feature = "cluster")]
pub mod actor;
pub mod config;
#[cfg(feature = "cluster")]
pub mod link;
#[cfg(feature = "cluster")]
pub mod mailbox;
pub mod membership;
#[cfg(feature = "cluster")]
pub mod metrics;
pub mod names;
#[cfg(feature = "cluster")]
pub mod room;
pub mod statuses;
pub mod window;

#[cfg(feature = "cluster")]
pub use actor::{
    AdoptAgent, AgentMoved, AttachDirectory, CatchUp, Cluster, ClusterHandle, ClusterInfo,
    GatherStatuses, GetClusterInfo, Leave, LocalStatuses, Publish, Purge, SwitchInfo, Target,
};
pub use config::ClusterConfig;

/// A JSON value another switch sent over NATS, read only when it is at most
/// `max` bytes (anything longer is not one of ours): None for too long or
/// not that value.
pub fn parse_bounded<T: serde::de::DeserializeOwned>(bytes: &[u8], max: usize) -> Option<T> {
    if bytes.len() > max {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}
