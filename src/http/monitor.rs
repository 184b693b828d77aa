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
use switchyard_actors::directory::ListAgents;
use switchyard_actors::monitor::{Flow, MonitorSession};

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
        &state.router.config.session,
    );
    let limit = state.config.ws.monitor_max_frame_bytes;
    let codec = ws::Codec::new().max_size(limit);
    Session::start(session, inbound.limit_frames(limit), codec, Some(flow))
}

pub async fn agents(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let agents = state
        .router
        .directory
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
    // Cluster mode: the switches, which holds the backend, agents per
    // switch (null on a switch without `--cluster`).
    #[cfg(feature = "cluster")]
    let cluster = match state.router.cluster() {
        Some(c) => Some(
            c.addr
                .send(switchyard_actors::cluster::GetClusterInfo)
                .await
                .map_err(ApiError::mailbox)?,
        ),
        None => None,
    };
    #[cfg(not(feature = "cluster"))]
    let cluster: Option<()> = None;
    Ok(HttpResponse::Ok().json(json!({"agents": agents, "backend": backend, "cluster": cluster})))
}

/// The MQTT bridge's state (`{"enabled": false}` without `--mqtt`).
pub async fn mqtt(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(bridge) = &state.mqtt else {
        return Ok(HttpResponse::Ok().json(json!({"enabled": false})));
    };
    let status = bridge
        .send(switchyard_actors::mqtt::GetMqttStatus)
        .await
        .map_err(ApiError::mailbox)?;
    let mut v = serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()))?;
    v["enabled"] = json!(true);
    Ok(HttpResponse::Ok().json(v))
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

/// The dashboard's page. With an admin token set, the page's own script
/// and style are linked with the token the page was opened with (the
/// middleware checked it), as a browser sends no header for them.
pub async fn dashboard(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.config.admin_token.is_none() {
        return dashboard_file("index.html");
    }
    let Some(token) = super::auth::presented_token(req.head()) else {
        return dashboard_file("index.html");
    };
    let query = serde_urlencoded::to_string([("token", token.as_str())]).unwrap_or_default();
    let page = String::from_utf8_lossy(include_bytes!("../assets/dashboard/index.html"))
        .replace(
            "/dashboard/dashboard.js\"",
            &format!("/dashboard/dashboard.js?{query}\""),
        )
        .replace(
            "/dashboard/dashboard.css\"",
            &format!("/dashboard/dashboard.css?{query}\""),
        );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(page))
}

pub async fn dashboard_asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    dashboard_file(&name)
}
