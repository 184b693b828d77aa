//! Cluster mode's decisions: several switches as one on NATS JetStream
//! (`CLUSTER.md`). House rule 3 keeps them in plain structs, tested
//! without a runtime or a server:
//!
//! - `names.rs`: every subject, stream and bucket name, and the injective
//!   mapping from an agent id (any string a peer chose) to a subject token;
//! - `membership.rs`: which switches are alive, from their heartbeats, and
//!   which one adopts a dead switch's agents;
//! - `window.rs`: the bounded window of publishes JetStream has not yet
//!   acknowledged, with the message ids that make a retry idempotent.
//!
//! No switch runs them yet: they are the rules the `Cluster` actor of
//! `CLUSTER.md` section 2 applies, and nothing of them costs a switch
//! started without `--cluster`.

pub mod membership;
pub mod names;
pub mod window;
