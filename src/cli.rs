//! Command-line options. Each option is also a key of the TOML config
//! (`--config FILE`); a flag given on the command line wins over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "An actor-based message switch: a drop-in Mephisto router for browser agents and their \
             backend, a mesh network's root node on a serial port, and local client programs.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the simulated mesh root alone on a pseudo-terminal and print its
    /// path, for another switchyard's `--uart PATH`.
    Simulate(SimulateArgs),
    /// Talk to a running switch's client socket (PROTOCOL 3).
    Ctl(crate::ctl::CtlArgs),
    /// Print the directory of the Mephisto launcher (`server.js`) that came
    /// with this binary: the value of Mephisto's
    /// `mephisto.architect.server_source_path`.
    MephistoRoot,
}

/// Where the wheel (`pip install switchyard-router`) puts the Mephisto
/// launcher, relative to the prefix whose `bin/` holds the binary: pip
/// installs a wheel's scripts in `<prefix>/bin` and its data files under
/// `<prefix>`, so the two stay side by side in a venv, a `--user` install
/// (`~/.local`) or a system prefix.
pub const WHEEL_MEPHISTO_DIR: &str = "share/switchyard-router/mephisto";

/// The directories that may hold the Mephisto launcher of the binary at
/// `exe`, most specific first: the wheel's data directory next to the
/// binary's `bin/`, then `deploy/mephisto` of the source tree a
/// `target/<profile>/switchyard` was built in.
pub fn mephisto_root_candidates(exe: &std::path::Path) -> Vec<PathBuf> {
    let Some(bin_dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(prefix) = bin_dir.parent() {
        out.push(prefix.join(WHEEL_MEPHISTO_DIR));
        if let Some(repo) = prefix.parent() {
            out.push(repo.join("deploy").join("mephisto"));
        }
    }
    out
}

/// The first candidate that holds a `server.js` (`is_file` is the file
/// system test, a parameter so the choice is testable without one).
pub fn find_mephisto_root(
    exe: &std::path::Path,
    is_file: impl Fn(&std::path::Path) -> bool,
) -> Result<PathBuf, Vec<PathBuf>> {
    let candidates = mephisto_root_candidates(exe);
    match candidates.iter().find(|d| is_file(&d.join("server.js"))) {
        Some(dir) => Ok(dir.clone()),
        None => Err(candidates),
    }
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Also make a symlink here pointing at the pty, so a restarted
    /// simulator is found at the same path.
    #[arg(long, value_name = "PATH")]
    pub link: Option<PathBuf>,
    /// Edge nodes (0x0001..=N).
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub sim_nodes: u16,
    /// Seconds between a node's data updates.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub sim_interval: f64,
}

/// Options of the switch itself.
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// TOML config file (see deploy/switchyard.toml); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// HTTP + WebSocket address [default: 127.0.0.1:3000; with PORT set and
    /// no --http: 0.0.0.0:$PORT].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Directory for the switch's files [default: ./switchyard-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Directory for uploaded files [default: DATA_DIR/uploads].
    #[arg(long, value_name = "DIR")]
    pub upload_dir: Option<PathBuf>,

    /// Directory of static files [default: built-in index.html and task_config.json].
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Only a socket presenting this token may be the backend (PROTOCOL 1.5).
    #[arg(long, value_name = "TOKEN")]
    pub backend_token: Option<String>,

    /// Without a backend token: networks the backend may connect from
    /// (CIDR or addresses, comma-separated) [default: the first backend's address].
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub backend_allow: Option<Vec<String>>,

    /// Agents kept at once; past it new agent ids are refused [default: 50000].
    #[arg(long, value_name = "N")]
    pub max_agents: Option<usize>,

    /// Agent ids one socket may bind [default: 4].
    #[arg(long, value_name = "N")]
    pub max_agents_per_socket: Option<usize>,

    /// Largest JSON body of the agent API (multipart keeps --max-upload-bytes) [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_json_body_bytes: Option<usize>,

    /// Bytes of packets kept for an absent or slow backend [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub backend_outbox_bytes: Option<usize>,

    /// Bytes of undelivered packets kept per agent [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub agent_queue_bytes: Option<usize>,

    /// Seconds a claim on a connected agent waits for its socket to answer a ping [default: 2].
    #[arg(long, value_name = "SECS")]
    pub takeover_probe: Option<f64>,

    /// Seconds an agent may stay without a socket before it is `disconnect` [default: 10].
    #[arg(long, value_name = "SECS")]
    pub reconnect_grace: Option<f64>,

    /// Seconds without a heartbeat before a live agent is `disconnect` [default: 15].
    #[arg(long, value_name = "SECS")]
    pub ping_timeout: Option<f64>,

    /// Seconds with no socket and nothing queued before an agent is removed [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub idle_expiry: Option<f64>,

    /// Undelivered packets kept per agent [default: 10000].
    #[arg(long, value_name = "N")]
    pub agent_queue_limit: Option<usize>,

    /// Packets kept for an absent backend [default: 100000].
    #[arg(long, value_name = "N")]
    pub backend_outbox_limit: Option<usize>,

    /// Seconds an HTTP request waits for the backend's agent_details [default: 30].
    #[arg(long, value_name = "SECS")]
    pub request_timeout: Option<f64>,

    /// Largest WebSocket packet in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,

    /// Largest HTTP body (uploads included) in bytes [default: 52428800].
    #[arg(long, value_name = "BYTES")]
    pub max_upload_bytes: Option<usize>,

    /// Frontend versions the task page may report (mephisto-task, mephisto-core);
    /// others are logged to the backend as a version mismatch. Repeat the flag
    /// or separate with commas [default: 2.0.4,1.5.1].
    #[arg(long, value_name = "VERSION,...", value_delimiter = ',')]
    pub expected_task_version: Option<Vec<String>>,

    /// Every live update crosses its Agent's or the BackendLink's mailbox:
    /// no session writes past them to their socket (the shortcut), so what
    /// the shortcut gains can be measured.
    #[arg(long)]
    pub no_shortcut: bool,

    /// Seconds between WebSocket protocol pings [default: 20].
    #[arg(long, value_name = "SECS")]
    pub ws_ping_interval: Option<f64>,

    /// Seconds of WebSocket silence before the socket is closed [default: 60].
    #[arg(long, value_name = "SECS")]
    pub ws_ping_timeout: Option<f64>,

    /// HTTP worker threads (0: one per core) [default: 0].
    #[arg(long, value_name = "N")]
    pub http_workers: Option<usize>,

    /// Client socket address for local programs, or `none` [default: 127.0.0.1:5000].
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,

    /// Mesh link: a serial device path, `auto` (first USB serial port),
    /// `none`, or `sim` (the built-in simulated mesh on a pty) [default: sim].
    #[arg(long, value_name = "PATH")]
    pub uart: Option<String>,

    /// Baud rate of the serial port [default: 115200].
    #[arg(long, value_name = "N")]
    pub baud: Option<u32>,

    /// Extra data types of the mesh (TOML or JSON file).
    #[arg(long, value_name = "FILE")]
    pub data_types: Option<PathBuf>,

    /// Seconds without hearing from a node before it is inactive [default: 60].
    #[arg(long, value_name = "SECS")]
    pub node_timeout: Option<f64>,

    /// Samples kept per node and data type [default: 1000].
    #[arg(long, value_name = "N")]
    pub history_limit: Option<usize>,

    /// Join a cluster of switches on NATS JetStream, e.g.
    /// nats://10.0.0.5:4222 (several servers: separate with commas).
    #[arg(long, value_name = "nats://HOST:PORT,...")]
    pub cluster: Option<String>,

    /// This switch's name in the cluster [default: HOST-PORT of --http].
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,

    /// Publish the mesh to an MQTT broker and take commands from it, e.g.
    /// mqtt://127.0.0.1:1883 (mqtts:// for TLS; more in [mqtt] of the
    /// config file).
    #[arg(long, value_name = "mqtt://HOST:PORT")]
    pub mqtt: Option<String>,

    /// Forward this switch's mesh to a central switch, e.g.
    /// ws://central:3000/gateway.
    #[arg(long, value_name = "URL")]
    pub uplink: Option<String>,

    /// This switch's name at the central switch [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub gateway_id: Option<String>,

    /// Token presented to the central switch.
    #[arg(long, value_name = "TOKEN")]
    pub uplink_token: Option<String>,

    /// Failed uplink attempts in a row before giving up (0: never) [default: 0].
    #[arg(long, value_name = "N")]
    pub uplink_retry_budget: Option<u32>,

    /// As a central switch: the token gateways must present (without it,
    /// /gateway refuses every gateway).
    #[arg(long, value_name = "TOKEN")]
    pub gateway_token: Option<String>,

    /// Nodes of the simulated mesh [default: 6].
    #[arg(long, value_name = "N")]
    pub sim_nodes: Option<u16>,

    /// Seconds between a simulated node's updates [default: 1].
    #[arg(long, value_name = "SECS")]
    pub sim_interval: Option<f64>,

    /// The token the operators' surface (/dashboard, /monitor, /api/*,
    /// /metrics/actors) needs, as `Authorization: Bearer T` or `?token=T`;
    /// without one that surface is served on a loopback --http only.
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,

    /// Open sockets on / over all peers; past it: close 1013 [default: 50000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Open sockets on / from one IP address; past it: close 1013 [default: 256].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Open client-socket connections; past it: `F` and close [default: 256].
    #[arg(long, value_name = "N")]
    pub client_max_connections: Option<usize>,

    /// Seconds a client-socket connection (not LISTN) may send nothing
    /// before it is closed; 0: never [default: 300].
    #[arg(long, value_name = "SECS")]
    pub client_idle_timeout: Option<f64>,
    /// As a central switch: largest frame on /gateway in bytes; a frame
    /// announcing more is closed with 1009 [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub gateway_max_frame_bytes: Option<usize>,

    /// History day files older than this many days are deleted [default: 7].
    #[arg(long, value_name = "DAYS")]
    pub history_retention_days: Option<u32>,

    /// Total size of the history day files past which the oldest are
    /// deleted [default: 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub history_max_bytes: Option<u64>,

    /// Neither write the router's state (agents' statuses and queues, the
    /// backend outbox) to DATA_DIR/state/ on SIGTERM/SIGINT nor read it
    /// back at start.
    #[arg(long)]
    pub no_state: bool,

    /// Largest state file read back at start; a larger one is set aside
    /// [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    pub state_max_bytes: Option<usize>,
}

