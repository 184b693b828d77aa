//! `meshpath`: end-to-end latency of the mesh path (PROTOCOL 2 -> 3 and 4).
//!
//! Starts the switch as a child process with `--uart` on the slave side of a
//! pseudo-terminal pair and plays the mesh root on the master side: `[D]`
//! frames (PROTOCOL 2.2) at a fixed rate, open loop. Each frame carries one
//! entry of the (unknown to the switch, so kept raw) data type `SEQ` whose 8
//! bytes are the frame's sequence number, big-endian; node addresses cycle
//! over `--nodes`. Two subscribers take the frames back out of the switch:
//!
//! - a `/monitor` WebSocket filtered to `node_data` (PROTOCOL 4): the `raw`
//!   hex of the event is the sequence number;
//! - a client-socket connection that said `LISTN` (PROTOCOL 3): the `D`
//!   push carries the `[D]` payload, hence the `SEQ` entry.
//!
//! Frame n is due at `t0 + n / rate`; the writer thread sleeps, then spins,
//! until the due time and writes it. Latency is arrival (same monotonic
//! clock, taken by a reader thread blocked on its socket) minus the due time,
//! so a late writer counts against the figure. See bench/README.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_bench::latency::{self, r3};
use switchyard_bench::procfs::{proc_cpu, proc_rss_kb};

use bytes::BytesMut;
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Value};
use serialport::{SerialPort, TTYPort};
use switchyard_actors::wire::client_api::ClientMessage;
use switchyard_actors::wire::frame::{encode_to_vec, FrameCodec, FrameItem};
use switchyard_actors::wire::mesh::{parse_data_payload, DataEntry, RootMessage};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::codec::Decoder;

#[derive(Parser, Clone)]
#[command(
    about = "Mesh-path latency: frames written to the root's pty -> /monitor event and client-socket push"
)]
struct Args {
    /// The switch binary to start.
    #[arg(long, default_value = "target/release/switchyard")]
    switch: PathBuf,
    /// Extra argument for the switch (repeat for several).
    #[arg(long = "switch-arg", allow_hyphen_values = true)]
    switch_args: Vec<String>,
    /// Frames per second written to the pty.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Frames before the window, seconds (sent, not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Grace after the last frame for arrivals still in flight, seconds.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Node addresses to cycle through (0x0001..=N).
    #[arg(long, default_value_t = 6)]
    nodes: u16,
    /// The writer sleeps until this many microseconds before a frame is due,
    /// then spins.
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
    /// Measurements in a row, each against a fresh switch; with more than
    /// one, a last line gives the medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// p99 target per path, ms (reported as `pass`).
    #[arg(long, default_value_t = 1.0)]
    target_p99_ms: f64,
    /// Keep the switch's data dir and log (path printed on stderr).
    #[arg(long)]
    keep: bool,
    /// No switch: read the pty's other side in this process, to see what
    /// the harness, the pty and the machine's scheduling cost on their own.
    #[arg(long)]
    floor: bool,
}

// ---------------------------------------------------------------- clock

/// Due time of frame `n`, nanoseconds after `t0`.
fn due_ns(n: u64, rate: f64) -> u64 {
    (n as f64 * 1e9 / rate) as u64
}

/// Sequence numbers of the frames sent before `t0` to learn that both
/// subscribers are in place; never measured.
const PRIME: u64 = 1 << 63;

/// Host-wide CPU: (busy jiffies, all jiffies) from the first line of
/// /proc/stat.
fn host_cpu() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle, total))
}

/// Microseconds some task waited for a CPU (PSI), if the kernel has it.
fn cpu_pressure_us() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    s.lines()
        .find(|l| l.starts_with("some"))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("total="))?
        .parse()
        .ok()
}

fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Clone, Copy)]
struct HostSample {
    at: Instant,
    cpu: Option<(u64, u64)>,
    pressure: Option<u64>,
}

