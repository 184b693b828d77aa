//! `/monitor` (PROTOCOL 4), `/dashboard` and `/api/agents`.
//!
//! A subscriber's session hands its `Flow` to the transport, which counts
//! the bytes it takes, so the `Monitor` knows when a subscriber is slow.

use std::sync::Arc;

use actix_http::ws;
use actix_http::RequestHead;
use actix_web::{web, HttpResponse};
use serde_json::json;
use switchyard_actors::agent::GetBackendInfo;
use switchyard_actors::monitor::{Flow, MonitorSession};
use switchyard_actors::network::ListAgents;

use super::error::ApiError;
use super::transport::{Inbound, Session};
use super::AppState;

/// A `/monitor` subscriber's session.
pub fn monitor_session(head: &RequestHead, state: &AppState, inbound: Inbound) -> Session {
    let flow = Arc::new(Flow::default());
    let session = MonitorSession::new(
        Arc::clone(&state.metrics),
        state.monitor.clone(),
        state.router.shutdown.clone(),
        super::ws::peer_name(head),
        Arc::clone(&flow),
    );
    Session::start(session, inbound, ws::Codec::new(), Some(flow))
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
