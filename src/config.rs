//! The switch's configuration: one struct composed of the actors' own
//! (DESIGN house rule 8). Defaults equal PROTOCOL.md; `deploy/switchyard.toml`
//! is the same defaults, commented, and a test holds them equal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_actors::agent::StateConfig;
use switchyard_actors::agent::{AgentConfig, BackendConfig, RouterConfig, SessionConfig};
use switchyard_actors::cluster::ClusterConfig;
use switchyard_actors::monitor::MonitorConfig;
use switchyard_actors::mqtt::MqttConfig;
use switchyard_actors::network::history::HistoryConfig;
use switchyard_actors::network::mesh::MeshConfig;
use switchyard_actors::socket::SocketConfig;
use switchyard_actors::uart::sim::SimConfig;
use switchyard_actors::uart::UartConfig;
use switchyard_actors::uplink::GatewayConfig;
use switchyard_actors::uplink::UplinkConfig;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of HTTP and the WebSockets (`/`).
    pub http: SocketAddr,
    /// Where the switch keeps its files.
    pub data_dir: PathBuf,
    /// Where uploaded files are stored; default `DATA_DIR/uploads`.
    pub upload_dir: Option<PathBuf>,
    /// Static files (`index.html`, `task_config.json`, ...); default: the
    /// built-in ones.
    pub static_dir: Option<PathBuf>,
    /// Largest HTTP request body (uploads included); past it: 413.
    pub max_upload_bytes: usize,
    /// Largest JSON (or urlencoded) body of the agent API's endpoints;
    /// past it: 413. Multipart uploads keep `max_upload_bytes`.
    pub max_json_body_bytes: usize,
    /// The frontend versions expected in `/task_config.json`'s
    /// `mephisto_task_version` (`mephisto-task` 2.0.4, the 1.5 line's
    /// `mephisto-core` 1.5.1); any other makes a `version-mismatch`
    /// log_error. A single string (the older form of this key) is read as
    /// a list of one.
    #[serde(deserialize_with = "one_or_many")]
    pub expected_task_version: Vec<String>,
    /// HTTP worker threads (0: one per core).
    pub http_workers: usize,
    /// The client socket (PROTOCOL 3): an address, or `none`.
    pub tcp: String,
    pub socket: SocketConfig,
    pub monitor: MonitorConfig,
    /// The mesh link: `sim` (the built-in simulated mesh on a
    /// pseudo-terminal), `none`, `auto` (the first USB serial port), or a
    /// serial device path.
    pub uart: String,
    pub serial: UartConfig,
    pub mesh: MeshConfig,
    /// The history log on disk: retention, sync, writer queue.
    pub history: HistoryConfig,
    pub sim: SimConfig,
    /// This switch as an edge: its uplink to a central switch.
    pub uplink: UplinkConfig,
    /// This switch as a central: gateways must present this token.
    pub gateway_token: Option<String>,
    /// This switch as a central: limits on gateways (PROTOCOL 1.5, 5).
    pub gateway: GatewayConfig,
    pub agent: AgentConfig,
    pub backend: BackendConfig,
    pub session: SessionConfig,
    /// The operators' surface (`/dashboard`, `/monitor`, `/api/*`,
    /// `/metrics/actors`) needs this token (`Authorization: Bearer T` or
    /// `?token=T`); with none set it is open on a loopback listener only.
    pub admin_token: Option<String>,
    pub ws: crate::http::WsConfig,
    /// The router's state across restarts (`DATA_DIR/state/`).
    pub state: StateConfig,
    /// Several switches as one, on NATS JetStream (`--cluster`).
    pub cluster: ClusterConfig,
    /// The mesh on an MQTT broker (`--mqtt`).
    pub mqtt: MqttConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from("./switchyard-data"),
            upload_dir: None,
            static_dir: None,
            max_upload_bytes: 50 * 1024 * 1024,
            max_json_body_bytes: 1024 * 1024,
            expected_task_version: default_task_versions(),
            http_workers: 0,
            tcp: "127.0.0.1:5000".into(),
            socket: SocketConfig::default(),
            monitor: MonitorConfig::default(),
            uart: "sim".into(),
            serial: UartConfig::default(),
            mesh: MeshConfig::default(),
            history: HistoryConfig::default(),
            sim: SimConfig::default(),
            uplink: UplinkConfig::default(),
            gateway_token: None,
            gateway: GatewayConfig::default(),
            agent: AgentConfig::default(),
            backend: BackendConfig::default(),
            session: SessionConfig::default(),
            admin_token: None,
            ws: crate::http::WsConfig::default(),
            state: StateConfig::default(),
            cluster: ClusterConfig::default(),
            mqtt: MqttConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshLink {
    Simulated,
    None,
    Auto,
    Port(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Short timers, port 0, a fresh data dir: for tests.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            http_workers: 1,
            tcp: "127.0.0.1:0".into(),
            // Tests that want a mesh attach their own pty or simulator.
            uart: "none".into(),
            serial: UartConfig {
                reconnect_min_secs: 0.05,
                reconnect_max_secs: 0.5,
                command_timeout_secs: 2.0,
                ..UartConfig::default()
            },
            mesh: MeshConfig {
                node_timeout_secs: 60.0,
                ..MeshConfig::default()
            },
            sim: SimConfig {
                interval_secs: 0.2,
                ..SimConfig::default()
            },
            agent: AgentConfig {
                reconnect_grace_secs: 0.3,
                ping_timeout_secs: 0.5,
                idle_expiry_secs: 5.0,
                queue_limit: 100,
                takeover_probe_secs: 0.5,
                ..AgentConfig::default()
            },
            backend: BackendConfig {
                outbox_limit: 1000,
                request_timeout_secs: 1.0,
                token: None,
                ..BackendConfig::default()
            },
            session: SessionConfig {
                max_frame_bytes: 64 * 1024,
                ping_interval_secs: 1.0,
                ping_timeout_secs: 10.0,
                ..SessionConfig::default()
            },
            ..Config::default()
        }
    }

    pub fn upload_dir(&self) -> PathBuf {
        self.upload_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("uploads"))
    }

    /// Which mesh link to run.
    pub fn mesh_link(&self) -> MeshLink {
        match self.uart.as_str() {
            "sim" | "" => MeshLink::Simulated,
            "none" => MeshLink::None,
            "auto" => MeshLink::Auto,
            path => MeshLink::Port(path.to_string()),
        }
    }

    /// The client socket's address, None when it is off.
    pub fn tcp_addr(&self) -> Result<Option<SocketAddr>, String> {
        match self.tcp.as_str() {
            "none" | "" => Ok(None),
            a => a.parse().map(Some).map_err(|e| format!("tcp = {a:?}: {e}")),
        }
    }

    /// Where the router's state is kept across restarts.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }

    pub fn router(&self) -> RouterConfig {
        RouterConfig {
            agent: self.agent.clone(),
            backend: self.backend.clone(),
            session: self.session.clone(),
        }
    }
}