fn host_sample() -> HostSample {
    HostSample {
        at: Instant::now(),
        cpu: host_cpu(),
        pressure: cpu_pressure_us(),
    }
}

/// How busy the machine was between two samples: all CPUs' busy share, and
/// the share of time some runnable task waited for a CPU.
fn host_json(a: HostSample, b: HostSample) -> Value {
    let busy = match (a.cpu, b.cpu) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some(r3(100.0 * (b1 - b0) as f64 / (t1 - t0) as f64))
        }
        _ => None,
    };
    let wall_us = b.at.saturating_duration_since(a.at).as_micros() as f64;
    let pressure = match (a.pressure, b.pressure) {
        (Some(p0), Some(p1)) if wall_us > 0.0 => Some(r3(100.0 * (p1 - p0) as f64 / wall_us)),
        _ => None,
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "loadavg_1m": loadavg_1m(),
        "cpu_busy_pct": busy,
        "cpu_pressure_some_pct": pressure,
    })
}

// ---------------------------------------------------------------- the switch

/// The switch under test: killed when this goes out of scope (error and
/// panic included), and by the kernel if this process dies first.
struct SwitchProc {
    child: Child,
    dir: PathBuf,
    keep: bool,
    http: SocketAddr,
    tcp: SocketAddr,
}

impl SwitchProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("switch.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the switch exited ({status}); its log ends:\n{}",
                self.log_tail()
            )),
            _ => None,
        }
    }
}

