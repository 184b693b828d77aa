//! The Channel contract (seed 002), checked by one suite on both channels
//! that keep it: `WebsocketChannel` (the uplink) and `UartManager` (the
//! serial link). Each runs against a real peer that the suite can take
//! away and bring back.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serialport::{SerialPort, TTYPort};
use switchyard_actors::channel::websocket::WebsocketChannel;
use switchyard_actors::channel::{
    ChannelConfig, ChannelNotice, ChannelSend, CloseChannel, IsAlive, IsClosed, OpenChannel,
    SendOutcome,
};
use switchyard_actors::testing::NoticeProbe;
use switchyard_actors::uart::{PortPath, UartConfig, UartManager};
use switchyard_actors::wire::frame::{encode_to_vec, FrameCodec, FrameItem};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::Decoder;

use crate::common::*;

/// The channel's messages, whatever the actor.
struct Chan {
    open: Recipient<OpenChannel>,
    close: Recipient<CloseChannel>,
    send: Recipient<ChannelSend>,
    alive: Recipient<IsAlive>,
    closed: Recipient<IsClosed>,
}

impl Chan {
    fn of<A>(addr: &Addr<A>) -> Chan
    where
        A: Actor<Context = Context<A>>
            + Handler<OpenChannel>
            + Handler<CloseChannel>
            + Handler<ChannelSend>
            + Handler<IsAlive>
            + Handler<IsClosed>,
    {
        Chan {
            open: addr.clone().recipient(),
            close: addr.clone().recipient(),
            send: addr.clone().recipient(),
            alive: addr.clone().recipient(),
            closed: addr.clone().recipient(),
        }
    }
    async fn is_alive(&self) -> bool {
        self.alive.send(IsAlive).await.unwrap()
    }
    async fn is_closed(&self) -> bool {
        self.closed.send(IsClosed).await.unwrap()
    }
    async fn send(&self, b: &[u8]) -> SendOutcome {
        self.send
            .send(ChannelSend(Bytes::copy_from_slice(b)))
            .await
            .unwrap()
    }
}

/// The far end: what it received, what it says, going away and back.
struct Peer {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    say: Box<dyn FnMut(Vec<u8>)>,
    go_away: Box<dyn FnMut()>,
    come_back: Box<dyn FnMut()>,
}

impl Peer {
    async fn wait_received(&self, want: &[u8]) {
        let r = Arc::clone(&self.received);
        let want = want.to_vec();
        wait_for("the peer received it", || {
            let r = Arc::clone(&r);
            let want = want.clone();
            async move { r.lock().unwrap().contains(&want) }
        })
        .await;
    }
}

async fn notice(
    n: &mut mpsc::UnboundedReceiver<ChannelNotice>,
    what: fn(&ChannelNotice) -> bool,
) -> ChannelNotice {
    tokio::time::timeout(WAIT, async {
        loop {
            let x = n.recv().await.expect("notices");
            if what(&x) {
                return x;
            }
        }
    })
    .await
    .expect("the notice in time")
}

/// What a channel keeps while its peer is away: at most `limit` messages,
/// the oldest dropped past it and counted in `dropped`.
struct Keeps {
    limit: usize,
    dropped: Box<dyn Fn() -> u64>,
}

