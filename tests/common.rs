//! Helpers shared by the integration tests: a switch on loopback with short
//! timers, WebSocket and HTTP clients, and waiting with deadlines.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchyard::{Config, Running};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Masked client frames built by hand, for tests that speak raw bytes
/// (the same builder the transport's own tests use).
pub use switchyard_actors::testing::{client_frame, client_frame_header, mask_payload};

pub const WAIT: Duration = Duration::from_secs(5);

/// A test's deadline, armed by `#[test_deadline::test]` as the test's first
/// statement: a watchdog thread waits for the guard to drop (the test
/// returned or panicked) and, if the time runs out first, says which test
/// hung and ends the test binary. The tests run two at a time in one
/// process, so ending the process is the only way to stop a hung one; the
/// run fails at once and names the culprit rather than waiting for CI's
/// limit.
pub struct Deadline {
    _done: std::sync::mpsc::Sender<()>,
}

impl Deadline {
    pub fn arm(test: &'static str, secs: u64) -> Deadline {
        let (done, ended) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(format!("deadline {test}"))
            .spawn(move || {
                // Disconnected means the guard dropped: the test is over.
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    ended.recv_timeout(Duration::from_secs(secs))
                {
                    // Written to the stream itself: libtest captures what
                    // eprintln! says in a test's threads, and the capture
                    // dies with the process.
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "test {test} ran past its deadline of {secs} s; stopping the test binary"
                    );
                    std::process::exit(124);
                }
            })
            .expect("deadline thread");
        Deadline { _done: done }
    }
}

/// A switch started through `switchyard::start`, with its own data dir.
pub struct Switch {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl Switch {
    pub async fn start() -> Switch {
        Switch::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Switch {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path().join("data"));
        tweak(&mut config);
        let running = switchyard::start(config).await.expect("switch starts");
        Switch { running, dir }
    }

    pub fn url(&self, path: &str) -> String {
        self.running.http_url(path)
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect(&self.running.ws_url()).await
    }

    /// A socket on `/` whose kernel receive buffer is tiny, so the switch
    /// sees it stall as soon as the test stops reading.
    pub async fn small_buffer_ws(&self) -> Ws {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let tcp = sock.connect(self.running.http_addr).await.unwrap();
        let (stream, _) = tokio_tungstenite::client_async(
            self.running.ws_url(),
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        )
        .await
        .unwrap();
        Ws { stream }
    }

    /// A socket that said `alive` as the backend.
    pub async fn backend(&self) -> Ws {
        let mut b = self.ws().await;
        b.send(alive("mephisto")).await;
        let m = self.clone_metrics_url();
        wait_for("backend connected", || {
            let m = m.clone();
            async move { metric_at(&m, "switchyard_backend_connected", &[]).await == 1.0 }
        })
        .await;
        b
    }

    /// A socket that said `alive` as agent `id` and got its `update_status`.
    pub async fn agent(&self, id: &str) -> Ws {
        let mut a = self.ws().await;
        a.send(alive(id)).await;
        let p = a.recv_type("update_status").await;
        assert_eq!(p["subject_id"], json!(id));
        a
    }

    fn clone_metrics_url(&self) -> String {
        self.url("/metrics")
    }

    /// One metric's value from `GET /metrics`; fails the test when no
    /// series of that name and labels is exposed (a renamed or missing
    /// metric must not read as 0).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_at(&self.url("/metrics"), name, labels).await
    }

    /// One series' value, or None when it is not exposed (a labelled
    /// counter appears on its first increment). The name must be one the
    /// switch declares (`assert_declared`), so a renamed metric still
    /// fails. For tests that check that something was never counted;
    /// prefer `metric`.
    pub async fn metric_or_absent(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        assert_declared(name);
        let (_, _, text) = get(&self.url("/metrics")).await;
        metric_or_absent(&text, name, labels)
    }

    /// A declared counter's value so far, 0 while its labelled series has
    /// not appeared: for loops that poll a counter up to a value (the
    /// loop's deadline fails a counter that never moves).
    pub async fn counted(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric_or_absent(name, labels).await.unwrap_or(0.0)
    }

    /// A declared counter never counted: its series is absent or 0.
    pub async fn assert_not_counted(&self, name: &str, labels: &[(&str, &str)]) {
        let v = self.metric_or_absent(name, labels).await;
        assert!(
            matches!(v, None | Some(0.0)),
            "{name}{labels:?} should not be counted: {v:?}"
        );
    }