impl Drop for SwitchProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM first: the switch closes its sockets and exits 0.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if self.keep {
            eprintln!("   kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

fn start_switch(args: &Args, uart: &str) -> Result<SwitchProc, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("meshpath-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = std::fs::File::create(dir.join("switch.log")).map_err(|e| e.to_string())?;
    let http = free_port()?;
    let tcp = free_port()?;
    let mut cmd = Command::new(&args.switch);
    cmd.arg("--uart")
        .arg(uart)
        .arg("--tcp")
        .arg(tcp.to_string())
        .arg("--http")
        .arg(http.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(&args.switch_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // The switch goes when this process goes, however it goes.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.switch.display()))?;
    let mut sw = SwitchProc {
        child,
        dir,
        keep: args.keep,
        http,
        tcp,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    for addr in [http, tcp] {
        loop {
            if let Some(why) = sw.exited() {
                return Err(why);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the switch does not listen on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(sw)
}

/// `GET /metrics` and keep the series that tell where frames went.
fn switch_counters(http: SocketAddr) -> Value {
    let fetch = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    };
    let Ok(text) = fetch() else {
        return Value::Null;
    };
    let wanted = [
        "switchyard_uart_frames_total",
        "switchyard_uart_frame_errors_total",
        "switchyard_mesh_frames_rejected_total",
        "switchyard_data_entries_rejected_total",
        "switchyard_client_pushes_total",
        "switchyard_client_pushes_dropped_total",
        "switchyard_monitor_events_sent_total",
        "switchyard_monitor_events_dropped_total",
        "switchyard_history_records_total",
        "switchyard_history_errors_total",
    ];
    let mut out = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if wanted.contains(&name) {
            if let Ok(v) = value.parse::<f64>() {
                out.insert(series.to_string(), json!(v));
            }
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------- frames

fn frame(n: u64, nodes: u16) -> Vec<u8> {
    let node = 1 + (n % u64::from(nodes.max(1))) as u16;
    let msg = RootMessage::Data {
        node,
        entries: vec![DataEntry::new("SEQ", n.to_be_bytes().to_vec())],
    };
    encode_to_vec(&msg.encode())
}

/// Writes all of `bytes`, waiting while the pty's buffer is full.
fn write_all(port: &mut TTYPort, mut bytes: &[u8], stop: &AtomicBool) -> Result<u64, String> {
    let mut stalls = 0;
    while !bytes.is_empty() {
        match port.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                stalls += 1;
                if stop.load(Ordering::Relaxed) {
                    return Err("stopped while the pty was full".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("pty write: {e}")),
        }
    }
    Ok(stalls)
}

// ---------------------------------------------------------------- writer

struct Schedule {
    t0: Instant,
    rate: f64,
    /// Frames 0..warm are warm-up; warm..end are measured.
    warm: u64,
    end: u64,
}

impl Schedule {
    fn in_window(&self, n: u64) -> bool {
        n >= self.warm && n < self.end
    }
    fn due(&self, n: u64) -> Instant {
        self.t0 + Duration::from_nanos(due_ns(n, self.rate))
    }
}

#[derive(Default)]
struct WriterRes {
    sent: u64,
    write_stalls: u64,
    error: Option<String>,
    /// Write finished minus due, ns (window frames).
    late: Option<Histogram<u64>>,
    /// The root's side, handed back so it stays open while the last frames
    /// are read (closing it hangs the line up).
    port: Option<TTYPort>,
}

/// Sleeps until `spin` before `due`, then spins. The thread's timer slack is
/// set to 1 ns, so the sleep ends close to when it was asked to.
fn wait_until(due: Instant, spin: Duration) {
    let now = Instant::now();
    if due > now + spin {
        std::thread::sleep(due - now - spin);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

fn writer(
    mut port: TTYPort,
    sched: Arc<Schedule>,
    nodes: u16,
    spin: Duration,
    stop: Arc<AtomicBool>,
) -> WriterRes {
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let mut res = WriterRes::default();
    let mut late = Histogram::<u64>::new(3).expect("histogram");
    for n in 0..sched.end {
        if stop.load(Ordering::Relaxed) {
            res.error = Some("stopped".into());
            break;
        }
        let bytes = frame(n, nodes);
        let due = sched.due(n);
        wait_until(due, spin);
        match write_all(&mut port, &bytes, &stop) {
            Ok(s) => res.write_stalls += s,
            Err(e) => {
                res.error = Some(e);
                break;
            }
        }
        if sched.in_window(n) {
            res.sent += 1;
            let ns = Instant::now().saturating_duration_since(due).as_nanos() as u64;
            let _ = late.record(ns.max(1));
        }
    }
    res.late = Some(late);
    res.port = Some(port);
    res
}

// ---------------------------------------------------------------- readers

/// What one path (monitor or client socket) saw.
struct PathRes {
    /// Latency, ns (window frames).
    hist: Histogram<u64>,
    received: u64,
    dup: u64,
    reordered: u64,
    /// Arrivals that were not a frame of this run (other events, pushes).
    other: u64,
    error: Option<String>,
}

/// Shared between a reader thread and the main thread.
#[derive(Default)]
struct PathLive {
    primed: AtomicBool,
    /// Frames of the run (warm-up and window) received, unique.
    received_all: AtomicU64,
}

struct Tracker {
    sched: Arc<OnceLock<Arc<Schedule>>>,
    live: Arc<PathLive>,
    seen: Vec<u64>,
    max_seq: Option<u64>,
    res: PathRes,
}

impl Tracker {
    fn new(sched: Arc<OnceLock<Arc<Schedule>>>, live: Arc<PathLive>) -> Tracker {
        Tracker {
            sched,
            live,
            seen: Vec::new(),
            max_seq: None,
            res: PathRes {
                hist: Histogram::<u64>::new(3).expect("histogram"),
                received: 0,
                dup: 0,
                reordered: 0,
                other: 0,
                error: None,
            },
        }
    }

    fn arrived(&mut self, seq: u64, at: Instant) {
        if seq & PRIME != 0 {
            self.live.primed.store(true, Ordering::Release);
            return;
        }
        let Some(sched) = self.sched.get() else {
            self.res.other += 1;
            return;
        };
        if seq >= sched.end {
            self.res.other += 1;
            return;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        if self.seen[w] & (1 << b) != 0 {
            self.res.dup += 1;
            return;
        }
        self.seen[w] |= 1 << b;
        self.live.received_all.fetch_add(1, Ordering::Relaxed);
        if self.max_seq.is_some_and(|m| seq < m) {
            self.res.reordered += 1;
        } else {
            self.max_seq = Some(seq);
        }
        if sched.in_window(seq) {
            self.res.received += 1;
            let ns = at.saturating_duration_since(sched.due(seq)).as_nanos() as u64;
            let _ = self.res.hist.record(ns.max(1));
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

type MonitorWs = tungstenite::WebSocket<TcpStream>;

#[derive(Deserialize)]
struct MonitorEvent {
    event: Option<String>,
    #[serde(rename = "type")]
    data_type: Option<String>,
    raw: Option<String>,
    subscribed: Option<Value>,
}

fn monitor_connect(http: SocketAddr) -> Result<MonitorWs, String> {
    let stream = TcpStream::connect(http).map_err(|e| format!("monitor: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://{http}/monitor");
    let (mut ws, _) =
        tungstenite::client::client(url.as_str(), stream).map_err(|e| format!("monitor: {e}"))?;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    ws.send(Message::Text(r#"{"subscribe":["node_data"]}"#.into()))
        .map_err(|e| format!("monitor: {e}"))?;
    // The snapshot comes first, then the answer to the filter.
    loop {
        let m = ws.read().map_err(|e| format!("monitor handshake: {e}"))?;
        let Message::Text(t) = m else { continue };
        let ev: MonitorEvent =
            serde_json::from_str(&t).map_err(|e| format!("monitor: {e}: {t}"))?;
        if ev.subscribed.is_some() {
            break;
        }
    }
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

fn monitor_reader(mut ws: MonitorWs, mut tr: Tracker, stop: Arc<AtomicBool>) -> PathRes {
    while !stop.load(Ordering::Relaxed) {
        let m = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                let _ = ws.flush();
                continue;
            }
            Err(e) => {
                tr.res.error = Some(format!("monitor: {e}"));
                break;
            }
        };
        let at = Instant::now();
        let Message::Text(t) = m else { continue };
        let seq = serde_json::from_str::<MonitorEvent>(&t)
            .ok()
            .filter(|e| e.event.as_deref() == Some("node_data"))
            .filter(|e| e.data_type.as_deref() == Some("SEQ"))
            .and_then(|e| e.raw)
            .filter(|r| r.len() == 16)
            .and_then(|r| u64::from_str_radix(&r, 16).ok());
        match seq {
            Some(s) => tr.arrived(s, at),
            None => tr.res.other += 1,
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    tr.res
}

fn client_connect(tcp: SocketAddr) -> Result<(TcpStream, FrameCodec, BytesMut), String> {
    let mut s = TcpStream::connect(tcp).map_err(|e| format!("client socket: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(&encode_to_vec(b"LISTN"))
        .map_err(|e| format!("client socket: {e}"))?;
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(FrameItem::Frame(f))) => match ClientMessage::parse(&f) {
                Ok(ClientMessage::Ok(_)) => break,
                other => return Err(format!("client socket: LISTN answered {other:?}")),
            },
            Ok(Some(FrameItem::Error(e))) => return Err(format!("client socket: {e:?}")),
            Ok(None) | Err(_) => {}
        }
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("client socket: LISTN: {e}"))?;
        if n == 0 {
            return Err("client socket closed after LISTN".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    Ok((s, codec, buf))
}

fn push_seq(frame: &[u8]) -> Option<u64> {
    let ClientMessage::PushData { payload, .. } = ClientMessage::parse(frame).ok()? else {
        return None;
    };
    let entries = parse_data_payload(&payload).ok()?;
    let e = entries.iter().find(|e| e.data_type == "SEQ")?;
    Some(u64::from_be_bytes(e.raw.as_slice().try_into().ok()?))
}

fn client_reader(
    (mut s, mut codec, mut buf): (TcpStream, FrameCodec, BytesMut),
    mut tr: Tracker,
    stop: Arc<AtomicBool>,
) -> PathRes {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = Instant::now();
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(FrameItem::Frame(f))) => match push_seq(&f) {
                    Some(seq) => tr.arrived(seq, at),
                    None => tr.res.other += 1,
                },
                Ok(Some(FrameItem::Error(_))) => tr.res.other += 1,
                Ok(None) | Err(_) => break,
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                tr.res.error = Some("client socket closed".into());
                break;
            }
            Ok(n) => {
                at = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tr.res.error = Some(format!("client socket: {e}"));
                break;
            }
        }
    }
    tr.res
}

// ---------------------------------------------------------------- one run

/// The histograms' unit: ns.
const TICKS_PER_MS: f64 = 1e6;

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    latency::pct(h, q, TICKS_PER_MS)
}

fn lat_json(h: &Histogram<u64>) -> Value {
    latency::summary(h, TICKS_PER_MS)
}

fn path_json(r: &PathRes, sent: u64) -> Value {
    json!({
        "sent": sent,
        "received": r.received,
        "lost": sent.saturating_sub(r.received),
        "duplicated": r.dup,
        "reordered": r.reordered,
        "other": r.other,
        "error": r.error,
        "latency_ms": lat_json(&r.hist),
    })
}

fn join<T>(h: JoinHandle<T>, what: &str) -> Result<T, String> {
    h.join().map_err(|_| format!("the {what} thread panicked"))
}

/// The floor: the same writer and clock, the pty's slave side read by a
/// thread of this process instead of the switch.
fn pty_reader(mut port: TTYPort, mut tr: Tracker, stop: Arc<AtomicBool>) -> PathRes {
    let _ = port.set_timeout(Duration::from_millis(100));
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 4096];
    let mut at = Instant::now();
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(FrameItem::Frame(f))) => {
                    let seq = match RootMessage::parse(&f) {
                        Ok(RootMessage::Data { entries, .. }) => entries
                            .iter()
                            .find(|e| e.data_type == "SEQ")
                            .and_then(|e| e.raw.as_slice().try_into().ok())
                            .map(u64::from_be_bytes),
                        _ => None,
                    };
                    match seq {
                        Some(seq) => tr.arrived(seq, at),
                        None => tr.res.other += 1,
                    }
                }
                Ok(Some(FrameItem::Error(_))) => tr.res.other += 1,
                Ok(None) | Err(_) => break,
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match port.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => {
                at = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tr.res.error = Some(format!("pty read: {e}"));
                break;
            }
        }
    }
    tr.res
}

/// One measured path while it runs.
struct PathRun {
    /// Key in the JSON line.
    key: &'static str,
    live: Arc<PathLive>,
    handle: JoinHandle<PathRes>,
}

fn spawn_path<S: Send + 'static>(
    key: &'static str,
    sched: &Arc<OnceLock<Arc<Schedule>>>,
    stop: &Arc<AtomicBool>,
    source: S,
    read: fn(S, Tracker, Arc<AtomicBool>) -> PathRes,
) -> Result<PathRun, String> {
    let live = Arc::new(PathLive::default());
    let tr = Tracker::new(Arc::clone(sched), Arc::clone(&live));
    let stop = Arc::clone(stop);
    let handle = std::thread::Builder::new()
        .name(format!("{key}-reader"))
        .spawn(move || read(source, tr, stop))
        .map_err(|e| e.to_string())?;
    Ok(PathRun { key, live, handle })
}

fn run_once(args: &Args, run: usize) -> Result<Value, String> {
    let (master, slave) = TTYPort::pair().map_err(|e| format!("pty pair: {e}"))?;
    let device = slave.name().ok_or("the pty has no name")?;
    let sched_cell: Arc<OnceLock<Arc<Schedule>>> = Arc::new(OnceLock::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut paths: Vec<PathRun> = Vec::new();
    // Keeps the slave side open while the switch has it (no hang-up).
    let mut _slave_kept = None;
    let mut sw = None;
    if args.floor {
        eprintln!(
            "== run {run}: floor (no switch) on {device}; {} frames/s, {} nodes, {} s (+{} s warm-up)",
            args.rate, args.nodes, args.duration, args.warmup
        );
        paths.push(spawn_path("pty", &sched_cell, &stop, slave, pty_reader)?);
    } else {
        let s = start_switch(args, &device)?;
        eprintln!(
            "== run {run}: switch pid {} on {device}; http {} tcp {}; {} frames/s, {} nodes, {} s (+{} s warm-up)",
            s.pid(), s.http, s.tcp, args.rate, args.nodes, args.duration, args.warmup
        );
        let ws = monitor_connect(s.http)?;
        let cli = client_connect(s.tcp)?;
        paths.push(spawn_path(
            "monitor",
            &sched_cell,
            &stop,
            ws,
            monitor_reader,
        )?);
        paths.push(spawn_path(
            "client_socket",
            &sched_cell,
            &stop,
            cli,
            client_reader,
        )?);
        // The switch never writes to the root unless a client asks; still,
        // keep the pty's other direction empty.
        let mut drain_port = master
            .try_clone_native()
            .map_err(|e| format!("pty clone: {e}"))?;
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            let _ = drain_port.set_timeout(Duration::from_millis(200));
            let mut b = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                let _ = drain_port.read(&mut b);
            }
        }));
        _slave_kept = Some(slave);
        sw = Some(s);
    }
    let pid = sw.as_ref().map(|s| s.pid().to_string());
    let stop_all = |paths: Vec<PathRun>, threads: Vec<JoinHandle<()>>| {
        stop.store(true, Ordering::Relaxed);
        for p in paths {
            let _ = p.handle.join();
        }
        for t in threads {
            let _ = t.join();
        }
    };

    // Prime: until every path has seen a frame, the link is up and every
    // hop is in place.
    let mut master = master;
    master
        .set_timeout(Duration::from_millis(100))
        .map_err(|e| e.to_string())?;
    let prime_deadline = Instant::now() + Duration::from_secs(15);
    let mut k = 0u64;
    let primed = loop {
        if paths.iter().all(|p| p.live.primed.load(Ordering::Acquire)) {
            break Ok(());
        }
        if let Some(why) = sw.as_mut().and_then(SwitchProc::exited) {
            break Err(why);
        }
        if Instant::now() > prime_deadline {
            let seen: Vec<String> = paths
                .iter()
                .map(|p| format!("{} {}", p.key, p.live.primed.load(Ordering::Acquire)))
                .collect();
            break Err(format!(
                "no frame came through within 15 s ({}); switch log:\n{}",
                seen.join(", "),
                sw.as_ref().map(SwitchProc::log_tail).unwrap_or_default()
            ));
        }
        if let Err(e) = write_all(&mut master, &frame(PRIME | k, args.nodes), &stop) {
            break Err(e);
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Err(e) = primed {
        stop_all(paths, threads);
        return Err(e);
    }
    // Let the primes settle before the clock starts.
    std::thread::sleep(Duration::from_millis(200));

    let warm = (args.warmup * args.rate).round() as u64;
    let window = (args.duration * args.rate).round() as u64;
    let sched = Arc::new(Schedule {
        t0: Instant::now() + Duration::from_millis(20),
        rate: args.rate,
        warm,
        end: warm + window,
    });
    let _ = sched_cell.set(Arc::clone(&sched));
    let wr = {
        let sched = Arc::clone(&sched);
        let stop = Arc::clone(&stop);
        let spin = Duration::from_micros(args.spin_us);
        let nodes = args.nodes;
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer(master, sched, nodes, spin, stop))
            .map_err(|e| e.to_string())?
    };

    // CPU over the window: from the first measured frame's due time to the
    // last one's.
    let sleep_to = |t: Instant| {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    };
    sleep_to(sched.due(warm));
    let cpu0 = pid.as_deref().and_then(proc_cpu);
    let self0 = proc_cpu("self");
    let rss0 = pid.as_deref().and_then(proc_rss_kb);
    let host0 = host_sample();
    sleep_to(sched.due(sched.end));
    let host1 = host_sample();
    let cpu1 = pid.as_deref().and_then(proc_cpu);
    let self1 = proc_cpu("self");
    let rss1 = pid.as_deref().and_then(proc_rss_kb);
    let mut w = match join(wr, "writer") {
        Ok(w) => w,
        Err(e) => {
            stop_all(paths, threads);
            return Err(e);
        }
    };

    // Drain: until every path has every frame, or the grace is over.
    let drain_end = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < drain_end
        && paths
            .iter()
            .any(|p| p.live.received_all.load(Ordering::Relaxed) < sched.end)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let counters = sw.as_ref().map(|s| switch_counters(s.http));
    stop.store(true, Ordering::Relaxed);
    let mut results: Vec<(&'static str, PathRes)> = Vec::new();
    for p in paths {
        results.push((p.key, join(p.handle, p.key)?));
    }
    for t in threads {
        let _ = t.join();
    }
    let exited = sw.as_mut().and_then(SwitchProc::exited);
    drop(sw);
    drop(w.port.take());

    let sent = w.sent;
    let late = w
        .late
        .unwrap_or_else(|| Histogram::new(3).expect("histogram"));
    let switch_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let gen_cpu = match (self0, self1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let ok = |r: &PathRes| {
        r.error.is_none()
            && sent > 0
            && r.received == sent
            && pct(&r.hist, 0.99) <= args.target_p99_ms
    };
    let pass = w.error.is_none() && results.iter().all(|(_, r)| ok(r));
    let host = host_json(host0, host1);
    let mut v = json!({
        "mode": if args.floor { "meshpath-floor" } else { "meshpath" },
        "run": run,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "nodes": args.nodes,
        "frame_bytes": frame(warm, args.nodes).len(),
        "sent": sent,
    });
    for (key, r) in &results {
        v[*key] = path_json(r, sent);
    }
    v["writer"] = json!({
        "late_ms": lat_json(&late),
        "write_stalls": w.write_stalls,
        "error": w.error,
        "spin_us": args.spin_us,
    });
    if !args.floor {
        v["switch"] = json!({
            "cpu_s": switch_cpu.map(r3),
            "cpu_pct": switch_cpu.map(|c| r3(100.0 * c / args.duration)),
            "rss_kb_window_start": rss0,
            "rss_kb_window_end": rss1,
            "counters": counters,
            "exited_early": exited,
        });
    }
    v["generator"] = json!({"cpu_s": gen_cpu.map(r3)});
    v["host"] = host.clone();
    v["target_p99_ms"] = json!(args.target_p99_ms);
    v["pass"] = json!(pass);

    for (key, r) in &results {
        eprintln!(
            "   {key:<13}: sent {sent} received {} lost {} dup {} reordered {} | latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}{}",
            r.received,
            sent.saturating_sub(r.received),
            r.dup,
            r.reordered,
            pct(&r.hist, 0.5),
            pct(&r.hist, 0.9),
            pct(&r.hist, 0.99),
            pct(&r.hist, 0.999),
            if r.hist.is_empty() { 0.0 } else { r.hist.max() as f64 / 1e6 },
            r.error.as_ref().map(|e| format!(" | {e}")).unwrap_or_default(),
        );
    }
    eprintln!(
        "   writer late ms p50 {:.3} p99 {:.3} max {:.3} | switch cpu {} s over {} s | generator cpu {} s | host busy {}%, cpu pressure {}% | {}",
        pct(&late, 0.5),
        pct(&late, 0.99),
        if late.is_empty() { 0.0 } else { late.max() as f64 / 1e6 },
        switch_cpu.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
        args.duration,
        gen_cpu.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
        host["cpu_busy_pct"],
        host["cpu_pressure_some_pct"],
        if pass {
            format!("PASS (p99 <= {} ms, no loss)", args.target_p99_ms)
        } else {
            format!("FAIL (target p99 <= {} ms, no loss)", args.target_p99_ms)
        },
    );
    Ok(v)
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn medians(runs: &[Value], args: &Args) -> Value {
    let at = |path: &[&str]| -> Option<f64> {
        median(
            runs.iter()
                .filter_map(|r| {
                    path.iter()
                        .try_fold(r, |v, k| v.get(*k))
                        .and_then(Value::as_f64)
                })
                .collect(),
        )
        .map(r3)
    };
    let path = |p: &str| {
        let mut lat = serde_json::Map::new();
        for q in ["p50", "p90", "p99", "p999", "max"] {
            lat.insert(q.into(), json!(at(&[p, "latency_ms", q])));
        }
        let count = |k: &str| at(&[p, k]).map(|x| x.round() as u64);
        json!({
            "sent": count("sent"),
            "received": count("received"),
            "lost": count("lost"),
            "latency_ms": lat,
        })
    };
    let mut v = json!({
        "mode": if args.floor { "meshpath-floor-median" } else { "meshpath-median" },
        "runs": runs.len(),
        "rate": args.rate,
        "duration_s": args.duration,
        "nodes": args.nodes,
        "writer_late_ms": {"p50": at(&["writer", "late_ms", "p50"]), "p99": at(&["writer", "late_ms", "p99"])},
        "switch_cpu_s": at(&["switch", "cpu_s"]),
        "host_cpu_busy_pct": at(&["host", "cpu_busy_pct"]),
        "host_cpu_pressure_some_pct": at(&["host", "cpu_pressure_some_pct"]),
        "passed_runs": runs.iter().filter(|r| r["pass"] == json!(true)).count(),
    });
    for key in PATHS {
        if runs.iter().any(|r| r.get(key).is_some()) {
            v[key] = path(key);
        }
    }
    v
}

/// The paths a run may report, in order.
const PATHS: [&str; 3] = ["monitor", "client_socket", "pty"];

fn check(args: &Args) -> Result<(), String> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let not_negative = |x: f64| x.is_finite() && x >= 0.0;
    if !positive(args.rate) || !positive(args.duration) {
        return Err("--rate and --duration must be positive".into());
    }
    if !not_negative(args.warmup) || !not_negative(args.drain) {
        return Err("--warmup and --drain must not be negative".into());
    }
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if !args.floor && !Path::new(&args.switch).exists() {
        return Err(format!(
            "{} not found (cargo build --release --bin switchyard, or --switch PATH)",
            args.switch.display()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = check(&args) {
        eprintln!("meshpath: {e}");
        return ExitCode::from(2);
    }
    let mut results = Vec::new();
    for run in 1..=args.runs.max(1) {
        match run_once(&args, run) {
            Ok(v) => {
                println!("{v}");
                results.push(v);
            }
            Err(e) => {
                eprintln!("meshpath: run {run}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if results.len() > 1 {
        let m = medians(&results, &args);
        eprintln!("== medians of {} runs:", results.len());
        for key in PATHS {
            let l = &m[key]["latency_ms"];
            if l.is_null() {
                continue;
            }
            let q = |q: &str| l[q].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "   {key:<13}: latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} | lost {}",
                q("p50"),
                q("p90"),
                q("p99"),
                q("p999"),
                q("max"),
                m[key]["lost"],
            );
        }
        if !args.floor {
            eprintln!("   switch cpu {} s", m["switch_cpu_s"]);
        }
        eprintln!(
            "   host busy {}%, cpu pressure {}%",
            m["host_cpu_busy_pct"], m["host_cpu_pressure_some_pct"]
        );
        println!("{m}");
    }
    ExitCode::SUCCESS
}
