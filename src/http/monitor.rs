//! `/monitor` (PROTOCOL 4), `/dashboard` and `/api/agents`.
//!
//! The monitor's upgrade wraps the WebSocket's response body in a stream
//! that counts the bytes the transport takes: that count is how a
//! `MonitorSession` knows its peer is slow, since the transport itself
//! would buffer without bound.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;
use switchyard_actors::agent::GetBackendInfo;
use switchyard_actors::monitor::{Flow, MonitorSession};
use switchyard_actors::network::ListAgents;

use super::error::ApiError;
use super::AppState;

/// Counts the bytes a body stream yields into `Flow::taken`.
struct Counted<S> {
    inner: S,
    flow: Arc<Flow>,
}

impl<S, E> Stream for Counted<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let r = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &r {
            self.flow.taken.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        r
    }
}

pub async fn monitor(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let flow = Arc::new(Flow::default());
    let peer = req
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
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
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let backend = state
        .router
        .backend
        .send(GetBackendInfo)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
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