impl Cli {
    pub fn into_config(self, port_env: Option<String>) -> Result<Config, ConfigError> {
        self.run.into_config(port_env)
    }
}

impl RunArgs {
    /// The config file (or the defaults), then `PORT`, then the flags.
    pub fn into_config(self, port_env: Option<String>) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(port) = port_env.and_then(|p| p.trim().parse::<u16>().ok()) {
            c.http = SocketAddr::from(([0, 0, 0, 0], port));
        }
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        set(&mut c.http, self.http);
        set(&mut c.data_dir, self.data_dir);
        if self.upload_dir.is_some() {
            c.upload_dir = self.upload_dir;
        }
        if self.static_dir.is_some() {
            c.static_dir = self.static_dir;
        }
        if self.backend_token.is_some() {
            c.backend.token = self.backend_token;
        }
        set(&mut c.agent.reconnect_grace_secs, self.reconnect_grace);
        set(&mut c.agent.ping_timeout_secs, self.ping_timeout);
        set(&mut c.agent.idle_expiry_secs, self.idle_expiry);
        set(&mut c.agent.queue_limit, self.agent_queue_limit);
        set(&mut c.backend.outbox_limit, self.backend_outbox_limit);
        set(&mut c.backend.request_timeout_secs, self.request_timeout);
        set(&mut c.session.max_frame_bytes, self.max_frame_bytes);
        set(&mut c.max_upload_bytes, self.max_upload_bytes);
        set(&mut c.backend.allow, self.backend_allow);
        set(&mut c.agent.max_agents, self.max_agents);
        set(
            &mut c.session.max_agents_per_socket,
            self.max_agents_per_socket,
        );
        set(&mut c.max_json_body_bytes, self.max_json_body_bytes);
        set(&mut c.backend.outbox_bytes_limit, self.backend_outbox_bytes);
        set(&mut c.agent.queue_bytes_limit, self.agent_queue_bytes);
        set(&mut c.agent.takeover_probe_secs, self.takeover_probe);
        set(&mut c.expected_task_version, self.expected_task_version);
        set(&mut c.session.ping_interval_secs, self.ws_ping_interval);
        set(&mut c.session.ping_timeout_secs, self.ws_ping_timeout);
        if self.no_shortcut {
            c.session.shortcut = false;
        }
        set(&mut c.http_workers, self.http_workers);
        if self.no_state {
            c.state.enabled = false;
        }
        set(&mut c.state.max_bytes, self.state_max_bytes);
        set(&mut c.tcp, self.tcp);
        set(&mut c.uart, self.uart);
        set(&mut c.serial.baud, self.baud);
        if self.data_types.is_some() {
            c.mesh.data_types = self.data_types;
        }
        set(&mut c.mesh.node_timeout_secs, self.node_timeout);
        set(&mut c.mesh.history_limit, self.history_limit);
        if self.cluster.is_some() {
            c.cluster.url = self.cluster;
        }
        if self.node_id.is_some() {
            c.cluster.node_id = self.node_id;
        }
        if self.mqtt.is_some() {
            c.mqtt.url = self.mqtt;
        }
        if self.uplink.is_some() {
            c.uplink.url = self.uplink;
        }
        if self.gateway_id.is_some() {
            c.uplink.gateway_id = self.gateway_id;
        }
        if self.uplink_token.is_some() {
            c.uplink.token = self.uplink_token;
        }
        set(&mut c.uplink.channel.retry_budget, self.uplink_retry_budget);
        if self.gateway_token.is_some() {
            c.gateway_token = self.gateway_token;
        }
        set(&mut c.sim.nodes, self.sim_nodes);
        set(&mut c.sim.interval_secs, self.sim_interval);
        if self.admin_token.is_some() {
            c.admin_token = self.admin_token;
        }
        set(&mut c.ws.max_connections, self.max_connections);
        set(
            &mut c.ws.max_connections_per_ip,
            self.max_connections_per_ip,
        );
        set(&mut c.socket.max_connections, self.client_max_connections);
        set(&mut c.socket.idle_timeout_secs, self.client_idle_timeout);
        set(&mut c.gateway.max_frame_bytes, self.gateway_max_frame_bytes);
        set(&mut c.history.retention_days, self.history_retention_days);
        set(&mut c.history.max_total_bytes, self.history_max_bytes);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn no_flags_is_the_default_config() {
        assert_eq!(parse(&[]).into_config(None).unwrap(), Config::default());
    }

