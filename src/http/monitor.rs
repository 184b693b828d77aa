//! `/monitor` (PROTOCOL 4), `/dashboard` and `/api/agents`.
//!
//! The monitor's upgrade wraps the WebSocket's response body in `Counted`,
//! so the `Monitor` knows when a subscriber is slow.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde_json::json;
use switchyard_actors::agent::GetBackendInfo;
use switchyard_actors::monitor::{Flow, MonitorSession};
use switchyard_actors::network::ListAgents;

use super::error::ApiError;
use super::{AppState, Counted};

pub async fn monitor(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let flow = Arc::new(Flow::default());
    let peer = super::ws::peer_name(&req);
    let session = MonitorSession::new(
        Arc::clone(&state.metrics),
        state.monitor.clone(),
        state.router.shutdown.clone(),
        peer,
        Arc::clone(&flow),
    );
    let mut res = ws::handshake(&req)?;
    let body = ws::WebsocketContext::create(session, stream);
    Ok(res.streaming(Counted {
        inner: Box::pin(body),
        flow,
    }))
}

pub async fn agents(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let agents = state
        .router
        .network
        .send(ListAgents)
        .await
        .map_err(ApiError::mailbox)?;
    let backend = state
        .router
        .backend
        .send(GetBackendInfo)
        .await
        .map_err(ApiError::mailbox)?;
    let mut agents = agents;
    agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    Ok(HttpResponse::Ok().json(json!({"agents": agents, "backend": backend})))
}

/// The dashboard's files, compiled in: it works with no network at all.
const DASHBOARD: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/dashboard/index.html"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard/dashboard.css"),
    ),
];

fn dashboard_file(name: &str) -> Result<HttpResponse, ApiError> {
    DASHBOARD
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ctype, body)| {
            HttpResponse::Ok()
                .content_type(*ctype)
                .insert_header(("Cache-Control", "no-cache"))
                .body(*body)
        })
        .ok_or(ApiError::NotFound)
}

pub async fn dashboard() -> Result<HttpResponse, ApiError> {
    dashboard_file("index.html")
}

pub async fn dashboard_asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    dashboard_file(&name)
}
