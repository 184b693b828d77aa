//! How an actor learns that the switch is shutting down: a
//! `tokio::sync::watch` that `Running::stop` turns true. Every WebSocket
//! the switch serves (`WsSession`, `MonitorSession`, `GatewaySession`)
//! closes with 1001 (going away) on it; the serial link, the client
//! socket and the uplink stop on it. A support module: it depends on
//! nothing else in the crate.

/// Resolves when the switch is shutting down (the watch turns true or its
/// sender is gone).
pub async fn until_shutdown(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await;
}

/// Closes a WebSocket actor's socket with 1001 (going away) and stops the
/// actor when the switch shuts down: every socket the switch serves does so.
pub fn close_on_shutdown<A>(
    act: &A,
    ctx: &mut actix_web_actors::ws::WebsocketContext<A>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) where
    A: actix::Actor<Context = actix_web_actors::ws::WebsocketContext<A>>,
{
    use actix::prelude::*;
    use actix_web_actors::ws;
    ctx.spawn(until_shutdown(shutdown).into_actor(act).map(
        |_, _, ctx: &mut ws::WebsocketContext<A>| {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Away,
                description: Some("switch shutting down".into()),
            }));
            ctx.stop();
        },
    ));
}
