//! `switchyard-bench`: open-loop load generator for the agent router
//! (PROTOCOL 1). See bench/README.md.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use switchyard_bench::latency::{self, r3};
use switchyard_bench::procfs::{proc_cpu, proc_rss_kb};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Clone)]
#[command(
    about = "Open-loop load generator for switchyard's agent router (and any Mephisto-compatible router)"
)]
struct Args {
    /// Router WebSocket URL; repeat for several (agents are spread round-robin).
    #[arg(long = "url", default_value = "ws://127.0.0.1:3000/")]
    urls: Vec<String>,
    /// URL the backend ("mephisto") connects to (default: the first --url).
    #[arg(long)]
    backend_url: Option<String>,
    /// Number of agent connections.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// mephisto_bound_live_updates per agent per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Bytes of filler in each update's data.pad.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before the measured window, seconds (sent, not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Grace after the window for echoes still in flight, seconds.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Heartbeat interval per agent, seconds.
    #[arg(long, default_value_t = 6.0)]
    heartbeat: f64,
    /// Runtime worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Router process id: report its CPU and RSS over the window.
    #[arg(long)]
    router_pid: Option<u32>,
    /// Other processes (the switches of a cluster, a NATS server): report
    /// each one's CPU over the measured window. Repeatable.
    #[arg(long = "also-pid")]
    also_pids: Vec<u32>,
    /// Concurrent connection attempts.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Ramp the total rate until loss > 0 or p99 > --max-p99-ms; report the highest sustained rate.
    #[arg(long)]
    max: bool,
    /// --max: first total rate (updates/s over all agents).
    #[arg(long, default_value_t = 1000.0)]
    start_rate: f64,
    /// --max: geometric step factor.
    #[arg(long, default_value_t = 2.0)]
    step_factor: f64,
    /// --max: bisection steps between last good and first bad.
    #[arg(long, default_value_t = 3)]
    bisect_steps: u32,
    /// --max: p99 limit in ms.
    #[arg(long, default_value_t = 100.0)]
    max_p99_ms: f64,
    /// --max: stop ramping after this many seconds in total.
    #[arg(long, default_value_t = 120.0)]
    max_time: f64,
    /// Open N idle agents (alive + heartbeats only); report connect times and RSS per agent.
    #[arg(long)]
    connect_only: Option<usize>,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();
fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}
fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}
fn now_ns() -> u64 {
    ns_of(Instant::now())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Result<Ws, String> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

#[derive(Clone, Copy, Default)]
struct Sample {
    router_cpu: Option<f64>,
    router_rss: Option<u64>,
    self_cpu: Option<f64>,
}

fn sample(pid: Option<u32>) -> Sample {
    let p = pid.map(|p| p.to_string());
    Sample {
        router_cpu: p.as_deref().and_then(proc_cpu),
        router_rss: p.as_deref().and_then(proc_rss_kb),
        self_cpu: proc_cpu("self"),
    }
}

fn raise_nofile() -> (u64, u64, u64) {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        let (soft, hard) = (r.rlim_cur, r.rlim_max);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        let mut r2 = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r2);
        (soft, hard, r2.rlim_cur)
    }
}

// ---------------------------------------------------------------- packets

#[derive(Deserialize)]
struct InData {
    seq: Option<u64>,
    t: Option<u64>,
    last_mephisto_ping: Option<Value>,
}

#[derive(Deserialize)]
struct InPacket {
    packet_type: String,
    data: Option<InData>,
}

#[derive(Deserialize)]
struct BackendIn<'a> {
    packet_type: &'a str,
    subject_id: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

// ---------------------------------------------------------------- one run

#[derive(Clone)]
struct RunCfg {
    urls: Vec<String>,
    backend_url: String,
    agents: usize,
    rate: f64, // per agent
    payload: usize,
    duration: f64,
    warmup: f64,
    drain: f64,
    heartbeat: f64,
    router_pid: Option<u32>,
    also_pids: Vec<u32>,
    connect_concurrency: usize,
    connect_only: bool,
}

struct Shared {
    lat: Mutex<Histogram<u64>>, // microseconds
    /// The first leg alone: agent socket to backend socket, µs.
    to_backend: Mutex<Histogram<u64>>,
    hb_rtt: Mutex<Histogram<u64>>,
    t0: u64,
    win_start: u64,
    win_end: u64,
    backend_echoed: AtomicU64,
}

#[derive(Default)]
struct WriterRes {
    sent: u64,
    hb_sent: u64,
    send_errors: u64,
}