    #[test]
    fn router_limits_are_flags() {
        let c = parse(&[
            "--backend-allow",
            "10.0.0.0/8,192.168.1.5",
            "--max-agents",
            "7",
            "--max-agents-per-socket",
            "2",
            "--max-json-body-bytes",
            "1000",
            "--backend-outbox-bytes",
            "2000",
            "--agent-queue-bytes",
            "3000",
            "--takeover-probe",
            "0.5",
        ])
        .into_config(None)
        .unwrap();
        assert_eq!(c.backend.allow, vec!["10.0.0.0/8", "192.168.1.5"]);
        assert_eq!(c.agent.max_agents, 7);
        assert_eq!(c.session.max_agents_per_socket, 2);
        assert_eq!(c.max_json_body_bytes, 1000);
        assert_eq!(c.backend.outbox_bytes_limit, 2000);
        assert_eq!(c.agent.queue_bytes_limit, 3000);
        assert_eq!(c.agent.takeover_probe_secs, 0.5);
    }

    #[test]
    fn no_shortcut_turns_the_shortcut_off() {
        assert!(parse(&[]).into_config(None).unwrap().session.shortcut);
        let c = parse(&["--no-shortcut"]).into_config(None).unwrap();
        assert!(!c.session.shortcut);
    }

    #[test]
    fn port_env_binds_all_interfaces_unless_http_is_given() {
        let c = parse(&[]).into_config(Some("4123".into())).unwrap();
        assert_eq!(c.http.to_string(), "0.0.0.0:4123");
        let c = parse(&["--http", "127.0.0.1:9"])
            .into_config(Some("4123".into()))
            .unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:9");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("sy-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[agent]\nqueue_limit = 5\nping_timeout_secs = 2.0\n").unwrap();
        let c = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--agent-queue-limit",
            "7",
        ])
        .into_config(None)
        .unwrap();
        assert_eq!(c.agent.queue_limit, 7);
        assert_eq!(c.agent.ping_timeout_secs, 2.0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn mesh_flags() {
        let c = parse(&[
            "--uart",
            "/dev/ttyUSB0",
            "--baud",
            "9600",
            "--sim-nodes",
            "3",
        ])
        .into_config(None)
        .unwrap();
        assert_eq!(c.uart, "/dev/ttyUSB0");
        assert_eq!(c.serial.baud, 9600);
        assert_eq!(c.sim.nodes, 3);
    }

    #[test]
    fn gateway_and_history_limit_flags() {
        let c = parse(&[
            "--gateway-max-frame-bytes",
            "65536",
            "--history-retention-days",
            "3",
            "--history-max-bytes",
            "1000000",
        ])
        .into_config(None)
        .unwrap();
        assert_eq!(c.gateway.max_frame_bytes, 65536);
        assert_eq!(c.history.retention_days, 3);
        assert_eq!(c.history.max_total_bytes, 1_000_000);
    }

    #[test]
    fn mephisto_root_is_found_next_to_the_wheel_binary_or_in_the_source_tree() {
        let venv = std::path::Path::new("/venv/bin/switchyard");
        let found = find_mephisto_root(venv, |p| p.starts_with("/venv/share"));
        assert_eq!(
            found,
            Ok(PathBuf::from("/venv/share/switchyard-router/mephisto"))
        );
        let built = std::path::Path::new("/src/target/release/switchyard");
        let found = find_mephisto_root(built, |p| {
            p == std::path::Path::new("/src/deploy/mephisto/server.js")
        });
        assert_eq!(found, Ok(PathBuf::from("/src/deploy/mephisto")));
        // Nothing there: every place looked at is reported.
        let missing = find_mephisto_root(venv, |_| false).unwrap_err();
        assert_eq!(
            missing,
            vec![
                PathBuf::from("/venv/share/switchyard-router/mephisto"),
                PathBuf::from("/deploy/mephisto"),
            ]
        );
        assert!(matches!(
            parse(&["mephisto-root"]).command,
            Some(Cmd::MephistoRoot)
        ));
    }

    #[test]
    fn simulate_is_a_subcommand() {
        let cli = parse(&["simulate", "--link", "/tmp/x", "--sim-nodes", "2"]);
        match cli.command {
            Some(Cmd::Simulate(a)) => {
                assert_eq!(a.sim_nodes, 2);
                assert_eq!(a.link.unwrap().to_str(), Some("/tmp/x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expected_task_version_is_repeatable_and_comma_separated() {
        let c = parse(&[
            "--expected-task-version",
            "2.0.4,1.5.1",
            "--expected-task-version",
            "1.6.0",
        ])
        .into_config(None)
        .unwrap();
        assert_eq!(c.expected_task_version, vec!["2.0.4", "1.5.1", "1.6.0"]);
        let c = parse(&["--expected-task-version", "2.0.3"])
            .into_config(None)
            .unwrap();
        assert_eq!(c.expected_task_version, vec!["2.0.3"]);
    }
}
