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
//! connections (25 600) stops at the handshake. Open sessions are bounded
//! per endpoint instead (`[ws]` and `[monitor]` limits; on `/` also per
//! peer IP): past a limit the socket is closed with 1013 right after the
//! upgrade (never an HTTP error on `/`, PROTOCOL 1.6), counted in
//! `switchyard_connections_refused_total`.
//!
//! Every session runs with its endpoint's frame limit (checked on each
//! frame header, before the payload) and the stall deadline of the ping
//! timeout (`transport`); what the transport cut is counted here.
//! `/monitor` is part of the operators' surface (PROTOCOL 1.5): its
//! upgrade needs the admin token, or a loopback listener when none is set.

use std::sync::Arc;

use actix_http::{Request, Response, StatusCode};
use actix_web::web;
use switchyard_actors::metrics::cut_reason;

use super::transport::{self, Cut, Upgrading};
use super::{auth, AppState, Edge};

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

    /// The link label of the connection metrics.
    fn link(self) -> &'static str {
        match self {
            Endpoint::Router => "router",
            Endpoint::Monitor => "monitor",
            Endpoint::Gateway => "gateway",
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
    edge: Arc<Edge>,
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
    if endpoint == Endpoint::Monitor {
        let access = auth::admin_access(req.head(), &state.config);
        if !access.allowed() {
            count(access.status());
            state
                .metrics
                .admin_refused
                .with_label_values(&[access.label()])
                .inc();
            let peer = super::ws::peer_name(req.head());
            edge.log(|| format!("monitor: refused {peer}: {}", access.label()));
            let body = serde_json::json!({ "error": access.reason() }).to_string();
            let res = Response::build(access.status())
                .content_type("application/json")
                .body(body);
            transport::refuse(framed, res.map_into_boxed_body()).await;
            return Ok(());
        }
    }
    let (status, open) = transport::accept(&req, framed).await;
    count(status);
    let Some((inbound, outlet)) = open else {
        return Ok(());
    };
    let config = &state.config;
    let peer = req.head().peer_addr;
    let slot = match endpoint {
        // Loopback peers are not bounded per address: a reverse proxy on
        // this host presents every client as loopback. The total bound
        // still holds for them.
        Endpoint::Router => edge.router.take(
            config.ws.max_connections,
            peer.map(|a| a.ip()).filter(|ip| !ip.is_loopback()),
            Some(config.ws.max_connections_per_ip),
        ),
        Endpoint::Monitor => edge
            .monitor
            .take(config.monitor.max_subscribers, None, None),
        Endpoint::Gateway => edge
            .gateway
            .take(config.ws.max_gateway_sessions, None, None),
    };
    let slot = match slot {
        Ok(slot) => slot,
        Err(refusal) => {
            state
                .metrics
                .connections_refused
                .with_label_values(&[endpoint.link(), refusal.label()])
                .inc();
            let peer = super::ws::peer_name(req.head());
            edge.log(|| {
                format!(
                    "{}: refused {peer}: past the {} connection limit",
                    endpoint.route(),
                    refusal.label()
                )
            });
            let reason = format!(
                "too many connections ({}), try again later",
                refusal.label()
            );
            actix_web::rt::spawn(async move { outlet.refuse(inbound, 1013, &reason).await });
            return Ok(());
        }
    };
    let inbound = inbound.share_budget(Arc::clone(&edge.budget));
    let session = match endpoint {
        Endpoint::Router => super::ws::router_session(req.head(), &state, inbound),
        Endpoint::Monitor => super::monitor::monitor_session(req.head(), &state, inbound),
        Endpoint::Gateway => {
            let inbound = inbound.limit_frames(config.gateway.max_frame_bytes);
            super::ws::gateway_session(req.head(), &state, inbound)
        }
    };
    let outlet = outlet.stall_after(config.session.ping_timeout());
    let metrics = Arc::clone(&state.metrics);
    // The address, not its text: every open socket's task keeps it.
    let peer = Peer(req.head().peer_addr);
    // The session runs in a task of its own, sized for it: the connection's
    // task, sized for the dispatcher (and the request's header map and a
    // share of the dispatcher's read buffer with it), ends here.
    actix_web::rt::spawn(async move {
        let cut = outlet.run(session).await;
        drop(slot);
        let link = endpoint.link();
        match cut {
            Some(Cut::Oversize { announced, limit }) => {
                metrics.frames_refused.with_label_values(&[link]).inc();
                // Counted as malformed input too, as a session counts an
                // oversized message it read whole.
                metrics.malformed("oversize_frame");
                edge.log(|| {
                    format!(
                        "{}: {peer} announced a message of {announced} bytes, over the \
                         limit of {limit}: closed with 1009 before reading it",
                        endpoint.route()
                    )
                });
            }
            Some(Cut::Stalled { after }) => {
                metrics
                    .peers_cut
                    .with_label_values(&[link, cut_reason::STALLED])
                    .inc();
                edge.log(|| {
                    format!(
                        "{}: {peer} took nothing written to it for {after:?}: disconnected",
                        endpoint.route()
                    )
                });
            }
            Some(Cut::Busy { budget }) => {
                metrics
                    .message_budget_refused
                    .with_label_values(&[link])
                    .inc();
                edge.log(|| {
                    format!(
                        "{}: {peer} closed with 1013: large messages being read hold the \
                         whole budget of {budget} bytes",
                        endpoint.route()
                    )
                });
            }
            None => {}
        }
    });
    Ok(())
}

/// A peer's address for a log line.
struct Peer(Option<std::net::SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("unknown"),
        }
    }
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