#[derive(Default)]
struct ReaderRes {
    received: u64,
    dup: u64,
    reordered: u64,
    hb_answered: u64,
    hb_bad: u64,
    other: u64,
    stale: u64,
    closed_early: bool,
}

#[allow(clippy::too_many_arguments)] // one task's whole setup
async fn agent_writer(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    id: String,
    cfg: Arc<RunCfg>,
    sh: Arc<Shared>,
    t0: Instant,
    offset: Duration,
    hb_offset: Duration,
    hbq: Arc<Mutex<VecDeque<u64>>>,
    mut stop: watch::Receiver<bool>,
) -> WriterRes {
    let mut res = WriterRes::default();
    let pad = "x".repeat(cfg.payload);
    let win_end = sh.win_end;
    let send_end = epoch() + Duration::from_nanos(win_end);
    let period = if cfg.rate > 0.0 {
        1.0 / cfg.rate
    } else {
        f64::INFINITY
    };
    let hb_period = Duration::from_secs_f64(cfg.heartbeat);
    let mut n: u64 = 0;
    let mut next_hb = t0 + hb_offset;
    let hb_text =
        format!("{{\"packet_type\":\"heartbeat\",\"subject_id\":\"{id}\",\"data\":{{}}}}");
    let far = t0 + Duration::from_secs(1_000_000);
    loop {
        let next_up = if period.is_finite() {
            let at = t0 + offset + Duration::from_secs_f64(n as f64 * period);
            if at >= send_end {
                far
            } else {
                at
            }
        } else {
            far
        };
        let (is_hb, at) = if next_hb < next_up {
            (true, next_hb)
        } else {
            (false, next_up)
        };
        tokio::select! {
            _ = sleep_until(at.into()) => {}
            _ = stop.changed() => break,
        }
        let msg = if is_hb {
            let t = now_ns();
            hbq.lock().unwrap().push_back(t);
            if t >= sh.win_start && t < win_end {
                res.hb_sent += 1;
            }
            next_hb += hb_period;
            hb_text.clone()
        } else {
            let t = ns_of(at);
            if t >= sh.win_start && t < win_end {
                res.sent += 1;
            }
            let m = format!(
                "{{\"packet_type\":\"mephisto_bound_live_update\",\"subject_id\":\"{id}\",\"data\":{{\"seq\":{n},\"t\":{t},\"pad\":\"{pad}\"}}}}"
            );
            n += 1;
            m
        };
        tokio::select! {
            r = sink.send(Message::Text(msg)) => if r.is_err() {
                res.send_errors += 1;
                break;
            },
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
    res
}

async fn agent_reader(
    mut stream: futures_util::stream::SplitStream<Ws>,
    sh: Arc<Shared>,
    hbq: Arc<Mutex<VecDeque<u64>>>,
    mut stop: watch::Receiver<bool>,
) -> ReaderRes {
    let mut res = ReaderRes::default();
    let mut seen: Vec<u64> = Vec::new();
    let mut max_seq: Option<u64> = None;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                // The writer closes the socket on the same stop signal, and
                // the router's answer may come before this task sees it.
                res.closed_early = !*stop.borrow();
                break;
            }
        };
        let now = now_ns();
        let p: InPacket = match serde_json::from_str(&text) {
            Ok(p) => p,
            Err(_) => {
                res.other += 1;
                continue;
            }
        };
        match p.packet_type.as_str() {
            "client_bound_live_update" => {
                let Some(d) = p.data else {
                    res.other += 1;
                    continue;
                };
                let (Some(seq), Some(t)) = (d.seq, d.t) else {
                    res.other += 1;
                    continue;
                };
                if t < sh.t0 {
                    // Left over from an earlier run (e.g. queued by the router
                    // while this agent id was disconnected between --max steps).
                    res.stale += 1;
                    continue;
                }
                let (w, b) = ((seq / 64) as usize, seq % 64);
                if seen.len() <= w {
                    seen.resize(w + 1, 0);
                }
                if seen[w] & (1 << b) != 0 {
                    res.dup += 1;
                    continue;
                }
                seen[w] |= 1 << b;
                if max_seq.is_some_and(|m| seq < m) {
                    res.reordered += 1;
                } else {
                    max_seq = Some(seq);
                }
                if t >= sh.win_start && t < sh.win_end {
                    res.received += 1;
                    let us = now.saturating_sub(t) / 1000;
                    let _ = sh.lat.lock().unwrap().record(us.max(1));
                }
            }
            "heartbeat" => {
                let sent = hbq.lock().unwrap().pop_front();
                let ok = p
                    .data
                    .as_ref()
                    .and_then(|d| d.last_mephisto_ping.as_ref())
                    .is_some_and(|v| v.is_number());
                if !ok {
                    res.hb_bad += 1;
                }
                if let Some(s) = sent {
                    let _ = sh
                        .hb_rtt
                        .lock()
                        .unwrap()
                        .record((now.saturating_sub(s) / 1000).max(1));
                    if ok && s >= sh.win_start && s < sh.win_end {
                        res.hb_answered += 1;
                    }
                }
            }
            _ => {}
        }
    }
    res
}

