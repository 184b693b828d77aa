//! `hostile`: a set of abusive peers against one switch, for the hostile-load
//! benchmark (`bench/hostile.sh`), run next to the honest load of scenario
//! (a). Every attack talks to 127.0.0.1 only, is bounded in count and in
//! bytes, and stops by itself at `--duration`.
//!
//! The attacks (PROTOCOL 1.5 says what the switch must do with each):
//! - `alive_flood`: sockets saying `alive` for fresh agent ids, as fast as
//!   the switch takes them (up to `--alive-ids` ids in all).
//! - `oversize`: on `/`, `/monitor` and `/gateway`, a frame header announcing
//!   4 GiB followed by payload bytes (up to `--oversize-mib` per attempt),
//!   and a whole 2 MiB text frame; the close code is recorded (1009 is the
//!   answer) with the bytes the switch took before it.
//! - `statuses_flood`: `request_statuses` from sockets that are not the
//!   backend.
//! - `slow_readers`: sockets that bind an agent, send live updates (which
//!   the load generator's backend echoes back to them) and never read, with
//!   a small receive buffer.
//! - `garbage`: junk on every port: raw bytes to the HTTP port, invalid
//!   JSON text frames on `/`, text and binary junk on `/monitor`, binary junk
//!   and a bincode length of 2^50 on `/gateway`, junk bodies to the HTTP
//!   endpoints (and one 10 MiB JSON body to `/submit_metadata` per 5 s), and
//!   junk to the TCP client socket.
//!
//! Output: one JSON line on stdout with what each attack did and how the
//! switch answered (close codes, HTTP statuses, errors).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout};

#[derive(Parser, Debug, Clone)]
#[command(about = "Abusive peers against one switch (hostile-load benchmark)")]
struct Args {
    /// The switch's HTTP address (WebSockets and HTTP).
    #[arg(long, default_value = "127.0.0.1:3000")]
    http: SocketAddr,
    /// The switch's TCP client socket (none: skip it).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Seconds the attacks run.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Fresh agent ids the alive flood says, in all.
    #[arg(long, default_value_t = 20_000)]
    alive_ids: u64,
    /// Payload MiB an oversize attempt sends after its 4 GiB header.
    #[arg(long, default_value_t = 16)]
    oversize_mib: usize,
    /// Sockets that bind an agent and never read.
    #[arg(long, default_value_t = 20)]
    slow_readers: usize,
    /// request_statuses packets per second from non-backend sockets.
    #[arg(long, default_value_t = 100.0)]
    statuses_rate: f64,
    /// Attacks to leave out, comma-separated: alive_flood, oversize,
    /// statuses_flood, slow_readers, garbage, and gateway_bomb (the 2^50
    /// bincode length on `/gateway`, which aborts a switch without a decode
    /// limit at once and so hides what the other attacks do).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

/// What one attack saw.
#[derive(Default, Debug)]
struct Tally {
    attempts: u64,
    /// Packets, frames or bodies sent.
    sent: u64,
    bytes_sent: u64,
    /// Close codes received ("none" for a close without a frame).
    closes: BTreeMap<String, u64>,
    /// HTTP statuses received.
    statuses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn json(&self) -> Value {
        json!({
            "attempts": self.attempts, "sent": self.sent, "bytes_sent": self.bytes_sent,
            "closes": self.closes, "http_statuses": self.statuses, "errors": self.errors,
        })
    }
}

type Shared = Arc<Mutex<Tally>>;

fn bump(t: &Shared, f: impl FnOnce(&mut Tally)) {
    if let Ok(mut g) = t.lock() {
        f(&mut g);
    }
}

fn err_kind(e: &std::io::Error) -> String {
    format!("{:?}", e.kind())
}

// ------------------------------------------------------------ raw WebSocket

/// Connects and upgrades `path` by hand (so frames can lie about their
/// length). `rcvbuf`: a small receive buffer for a slow reader.
async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n)?;
    }
    let mut s = timeout(Duration::from_secs(5), sock.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let head = read_head(&mut s).await?;
    if !head.starts_with("HTTP/1.1 101") {
        let status = head.split_whitespace().nth(1).unwrap_or("?").to_string();
        return Err(std::io::Error::other(format!("upgrade answered {status}")));
    }
    Ok(s)
}

