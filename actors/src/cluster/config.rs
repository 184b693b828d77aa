//! `[cluster]`: how a switch joins a cluster (`CLUSTER.md` section 2,
//! "Default unchanged"). With no `url` nothing of the cluster runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers, `nats://HOST:PORT[,nats://HOST:PORT...]`; none: no
    /// cluster (`--cluster`).
    pub url: Option<String>,
    /// This switch's name in the cluster; default `HOST-PORT` of its HTTP
    /// listener (`--node-id`). Unique per switch: two switches with one
    /// name take each other's agents.
    pub node_id: Option<String>,
    /// Prefix of every subject, stream and bucket (several clusters may
    /// share one NATS).
    pub prefix: String,
    /// Copies JetStream keeps of every stream and bucket: 1 on a single
    /// nats-server, 3 on a NATS cluster of three or more.
    pub replicas: usize,
    /// Where JetStream keeps them: `file` (survives a nats-server restart)
    /// or `memory`.
    pub storage: String,
    /// Milliseconds between two acknowledgements of what a switch's
    /// sockets' transports have taken (the purge of what was delivered).
    /// A switch killed repeats about two intervals of its traffic at most
    /// after failover.
    pub ack_interval_ms: u64,
    /// Milliseconds between two heartbeats of this switch.
    pub heartbeat_ms: u64,
    /// Milliseconds without a heartbeat before a switch counts as down.
    pub node_timeout_ms: u64,
    /// Publishes JetStream has not acknowledged yet, at most; full, the
    /// senders' sockets wait (as when the backend is full).
    pub publish_window: usize,
    /// Switches tracked at most.
    pub max_nodes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            url: None,
            node_id: None,
            prefix: "sy".into(),
            replicas: 1,
            storage: "file".into(),
            ack_interval_ms: 250,
            heartbeat_ms: 1000,
            node_timeout_ms: 3000,
            publish_window: 10_000,
            max_nodes: 64,
        }
    }
}

impl ClusterConfig {
    pub fn ack_interval(&self) -> Duration {
        Duration::from_millis(self.ack_interval_ms.max(1))
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms.max(self.heartbeat_ms + 1))
    }

    /// The servers of `url`, each checked to be a `nats://` address.
    pub fn servers(&self) -> Result<Vec<String>, String> {
        let Some(url) = &self.url else {
            return Ok(Vec::new());
        };
        let servers: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if servers.is_empty() {
            return Err("--cluster: no server given".into());
        }
        for s in &servers {
            let Some(rest) = s.strip_prefix("nats://") else {
                return Err(format!(
                    "--cluster: {s:?} is not a nats://HOST:PORT address"
                ));
            };
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "--cluster: {s:?} is not a nats://HOST:PORT address"
                ));
            }
        }
        Ok(servers)
    }

    /// Checks every setting, so a bad one stops the switch at start with
    /// one line rather than in the middle of a failover.
    pub fn check(&self) -> Result<(), String> {
        self.servers()?;
        super::names::Names::new(&self.prefix).map_err(|e| e.to_string())?;
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "[cluster] replicas: {} (JetStream keeps 1 to 5 copies)",
                self.replicas
            ));
        }
        if self.storage != "file" && self.storage != "memory" {
            return Err(format!(
                "[cluster] storage: {:?} (file or memory)",
                self.storage
            ));
        }
        if self.publish_window == 0 || self.max_nodes < 2 {
            return Err("[cluster] publish_window must be > 0 and max_nodes >= 2".into());
        }
        if let Some(id) = &self.node_id {
            if super::names::token(id) != *id {
                return Err(format!(
                    "[cluster] node_id {id:?}: 1 to 64 of A-Z, a-z, 0-9, _ and -"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> ClusterConfig {
        ClusterConfig {
            url: Some(url.into()),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn servers_are_a_comma_separated_list_of_nats_urls() {
        let c = with_url("nats://a:4222, nats://b:4223");
        assert_eq!(c.servers().unwrap(), ["nats://a:4222", "nats://b:4223"]);
        assert!(with_url("http://a:4222").check().is_err());
        assert!(with_url(" , ").check().is_err());
        assert!(ClusterConfig::default().servers().unwrap().is_empty());
    }

    #[test]
    fn bad_settings_are_refused_at_start() {
        let ok = with_url("nats://127.0.0.1:4222");
        assert!(ok.check().is_ok());
        for bad in [
            ClusterConfig {
                replicas: 0,
                ..ok.clone()
            },
            ClusterConfig {
                storage: "disk".into(),
                ..ok.clone()
            },
            ClusterConfig {
                prefix: "a.b".into(),
                ..ok.clone()
            },
            ClusterConfig {
                node_id: Some("n 1".into()),
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
