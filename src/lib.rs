//! # switchyard
//!
//! The binary's library half: command line, configuration, HTTP routes and
//! the wiring of the actors (which live in `switchyard-actors`).
//!
//! [`start`] is the one way a switch comes up, for `main` and for every
//! integration test alike: it starts the actors and the HTTP server on the
//! current actix system and returns a [`Running`] with the bound addresses.

pub mod cli;
pub mod config;
pub mod ctl;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use switchyard_actors::agent::{AttachNetwork, BackendLink, RouterContext};
use switchyard_actors::directory::AgentDirectory;
use switchyard_actors::mailbox::Mailbox;
use switchyard_actors::metrics::{count_each, Metrics};
use switchyard_actors::monitor::Monitor;
use switchyard_actors::network::history::{HistoryLog, HistoryWriter};
use switchyard_actors::network::mesh::MeshState;
use switchyard_actors::network::{AttachUart, NetworkManager, NetworkSetup};
use switchyard_actors::socket::SocketManager;
use switchyard_actors::uart::sim::SimulatedRoot;
use switchyard_actors::uart::{PortPath, UartManager};
use switchyard_actors::uplink::{GatewayServer, Uplink};
use switchyard_actors::wire::data_types::DataTypes;

pub use config::{Config, MeshLink};

/// A switch that is up: its addresses and handles.
pub struct Running {
    /// Where HTTP and the WebSockets listen.
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub router: Arc<RouterContext>,
    pub config: Config,
    /// The serial port the mesh link uses (the pty of the simulated mesh,
    /// by default); None with `uart = "none"`.
    pub uart_path: Option<String>,
    pub uart: Option<Mailbox<UartManager>>,
    /// Where the client socket listens (None when it is off).
    pub tcp_addr: Option<SocketAddr>,
    sim: Option<SimulatedRoot>,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot prepare {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("data types: {0}")]
    DataTypes(String),
    #[error("{0}")]
    Config(String),
}

/// The built-in data types plus the configured file's.
pub fn load_data_types(config: &Config) -> Result<DataTypes, StartError> {
    let Some(path) = &config.mesh.data_types else {
        return Ok(DataTypes::builtin());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::DataTypes(format!("{}: {e}", path.display())))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let specs = if is_json {
        DataTypes::from_json_str(&text)
    } else {
        DataTypes::from_toml_str(&text)
    }
    .map_err(|e| StartError::DataTypes(format!("{}: {e}", path.display())))?;
    DataTypes::builtin()
        .with(specs)
        .map_err(|e| StartError::DataTypes(format!("{}: {e}", path.display())))
}

/// The host's name, else "edge".
fn default_gateway_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".into())
}

/// A cluster node's default name: the host's and the HTTP port, as one
/// subject token.
#[cfg(feature = "cluster")]
fn default_node_id(http: std::net::SocketAddr) -> String {
    let host: String = default_gateway_id()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(50)
        .collect();
    format!("{host}-{}", http.port())
}

/// The node cache, warmed from the history log, and the log's writer
/// thread. Retention runs first; the warm start then streams the day files
/// dated within the window into the bounded cache.
fn mesh_setup(config: &Config, metrics: &Arc<Metrics>) -> Result<NetworkSetup, StartError> {
    use switchyard_actors::network::history;
    let data_types = load_data_types(config)?;
    let mut mesh = MeshState::new(&config.mesh, data_types);
    let dir = config.data_dir.join("history");
    let log = HistoryLog::open(&dir).map_err(|source| StartError::Io {
        what: format!("history dir {}", dir.display()),
        source,
    })?;
    let now = switchyard_actors::clock::now_secs();
    history::apply_retention(&dir, &config.history, now, metrics);
    let files = history::warm_files(
        &history::day_files(&dir),
        history::day_number(now),
        config.mesh.warm_days,
    );
    // A record stamped more than a minute ahead of this clock is not
    // believed (it would keep its node active for ever).
    let report = history::stream_records(&files, now + 60.0, |r| {
        mesh.warm_one(r);
    });
    mesh.cache.settle(now);
    metrics.history_warm_records.inc_by(report.records as u64);
    count_each(
        &metrics.history_warm_skipped,
        &[
            ("bad_line", report.bad_lines),
            ("long_line", report.long_lines),
            ("bad_file", report.bad_files),
        ],
    );
    if report.bad_lines + report.long_lines > 0 {
        log::warn!(
            "history log: {} unreadable and {} over-long lines skipped",
            report.bad_lines,
            report.long_lines
        );
    }
    if report.records > 0 {
        log::info!(
            "history log: {} records read back from {} files, {} nodes known",
            report.records,
            files.len(),
            mesh.cache.len()
        );
    }
    let writer = HistoryWriter::spawn(log, config.history.clone(), Arc::clone(metrics)).map_err(
        |source| StartError::Io {
            what: "the history writer thread".into(),
            source,
        },
    )?;
    Ok(NetworkSetup {
        mesh,
        history: Some(writer),
    })
}

