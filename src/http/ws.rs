//! `GET /`: the WebSocket upgrade for agents and the backend, or the static
//! `index.html` for a plain browser request (PROTOCOL 1.1).
//! The transport (actix-web-actors) is used only here and in `WsSession`.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use switchyard_actors::agent::{SessionOrigin, WsSession};
use switchyard_actors::flow::Flow;

use super::{static_files, AppState, Counted};

fn is_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The token of PROTOCOL 1.5, from `Authorization: Bearer T` or `?token=T`.
fn presented_token(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v))
}

/// Compares in time independent of where the strings differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether the request presents `expected` (always, when none is set).
fn token_ok(req: &HttpRequest, expected: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(expected) => presented_token(req).is_some_and(|t| same_token(&t, expected)),
    }
}

/// The peer's address, for logs and `/metrics/actors`.
pub fn peer_name(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub async fn index_or_upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    if !is_upgrade(&req) {
        return Ok(static_files::index(state).await);
    }
    let token_ok = token_ok(&req, state.config.backend.token.as_deref());
    let peer = peer_name(&req);
    let flow = Arc::new(Flow::default());
    let session = WsSession::new(
        state.router.clone(),
        SessionOrigin { token_ok, peer },
        Arc::clone(&flow),
    );
    let mut res = ws::handshake(&req)?;
    let codec = actix_http::ws::Codec::new().max_size(state.config.session.hard_frame_bytes());
    let body = ws::WebsocketContext::with_codec(session, stream, codec);
    Ok(res.streaming(Counted {
        inner: Box::pin(body),
        flow,
    }))
}

/// `/gateway`: an edge switch's uplink (PROTOCOL 5).
pub async fn gateway(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let token_ok = token_ok(&req, state.config.gateway_token.as_deref());
    let peer = peer_name(&req);
    let session = switchyard_actors::uplink::GatewaySession::new(
        Arc::clone(&state.metrics),
        state.gateways.clone(),
        token_ok,
        peer,
        state.router.shutdown.clone(),
    );
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(16 * 1024 * 1024)
        .start()
}
