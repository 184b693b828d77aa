//! The sessions of `/` (agents and the backend, PROTOCOL 1.1) and
//! `/gateway` (PROTOCOL 5), built for an accepted upgrade (`upgrade`), and
//! what those paths answer to a plain HTTP request.
//! actix-web-actors is used only in `transport` and in the sessions
//! themselves.

use std::sync::Arc;

use actix_http::ws;
use actix_http::RequestHead;
use actix_web::{web, HttpRequest, HttpResponse};
use switchyard_actors::agent::{SessionOrigin, WsSession};
use switchyard_actors::flow::Flow;

use super::auth::token_ok;
use super::transport::{Inbound, Session};
use super::{static_files, AppState};

/// The peer's address, for logs and `/metrics/actors`.
pub fn peer_name(req: &RequestHead) -> String {
    req.peer_addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `GET /` without an upgrade: the task's page.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    static_files::index(state).await
}

/// A WebSocket path asked without an upgrade: the handshake's own error.
pub async fn upgrade_required(req: HttpRequest) -> HttpResponse {
    match ws::verify_handshake(req.head()) {
        Err(e) => super::transport::refusal(&e),
        // Unreachable through the server, which hands every upgrade to
        // `upgrade`; answered all the same.
        Ok(()) => HttpResponse::BadRequest().body("WebSocket upgrade expected"),
    }
}

/// An agent's or the backend's session on `/`.
pub fn router_session(head: &RequestHead, state: &AppState, inbound: Inbound) -> Session {
    let token_ok = token_ok(head, state.config.backend.token.as_deref());
    let flow = Arc::new(Flow::default());
    let session = WsSession::new(
        state.router.clone(),
        SessionOrigin {
            token_ok,
            peer: peer_name(head),
            ip: head.peer_addr.map(|a| a.ip()),
        },
        Arc::clone(&flow),
    );
    let hard = state.config.session.hard_frame_bytes();
    let codec = ws::Codec::new().max_size(hard);
    Session::start(session, inbound.limit_frames(hard), codec, Some(flow))
}

/// An edge switch's uplink on `/gateway` (PROTOCOL 5).
pub fn gateway_session(head: &RequestHead, state: &AppState, inbound: Inbound) -> Session {
    use switchyard_actors::uplink::{GatewayToken, SessionLimits};
    // PROTOCOL 1.5: no gateway token set means no gateways at all.
    let token = match state.config.gateway_token.as_deref() {
        None => GatewayToken::NotSet,
        Some(t) if token_ok(head, Some(t)) => GatewayToken::Ok,
        Some(_) => GatewayToken::Wrong,
    };
    let max_frame = state.config.gateway.max_frame_bytes;
    let limits = SessionLimits {
        max_frame_bytes: max_frame,
        hello_timeout: std::time::Duration::from_secs_f64(
            state.config.gateway.hello_timeout_secs.clamp(0.01, 3600.0),
        ),
        ping_interval: state.config.session.ping_interval(),
        ping_timeout: state.config.session.ping_timeout(),
    };
    let session = switchyard_actors::uplink::GatewaySession::new(
        Arc::clone(&state.metrics),
        state.gateways.clone(),
        token,
        limits,
        peer_name(head),
        state.router.shutdown.clone(),
    );
    // The transport closes a frame announcing more than this with 1009.
    let codec = ws::Codec::new().max_size(max_frame);
    Session::start(session, inbound, codec, None)
}