/// Starts every actor and the HTTP server on the current actix system.
pub async fn start(mut config: Config) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    if config.cluster.url.is_some() && config.session.shortcut {
        // Across switches every packet goes through JetStream, in the
        // order each owner took it; a session writing past its owner to a
        // socket would overtake what waits in the stream.
        log::info!("cluster mode: the shortcut is off");
        config.session.shortcut = false;
    }
    if config.cluster.url.is_some() && config.state.enabled {
        // The cluster's streams and buckets are the state: a state file
        // would bring back, after a restart, packets the streams still
        // hold, and agents other switches have adopted meanwhile.
        log::info!("cluster mode: the state file is off (the cluster keeps the state)");
        config.state.enabled = false;
    }
    if let Err(e) = switchyard_actors::agent::BackendGate::new(
        config.backend.token.is_some(),
        &config.backend.allow,
    ) {
        return Err(StartError::Config(format!("backend allow list: {e}")));
    }
    if config.backend.token.is_none() && config.backend.allow.is_empty() {
        log::warn!(
            "no backend token set: the backend is pinned to the address of the first socket that \
             says alive as mephisto (set --backend-token or --backend-allow)"
        );
    }
    let uploads = http::uploads::UploadStore::open(config.upload_dir(), &config.data_dir).map_err(
        |source| StartError::Io {
            what: format!("upload dir {}", config.upload_dir().display()),
            source,
        },
    )?;

    // Cluster mode joins first: a switch that cannot reach its cluster
    // (or one without JetStream) does not start at all.
    #[cfg(feature = "cluster")]
    let cluster = match &config.cluster.url {
        None => None,
        Some(_) => {
            let node = config
                .cluster
                .node_id
                .clone()
                .unwrap_or_else(|| default_node_id(config.http));
            Some(
                switchyard_actors::cluster::Cluster::join(
                    config.cluster.clone(),
                    node,
                    Arc::clone(&metrics),
                )
                .await
                .map_err(|e| StartError::Config(e.to_string()))?,
            )
        }
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let backend = BackendLink::start_link(
        config.backend.clone(),
        &config.session,
        Arc::clone(&metrics),
    );
    let router_config = config.router();
    let setup = mesh_setup(&config, &metrics)?;
    let network = NetworkManager::start_link(
        Arc::clone(&metrics),
        metrics.probe("NetworkManager", "switch"),
        setup,
    );
    let router = AgentDirectory::start_with(
        |directory| {
            RouterContext::new(
                router_config,
                Arc::clone(&metrics),
                directory,
                network,
                backend,
                shutdown_rx,
            )
        },
        metrics.probe("AgentDirectory", "switch"),
    );
    #[cfg(feature = "cluster")]
    if let Some(cluster) = cluster {
        router
            .backend
            .do_send(switchyard_actors::agent::AttachCluster(cluster.clone()));
        cluster
            .addr
            .do_send(switchyard_actors::cluster::AttachDirectory {
                moved: router.directory.counted_recipient(),
                statuses: router.directory.counted_recipient(),
                adopt: router.directory.counted_recipient(),
                catch_up: router.directory.counted_recipient(),
            });
        router.set_cluster(cluster);
    }

    let (port, sim) = match config.mesh_link() {
        MeshLink::None => (None, None),
        MeshLink::Auto => (Some(PortPath::Auto), None),
        MeshLink::Port(p) => (Some(PortPath::Path(p)), None),
        MeshLink::Simulated => {
            let sim = SimulatedRoot::spawn(config.sim.clone(), None).map_err(|source| {
                StartError::Io {
                    what: "the simulated mesh's pseudo-terminal".into(),
                    source,
                }
            })?;
            log::info!(
                "simulated mesh: {} nodes on {}",
                config.sim.nodes,
                sim.path()
            );
            (Some(PortPath::Path(sim.path())), Some(sim))
        }
    };
    let uart_path = port.as_ref().map(PortPath::describe);
    let uart = port.map(|p| {
        let uart = UartManager::new(
            p,
            config.serial.clone(),
            Arc::clone(&metrics),
            router.network.counted_recipient(),
        )
        .open_at_start()
        .stop_on(router.shutdown.clone())
        .start_link();
        router.network.do_send(AttachUart(uart.clone()));
        uart
    });

    let tcp_addr = match config.tcp_addr().map_err(StartError::Config)? {
        None => None,
        Some(addr) => {
            let (_, bound) = SocketManager::bind(
                addr,
                config.socket.clone(),
                Arc::clone(&metrics),
                router.network.clone(),
                router.shutdown.clone(),
            )
            .map_err(|source| StartError::Bind {
                what: "the client socket",
                addr,
                source,
            })?;
            log::info!("client socket listening on {bound}");
            Some(bound)
        }
    };

    router
        .backend
        .do_send(AttachNetwork(router.network.clone()));
    // Before the switch takes input: restored agents and outbox come first.
    if config.state.enabled {
        restore_state(&config, &router, &metrics).await;
    }
    let monitor = Monitor::start_link(
        config.monitor.clone(),
        Arc::clone(&metrics),
        router.network.clone(),
        router.directory.clone(),
        router.backend.clone(),
    );

    let gateways = GatewayServer::start_link(
        config.gateway.clone(),
        config.serial.max_frame_bytes,
        Arc::clone(&metrics),
        router.network.clone(),
    );
    if let Some(url) = &config.uplink.url {
        let gateway = config
            .uplink
            .gateway_id
            .clone()
            .unwrap_or_else(default_gateway_id);
        if !switchyard_actors::wire::uplink::is_valid_gateway_name(&gateway) {
            return Err(StartError::Config(format!(
                "gateway id {gateway:?}: a central switch takes 1 to 64 of A-Z a-z 0-9 . _ -"
            )));
        }
        log::info!("uplink: forwarding the mesh to {url} as gateway {gateway}");
        Uplink::start_link(
            gateway,
            url.clone(),
            &config.uplink,
            Arc::clone(&metrics),
            router.network.clone(),
            router.shutdown.clone(),
        );
    }

    let mqtt = match &config.mqtt.url {
        Some(url) => {
            let client_id = config
                .mqtt
                .client_id
                .clone()
                .unwrap_or_else(|| format!("switchyard-{}", default_node_id(config.http)));
            let bridge = switchyard_actors::mqtt::MqttBridge::start_link(
                config.mqtt.clone(),
                client_id.clone(),
                &metrics,
                router.network.clone(),
                gateways.clone(),
                router.shutdown.clone(),
            )
            .map_err(|e| StartError::Config(format!("--mqtt: {e}")))?;
            log::info!("mqtt: bridging the mesh to {url} as {client_id}");
            Some(bridge)
        }
        None => None,
    };

    let state = web::Data::new(http::AppState {
        monitor,
        mqtt,
        gateways,
        config: config.clone(),
        router: Arc::clone(&router),
        metrics: Arc::clone(&metrics),
        uploads,
        static_dir: config.static_dir.clone(),
    });
    let (server, http_addr) = http::server::serve(state, config.http, config.http_workers)
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: config.http,
            source,
        })?;
    let handle = server.handle();
    let server_task = actix_web::rt::spawn(server);
    log::info!("switchyard listening on http://{http_addr} (WebSocket on /)");
    Ok(Running {
        http_addr,
        metrics,
        router,
        config,
        uart_path,
        uart,
        tcp_addr,
        sim,
        server: handle,
        server_task,
        shutdown: shutdown_tx,
    })
}