async fn backend(ws: Ws, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(Message::Text(m)).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(Message::Text(m)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => {
                eprintln!("backend connection closed");
                break;
            }
        };
        let Ok(p) = serde_json::from_str::<BackendIn>(&text) else {
            continue;
        };
        if p.packet_type != "mephisto_bound_live_update" {
            continue;
        }
        let data = p.data.map(|d| d.get()).unwrap_or("{}");
        // The agent's send time (same clock, this process): the first leg.
        if let Ok(InData { t: Some(t), .. }) = serde_json::from_str::<InData>(data) {
            if t >= sh.win_start && t < sh.win_end {
                let us = now_ns().saturating_sub(t) / 1000;
                let _ = sh.to_backend.lock().unwrap().record(us.max(1));
            }
        }
        let out = format!(
            "{{\"packet_type\":\"client_bound_live_update\",\"subject_id\":{},\"data\":{}}}",
            serde_json::to_string(&p.subject_id).unwrap(),
            data
        );
        sh.backend_echoed.fetch_add(1, Ordering::Relaxed);
        if tx.send(out).is_err() {
            break;
        }
    }
    drop(tx);
    writer.abort();
    let _ = writer.await;
}

/// The histograms' unit: µs.
const TICKS_PER_MS: f64 = 1000.0;

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    latency::pct(h, q, TICKS_PER_MS)
}

fn lat_json(h: &Histogram<u64>) -> Value {
    latency::summary(h, TICKS_PER_MS)
}

