//! The HTTP server: actix-http's HTTP/1 service running the application
//! (`app`) for requests, with every WebSocket upgrade handed to `upgrade`,
//! which takes the connection off the dispatcher.

use std::io;
use std::net::SocketAddr;

use actix_http::HttpService;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};
use actix_web::web;
use tokio::net::TcpSocket;

use super::{app, upgrade, AppState};

/// Pending connections the listener holds (actix-web's default).
const BACKLOG: u32 = 1024;

/// Seconds the workers get to finish their connections on a stop.
const SHUTDOWN_TIMEOUT_S: u64 = 2;

/// Binds `addr` and builds the server (it runs once spawned); `workers`
/// 0 means one per core. Returns the server and the address it is bound to.
pub fn serve(
    state: web::Data<AppState>,
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(Server, SocketAddr)> {
    let listener = listen(addr)?;
    let local = listener.local_addr()?;
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_S);
    if workers > 0 {
        builder = builder.workers(workers);
    }
    // Shared by every worker: the endpoints' connection limits are the
    // switch's, not a worker's.
    let edge = std::sync::Arc::new(super::Edge::new(&state.config.ws));
    let builder = builder.listen("switchyard-http", listener, move || {
        let upgrades = state.clone();
        let edge = std::sync::Arc::clone(&edge);
        let requests = app(state.clone())
            .app_data(web::Data::from(std::sync::Arc::clone(&edge)))
            .into_factory()
            .map_err(|err: actix_web::Error| err.error_response());
        HttpService::build()
            .local_addr(local)
            // Small frames go out at once: with Nagle's algorithm a frame
            // written while the previous one is unacknowledged waits for the
            // peer's delayed ACK (~10 ms on loopback, 40 ms elsewhere).
            .tcp_nodelay(true)
            .upgrade(fn_service(move |(req, framed)| {
                upgrade::upgrade(upgrades.clone(), std::sync::Arc::clone(&edge), req, framed)
            }))
            .finish(map_config(requests, |_| AppConfig::default()))
            .tcp()
    })?;
    Ok((builder.run(), local))
}

fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted switch binds its port again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}