impl Running {
    /// The WebSocket URL of the agent router.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.http_addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr, path)
    }

    /// Closes every socket with 1001, answers HTTP requests still waiting
    /// for the backend with 503, stops the server, then writes the router's
    /// state to `DATA_DIR/state/` (with `[state] enabled`).
    pub async fn stop(self) {
        log::info!("shutting down: closing every socket with 1001");
        let _ = self.shutdown.send(true);
        // Nothing waits for a backend that will not answer this run.
        let _ = self
            .router
            .backend
            .send(switchyard_actors::agent::CloseRequests)
            .await;
        // Let the close frames reach the sockets before the server goes.
        wait_until(Duration::from_secs(2), || {
            self.metrics
                .connections_open
                .get_metric_with_label_values(&["router"])
                .map(|g| g.get() <= 0)
                .unwrap_or(true)
                && self
                    .metrics
                    .connections_open
                    .get_metric_with_label_values(&["monitor"])
                    .map(|g| g.get() <= 0)
                    .unwrap_or(true)
        })
        .await;
        self.server.stop(true).await;
        let _ = self.server_task.await;
        // No input is taken any more: what the actors hold is final.
        if self.config.state.enabled {
            save_state(&self.config, &self.router, &self.metrics).await;
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.router.cluster() {
            let _ = cluster.addr.send(switchyard_actors::cluster::Leave).await;
        }
        if let Some(sim) = self.sim {
            sim.stop();
        }
    }
}