/// The frontend versions a Mephisto backend may ship: `mephisto-task`
/// 2.0.4 (Mephisto 1.1.x on PyPI) and `mephisto-core` 1.5.1 (the 1.5 line).
pub fn default_task_versions() -> Vec<String> {
    vec!["2.0.4".into(), "1.5.1".into()]
}

/// A string or a list of strings, as a list: configs written when a key
/// held one value keep loading after it became a list.
fn one_or_many<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_task_version_is_a_string_or_a_list() {
        let old = Config::from_toml("expected_task_version = \"2.0.3\"").unwrap();
        assert_eq!(old.expected_task_version, vec!["2.0.3".to_string()]);
        let new = Config::from_toml("expected_task_version = [\"2.0.4\", \"1.6.0\"]").unwrap();
        assert_eq!(new.expected_task_version, vec!["2.0.4", "1.6.0"]);
        assert_eq!(
            Config::default().expected_task_version,
            vec!["2.0.4", "1.5.1"]
        );
        assert!(Config::from_toml("expected_task_version = 2").is_err());
    }

    #[test]
    fn the_shipped_default_config_is_the_default() {
        let text = include_str!("../deploy/switchyard.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
    }

    #[test]
    fn the_shortcut_is_a_session_key_on_by_default() {
        assert!(Config::default().session.shortcut);
        let c = Config::from_toml("[session]\nshortcut = false").unwrap();
        assert!(!c.session.shortcut);
        let shipped = include_str!("../deploy/switchyard.toml");
        assert!(shipped.contains("\nshortcut = true\n"), "documented");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::from_toml("htp = \"127.0.0.1:1\"").is_err());
        assert!(Config::from_toml("[agent]\nqueue_limt = 3").is_err());
    }

    #[test]
    fn partial_files_keep_the_other_defaults() {
        let c = Config::from_toml("[agent]\nqueue_limit = 3").unwrap();
        assert_eq!(c.agent.queue_limit, 3);
        assert_eq!(c.agent.reconnect_grace_secs, 10.0);
        assert_eq!(c.http, Config::default().http);
    }
}