    /// Waits until a metric's series exists and reaches `value` (a series
    /// still absent at the deadline fails the test as absent).
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.wait_metric_by(name, labels, &format!("== {value}"), |got| got == value)
            .await;
    }

    /// Waits until a metric's series exists and is at least `value`: for
    /// counters that may move on past the value while the test looks.
    pub async fn wait_metric_at_least(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.wait_metric_by(name, labels, &format!(">= {value}"), |got| got >= value)
            .await;
    }

    async fn wait_metric_by(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        want: &str,
        ok: impl Fn(f64) -> bool,
    ) {
        let url = self.url("/metrics");
        let what = format!("{name}{labels:?} {want}");
        let r = wait_result(&what, || {
            let url = url.clone();
            let ok = &ok;
            async move {
                let (_, _, text) = get(&url).await;
                let got = metric_or_absent(&text, name, labels);
                (got.is_some_and(ok), got)
            }
        })
        .await;
        match r.1 {
            None => panic!("timed out waiting for {what}: the metric is not exposed"),
            Some(last) => assert!(r.0, "timed out waiting for {what}; last value {last}"),
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A loopback address nothing listens on right now (for a server the
/// test starts as another process, or a peer that must not be there).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

pub fn free_port() -> u16 {
    free_addr().port()
}

/// A child process killed (and reaped) when dropped: a test that fails
/// part way leaves none running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn http() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

pub async fn get(url: &str) -> (u16, String, String) {
    let mut res = http().get(url).send().await.expect("GET");
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = res.body().limit(64 * 1024 * 1024).await.expect("body");
    (
        res.status().as_u16(),
        ctype,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let (status, ctype, body) = get(url).await;
    assert!(ctype.starts_with("application/json"), "{url}: {ctype}");
    (status, serde_json::from_str(&body).expect("JSON body"))
}

pub async fn post_json(url: &str, body: Value) -> (u16, Value) {
    let mut res = http().post(url).send_json(&body).await.expect("POST");
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = res.body().await.expect("body");
    assert!(
        ctype.starts_with("application/json"),
        "{url}: content-type {ctype}"
    );
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).expect("JSON answer"),
    )
}

pub async fn post_raw(url: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let mut res = http()
        .post(url)
        .insert_header(("content-type", ctype))
        .send_body(body)
        .await
        .expect("POST");
    let bytes = res.body().await.expect("body");
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A multipart/form-data body: text fields and files (field, filename, bytes).
pub fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----switchyard-test-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (field, name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub async fn metric_at(url: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, _, text) = get(url).await;
    parse_metric(&text, name, labels)
}

/// Whether the series at `url` is exposed and at least `value`: for
/// polling a counter that appears on its first increment.
pub async fn metric_at_least(url: &str, name: &str, labels: &[(&str, &str)], value: f64) -> bool {
    let (_, _, text) = get(url).await;
    metric_or_absent(&text, name, labels).is_some_and(|v| v >= value)
}

/// The files that declare the switch's metric names (DESIGN house rule 10:
/// every name a constant in one place; the cluster's and the MQTT
/// bridge's beside it).
const METRIC_NAME_FILES: [&str; 3] = [
    include_str!("../actors/src/metrics.rs"),
    include_str!("../actors/src/cluster/metrics.rs"),
    include_str!("../actors/src/mqtt/metrics.rs"),
];

/// Fails the test unless `name` (or the histogram or counter it is a
/// series of) is declared as a metric name of the switch: reading a
/// series as absent is honest only for a name that exists.
pub fn assert_declared(name: &str) {
    let base = ["_count", "_sum", "_bucket"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let quoted = |n: &str| format!("\"{n}\"");
    assert!(
        METRIC_NAME_FILES
            .iter()
            .any(|f| f.contains(&quoted(name)) || f.contains(&quoted(base))),
        "{name} is not a metric name the switch declares"
    );
}

/// Finds `name{labels...} value` in Prometheus text (label order-free);
/// panics, naming the metric, when no such series is exposed.
pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_or_absent(text, name, labels).unwrap_or_else(|| {
        let family: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name))
            .take(10)
            .collect();
        panic!("metric {name}{labels:?} is not exposed; series of that name: {family:?}")
    })
}

/// Like `parse_metric`, but None when the series is not exposed.
pub fn metric_or_absent(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let all = labels
            .iter()
            .all(|(k, v)| l.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all {
            return Some(value.parse().unwrap_or(f64::NAN));
        }
    }
    None
}

/// Polls `cond` until it holds or the deadline (`WAIT`) passes.
pub async fn wait_for<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_within(what, WAIT, cond).await
}