/// Reads back the state a graceful stop left in `DATA_DIR/state/`, if
/// any, within the live bounds, into the agents and the backend outbox,
/// then removes the file. A file too large, damaged or of another version
/// is moved aside with a log line; the switch starts all the same.
async fn restore_state(config: &Config, router: &RouterContext, metrics: &Metrics) {
    use switchyard_actors::agent::snapshot::{self, Found, SnapshotLimits};
    use switchyard_actors::agent::RestoreOutbox;
    use switchyard_actors::directory::RestoreAgents;
    use switchyard_actors::metrics::state_kind;
    let dir = config.state_dir();
    let now_ms = switchyard_actors::clock::now_ms();
    let set_aside = |why: &str, what: &str| {
        metrics.state_set_aside.with_label_values(&[why]).inc();
        match snapshot::set_aside(&dir, why, now_ms) {
            Ok(to) => log::warn!(
                "router state file {}: {what}; moved aside to {}, starting without it",
                snapshot::state_path(&dir).display(),
                to.display()
            ),
            Err(e) => {
                metrics.state_errors.with_label_values(&["set_aside"]).inc();
                log::error!(
                    "router state file {}: {what}; cannot move it aside ({e}), starting without it",
                    snapshot::state_path(&dir).display()
                );
            }
        }
    };
    let bytes = match snapshot::read_bounded(&dir, config.state.max_bytes) {
        Ok(Found::Nothing) => return,
        Ok(Found::Bytes(b)) => b,
        Ok(Found::TooLarge(size)) => {
            let what = format!(
                "{size} bytes, over the limit of {} ([state] max_bytes)",
                config.state.max_bytes
            );
            return set_aside("too_large", &what);
        }
        Err(e) => {
            metrics.state_errors.with_label_values(&["read"]).inc();
            return set_aside("unreadable", &e.to_string());
        }
    };
    let limits = SnapshotLimits::of(&config.router(), &config.state);
    let restored = match snapshot::decode(&bytes, &limits) {
        Ok(r) => r,
        Err(e) => return set_aside(e.kind(), &e.to_string()),
    };
    drop(bytes);
    let sk = &restored.skipped;
    count_each(
        &metrics.state_skipped,
        &[
            ("bad_packet", sk.bad_packets),
            ("bad_agent", sk.bad_agents),
            ("over_bounds", sk.over_bounds),
        ],
    );
    if sk.any() {
        log::warn!(
            "router state file: {} unreadable packets, {} agents and {} packets past the bounds skipped",
            sk.bad_packets,
            sk.bad_agents,
            sk.over_bounds
        );
    }
    let downtime_ms = now_ms.saturating_sub(restored.saved_at_ms).max(0);
    let agent_packets = restored.agent_packets();
    let outbox_packets = restored.outbox.len();
    let agents = router
        .directory
        .send(RestoreAgents {
            agents: restored.agents,
            downtime_ms,
        })
        .await
        .unwrap_or(0);
    let _ = router.backend.send(RestoreOutbox(restored.outbox)).await;
    for (kind, n) in [
        (state_kind::AGENTS, agents),
        (state_kind::AGENT_PACKETS, agent_packets),
        (state_kind::OUTBOX_PACKETS, outbox_packets),
    ] {
        metrics
            .state_restored
            .with_label_values(&[kind])
            .inc_by(n as u64);
    }
    log::info!(
        "router state restored: {agents} agents with {agent_packets} queued packets, \
         {outbox_packets} packets for the backend (saved {:.1} s ago)",
        downtime_ms as f64 / 1000.0
    );
    // Back in the actors: a second start must not replay it.
    if let Err(e) = snapshot::consume(&dir) {
        metrics.state_errors.with_label_values(&["consume"]).inc();
        log::error!(
            "router state file {}: restored but cannot be removed ({e}); the next start would restore it again",
            snapshot::state_path(&dir).display()
        );
    }
}