async fn run_once(cfg: RunCfg, mode: &str) -> Value {
    let cfg = Arc::new(cfg);
    let label = format!(
        "{mode}: {} agents x {}/s = {}/s, payload {} B, {} s",
        cfg.agents,
        cfg.rate,
        cfg.agents as f64 * cfg.rate,
        cfg.payload,
        cfg.duration
    );
    eprintln!("== {label}");
    let (stop_tx, stop_rx) = watch::channel(false);
    // Backend first, so nothing waits in the router's backend outbox.
    let backend_ws = match connect(&cfg.backend_url).await {
        Ok(mut ws) => {
            let _ = ws
                .send(Message::Text(
                    r#"{"packet_type":"alive","subject_id":"mephisto","data":{}}"#.into(),
                ))
                .await;
            Some(ws)
        }
        Err(e) => {
            eprintln!("backend connect to {} failed: {e}", cfg.backend_url);
            None
        }
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before_connect = sample(cfg.router_pid);

    // Agents.
    let sem = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let connect_start = Instant::now();
    let mut pending = Vec::with_capacity(cfg.agents);
    for i in 0..cfg.agents {
        let url = cfg.urls[i % cfg.urls.len()].clone();
        let sem = sem.clone();
        pending.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let t = Instant::now();
            let mut ws = connect(&url).await?;
            let id = format!("agent-{i}");
            ws.send(Message::Text(format!(
                "{{\"packet_type\":\"alive\",\"subject_id\":\"{id}\",\"data\":{{}}}}"
            )))
            .await
            .map_err(|e| e.to_string())?;
            Ok::<_, String>((i, ws, t.elapsed()))
        }));
    }
    let mut conns = Vec::with_capacity(cfg.agents);
    let mut connect_hist = Histogram::<u64>::new(3).unwrap();
    let mut connect_errors = 0u64;
    let mut first_err = None;
    for p in pending {
        match p.await {
            Ok(Ok((i, ws, el))) => {
                let _ = connect_hist.record((el.as_micros() as u64).max(1));
                conns.push((i, ws));
            }
            Ok(Err(e)) => {
                connect_errors += 1;
                first_err.get_or_insert(e);
            }
            Err(e) => {
                connect_errors += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    let connect_total = connect_start.elapsed().as_secs_f64();
    eprintln!(
        "   connected {} agents in {:.2} s ({} errors{}); connect p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        conns.len(),
        connect_total,
        connect_errors,
        first_err.map(|e| format!(", first: {e}")).unwrap_or_default(),
        pct(&connect_hist, 0.5),
        pct(&connect_hist, 0.99),
        connect_hist.max() as f64 / 1000.0
    );

    let t0 = Instant::now() + Duration::from_millis(200);
    let win_start_i = t0 + Duration::from_secs_f64(cfg.warmup);
    let win_end_i = win_start_i + Duration::from_secs_f64(cfg.duration);
    let stop_at = win_end_i + Duration::from_secs_f64(cfg.drain);
    let sh = Arc::new(Shared {
        lat: Mutex::new(Histogram::new(3).unwrap()),
        to_backend: Mutex::new(Histogram::new(3).unwrap()),
        hb_rtt: Mutex::new(Histogram::new(3).unwrap()),
        t0: ns_of(t0),
        win_start: ns_of(win_start_i),
        win_end: ns_of(win_end_i),
        backend_echoed: AtomicU64::new(0),
    });
    let backend_task = backend_ws.map(|ws| tokio::spawn(backend(ws, sh.clone(), stop_rx.clone())));

    let connected = conns.len() as u64;
    let n_conn = conns.len().max(1);
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (k, (i, ws)) in conns.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        let hbq = Arc::new(Mutex::new(VecDeque::new()));
        // Spread agents evenly over one update period and one heartbeat period.
        let offset = if cfg.rate > 0.0 {
            Duration::from_secs_f64(k as f64 / n_conn as f64 / cfg.rate)
        } else {
            Duration::ZERO
        };
        let hb_offset = Duration::from_secs_f64(cfg.heartbeat * k as f64 / n_conn as f64);
        writers.push(tokio::spawn(agent_writer(
            sink,
            format!("agent-{i}"),
            cfg.clone(),
            sh.clone(),
            t0,
            offset,
            hb_offset,
            hbq.clone(),
            stop_rx.clone(),
        )));
        readers.push(tokio::spawn(agent_reader(
            stream,
            sh.clone(),
            hbq,
            stop_rx.clone(),
        )));
    }

    let also_cpu = || -> Vec<Option<f64>> {
        cfg.also_pids
            .iter()
            .map(|p| proc_cpu(&p.to_string()))
            .collect()
    };
    sleep_until(win_start_i.into()).await;
    let s0 = sample(cfg.router_pid);
    let also0 = also_cpu();
    sleep_until(win_end_i.into()).await;
    let s1 = sample(cfg.router_pid);
    let also1 = also_cpu();
    sleep_until(stop_at.into()).await;
    let _ = stop_tx.send(true);

    let mut w = WriterRes::default();
    for h in writers {
        if let Ok(r) = h.await {
            w.sent += r.sent;
            w.hb_sent += r.hb_sent;
            w.send_errors += r.send_errors;
        }
    }
    let mut r = ReaderRes::default();
    let mut closed_early = 0u64;
    for h in readers {
        if let Ok(x) = h.await {
            r.received += x.received;
            r.dup += x.dup;
            r.reordered += x.reordered;
            r.hb_answered += x.hb_answered;
            r.hb_bad += x.hb_bad;
            r.other += x.other;
            r.stale += x.stale;
            closed_early += x.closed_early as u64;
        }
    }
    if let Some(b) = backend_task {
        let _ = b.await;
    }

    let lat = sh.lat.lock().unwrap().clone();
    let to_backend = sh.to_backend.lock().unwrap().clone();
    let hb = sh.hb_rtt.lock().unwrap().clone();
    let lost = w.sent.saturating_sub(r.received);
    let dur = cfg.duration;
    let router_cpu = match (s0.router_cpu, s1.router_cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let gen_cpu = match (s0.self_cpu, s1.self_cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let per100k = |c: Option<f64>| -> Value {
        match c {
            Some(c) if w.sent > 0 => json!(r3(c / w.sent as f64 * 100_000.0)),
            _ => Value::Null,
        }
    };
    let rss_per_agent = if cfg.connect_only {
        match (before_connect.router_rss, s1.router_rss) {
            (Some(a), Some(b)) if cfg.agents > 0 => {
                json!(r3((b as f64 - a as f64) / cfg.agents as f64))
            }
            _ => Value::Null,
        }
    } else {
        Value::Null
    };
    let summary = json!({
        "mode": mode,
        "urls": cfg.urls,
        "agents": cfg.agents,
        "connected": connected,
        "connect_errors": connect_errors,
        "rate_per_agent": cfg.rate,
        "offered_rate": cfg.rate * cfg.agents as f64,
        "payload": cfg.payload,
        "duration_s": dur,
        "warmup_s": cfg.warmup,
        "sent": w.sent,
        "received": r.received,
        "lost": lost,
        "duplicated": r.dup,
        "reordered": r.reordered,
        "throughput": r3(r.received as f64 / dur),
        "latency_ms": lat_json(&lat),
        "to_backend_ms": lat_json(&to_backend),
        "heartbeats": {"sent": w.hb_sent, "answered": r.hb_answered, "bad_replies": r.hb_bad,
                       "rtt_ms": lat_json(&hb)},
        "connect_ms": lat_json(&connect_hist),
        "connect_total_s": r3(connect_total),
        "stale_from_earlier_run": r.stale,
        "send_errors": w.send_errors,
        "closed_early": closed_early,
        "router": {
            "pid": cfg.router_pid,
            "cpu_s": router_cpu.map(r3),
            "cpu_s_per_100k": per100k(router_cpu),
            "rss_kb_before": before_connect.router_rss,
            "rss_kb_window_start": s0.router_rss,
            "rss_kb_after": s1.router_rss,
            "rss_kb_per_agent": rss_per_agent,
        },
        "generator": {"cpu_s": gen_cpu.map(r3), "cpu_s_per_100k": per100k(gen_cpu)},
        "also": cfg.also_pids.iter().zip(also0.iter().zip(&also1)).map(|(pid, (a, b))| {
            let cpu = a.zip(*b).map(|(a, b)| b - a);
            json!({"pid": pid, "cpu_s": cpu.map(r3), "cpu_s_per_100k": per100k(cpu)})
        }).collect::<Vec<_>>(),
    });
    eprintln!(
        "   sent {} received {} lost {} dup {} reordered {} | {:.0} rt/s | latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        w.sent, r.received, lost, r.dup, r.reordered, r.received as f64 / dur,
        pct(&lat, 0.5), pct(&lat, 0.9), pct(&lat, 0.99), pct(&lat, 0.999),
        if lat.is_empty() { 0.0 } else { lat.max() as f64 / 1000.0 }
    );
    eprintln!(
        "   agent to backend (first leg) ms: p50 {:.2} p90 {:.2} p99 {:.2}",
        pct(&to_backend, 0.5),
        pct(&to_backend, 0.9),
        pct(&to_backend, 0.99)
    );
    eprintln!(
        "   heartbeats in window: sent {} answered {} (bad {}) | router cpu {} s, rss {:?} -> {:?} kB | generator cpu {} s",
        w.hb_sent, r.hb_answered, r.hb_bad,
        router_cpu.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
        before_connect.router_rss, s1.router_rss,
        gen_cpu.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
    );
    // Let the router settle the closed sockets before a next step.
    tokio::time::sleep(Duration::from_millis(300)).await;
    summary
}

fn ok_step(v: &Value, p99_limit: f64) -> bool {
    let lost = v["lost"].as_u64().unwrap_or(1);
    let p99 = v["latency_ms"]["p99"].as_f64().unwrap_or(f64::MAX);
    let received = v["received"].as_u64().unwrap_or(0);
    lost == 0 && received > 0 && p99 <= p99_limit
}

/// Wait until the router has worked off any backlog of the previous step
/// (its CPU use below 5 % of a core over 1 s; at most 30 s).
async fn settle(pid: Option<u32>) {
    let Some(pid) = pid else {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return;
    };
    let p = pid.to_string();
    let start = Instant::now();
    let mut last = proc_cpu(&p);
    while start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proc_cpu(&p);
        match (last, now) {
            (Some(a), Some(b)) if b - a < 0.05 => break,
            (None, _) | (_, None) => break,
            _ => {}
        }
        last = now;
    }
    let waited = start.elapsed().as_secs_f64();
    if waited > 1.5 {
        eprintln!("   router settled after {waited:.1} s");
    }
}

fn emit(v: &Value) {
    println!("{v}");
}

async fn run_max(args: &Args, base: RunCfg) {
    let started = Instant::now();
    let agents = base.agents.max(1) as f64;
    let deadline = Duration::from_secs_f64(args.max_time);
    let mut steps = Vec::new();
    let step = |total: f64| {
        let mut c = base.clone();
        c.rate = total / agents;
        c
    };
    let mut good: Option<(f64, Value)> = None;
    let mut bad: Option<f64> = None;
    let mut total = args.start_rate;
    while started.elapsed() < deadline {
        settle(base.router_pid).await;
        let v = run_once(step(total), "max-step").await;
        emit(&v);
        let mut pass = ok_step(&v, args.max_p99_ms);
        steps.push(v.clone());
        let mut best = v;
        if !pass && started.elapsed() < deadline {
            eprintln!("   step failed; re-running once");
            settle(base.router_pid).await;
            let v2 = run_once(step(total), "max-step-retry").await;
            emit(&v2);
            pass = ok_step(&v2, args.max_p99_ms);
            steps.push(v2.clone());
            best = v2;
        }
        if pass {
            good = Some((total, best));
            total *= args.step_factor;
        } else {
            bad = Some(total);
            break;
        }
    }
    if let (Some(b), Some(_)) = (bad, good.as_ref()) {
        let mut hi = b;
        for _ in 0..args.bisect_steps {
            if started.elapsed() >= deadline {
                break;
            }
            let lo = good.as_ref().unwrap().0;
            let mid = (lo * hi).sqrt();
            if hi / lo < 1.05 {
                break;
            }
            settle(base.router_pid).await;
            let mut v = run_once(step(mid), "max-bisect").await;
            emit(&v);
            steps.push(v.clone());
            // A failing step is run again once here too, as on the ramp: one
            // noisy run must not decide the result.
            if !ok_step(&v, args.max_p99_ms) && started.elapsed() < deadline {
                eprintln!("   step failed; re-running once");
                settle(base.router_pid).await;
                v = run_once(step(mid), "max-bisect-retry").await;
                emit(&v);
                steps.push(v.clone());
            }
            if ok_step(&v, args.max_p99_ms) {
                good = Some((mid, v));
            } else {
                hi = mid;
                bad = Some(mid);
            }
        }
    }
    let (good_rate, good_v) = match good {
        Some((r, v)) => (Some(r), Some(v)),
        None => (None, None),
    };
    let summary = json!({
        "mode": "max",
        "urls": base.urls,
        "agents": base.agents,
        "payload": base.payload,
        "step_duration_s": base.duration,
        "max_p99_ms": args.max_p99_ms,
        "steps": steps.len(),
        "highest_good_offered_rate": good_rate.map(r3),
        "first_bad_offered_rate": bad.map(r3),
        "max_throughput": good_v.as_ref().map(|v| v["throughput"].clone()),
        "at_highest": good_v.as_ref().map(|v| json!({
            "latency_ms": v["latency_ms"], "router": v["router"], "generator": v["generator"],
        })),
        "elapsed_s": r3(started.elapsed().as_secs_f64()),
    });
    eprintln!(
        "== max: highest sustained {} round trips/s (offered {}), first bad offered {}",
        good_v
            .as_ref()
            .map(|v| v["throughput"].to_string())
            .unwrap_or("-".into()),
        good_rate.map(|r| format!("{r:.0}")).unwrap_or("-".into()),
        bad.map(|r| format!("{r:.0}")).unwrap_or("-".into()),
    );
    emit(&summary);
}

fn main() {
    let args = Args::parse();
    epoch();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let (soft, hard, now) = raise_nofile();
        eprintln!("open-file limit: soft {soft}, hard {hard}; raised soft to {now}");
        let backend_url = args
            .backend_url
            .clone()
            .unwrap_or_else(|| args.urls[0].clone());
        let mut cfg = RunCfg {
            urls: args.urls.clone(),
            backend_url,
            agents: args.agents,
            rate: args.rate,
            payload: args.payload,
            duration: args.duration,
            warmup: args.warmup,
            drain: args.drain,
            heartbeat: args.heartbeat,
            router_pid: args.router_pid,
            also_pids: args.also_pids.clone(),
            connect_concurrency: args.connect_concurrency,
            connect_only: false,
        };
        if let Some(n) = args.connect_only {
            cfg.agents = n;
            cfg.rate = 0.0;
            cfg.warmup = 0.0;
            cfg.connect_only = true;
            let mut v = run_once(cfg, "connect-only").await;
            v["open_file_limit"] = json!({"soft": soft, "hard": hard, "raised_to": now});
            eprintln!(
                "   router rss per agent: {} kB",
                v["router"]["rss_kb_per_agent"]
            );
            emit(&v);
        } else if args.max {
            run_max(&args, cfg).await;
        } else {
            let v = run_once(cfg, "fixed").await;
            emit(&v);
        }
    });
}