/// Polls `cond` until it holds or `within` has passed.
pub async fn wait_for_within<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_result<F, Fut, T>(_what: &str, mut cond: F) -> (bool, T)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (bool, T)>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (ok, v) = cond().await;
        if ok || tokio::time::Instant::now() >= deadline {
            return (ok, v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket client speaking JSON text frames.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        Ws::connect_request(url.into_client_request().expect("ws url")).await
    }

    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Ws {
        let (stream, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("WebSocket connects");
        Ws { stream }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    pub async fn send_text(&mut self, t: String) {
        self.stream
            .send(Message::Text(t))
            .await
            .expect("WebSocket send");
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.stream
            .send(Message::Binary(b))
            .await
            .expect("WebSocket send");
    }

    /// The next text frame as JSON (pings are answered by the client).
    pub async fn recv(&mut self) -> Value {
        match self.try_recv(WAIT).await {
            Ok(v) => v,
            Err(e) => panic!("expected a packet: {e}"),
        }
    }

    pub async fn try_recv(&mut self, limit: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .map_err(|_| "timed out".to_string())?;
            match next {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t).map_err(|e| format!("bad JSON {t}: {e}"))
                }
                Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("error: {e}")),
                None => return Err("stream ended".into()),
            }
        }
    }

    /// The next packet of `packet_type`, skipping others.
    pub async fn recv_type(&mut self, packet_type: &str) -> Value {
        loop {
            let p = self.recv().await;
            if p["packet_type"] == json!(packet_type) {
                return p;
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn closed_with(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before close: {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Drain until the server's close arrives so it has seen ours.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(m)) = self.stream.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}

pub fn live_update(subject: &str, packet_type: &str, n: i64) -> Value {
    json!({
        "packet_type": packet_type,
        "subject_id": subject,
        "data": {"n": n},
        "client_timestamp": 1.0,
    })
}

/// An `alive` packet for agent `id` (`"mephisto"`: the backend's).
pub fn alive(id: &str) -> Value {
    json!({"packet_type": "alive", "subject_id": id, "data": {}})
}

/// An `update_status` packet from the backend giving agent `id` `status`.
pub fn update_status(id: &str, status: &str) -> Value {
    json!({"packet_type": "update_status", "subject_id": id, "data": {"status": status}})
}

/// A `request_statuses` packet from the backend; the answer carries
/// `server_ts` as its `client_timestamp` (PROTOCOL 1.2).
pub fn request_statuses(server_ts: f64) -> Value {
    json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {},
           "server_timestamp": server_ts, "client_timestamp": 1.0})
}

/// A heartbeat packet from agent `id`.
pub fn heartbeat(id: &str) -> Value {
    json!({"packet_type": "heartbeat", "subject_id": id, "data": {}})
}

/// One heartbeat round trip of an honest agent, asserted within `bound`
/// (other packets on the way are passed over); the reply.
pub async fn heartbeat_within(agent: &mut Ws, id: &str, bound: Duration) -> Value {
    let t = std::time::Instant::now();
    agent.send(heartbeat(id)).await;
    loop {
        let p = agent
            .try_recv(bound)
            .await
            .unwrap_or_else(|e| panic!("heartbeat of {id} answered: {e}"));
        if p["packet_type"] == json!("heartbeat") {
            assert!(
                t.elapsed() < bound,
                "heartbeat of {id} took {:?}",
                t.elapsed()
            );
            return p;
        }
    }
}

/// Runs an HTTP call and says how long its answer took.
pub async fn timed<T, U>(call: impl Future<Output = (T, U)>) -> (T, U, Duration) {
    let t = std::time::Instant::now();
    let (a, b) = call.await;
    (a, b, t.elapsed())
}

/// A timer checked from both sides: what it timed took at least `timer`
/// (not before), and less than `timer` plus `margin` (by it, with room for
/// a loaded machine).
pub fn assert_timer(what: &str, took: Duration, timer: Duration, margin: Duration) {
    assert!(took >= timer, "{what} after {took:?}, before {timer:?}");
    assert!(
        took < timer + margin,
        "{what} after {took:?}, long past {timer:?}"
    );
}

/// PROTOCOL 1.4's 408, checked from both sides: not before the request
/// timeout (an instant 408 is a bug too), and by it.
pub fn assert_within_request_timeout(s: &Switch, took: Duration) {
    let timeout = Duration::from_secs_f64(s.running.config.backend.request_timeout_secs);
    assert_timer("the 408", took, timeout, Duration::from_secs(2));
}
