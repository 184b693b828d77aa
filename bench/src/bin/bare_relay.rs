//! `bare_relay`: a second reference relay for the benchmark, sharing
//! nothing with switchyard's stack: tokio and tokio-tungstenite, no actors,
//! no actix, no switchyard transport, no state beyond the routing map.
//!
//! Each socket is a reader task and a writer task; the writer drains a
//! bounded channel and flushes once per batch. A text frame is parsed only
//! far enough to read `packet_type` and `subject_id`; forwarded frames are
//! relayed unchanged (same bytes). `alive` binds the id to the socket
//! (`mephisto`: the backend), `heartbeat` is answered with
//! `last_mephisto_ping`, live updates go to the backend or to the agent by
//! `subject_id`. What a full channel cannot take is dropped and counted.
//! Sockets run with TCP_NODELAY, as switchyard's do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use switchyard_bench::relay::{heartbeat_reply, Head};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    about = "Bare reference relay for the agent router protocol (tokio-tungstenite, no actors)"
)]
struct Args {
    /// Address to listen on (WebSocket on any path).
    #[arg(long, default_value = "127.0.0.1:3300")]
    http: String,
    /// Runtime worker threads (0: one per core, like switchyard).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// Frames waiting for one socket's writer at most.
const QUEUE: usize = 4096;

type Tx = mpsc::Sender<Message>;

#[derive(Default)]
struct Routes {
    backend: Option<(u64, Tx)>,
    agents: HashMap<String, (u64, Tx)>,
}

struct Relay {
    routes: Mutex<Routes>,
    next: AtomicU64,
    dropped: AtomicU64,
}

impl Relay {
    fn send(&self, to: Option<Tx>, frame: Message) {
        if let Some(to) = to {
            if to.try_send(frame).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One text frame from socket `me`.
    fn route(&self, me: u64, tx: &Tx, bound: &mut Option<String>, text: &str) {
        let Ok(head) = serde_json::from_str::<Head>(text) else {
            return;
        };
        let (Some(pt), Some(subject)) = (head.packet_type, head.subject_id) else {
            return;
        };
        match &*pt {
            "alive" => {
                let mut r = self.routes.lock().unwrap();
                if subject == "mephisto" {
                    r.backend = Some((me, tx.clone()));
                } else {
                    r.agents.insert(subject.to_string(), (me, tx.clone()));
                }
                *bound = Some(subject.into_owned());
            }
            "heartbeat" => {
                let reply = heartbeat_reply(&subject);
                self.send(Some(tx.clone()), Message::Text(reply));
            }
            "mephisto_bound_live_update" => {
                let to = self
                    .routes
                    .lock()
                    .unwrap()
                    .backend
                    .as_ref()
                    .map(|b| b.1.clone());
                self.send(to, Message::Text(text.to_string()));
            }
            "client_bound_live_update" => {
                let to = self
                    .routes
                    .lock()
                    .unwrap()
                    .agents
                    .get(&*subject)
                    .map(|a| a.1.clone());
                self.send(to, Message::Text(text.to_string()));
            }
            _ => {}
        }
    }

    /// Socket `me` closed: forget its binding if it is still its own.
    fn forget(&self, me: u64, bound: Option<String>) {
        let mut r = self.routes.lock().unwrap();
        match bound.as_deref() {
            Some("mephisto") if r.backend.as_ref().map(|b| b.0) == Some(me) => r.backend = None,
            Some(id) if r.agents.get(id).map(|a| a.0) == Some(me) => {
                r.agents.remove(id);
            }
            _ => {}
        }
    }
}

async fn serve(relay: Arc<Relay>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let me = relay.next.fetch_add(1, Ordering::Relaxed);
    let mut bound = None;
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(text) => relay.route(me, &tx, &mut bound, &text),
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself.
            _ => {}
        }
    }
    relay.forget(me, bound);
    drop(tx);
    let _ = writer.await;
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    rt.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(&args.http).await?;
        eprintln!("bare_relay listening on ws://{}/", args.http);
        let relay = Arc::new(Relay {
            routes: Mutex::new(Routes::default()),
            next: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        {
            // What full writer queues dropped, said once a second when it moved.
            let relay = Arc::clone(&relay);
            tokio::spawn(async move {
                let mut said = 0;
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let now = relay.dropped.load(Ordering::Relaxed);
                    if now != said {
                        eprintln!("bare_relay: {now} frames dropped (full writer queues)");
                        said = now;
                    }
                }
            });
        }
        loop {
            let (tcp, _) = listener.accept().await?;
            tokio::spawn(serve(Arc::clone(&relay), tcp));
        }
    })
}