/// Writes every agent's state and the backend outbox to
/// `DATA_DIR/state/router.json`, atomically.
async fn save_state(config: &Config, router: &RouterContext, metrics: &Metrics) {
    use switchyard_actors::agent::snapshot::{self, RouterSnapshot};
    use switchyard_actors::agent::ExportOutbox;
    use switchyard_actors::directory::ExportAgents;
    use switchyard_actors::metrics::state_kind;
    let now_secs = switchyard_actors::clock::now_secs();
    let agents = router
        .directory
        .send(ExportAgents { now_secs })
        .await
        .unwrap_or_default();
    let outbox = router
        .backend
        .send(ExportOutbox { now_secs })
        .await
        .unwrap_or_default();
    let snap = RouterSnapshot::new(switchyard_actors::clock::now_ms(), agents, outbox);
    let bytes = snapshot::encode(&snap);
    if bytes.len() > config.state.max_bytes {
        log::warn!(
            "router state: {} bytes, over [state] max_bytes ({}): the next start sets it aside unless the limit is raised",
            bytes.len(),
            config.state.max_bytes
        );
    }
    let dir = config.state_dir();
    let write = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || snapshot::write_atomic(&dir, &bytes))
    };
    match write.await {
        Ok(Ok(path)) => {
            let agent_packets = snap.agents.iter().map(|a| a.queue.len()).sum::<usize>();
            for (kind, n) in [
                (state_kind::AGENTS, snap.agents.len()),
                (state_kind::AGENT_PACKETS, agent_packets),
                (state_kind::OUTBOX_PACKETS, snap.outbox.len()),
            ] {
                metrics
                    .state_saved
                    .with_label_values(&[kind])
                    .inc_by(n as u64);
            }
            log::info!(
                "router state saved to {}: {} agents with {agent_packets} queued packets, {} packets for the backend",
                path.display(),
                snap.agents.len(),
                snap.outbox.len()
            );
        }
        Ok(Err(e)) => {
            metrics.state_errors.with_label_values(&["save"]).inc();
            log::error!("router state: cannot write {}: {e}", dir.display());
        }
        Err(e) => {
            metrics.state_errors.with_label_values(&["save"]).inc();
            log::error!("router state: the writer failed: {e}");
        }
    }
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
