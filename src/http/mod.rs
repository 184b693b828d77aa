//! HTTP routes: the agent API (PROTOCOL 1.4), the WebSocket upgrade on `/`,
//! static files, and metrics.

pub mod agent_api;
pub mod auth;
pub mod error;
pub mod mesh_api;
pub mod metrics;
pub mod monitor;
pub mod server;
pub mod static_files;
pub mod transport;
pub mod upgrade;
pub mod uploads;
pub mod ws;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::Service;
use actix_web::{web, App};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use switchyard_actors::agent::RouterContext;
use switchyard_actors::metrics::Metrics;

use crate::config::Config;

/// Limits of the WebSocket endpoints (PROTOCOL 1.5 "Bounds"). The frame
/// limit of `/` is the session's (`session.max_frame_bytes`, see
/// `SessionConfig::hard_frame_bytes`), that of `/gateway` the gateway
/// server's (`gateway.max_frame_bytes`, which also bounds envelope decoding).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Largest frame (or fragmented message) on `/monitor`; a header
    /// announcing more is closed with 1009 before its payload is read.
    pub monitor_max_frame_bytes: usize,
    /// Open sockets on `/` (agents and the backend) over all peers; past
    /// it a new one is closed with 1013 right after the upgrade.
    pub max_connections: usize,
    /// Open sockets on `/` from one IP address (crowd workers behind one
    /// NAT share one). Loopback peers are exempt: a reverse proxy on the
    /// same host presents every client as loopback.
    pub max_connections_per_ip: usize,
    /// Open `/gateway` sessions.
    pub max_gateway_sessions: usize,
    /// Bytes of large (over 64 KiB) or fragmented messages that all
    /// WebSockets together may hold while they arrive; a socket whose
    /// message does not fit is closed with 1013 (try again later).
    pub message_budget_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            monitor_max_frame_bytes: 64 * 1024,
            max_connections: 50_000,
            max_connections_per_ip: 256,
            max_gateway_sessions: 64,
            message_budget_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Open connections of one kind, bounded; a `Slot` holds one until dropped.
#[derive(Default)]
pub struct Slots {
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection counted in its `Slots`.
pub struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

/// Which limit refused a connection (the label of
/// `switchyard_connections_refused_total{limit}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefusal {
    Total,
    PerIp,
}

impl SlotRefusal {
    pub fn label(self) -> &'static str {
        match self {
            SlotRefusal::Total => "total",
            SlotRefusal::PerIp => "per_ip",
        }
    }
}

impl Slots {
    /// Takes a slot if fewer than `max` are open (and, with `per_ip`, fewer
    /// than that many from `ip`).
    pub fn take(
        self: &Arc<Self>,
        max: usize,
        ip: Option<IpAddr>,
        per_ip: Option<usize>,
    ) -> Result<Slot, SlotRefusal> {
        if self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(SlotRefusal::Total);
        }
        let mut slot = Slot {
            slots: Arc::clone(self),
            ip: None,
        };
        if let (Some(ip), Some(per_ip)) = (ip, per_ip) {
            let Ok(mut by_ip) = self.by_ip.lock() else {
                return Ok(slot);
            };
            let n = by_ip.entry(ip).or_default();
            if *n >= per_ip {
                return Err(SlotRefusal::PerIp);
            }
            *n += 1;
            slot.ip = Some(ip);
        }
        Ok(slot)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = self.ip {
            if let Ok(mut by_ip) = self.slots.by_ip.lock() {
                if let Some(n) = by_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        by_ip.remove(&ip);
                    }
                }
            }
        }
    }
}

/// What the WebSocket endpoints share across the HTTP workers: their open
/// connections, the budget for large messages being read, and one rate
/// limit for the log lines a peer can trigger.
pub struct Edge {
    pub router: Arc<Slots>,
    pub monitor: Arc<Slots>,
    pub gateway: Arc<Slots>,
    pub budget: Arc<transport::FrameBudget>,
    pub log: Mutex<Option<switchyard_actors::log_limit::LogLimit>>,
}

impl Edge {
    pub fn new(config: &WsConfig) -> Edge {
        Edge {
            router: Arc::default(),
            monitor: Arc::default(),
            gateway: Arc::default(),
            budget: transport::FrameBudget::new(config.message_budget_bytes),
            log: Mutex::new(None),
        }
    }

    /// Writes `line` unless one was written in the last second; the line
    /// says how many were held back.
    pub fn log(&self, line: impl FnOnce() -> String) {
        let Ok(mut limit) = self.log.lock() else {
            return;
        };
        let limit = limit.get_or_insert_with(switchyard_actors::log_limit::LogLimit::per_second);
        if let Some(held) = limit.admit(std::time::Instant::now()) {
            log::warn!(
                "{}{}",
                line(),
                switchyard_actors::log_limit::held_note(held)
            );
        }
    }
}

/// What every handler may read.
pub struct AppState {
    pub config: Config,
    pub router: Arc<RouterContext>,
    pub metrics: Arc<Metrics>,
    pub uploads: uploads::UploadStore,
    pub monitor: switchyard_actors::mailbox::Mailbox<switchyard_actors::monitor::Monitor>,
    pub gateways: switchyard_actors::mailbox::Mailbox<switchyard_actors::uplink::GatewayServer>,
    /// The MQTT bridge, with `--mqtt`.
    pub mqtt: Option<switchyard_actors::mailbox::Mailbox<switchyard_actors::mqtt::MqttBridge>>,
    pub static_dir: Option<PathBuf>,
}

