//! Names in NATS (`CLUSTER.md` section 2, "Names"): subjects, streams and
//! KV buckets under one prefix, and agent and node ids as subject tokens.
//!
//! An agent id is whatever a peer sent (PROTOCOL 1.5 bounds its length,
//! not its characters), and a subject token may not hold `.`, `*`, `>` or
//! whitespace. So an id is used as is only when it is 1 to 64 of
//! `[A-Za-z0-9_-]`; any other id is `=` followed by its base64url (no
//! padding). An id that itself starts with `=` is always encoded, and `=`
//! is neither a plain character nor in the base64url alphabet, so two ids
//! never share a token. The token is also a valid KV key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The longest id used as its own token.
pub const MAX_PLAIN_TOKEN: usize = 64;

fn plain(id: &str) -> bool {
    (1..=MAX_PLAIN_TOKEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An id (an agent's, a node's) as one subject token.
pub fn token(id: &str) -> String {
    if plain(id) {
        id.to_string()
    } else {
        format!("={}", URL_SAFE_NO_PAD.encode(id.as_bytes()))
    }
}

/// The id a token stands for; None for a string no id maps to.
pub fn id_of(token: &str) -> Option<String> {
    match token.strip_prefix('=') {
        Some(encoded) => {
            let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
            let id = String::from_utf8(bytes).ok()?;
            // Only ids that are not plain are encoded: the other form of
            // a plain id is no token.
            (!plain(&id)).then_some(id)
        }
        None => plain(token).then(|| token.to_string()),
    }
}

/// Why a prefix cannot name a cluster's objects.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NameError {
    #[error("the cluster prefix {0:?} must be 1 to 32 of A-Z, a-z, 0-9, _ and -")]
    BadPrefix(String),
}

/// Every name a cluster uses, under its prefix (`sy` by default).
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Names, NameError> {
        if prefix.len() > 32 || !plain(prefix) {
            return Err(NameError::BadPrefix(prefix.to_string()));
        }
        Ok(Names {
            prefix: prefix.to_string(),
        })
    }

    /// An agent's durable queue: every packet for it, in stream
    /// `mailbox_stream`.
    pub fn mailbox(&self, agent_id: &str) -> String {
        format!("{}.mbox.{}", self.prefix, token(agent_id))
    }

    /// The subjects of `mailbox_stream`.
    pub fn mailboxes(&self) -> String {
        format!("{}.mbox.*", self.prefix)
    }

    /// The live copy of an agent's mailbox, heard only by its owner.
    pub fn live(&self, agent_id: &str) -> String {
        format!("{}.live.{}", self.prefix, token(agent_id))
    }

    /// Where the mailbox stream republishes what it stores (JetStream's
    /// RePublish destination: the agent's token kept).
    pub fn live_republish(&self) -> String {
        format!("{}.live.{{{{wildcard(1)}}}}", self.prefix)
    }

    /// Every backend-bound packet of every switch, in `backend_stream`.
    pub fn backend(&self) -> String {
        format!("{}.backend", self.prefix)
    }

    /// The switches' heartbeats.
    pub fn heartbeats(&self) -> String {
        format!("{}.ctl.hb", self.prefix)
    }

    /// `request_statuses`, scattered to every switch.
    pub fn statuses(&self) -> String {
        format!("{}.ctl.statuses", self.prefix)
    }

    /// `agent_details` for an HTTP request held by `node`.
    pub fn node_details(&self, node: &str) -> String {
        format!("{}.node.{}.details", self.prefix, token(node))
    }

    pub fn mailbox_stream(&self) -> String {
        format!("{}_MBOX", self.prefix.to_ascii_uppercase())
    }

    pub fn backend_stream(&self) -> String {
        format!("{}_BACKEND", self.prefix.to_ascii_uppercase())
    }

    /// KV bucket: agent token -> owner and status.
    pub fn agents_bucket(&self) -> String {
        format!("{}_agents", self.prefix)
    }

    /// KV bucket: the backend's holder.
    pub fn cluster_bucket(&self) -> String {
        format!("{}_cluster", self.prefix)
    }
}