/// The lifecycle rules of seed 002, in order.
async fn lifecycle_suite(
    chan: Chan,
    mut notices: mpsc::UnboundedReceiver<ChannelNotice>,
    mut peer: Peer,
    keeps: Keeps,
) {
    // is_alive stays false until open connects; nothing is closed yet.
    assert!(!chan.is_alive().await);
    assert!(!chan.is_closed().await);
    // A send before it is alive is transient: kept, delivered later.
    assert_eq!(chan.send(b"early").await, SendOutcome::Transient);
    chan.open.do_send(OpenChannel);
    assert_eq!(
        notice(&mut notices, |n| matches!(n, ChannelNotice::Opened)).await,
        ChannelNotice::Opened
    );
    assert!(chan.is_alive().await);
    peer.wait_received(b"early").await;
    // Alive: delivered.
    assert_eq!(chan.send(b"one").await, SendOutcome::Delivered);
    peer.wait_received(b"one").await;
    // What the peer says reaches the owner.
    (peer.say)(b"hello owner".to_vec());
    let n = notice(&mut notices, |n| matches!(n, ChannelNotice::Inbound(_))).await;
    assert_eq!(
        n,
        ChannelNotice::Inbound(Bytes::from_static(b"hello owner"))
    );
    // The peer goes: not alive, not closed, sends are transient and kept.
    (peer.go_away)();
    notice(&mut notices, |n| matches!(n, ChannelNotice::Lost { .. })).await;
    assert!(!chan.is_alive().await);
    assert!(!chan.is_closed().await);
    // What it keeps is bounded: two past the bound, the oldest two are
    // dropped and counted.
    let dropped_before = (keeps.dropped)();
    let away: Vec<Vec<u8>> = (0..keeps.limit + 2)
        .map(|i| format!("away {i}").into_bytes())
        .collect();
    for m in &away {
        assert_eq!(chan.send(m).await, SendOutcome::Transient);
    }
    assert_eq!(
        (keeps.dropped)() - dropped_before,
        2,
        "the oldest two dropped"
    );
    // It comes back: reconnected by itself, the kept messages delivered,
    // in order.
    (peer.come_back)();
    notice(&mut notices, |n| matches!(n, ChannelNotice::Reconnected)).await;
    assert!(chan.is_alive().await);
    peer.wait_received(away.last().unwrap()).await;
    let got: Vec<Vec<u8>> = peer
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with(b"away "))
        .cloned()
        .collect();
    assert!(got == away[2..], "the newest {} in order", keeps.limit);
    // Close: closed for good, not alive, sends are serious, and the owner
    // is told nothing more.
    chan.close.do_send(CloseChannel);
    assert!(chan.is_closed().await);
    assert!(!chan.is_alive().await);
    assert_eq!(chan.send(b"late").await, SendOutcome::Serious);
    assert!(notices.try_recv().is_err(), "no notice after close");
}

/// A WebSocket server on a fixed port that can be taken down and back.
fn ws_peer(addr: std::net::SocketAddr) -> Peer {
    let received = Arc::new(Mutex::new(Vec::new()));
    let say_tx: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::new(Mutex::new(None));
    let task: Arc<Mutex<Option<actix_web::rt::task::JoinHandle<()>>>> = Arc::new(Mutex::new(None));
    let serve = {
        let received = Arc::clone(&received);
        let say_tx = Arc::clone(&say_tx);
        let task = Arc::clone(&task);
        move || {
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
            *say_tx.lock().unwrap() = Some(tx);
            let received = Arc::clone(&received);
            let handle = actix_web::rt::spawn(async move {
                // The port the peer had is free again once its old
                // listener is dropped; bind as soon as it is.
                let deadline = tokio::time::Instant::now() + WAIT;
                let listener = loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(_) if tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Err(e) => panic!("the peer could not listen on {addr} again: {e}"),
                    }
                };
                while let Ok((tcp, _)) = listener.accept().await {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        continue;
                    };
                    loop {
                        tokio::select! {
                            m = ws.next() => match m {
                                Some(Ok(Message::Binary(b))) => received.lock().unwrap().push(b),
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                            out = rx.recv() => match out {
                                Some(b) => { let _ = ws.send(Message::Binary(b)).await; }
                                None => break,
                            },
                        }
                    }
                }
            });
            *task.lock().unwrap() = Some(handle);
        }
    };
    (serve.clone())();
    let say_tx2 = Arc::clone(&say_tx);
    Peer {
        received,
        say: Box::new(move |b| {
            if let Some(tx) = say_tx2.lock().unwrap().as_ref() {
                let _ = tx.send(b);
            }
        }),
        go_away: Box::new(move || {
            if let Some(h) = task.lock().unwrap().take() {
                h.abort();
            }
        }),
        come_back: Box::new(serve),
    }
}