/// Reads an HTTP response head (up to 16 KiB, 5 s).
async fn read_head(s: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let read = async {
        while !buf.ends_with(b"\r\n\r\n") && buf.len() < 16 * 1024 {
            if s.read(&mut b).await? == 0 {
                break;
            }
            buf.push(b[0]);
        }
        Ok::<_, std::io::Error>(())
    };
    timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response head"))??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A client frame header (masked) announcing `len` payload bytes.
fn header(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    // Mask key 0: the payload goes as it is.
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(b0, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

fn text(payload: &str) -> Vec<u8> {
    frame(0x81, payload.as_bytes())
}

/// Reads server frames until a close frame (its code), the end of the
/// stream ("eof") or `wait` ("open").
async fn read_close(s: &mut TcpStream, wait: Duration) -> String {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + wait;
    loop {
        // Parse what is there.
        while buf.len() >= 2 {
            let op = buf[0] & 0x0f;
            let (hl, len) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().unwrap_or([0; 8])) as usize,
                ),
                126 | 127 => break,
                n => (2, n as usize),
            };
            if buf.len() < hl + len {
                break;
            }
            if op == 8 {
                return if len >= 2 {
                    u16::from_be_bytes([buf[hl], buf[hl + 1]]).to_string()
                } else {
                    "none".into()
                };
            }
            buf.drain(..hl + len);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return "open".into();
        }
        match timeout(left, s.read(&mut chunk)).await {
            Err(_) => return "open".into(),
            Ok(Ok(0)) => return "eof".into(),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return err_kind(&e),
        }
    }
}

// ------------------------------------------------------------ attacks

async fn alive_flood(a: Args, t: Shared, until: Instant, sockets: usize) {
    let per = a.alive_ids / sockets as u64;
    let mut tasks = Vec::new();
    for k in 0..sockets {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n < per && Instant::now() < until {
                bump(&t, |x| x.attempts += 1);
                let mut s = match ws_connect(a.http, "/", None).await {
                    Ok(s) => s,
                    Err(e) => {
                        bump(&t, |x| *x.errors.entry(e.to_string()).or_default() += 1);
                        sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Up to 500 ids per connection, 5 000 ids/s per socket.
                let mut ok = true;
                for _ in 0..500 {
                    if n >= per || Instant::now() >= until {
                        break;
                    }
                    let id = format!("hostile-{k}-{n}-{}", "x".repeat(64));
                    let f = text(&format!(
                        r#"{{"packet_type":"alive","subject_id":"{id}","data":{{}}}}"#
                    ));
                    n += 1;
                    if s.write_all(&f).await.is_err() {
                        ok = false;
                        break;
                    }
                    bump(&t, |x| {
                        x.sent += 1;
                        x.bytes_sent += f.len() as u64
                    });
                    if n.is_multiple_of(50) {
                        sleep(Duration::from_millis(10)).await;
                    }
                }
                let code =
                    read_close(&mut s, Duration::from_millis(if ok { 50 } else { 1000 })).await;
                if code != "open" {
                    bump(&t, |x| *x.closes.entry(code).or_default() += 1);
                }
            }
        }));
    }
    for j in tasks {
        let _ = j.await;
    }
}

