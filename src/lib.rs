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
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpServer};
use switchyard_actors::agent::{BackendLink, RouterContext};
use switchyard_actors::metrics::Metrics;
use switchyard_actors::network::NetworkManager;

pub use config::Config;

/// A switch that is up: its addresses and handles.
pub struct Running {
    /// Where HTTP and the WebSockets listen.
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub router: Arc<RouterContext>,
    pub config: Config,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot prepare {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Starts every actor and the HTTP server on the current actix system.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    if config.backend.token.is_none() {
        log::warn!("no backend token set: any socket may become the backend (set --backend-token)");
    }
    let uploads = http::uploads::UploadStore::open(config.upload_dir(), &config.data_dir).map_err(
        |source| StartError::Io {
            what: format!("upload dir {}", config.upload_dir().display()),
            source,
        },
    )?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let backend = BackendLink::start_link(config.backend.clone(), Arc::clone(&metrics));
    let router_config = config.router();
    let nm_probe = metrics.probe("NetworkManager", "switch");
    let router = NetworkManager::start_with(
        |network| {
            RouterContext::new(
                router_config,
                Arc::clone(&metrics),
                network,
                backend,
                shutdown_rx,
            )
        },
        nm_probe,
    );

    let state = web::Data::new(http::AppState {
        config: config.clone(),
        router: Arc::clone(&router),
        metrics: Arc::clone(&metrics),
        uploads,
        static_dir: config.static_dir.clone(),
    });
    let mut server = HttpServer::new(move || http::app(state.clone()))
        .disable_signals()
        .shutdown_timeout(2);
    if config.http_workers > 0 {
        server = server.workers(config.http_workers);
    }
    let server = server
        .bind(config.http)
        .map_err(|source| StartError::Bind {
            addr: config.http,
            source,
        })?;
    let http_addr = server.addrs().first().copied().unwrap_or(config.http);
    let server = server.run();
    let handle = server.handle();
    let server_task = actix_web::rt::spawn(server);
    log::info!("switchyard listening on http://{http_addr} (WebSocket on /)");
    Ok(Running {
        http_addr,
        metrics,
        router,
        config,
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

    /// Closes every socket with 1001 and stops the server.
    pub async fn stop(self) {
        log::info!("shutting down: closing every socket with 1001");
        let _ = self.shutdown.send(true);
        // Let the close frames reach the sockets before the server goes.
        wait_until(Duration::from_secs(2), || {
            self.metrics
                .connections_open
                .get_metric_with_label_values(&["router"])
                .map(|g| g.get() <= 0)
                .unwrap_or(true)
        })
        .await;
        self.server.stop(true).await;
        let _ = self.server_task.await;
    }
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