// Seed 002's lifecycle on the uplink's WebsocketChannel.
#[test_deadline::test]
async fn websocket_channel_lifecycle() {
    let addr = free_addr();
    let peer = ws_peer(addr);
    let (owner, notices) = NoticeProbe::start();
    let cfg = ChannelConfig {
        reconnect_min_secs: 0.02,
        reconnect_max_secs: 0.1,
        retry_budget: 0,
        buffer_limit: 10,
    };
    let metrics = switchyard_actors::metrics::Metrics::new();
    let keeps = Keeps {
        limit: cfg.buffer_limit,
        dropped: {
            let m = metrics.clone();
            Box::new(move || m.uplink_dropped.with_label_values(&["suite"]).get())
        },
    };
    let ch =
        WebsocketChannel::new(format!("ws://{addr}/"), None, owner, &cfg, metrics, "suite").start();
    lifecycle_suite(Chan::of(&ch), notices, peer, keeps).await;
}

/// A root on a pty behind a symlink; going away drops the pty, coming back
/// makes a new one under the same name.
fn pty_peer(link: std::path::PathBuf) -> Peer {
    type Port = Arc<Mutex<Option<(TTYPort, TTYPort)>>>;
    let received = Arc::new(Mutex::new(Vec::new()));
    let port: Port = Arc::new(Mutex::new(None));
    let open = {
        let received = Arc::clone(&received);
        let port = Arc::clone(&port);
        let link = link.clone();
        move || {
            let (mut master, slave) = TTYPort::pair().unwrap();
            master.set_timeout(Duration::from_millis(20)).unwrap();
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(slave.name().unwrap(), &link).unwrap();
            let mut reader = master.try_clone_native().unwrap();
            *port.lock().unwrap() = Some((master, slave));
            let received = Arc::clone(&received);
            let port2 = Arc::clone(&port);
            std::thread::spawn(move || {
                let mut codec = FrameCodec::default();
                let mut buf = BytesMut::new();
                let mut chunk = [0u8; 256];
                while port2.lock().unwrap().is_some() {
                    if let Ok(n) = reader.read(&mut chunk) {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Ok(Some(item)) = codec.decode(&mut buf) {
                            if let FrameItem::Frame(f) = item {
                                received.lock().unwrap().push(f.to_vec());
                            }
                        }
                    }
                }
            });
        }
    };
    (open.clone())();
    let port_say = Arc::clone(&port);
    Peer {
        received,
        say: Box::new(move |b| {
            if let Some((m, _)) = port_say.lock().unwrap().as_mut() {
                m.write_all(&encode_to_vec(&b)).unwrap();
            }
        }),
        go_away: Box::new(move || {
            port.lock().unwrap().take();
        }),
        come_back: Box::new(open),
    }
}

// Seed 002's lifecycle on the serial link's UartManager.
#[test_deadline::test]
async fn uart_manager_lifecycle() {
    let s = Switch::start().await;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("tty");
    let peer = pty_peer(link.clone());
    let (owner, notices) = NoticeProbe::start();
    let cfg = UartConfig {
        reconnect_min_secs: 0.02,
        reconnect_max_secs: 0.1,
        // Room for all that was kept at once on the writer's queue: the
        // suite checks the kept bound, not the writer's.
        write_queue_limit: 2048,
        ..UartConfig::default()
    };
    let uart = UartManager::new(
        PortPath::Path(link.to_string_lossy().into_owned()),
        cfg,
        s.running.metrics.clone(),
        owner,
    )
    .start();
    let keeps = Keeps {
        // The serial link keeps a fixed thousand frames for the root.
        limit: 1000,
        dropped: {
            let m = s.running.metrics.clone();
            Box::new(move || m.uplink_dropped.with_label_values(&["uart"]).get())
        },
    };
    lifecycle_suite(Chan::of(&uart), notices, peer, keeps).await;
    s.stop().await;
}