/// A publish's message id (`Nats-Msg-Id`): unique per node, boot and
/// sequence, so a publish retried after a reconnect is stored once.
pub fn message_id(node: &str, boot: u64, n: u64) -> String {
    format!("{}-{boot}-{n}", token(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A token is one subject token: no separator, no wildcard, no space.
    fn is_subject_token(t: &str) -> bool {
        !t.is_empty()
            && !t
                .chars()
                .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
    }

    #[test]
    fn plain_ids_stay_as_they_are() {
        assert_eq!(token("a1"), "a1");
        assert_eq!(token("worker_7-x"), "worker_7-x");
        let uuid = "3f2b8c1e-9d4a-4e7b-8f6c-2a1d0e9b7c5a";
        assert_eq!(token(uuid), uuid);
        assert_eq!(id_of(uuid).as_deref(), Some(uuid));
    }

    #[test]
    fn other_ids_are_encoded_and_come_back() {
        for id in ["", "a.b", "a b", "*", ">", "=a1", "é", &"x".repeat(65)] {
            let t = token(id);
            assert!(t.starts_with('='), "{id:?} -> {t:?}");
            assert!(is_subject_token(&t));
            assert_eq!(id_of(&t).as_deref(), Some(id));
        }
        assert_eq!(token("a.b"), "=YS5i");
    }

    #[test]
    fn strings_no_id_maps_to_are_refused() {
        // The encoded form of a plain id, and broken encodings.
        assert_eq!(id_of(&format!("={}", URL_SAFE_NO_PAD.encode("a1"))), None);
        assert_eq!(id_of("=***"), None);
        assert_eq!(id_of("a.b"), None);
        assert_eq!(id_of(""), None);
    }

    #[test]
    fn names_under_the_prefix() {
        let n = Names::new("sy").unwrap();
        assert_eq!(n.mailbox("a1"), "sy.mbox.a1");
        assert_eq!(n.mailbox("a.b"), "sy.mbox.=YS5i");
        assert_eq!(n.mailboxes(), "sy.mbox.*");
        assert_eq!(n.live("a1"), "sy.live.a1");
        assert_eq!(n.live_republish(), "sy.live.{{wildcard(1)}}");
        assert_eq!(n.backend(), "sy.backend");
        assert_eq!(n.heartbeats(), "sy.ctl.hb");
        assert_eq!(n.statuses(), "sy.ctl.statuses");
        assert_eq!(n.node_details("n1"), "sy.node.n1.details");
        assert_eq!(
            n.node_details("host:3000"),
            format!("sy.node.{}.details", token("host:3000"))
        );
        assert_eq!(n.mailbox_stream(), "SY_MBOX");
        assert_eq!(n.backend_stream(), "SY_BACKEND");
        assert_eq!(n.agents_bucket(), "sy_agents");
        assert_eq!(n.cluster_bucket(), "sy_cluster");
        assert_eq!(message_id("n1", 7, 42), "n1-7-42");
    }

    #[test]
    fn a_prefix_is_one_plain_token() {
        for bad in ["", "a.b", "a*", "a b", &"p".repeat(33)] {
            assert_eq!(Names::new(bad), Err(NameError::BadPrefix(bad.into())));
        }
        assert!(Names::new("sy-test_2").is_ok());
    }

    proptest! {
        #[test]
        fn every_id_has_one_token_and_back(a in ".{0,80}", b in ".{0,80}") {
            let (ta, tb) = (token(&a), token(&b));
            prop_assert!(is_subject_token(&ta));
            prop_assert_eq!(id_of(&ta), Some(a.clone()));
            prop_assert_eq!(ta == tb, a == b);
        }

        #[test]
        fn plain_looking_ids_round_trip(a in "[A-Za-z0-9_=-]{0,70}") {
            prop_assert_eq!(id_of(&token(&a)), Some(a));
        }
    }
}
