//! WebSocket upgrades: every request with `Upgrade: websocket` comes here
//! from actix-http's HTTP/1 dispatcher (its upgrade service), connection and
//! all. The handshake is answered here; the session then runs on the bare
//! TCP stream (`transport`), and the dispatcher, with its buffers, is gone.
//!
//! The endpoints: `/` (agents and the backend, PROTOCOL 1.1), `/monitor`
//! (PROTOCOL 4) and `/gateway` (PROTOCOL 5). Requests that are not a valid
//! handshake get the HTTP error the handshake names, and are counted in
//! `switchyard_http_requests_total` like every other request.

use actix_codec::{Framed, FramedParts};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{h1, ws, ConnectionType, Request, Response, StatusCode};
use actix_web::web;
use futures_util::SinkExt;
use tokio::net::TcpStream;

use super::transport;
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
    mut framed: Framed<TcpStream, h1::Codec>,
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
        refuse(framed, res.map_into_boxed_body()).await;
        return Ok(());
    };
    let mut res = match ws::handshake(req.head()) {
        Ok(res) => res,
        Err(e) => {
            log::info!("websocket: refused a handshake on {}: {e}", req.path());
            let res = super::ws::refusal(&e);
            count(res.status());
            refuse(framed, res.into()).await;
            return Ok(());
        }
    };
    let res = res.finish().drop_body();
    if let Err(e) = framed.send((res, BodySize::None).into()).await {
        log::debug!("websocket: the handshake's answer was not sent: {e}");
        return Ok(());
    }
    count(StatusCode::SWITCHING_PROTOCOLS);
    // The dispatcher's buffers go now; the session keeps none of its own.
    let FramedParts { io, read_buf, .. } = framed.into_parts();
    let (inbound, outlet) = transport::open(io, read_buf.freeze());
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

/// Answers with `res` and closes the connection.
async fn refuse(mut framed: Framed<TcpStream, h1::Codec>, res: Response<BoxBody>) {
    let (mut res, body) = res.into_parts();
    res.head_mut().set_connection_type(ConnectionType::Close);
    let body = body.try_into_bytes().unwrap_or_default();
    let sent = async {
        framed
            .send((res, BodySize::Sized(body.len() as u64)).into())
            .await?;
        framed.send(h1::Message::Chunk(Some(body))).await?;
        framed.send(h1::Message::Chunk(None)).await?;
        framed.close().await
    };
    if let Err(e) = sent.await {
        log::debug!("websocket: a refusal was not sent: {e}");
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
