//! HTTP routes: the agent API (PROTOCOL 1.4), the WebSocket upgrade on `/`,
//! static files, and metrics.

pub mod agent_api;
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

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::{web, App};
use futures_util::FutureExt;
use switchyard_actors::agent::RouterContext;
use switchyard_actors::metrics::Metrics;

use crate::config::Config;

/// What every handler may read.
pub struct AppState {
    pub config: Config,
    pub router: Arc<RouterContext>,
    pub metrics: Arc<Metrics>,
    pub uploads: uploads::UploadStore,
    pub monitor: switchyard_actors::metrics::Mailbox<switchyard_actors::monitor::Monitor>,
    pub gateways: switchyard_actors::metrics::Mailbox<switchyard_actors::uplink::GatewayServer>,
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
            srv.call(req).map(move |res| {
                if let Ok(res) = &res {
                    metrics
                        .http_requests
                        .with_label_values(&[&route, res.status().as_str()])
                        .inc();
                }
                res
            })
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