/// The application: every route, and the request counter around them.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = Arc::clone(&state.metrics);
    App::new()
        .app_data(state)
        .app_data(web::JsonConfig::default().error_handler(|err, _| {
            let msg = format!("invalid JSON body: {err}");
            error::ApiError::BadRequest(msg).into()
        }))
        .wrap_fn(move |req, srv| {
            let metrics = Arc::clone(&metrics);
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
            if auth::is_admin_path(req.path()) {
                let access = req
                    .app_data::<web::Data<AppState>>()
                    .map(|s| auth::admin_access(req.head(), &s.config))
                    .unwrap_or(auth::AdminAccess::NoTokenOnPublicListener);
                if !access.allowed() {
                    metrics
                        .admin_refused
                        .with_label_values(&[access.label()])
                        .inc();
                    metrics
                        .http_requests
                        .with_label_values(&[&route, access.status().as_str()])
                        .inc();
                    let res = actix_web::HttpResponse::build(access.status())
                        .json(serde_json::json!({ "error": access.reason() }));
                    return futures_util::future::Either::Left(futures_util::future::ready(Ok(
                        req.into_response(res),
                    )));
                }
            }
            futures_util::future::Either::Right(srv.call(req).map(move |res| {
                if let Ok(res) = &res {
                    metrics
                        .http_requests
                        .with_label_values(&[&route, res.status().as_str()])
                        .inc();
                }
                res
            }))
        })
        .route("/", web::get().to(ws::index))
        .route("/request_agent", web::post().to(agent_api::request_agent))
        .route(
            "/submit_onboarding",
            web::post().to(agent_api::submit_onboarding),
        )
        .route("/submit_task", web::post().to(agent_api::submit_task))
        .route(
            "/submit_metadata",
            web::post().to(agent_api::submit_metadata),
        )
        .route("/log_error", web::post().to(agent_api::log_error))
        .route("/task_config.json", web::get().to(agent_api::task_config))
        .route("/is_alive", web::get().to(agent_api::is_alive))
        .route("/get_timestamp", web::get().to(agent_api::get_timestamp))
        .route(
            "/download_file/{name}",
            web::get().to(uploads::download_file),
        )
        .route("/monitor", web::get().to(ws::upgrade_required))
        .route("/dashboard", web::get().to(monitor::dashboard))
        .route("/dashboard/", web::get().to(monitor::dashboard))
        .route("/dashboard/{name}", web::get().to(monitor::dashboard_asset))
        .route("/api/agents", web::get().to(monitor::agents))
        .route("/api/mqtt", web::get().to(monitor::mqtt))
        .route("/api/nodes", web::get().to(mesh_api::nodes))
        .route("/api/nodes/{addr}", web::get().to(mesh_api::node))
        .route(
            "/api/nodes/{addr}/history",
            web::get().to(mesh_api::history),
        )
        .route("/api/nodes/{addr}/send", web::post().to(mesh_api::send))
        .route(
            "/api/nodes/{gateway}/{addr}",
            web::get().to(mesh_api::gateway_node),
        )
        .route(
            "/api/nodes/{gateway}/{addr}/history",
            web::get().to(mesh_api::gateway_history),
        )
        .route(
            "/api/nodes/{gateway}/{addr}/send",
            web::post().to(mesh_api::gateway_send),
        )
        .route("/gateway", web::get().to(ws::upgrade_required))
        .route("/api/broadcast", web::post().to(mesh_api::broadcast))
        .route("/metrics", web::get().to(metrics::prometheus))
        .route("/metrics/actors", web::get().to(metrics::actors))
        .route("/task_index", web::get().to(static_files::index))
        .route("/welcome", web::get().to(static_files::index))
        .route("/{path:.*}", web::get().to(static_files::file))
        .default_service(web::to(static_files::not_found))
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL 1.5 "Bounds": connections are bounded in total and per
    // address; a slot let go is free again.
    #[test]
    fn slots_are_bounded_in_total_and_per_address() {
        let slots = Arc::new(Slots::default());
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let a1 = slots.take(3, Some(a), Some(2)).unwrap();
        let a2 = slots.take(3, Some(a), Some(2)).unwrap();
        assert_eq!(
            slots.take(3, Some(a), Some(2)).err(),
            Some(SlotRefusal::PerIp)
        );
        assert_eq!(slots.open(), 2, "a refused slot is not kept");
        let b1 = slots.take(3, Some(b), Some(2)).unwrap();
        assert_eq!(
            slots.take(3, Some(b), Some(2)).err(),
            Some(SlotRefusal::Total)
        );
        assert_eq!(slots.take(3, None, None).err(), Some(SlotRefusal::Total));
        drop(a1);
        assert_eq!(slots.open(), 2);
        let a3 = slots.take(3, Some(a), Some(2)).unwrap();
        drop((a2, a3, b1));
        assert_eq!(slots.open(), 0);
        assert!(
            slots.by_ip.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }
}
