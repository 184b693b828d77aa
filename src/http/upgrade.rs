//! WebSocket upgrades: every request with `Upgrade: websocket` comes here
//! from actix-http's HTTP/1 dispatcher (its upgrade service), connection and
//! all. The handshake is answered here; the session then runs on the bare
//! TCP stream (`transport`), and the dispatcher, with its buffers, is gone.
//!
//! The endpoints: `/` (agents and the backend, PROTOCOL 1.1), `/monitor`
//! (PROTOCOL 4) and `/gateway` (PROTOCOL 5). Requests that are not a valid
//! handshake get the HTTP error the handshake names, and are counted in
//! `switchyard_http_requests_total` like every other request.
//!
//! A session's task is spawned here, so actix-server's per-worker limit on
//! connections (25 600) stops at the handshake: open sessions are bounded
//! by the process's open-file limit, and counted in
//! `switchyard_connections_open`.

use actix_http::{Request, Response, StatusCode};
use actix_web::web;

use super::transport::{self, Upgrading};
use super::AppState;

/// The WebSocket endpoints, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Router,
    Monitor,
    Gateway,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/" => Some(Endpoint::Router),
            "/monitor" => Some(Endpoint::Monitor),
            "/gateway" => Some(Endpoint::Gateway),
            _ => None,
        }
    }

    /// The route label of the request counter.
    fn route(self) -> &'static str {
        match self {
            Endpoint::Router => "/",
            Endpoint::Monitor => "/monitor",
            Endpoint::Gateway => "/gateway",
        }
    }
}

/// The upgrade service: answers one upgrade request and, when it is a
/// WebSocket handshake on an endpoint, runs the session until it ends.
pub async fn upgrade(
    state: web::Data<AppState>,
    req: Request,
    framed: Upgrading,
) -> Result<(), actix_http::Error> {
    let endpoint = Endpoint::of(req.path());
    let count = |status: StatusCode| {
        state
            .metrics
            .http_requests
            .with_label_values(&[
                endpoint.map_or("unmatched", Endpoint::route),
                status.as_str(),
            ])
            .inc();
    };
    let Some(endpoint) = endpoint else {
        count(StatusCode::NOT_FOUND);
        let res = Response::with_body(StatusCode::NOT_FOUND, "no WebSocket endpoint here");
        transport::refuse(framed, res.map_into_boxed_body()).await;
        return Ok(());
    };
    let (status, open) = transport::accept(&req, framed).await;
    count(status);
    let Some((inbound, outlet)) = open else {
        return Ok(());
    };
    let session = match endpoint {
        Endpoint::Router => super::ws::router_session(req.head(), &state, inbound),
        Endpoint::Monitor => super::monitor::monitor_session(req.head(), &state, inbound),
        Endpoint::Gateway => super::ws::gateway_session(req.head(), &state, inbound),
    };
    // The session runs in a task of its own, sized for it: the connection's
    // task, sized for the dispatcher (and the request's header map and a
    // share of the dispatcher's read buffer with it), ends here.
    actix_web::rt::spawn(outlet.run(session));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_matched_by_exact_path() {
        assert_eq!(Endpoint::of("/"), Some(Endpoint::Router));
        assert_eq!(Endpoint::of("/monitor"), Some(Endpoint::Monitor));
        assert_eq!(Endpoint::of("/gateway"), Some(Endpoint::Gateway));
        assert_eq!(Endpoint::of("/monitor/"), None);
        assert_eq!(Endpoint::of("/dashboard"), None);
    }
}