async fn oversize(a: Args, t: Shared, until: Instant) {
    let chunk = vec![b'a'; 64 * 1024];
    let paths = ["/", "/monitor", "/gateway"];
    let mut i = 0usize;
    while Instant::now() < until {
        let path = paths[i % paths.len()];
        let whole = (i / paths.len()) % 2 == 1;
        i += 1;
        bump(&t, |x| x.attempts += 1);
        let mut s = match ws_connect(a.http, path, None).await {
            Ok(s) => s,
            Err(e) => {
                bump(&t, |x| {
                    *x.errors.entry(format!("{path}: {e}")).or_default() += 1
                });
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut sent = 0usize;
        let result = async {
            if whole {
                // A whole 2 MiB text frame (over the default frame limit).
                let f = frame(0x81, &vec![b' '; 2 << 20]);
                s.write_all(&f).await?;
                sent += f.len();
            } else {
                // A header announcing 4 GiB, then as much payload as the
                // switch takes, up to the bound.
                s.write_all(&header(0x82, 4 << 30)).await?;
                while sent < a.oversize_mib << 20 && Instant::now() < until {
                    match timeout(Duration::from_secs(1), s.write_all(&chunk)).await {
                        Ok(r) => r?,
                        // The switch stopped reading: fine, it is the answer.
                        Err(_) => break,
                    }
                    sent += chunk.len();
                }
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        let code = read_close(&mut s, Duration::from_secs(2)).await;
        let what = format!(
            "{path} {}",
            if whole { "2MiB frame" } else { "4GiB header" }
        );
        bump(&t, |x| {
            x.sent += 1;
            x.bytes_sent += sent as u64;
            *x.closes.entry(format!("{what}: {code}")).or_default() += 1;
            if let Err(e) = &result {
                *x.errors
                    .entry(format!("{what}: {}", err_kind(e)))
                    .or_default() += 1;
            }
            // How far the switch let the payload in before it answered.
            let mib = (sent >> 20) as u64;
            let e = x
                .statuses
                .entry(format!("{what}: max MiB taken"))
                .or_default();
            *e = (*e).max(mib);
        });
        sleep(Duration::from_millis(250)).await;
    }
}

async fn statuses_flood(a: Args, t: Shared, until: Instant) {
    let packet = text(
        r#"{"packet_type":"request_statuses","subject_id":"mephisto","data":{},"server_timestamp":1.0}"#,
    );
    let gap = Duration::from_secs_f64(1.0 / a.statuses_rate.max(1.0));
    while Instant::now() < until {
        bump(&t, |x| x.attempts += 1);
        let mut s = match ws_connect(a.http, "/", None).await {
            Ok(s) => s,
            Err(e) => {
                bump(&t, |x| *x.errors.entry(e.to_string()).or_default() += 1);
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Bind an agent first, so this socket is an agent's.
        let _ = s
            .write_all(&text(
                r#"{"packet_type":"alive","subject_id":"statuses-flood","data":{}}"#,
            ))
            .await;
        let mut broke = false;
        for _ in 0..1000 {
            if Instant::now() >= until {
                break;
            }
            if s.write_all(&packet).await.is_err() {
                broke = true;
                break;
            }
            bump(&t, |x| {
                x.sent += 1;
                x.bytes_sent += packet.len() as u64
            });
            sleep(gap).await;
        }
        let code = read_close(
            &mut s,
            Duration::from_millis(if broke { 1000 } else { 100 }),
        )
        .await;
        bump(&t, |x| *x.closes.entry(code).or_default() += 1);
    }
}

async fn slow_readers(a: Args, t: Shared, until: Instant) {
    let mut held = Vec::new();
    let pad = "p".repeat(60 * 1024);
    for i in 0..a.slow_readers {
        bump(&t, |x| x.attempts += 1);
        match ws_connect(a.http, "/", Some(4096)).await {
            Ok(mut s) => {
                let id = format!("slow-reader-{i}");
                let _ = s
                    .write_all(&text(&format!(
                        r#"{{"packet_type":"alive","subject_id":"{id}","data":{{}}}}"#
                    )))
                    .await;
                held.push((id, s));
            }
            Err(e) => bump(&t, |x| *x.errors.entry(e.to_string()).or_default() += 1),
        }
    }
    // Live updates the load generator's backend echoes back: the echoes
    // pile up towards sockets that never read. Bounded: 50 per socket.
    for n in 0..50 {
        if Instant::now() >= until {
            break;
        }
        for (id, s) in held.iter_mut() {
            let f = text(&format!(
                r#"{{"packet_type":"mephisto_bound_live_update","subject_id":"{id}","data":{{"seq":{n},"t":0,"pad":"{pad}"}}}}"#
            ));
            match timeout(Duration::from_millis(200), s.write_all(&f)).await {
                Ok(Ok(())) => bump(&t, |x| {
                    x.sent += 1;
                    x.bytes_sent += f.len() as u64
                }),
                Ok(Err(e)) => bump(&t, |x| *x.errors.entry(err_kind(&e)).or_default() += 1),
                Err(_) => bump(&t, |x| {
                    *x.errors.entry("write stalled".into()).or_default() += 1
                }),
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    // Never read; hold the sockets until the end. Whether the switch has
    // closed them by then is what the tally shows.
    tokio::time::sleep_until(until.into()).await;
    for (_, s) in held.iter_mut() {
        let mut b = [0u8; 1];
        let state = match timeout(Duration::from_millis(1), s.peek(&mut b)).await {
            Ok(Ok(0)) => "closed by the switch",
            Ok(Ok(_)) => "open, unread data waiting",
            Ok(Err(_)) => "reset",
            Err(_) => "open",
        };
        bump(&t, |x| *x.closes.entry(state.into()).or_default() += 1);
    }
}

/// An HTTP request with `body`; returns the status (or the error).
async fn http_post(addr: SocketAddr, path: &str, ctype: &str, body: &[u8]) -> String {
    let go = async {
        let mut s = TcpStream::connect(addr).await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        // The switch may answer (and close) before the body is in.
        let _ = s.write_all(body).await;
        let h = read_head(&mut s).await?;
        Ok::<_, std::io::Error>(h.split_whitespace().nth(1).unwrap_or("none").to_string())
    };
    match timeout(Duration::from_secs(10), go).await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => err_kind(&e),
        Err(_) => "timeout".into(),
    }
}

async fn garbage(a: Args, t: Shared, until: Instant) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut junk = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect()
    };
    // A bincode string whose length prefix says 2^50 bytes (version byte,
    // `Hello`, then the varint u64 marker 253 and the length).
    let huge_len = [1u8, 0, 253, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];
    let big_json: Vec<u8> = {
        let mut v = br#"{"USED_AGENT_ID":"x","metadata":{"#.to_vec();
        let mut i = 0;
        while v.len() < 10 << 20 {
            v.extend_from_slice(format!(r#""k{i}":"{}","#, "v".repeat(100)).as_bytes());
            i += 1;
        }
        v.extend_from_slice(br#""end":1},"client_timestamp":1}"#);
        v
    };
    let mut round = 0u64;
    let mut last_big = Instant::now() - Duration::from_secs(10);
    while Instant::now() < until {
        round += 1;
        bump(&t, |x| x.attempts += 1);
        // Raw junk to the HTTP port.
        if let Ok(mut s) = TcpStream::connect(a.http).await {
            let j = junk(4096);
            let _ = s.write_all(&j).await;
            let st = match read_head(&mut s).await {
                Ok(h) => h.split_whitespace().nth(1).unwrap_or("none").to_string(),
                Err(e) => err_kind(&e),
            };
            bump(&t, |x| {
                x.sent += 1;
                x.bytes_sent += j.len() as u64;
                *x.statuses.entry(format!("raw http: {st}")).or_default() += 1;
            });
        }
        // Junk frames on each WebSocket path.
        for (path, frames) in [
            (
                "/",
                vec![
                    text("{\"packet_type\":"),
                    text("[1,2,3]"),
                    frame(0x82, &junk(512)),
                ],
            ),
            (
                "/monitor",
                vec![text("{\"subscribe\": 7}"), frame(0x82, &junk(512))],
            ),
            (
                "/gateway",
                if a.skip.iter().any(|s| s == "gateway_bomb") {
                    vec![frame(0x82, &junk(512))]
                } else {
                    vec![frame(0x82, &huge_len), frame(0x82, &junk(512))]
                },
            ),
        ] {
            for f in frames {
                match ws_connect(a.http, path, None).await {
                    Ok(mut s) => {
                        let r = s.write_all(&f).await;
                        let code = read_close(&mut s, Duration::from_millis(300)).await;
                        bump(&t, |x| {
                            x.sent += 1;
                            x.bytes_sent += f.len() as u64;
                            *x.closes.entry(format!("{path}: {code}")).or_default() += 1;
                            if r.is_err() {
                                *x.errors.entry(format!("{path}: write")).or_default() += 1;
                            }
                        });
                    }
                    Err(e) => bump(&t, |x| {
                        *x.errors.entry(format!("{path}: {e}")).or_default() += 1
                    }),
                }
            }
        }
        // Junk bodies to the HTTP endpoints.
        for path in [
            "/request_agent",
            "/submit_metadata",
            "/log_error",
            "/submit_task",
        ] {
            let body = if round.is_multiple_of(2) {
                junk(2048)
            } else {
                b"{\"provider_data\": [".to_vec()
            };
            let st = http_post(a.http, path, "application/json", &body).await;
            bump(&t, |x| {
                x.sent += 1;
                x.bytes_sent += body.len() as u64;
                *x.statuses.entry(format!("{path}: {st}")).or_default() += 1;
            });
        }
        if last_big.elapsed() >= Duration::from_secs(5) {
            last_big = Instant::now();
            let st = http_post(a.http, "/submit_metadata", "application/json", &big_json).await;
            bump(&t, |x| {
                x.sent += 1;
                x.bytes_sent += big_json.len() as u64;
                *x.statuses
                    .entry(format!("/submit_metadata 10MiB: {st}"))
                    .or_default() += 1;
            });
        }
        // Junk to the TCP client socket: unframed bytes, bad frames, an
        // unknown command, then see whether it still answers.
        if let Some(tcp) = a.tcp {
            match TcpStream::connect(tcp).await {
                Ok(mut s) => {
                    let mut j = junk(2048);
                    j.extend_from_slice(b"\xff\xfa\xff\xfeNOPE!\xfe\xffNSTAT\xfe");
                    let _ = s.write_all(&j).await;
                    let mut b = vec![0u8; 64 * 1024];
                    let got = match timeout(Duration::from_millis(500), s.read(&mut b)).await {
                        Ok(Ok(n)) if n > 0 => "answered",
                        Ok(Ok(_)) => "eof",
                        Ok(Err(_)) => "error",
                        Err(_) => "silent",
                    };
                    bump(&t, |x| {
                        x.sent += 1;
                        x.bytes_sent += j.len() as u64;
                        *x.closes
                            .entry(format!("tcp client socket: {got}"))
                            .or_default() += 1;
                    });
                }
                Err(e) => bump(&t, |x| {
                    *x.errors
                        .entry(format!("tcp: {}", err_kind(&e)))
                        .or_default() += 1
                }),
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Args::parse();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(a.duration);
    let names = [
        "alive_flood",
        "oversize",
        "statuses_flood",
        "slow_readers",
        "garbage",
    ];
    let tallies: Vec<Shared> = names.iter().map(|_| Shared::default()).collect();
    let on = |n: &str| !a.skip.iter().any(|s| s == n);
    let mut jobs = Vec::new();
    if on(names[0]) {
        jobs.push(tokio::spawn(alive_flood(
            a.clone(),
            tallies[0].clone(),
            until,
            4,
        )));
    }
    if on(names[1]) {
        jobs.push(tokio::spawn(oversize(a.clone(), tallies[1].clone(), until)));
    }
    if on(names[2]) {
        jobs.push(tokio::spawn(statuses_flood(
            a.clone(),
            tallies[2].clone(),
            until,
        )));
    }
    if on(names[3]) {
        jobs.push(tokio::spawn(slow_readers(
            a.clone(),
            tallies[3].clone(),
            until,
        )));
    }
    if on(names[4]) {
        jobs.push(tokio::spawn(garbage(a.clone(), tallies[4].clone(), until)));
    }
    // Every attack stops by itself at `until`; a last bound in case one
    // hangs in a read.
    let all = futures_util::future::join_all(jobs);
    let finished = timeout(Duration::from_secs_f64(a.duration + 20.0), all)
        .await
        .is_ok();
    let mut out = serde_json::Map::new();
    for (n, t) in names.iter().zip(&tallies) {
        let v = t.lock().map(|g| g.json()).unwrap_or(Value::Null);
        eprintln!("   {n}: {v}");
        out.insert((*n).into(), v);
    }
    let summary = json!({
        "mode": "hostile",
        "duration_s": a.duration,
        "elapsed_s": (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "finished_in_time": finished,
        "skipped": a.skip,
        "attacks": out,
    });
    println!("{summary}");
    // Sockets still held by a hung attack go with the process.
    std::process::exit(0);
}
