//! `ceiling`: the minimal relay the benchmark compares switchyard against.
//!
//! Same WebSocket stack as switchyard (actix-http's HTTP/1 service, an
//! actix-web-actors `WebsocketContext` per socket, switchyard's transport
//! after the upgrade), one actor per socket and nothing else but a routing
//! map. Each text frame is parsed only far enough to read `packet_type` and
//! `subject_id`; forwarded frames are relayed unchanged (same bytes).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::{Actor, ActorContext, Addr, AsyncContext, Handler, Message, StreamHandler};
use actix_http::{HttpService, Request, Response, StatusCode};
use actix_server::Server;
use actix_service::fn_service;
use actix_web_actors::ws;
use bytestring::ByteString;
use clap::Parser;
use switchyard::http::transport::{self, Session, Upgrading};
use switchyard_bench::relay::{heartbeat_reply, Head};

#[derive(Parser)]
#[command(about = "Minimal reference relay for the agent router protocol (benchmark ceiling)")]
struct Args {
    /// Address to listen on (WebSocket on path `/`).
    #[arg(long, default_value = "127.0.0.1:3100")]
    http: String,
    /// actix-web worker threads (0 = actix default, like switchyard).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

#[derive(Default)]
struct Routes {
    backend: Option<Addr<Sock>>,
    agents: HashMap<String, Addr<Sock>>,
}

type Map = Arc<Mutex<Routes>>;

#[derive(Message)]
#[rtype(result = "()")]
struct Out(ByteString);

struct Sock {
    map: Map,
    id: Option<String>,
}

impl Actor for Sock {
    type Context = ws::WebsocketContext<Self>;

    fn stopped(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        let mut m = self.map.lock().unwrap();
        match self.id.as_deref() {
            Some("mephisto") if m.backend.as_ref() == Some(&me) => m.backend = None,
            Some(id) if id != "mephisto" && m.agents.get(id) == Some(&me) => {
                m.agents.remove(id);
            }
            _ => {}
        }
    }
}

impl Handler<Out> for Sock {
    type Result = ();
    fn handle(&mut self, msg: Out, ctx: &mut Self::Context) {
        ctx.text(msg.0);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Sock {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let text = match item {
            Ok(ws::Message::Text(t)) => t,
            Ok(ws::Message::Ping(p)) => {
                ctx.pong(&p);
                return;
            }
            Ok(ws::Message::Close(r)) => {
                ctx.close(r);
                ctx.stop();
                return;
            }
            Ok(_) => return,
            Err(_) => {
                ctx.stop();
                return;
            }
        };
        let head: Head = match serde_json::from_str(&text) {
            Ok(h) => h,
            Err(_) => return,
        };
        let (Some(pt), Some(subject)) = (head.packet_type, head.subject_id) else {
            return;
        };
        match &*pt {
            "alive" => {
                let me = ctx.address();
                let mut m = self.map.lock().unwrap();
                if subject == "mephisto" {
                    m.backend = Some(me);
                } else {
                    m.agents.insert(subject.to_string(), me);
                }
                drop(m);
                self.id = Some(subject.into_owned());
            }
            "heartbeat" => {
                let reply = heartbeat_reply(&subject);
                ctx.text(reply);
            }
            "mephisto_bound_live_update" => {
                let to = self.map.lock().unwrap().backend.clone();
                if let Some(to) = to {
                    to.do_send(Out(text.clone()));
                }
            }
            "client_bound_live_update" => {
                let to = self.map.lock().unwrap().agents.get(&*subject).cloned();
                if let Some(to) = to {
                    to.do_send(Out(text.clone()));
                }
            }
            _ => {}
        }
    }
}

/// actix-http's upgrade service: every socket runs on switchyard's
/// WebSocket transport, as switchyard's own do.
async fn upgrade(map: Map, req: Request, framed: Upgrading) -> Result<(), actix_http::Error> {
    if req.path() != "/" {
        let res = Response::with_body(StatusCode::NOT_FOUND, "not found");
        transport::refuse(framed, res.map_into_boxed_body()).await;
        return Ok(());
    }
    let (_, open) = transport::accept(&req, framed).await;
    let Some((inbound, outlet)) = open else {
        return Ok(());
    };
    let sock = Sock { map, id: None };
    let codec = actix_http::ws::Codec::new().max_size(16 * 1024 * 1024);
    let session = Session::start(sock, inbound, codec, None);
    drop(req);
    actix_web::rt::spawn(outlet.run(session));
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let map: Map = Arc::new(Mutex::new(Routes::default()));
    actix_web::rt::System::new().block_on(async move {
        let mut server = Server::build()
            .backlog(4096)
            .max_concurrent_connections(100_000);
        if args.workers > 0 {
            server = server.workers(args.workers);
        }
        eprintln!("ceiling listening on ws://{}/", args.http);
        server
            .bind("ceiling", &args.http, move || {
                let map = map.clone();
                HttpService::build()
                    // As switchyard's server: small frames go out at once.
                    .tcp_nodelay(true)
                    .upgrade(fn_service(move |(req, framed)| {
                        upgrade(map.clone(), req, framed)
                    }))
                    // Anything but an upgrade: 404.
                    .finish(|_req: Request| async {
                        Ok::<_, actix_http::Error>(Response::with_body(
                            StatusCode::NOT_FOUND,
                            "WebSocket only",
                        ))
                    })
                    .tcp()
            })?
            .run()
            .await
    })
}
