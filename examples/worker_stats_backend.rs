//! A worker-statistics backend for switchyard: the server side of the
//! live-update protocol of seed 004, speaking the agent router protocol
//! (PROTOCOL.md section 1) as the backend, the way Mephisto's main process does.
//!
//! ```sh
//! cargo run --release -- --static-dir examples/worker_stats/static --uart none
//! cargo run --release --example worker_stats_backend -- --url ws://127.0.0.1:3000/
//! # then open http://127.0.0.1:3000/?agent_id=demo-1
//! ```
//!
//! With the switch started with `--backend-token T`, pass `--token T` (or set
//! `SWITCHYARD_BACKEND_TOKEN`): it is sent as `Authorization: Bearer T` on the
//! WebSocket upgrade.
//!
//! # What it does
//!
//! - Opens the WebSocket, says `alive` as `mephisto`, and then (at once, and
//!   every 2 s after, `--status-interval`) sends `request_statuses` like
//!   Mephisto's supervisor; the `return_statuses` answers are not used, except
//!   that the first one shows the switch accepted this socket as the backend.
//! - Handles every agent's `mephisto_bound_live_update` (the agent is the
//!   packet's `subject_id`, the seed-004 message is its `data`):
//!   - `{"message": "get_worker_stats"}`: answers that agent with a
//!     `client_bound_live_update` whose `data` is
//!     `{"message": "set_worker_stats", "stats": {"num_cads": n, "num_rankings": n, "num_first_place": n}}`
//!     (numbers, not strings);
//!   - `set_cad` (`cad`), `set_permutation` (`permutation`) and
//!     `set_feedback` (`feedback`) are pseudo-submits: stored for that agent,
//!     and answered with the same fresh `set_worker_stats`, so the page updates
//!     live. A pseudo-submit whose field is missing or empty is not stored,
//!     but the stats are pushed anyway (the page learns it was not counted).
//! - Ignores everything else (other live-update messages, `return_statuses`,
//!   `register_agent`, `submit_unit`, ...), logging it at debug level
//!   (`log_error` packets and the switch's `{"error": ...}` frames at warn).
//! - Reconnects when the switch goes away, waiting 0.25 s, 0.5 s, 1 s, ... up
//!   to `--max-backoff` (10 s) between attempts, and says `alive` again. The
//!   backoff starts over once the switch has accepted us as the backend (first
//!   `return_statuses`), so a refused token (close 1008) is retried ever more
//!   slowly, not in a tight loop. Agents' state lives in this process, so it survives
//!   reconnections but not a restart.
//! - SIGINT/SIGTERM close the socket (1001) and exit 0.
//!
//! # The statistics
//!
//! Per agent: `num_cads` is the number of CADs submitted (non-empty `cad`
//! strings, trimmed), `num_rankings` the number of permutations submitted,
//! `num_first_place` the number of those permutations that put the agent's
//! own CAD first.
//!
//! A permutation is a list of CAD ids (or indices), best first. It may be
//! sent as a JSON array of strings and/or integers (`["own", "c2", "c1"]`,
//! `[0, 2, 1]`), as a comma-separated string (`"own, c2, c1"`, `"0,2,1"`), or
//! as a string holding a JSON array (`"[0, 2, 1]"`). Entries are trimmed and
//! empty entries dropped; a permutation with no entries left, or an array
//! holding anything but strings and numbers, is not counted.
//!
//! **First-place rule**: a permutation counts as first place when its first
//! entry is the agent's own CAD, written either as `own` (any letter case) or
//! as the index `0` (the JSON integer `0`, or a string that parses as the
//! integer 0, such as `"0"`). Any other first entry (`"c1"`, `1`, `"0.5"`, ...)
//! does not.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use log::{debug, info, warn};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The backend's subject id in the router protocol.
const BACKEND_ID: &str = "mephisto";

#[derive(Parser, Debug)]
#[command(
    name = "worker_stats_backend",
    about = "Worker-statistics backend (seed 004) for switchyard's agent router"
)]
struct Args {
    /// The switch's WebSocket URL.
    #[arg(long, env = "WORKER_STATS_URL", default_value = "ws://127.0.0.1:3000/")]
    url: String,

    /// Backend token, sent as `Authorization: Bearer TOKEN` (the switch's `--backend-token`).
    #[arg(long, env = "SWITCHYARD_BACKEND_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Seconds between `request_statuses` packets.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    status_interval: f64,

    /// Longest wait between reconnection attempts, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    max_backoff: f64,
}

// ---------------------------------------------------------------------------
// Per-agent state and the seed-004 protocol (pure, unit-tested below)

/// The statistics shown to a worker (`set_worker_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    pub num_cads: u64,
    pub num_rankings: u64,
    pub num_first_place: u64,
}

/// What one agent has pseudo-submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRecord {
    pub cads: Vec<String>,
    /// Each permutation as its entries, best first.
    pub rankings: Vec<Vec<String>>,
    pub feedback: Vec<String>,
}

impl AgentRecord {
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            num_cads: self.cads.len() as u64,
            num_rankings: self.rankings.len() as u64,
            num_first_place: self
                .rankings
                .iter()
                .filter(|r| r.first().is_some_and(|e| is_own_entry(e)))
                .count() as u64,
        }
    }
}

/// Whether a permutation entry names the agent's own CAD: `own` (any case)
/// or the index 0.
pub fn is_own_entry(entry: &str) -> bool {
    let e = entry.trim();
    e.eq_ignore_ascii_case("own") || e.parse::<i64>() == Ok(0)
}

/// A permutation's entries (trimmed, empty ones dropped), or None when it
/// cannot be read or has no entries. See the module docs for the forms.
pub fn parse_permutation(value: &Value) -> Option<Vec<String>> {
    let entries: Vec<String> = match value {
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('[') {
                return match serde_json::from_str::<Value>(t) {
                    Ok(v @ Value::Array(_)) => parse_permutation(&v),
                    _ => None,
                };
            }
            t.split(',').map(|e| e.trim().to_string()).collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let entries: Vec<String> = entries.into_iter().filter(|e| !e.is_empty()).collect();
    (!entries.is_empty()).then_some(entries)
}

/// A non-empty string field of a message, trimmed.
fn text_field(data: &Value, key: &str) -> Option<String> {
    let s = data.get(key)?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Every agent's record, keyed by agent id.
#[derive(Debug, Default)]
pub struct Agents {
    by_id: HashMap<String, AgentRecord>,
}

impl Agents {
    pub fn stats(&self, agent: &str) -> WorkerStats {
        self.by_id
            .get(agent)
            .map(AgentRecord::stats)
            .unwrap_or_default()
    }

    pub fn record(&self, agent: &str) -> Option<&AgentRecord> {
        self.by_id.get(agent)
    }

    /// Handles one seed-004 message from `agent`; returns the message to send
    /// back to that agent (a `set_worker_stats`), if any.
    pub fn handle_live_update(&mut self, agent: &str, data: &Value) -> Option<Value> {
        let message = data.get("message").and_then(Value::as_str);
        match message {
            Some("get_worker_stats") => {}
            Some("set_cad") => match text_field(data, "cad") {
                Some(cad) => {
                    info!("agent {agent}: CAD submitted ({} chars)", cad.chars().count());
                    self.by_id.entry(agent.to_string()).or_default().cads.push(cad);
                }
                None => warn!("agent {agent}: set_cad without a non-empty `cad`; not counted"),
            },
            Some("set_permutation") => match data.get("permutation").and_then(parse_permutation) {
                Some(ranking) => {
                    info!("agent {agent}: ranking submitted: {}", ranking.join(", "));
                    self.by_id.entry(agent.to_string()).or_default().rankings.push(ranking);
                }
                None => warn!("agent {agent}: set_permutation with an unreadable or empty `permutation`; not counted"),
            },
            Some("set_feedback") => match text_field(data, "feedback") {
                Some(feedback) => {
                    info!("agent {agent}: feedback submitted ({} chars)", feedback.chars().count());
                    self.by_id.entry(agent.to_string()).or_default().feedback.push(feedback);
                }
                None => warn!("agent {agent}: set_feedback without a non-empty `feedback`; not stored"),
            },
            other => {
                debug!("agent {agent}: ignoring live update with message {other:?}");
                return None;
            }
        }
        Some(json!({ "message": "set_worker_stats", "stats": self.stats(agent) }))
    }

    /// Handles one text frame from the switch.
    pub fn handle_frame(&mut self, text: &str) -> FrameOutcome {
        let mut outcome = FrameOutcome::default();
        let packet: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                warn!("ignoring a frame that is not a JSON object: {}", clip(text));
                return outcome;
            }
        };
        if let Some(error) = packet.get("error") {
            warn!(
                "the switch reported an error: {error} (kind {})",
                packet.get("kind").unwrap_or(&Value::Null)
            );
            return outcome;
        }
        let packet_type = packet
            .get("packet_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let subject = packet
            .get("subject_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        match packet_type {
            "mephisto_bound_live_update" if !subject.is_empty() && subject != BACKEND_ID => {
                let data = packet.get("data").unwrap_or(&Value::Null);
                if let Some(reply) = self.handle_live_update(subject, data) {
                    outcome
                        .replies
                        .push(client_bound_live_update(subject, reply));
                }
            }
            "return_statuses" => outcome.return_statuses = true,
            "log_error" => warn!(
                "log_error for {subject}: {}",
                packet.get("data").unwrap_or(&Value::Null)
            ),
            other => debug!("ignoring {other:?} packet for {subject:?}"),
        }
        outcome
    }
}

/// What a frame from the switch asks of the connection.
#[derive(Debug, Default)]
pub struct FrameOutcome {
    /// Packets to send back.
    pub replies: Vec<Value>,
    /// The frame was a `return_statuses`: the switch treats us as the backend.
    pub return_statuses: bool,
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Packets

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn packet(packet_type: &str, subject_id: &str, data: Value) -> Value {
    json!({
        "packet_type": packet_type,
        "subject_id": subject_id,
        "data": data,
        "server_timestamp": now_secs(),
    })
}

fn alive() -> Value {
    packet("alive", BACKEND_ID, json!({}))
}

fn request_statuses() -> Value {
    packet("request_statuses", BACKEND_ID, json!({}))
}

fn client_bound_live_update(agent: &str, data: Value) -> Value {
    packet("client_bound_live_update", agent, data)
}

// ---------------------------------------------------------------------------
// Reconnection

/// Exponential backoff: `base`, 2×`base`, ... capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        let base = base.min(max);
        Self {
            base,
            max,
            next: base,
        }
    }

    /// The wait before the next attempt; doubles the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

/// The WebSocket upgrade request, with the bearer token when one is given.
fn build_request(url: &str, token: Option<&str>) -> Result<Request> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("bad --url {url:?}"))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token cannot be sent in an HTTP header")?;
        request.headers_mut().insert("Authorization", value);
    }
    Ok(request)
}

type Shutdown = Pin<Box<dyn Future<Output = ()>>>;

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

enum SessionEnd {
    Shutdown,
    Closed,
}

fn text(packet: &Value) -> Message {
    Message::Text(packet.to_string())
}

/// One connection to the switch, until it closes or we are told to stop.
async fn run_session(
    args: &Args,
    request: Request,
    agents: &mut Agents,
    backoff: &mut Backoff,
    shutdown: &mut Shutdown,
) -> Result<SessionEnd> {
    let (mut ws, _) = tokio::select! {
        r = tokio_tungstenite::connect_async(request) => r.with_context(|| format!("cannot connect to {}", args.url))?,
        _ = &mut *shutdown => return Ok(SessionEnd::Shutdown),
    };
    ws.send(text(&alive())).await.context("sending alive")?;
    info!("connected to {}; said alive as {BACKEND_ID}", args.url);

    // The first request_statuses goes out at once: its answer shows that the
    // switch took us as the backend (a refused backend is closed with 1008
    // instead). Only then is the backoff reset, so a refused token is retried
    // ever more slowly rather than in a tight loop.
    let mut accepted = false;
    let mut closing = false;
    let period = Duration::from_secs_f64(args.status_interval.max(0.05));
    let mut statuses = tokio::time::interval(period);
    statuses.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                None => return Ok(SessionEnd::Closed),
                Some(Err(e)) => return Err(e).context("connection lost"),
                Some(Ok(Message::Text(t))) => {
                    let outcome = agents.handle_frame(&t);
                    if outcome.return_statuses && !accepted {
                        accepted = true;
                        backoff.reset();
                        info!("accepted as the backend");
                    }
                    for out in outcome.replies {
                        ws.send(text(&out)).await.context("sending a live update")?;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite answers the close; the stream ends next.
                    closing = true;
                    match frame {
                        Some(f) if f.code == CloseCode::Policy => warn!(
                            "the switch refused this backend ({}): {} (is --token right?)",
                            u16::from(f.code), f.reason
                        ),
                        Some(f) => info!("the switch closed the connection ({}): {}", u16::from(f.code), f.reason),
                        None => info!("the switch closed the connection"),
                    }
                }
                Some(Ok(Message::Binary(b))) => debug!("ignoring a binary frame of {} bytes", b.len()),
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            },
            _ = statuses.tick(), if !closing => {
                ws.send(text(&request_statuses())).await.context("sending request_statuses")?;
            }
            _ = &mut *shutdown => {
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "backend shutting down".into() })).await;
                return Ok(SessionEnd::Shutdown);
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    anyhow::ensure!(
        args.status_interval > 0.0,
        "--status-interval must be positive"
    );
    anyhow::ensure!(args.max_backoff > 0.0, "--max-backoff must be positive");
    // Fail at once on a bad URL or token rather than retrying forever.
    build_request(&args.url, args.token.as_deref())?;

    let mut agents = Agents::default();
    let mut backoff = Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs_f64(args.max_backoff),
    );
    let mut shutdown: Shutdown = Box::pin(shutdown_signal());

    loop {
        let request = build_request(&args.url, args.token.as_deref())?;
        match run_session(&args, request, &mut agents, &mut backoff, &mut shutdown).await {
            Ok(SessionEnd::Shutdown) => break,
            Ok(SessionEnd::Closed) => warn!("disconnected from {}", args.url),
            Err(e) => warn!("{e:#}"),
        }
        let delay = backoff.next_delay();
        info!("reconnecting in {:.2} s", delay.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => break,
        }
    }
    info!("stopped");
    Ok(())
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(c: u64, r: u64, f: u64) -> Value {
        json!({"message": "set_worker_stats", "stats": {"num_cads": c, "num_rankings": r, "num_first_place": f}})
    }

    #[test]
    fn get_worker_stats_of_an_unknown_agent_is_all_zero() {
        let mut a = Agents::default();
        assert_eq!(
            a.handle_live_update("x", &json!({"message": "get_worker_stats"})),
            Some(stats(0, 0, 0))
        );
        assert!(a.record("x").is_none(), "asking does not create state");
    }

    #[test]
    fn pseudo_submits_are_counted_and_answered_with_fresh_stats() {
        let mut a = Agents::default();
        assert_eq!(
            a.handle_live_update("x", &json!({"message": "set_cad", "cad": "a cat sat"})),
            Some(stats(1, 0, 0))
        );
        assert_eq!(
            a.handle_live_update("x", &json!({"message": "set_cad", "cad": " another "})),
            Some(stats(2, 0, 0))
        );
        assert_eq!(
            a.handle_live_update(
                "x",
                &json!({"message": "set_permutation", "permutation": "own, c2, c1"})
            ),
            Some(stats(2, 1, 1))
        );
        assert_eq!(
            a.handle_live_update(
                "x",
                &json!({"message": "set_permutation", "permutation": [2, 0, 1]})
            ),
            Some(stats(2, 2, 1))
        );
        assert_eq!(
            a.handle_live_update(
                "x",
                &json!({"message": "set_feedback", "feedback": "fine task"})
            ),
            Some(stats(2, 2, 1))
        );
        let r = a.record("x").unwrap();
        assert_eq!(r.cads, vec!["a cat sat", "another"]);
        assert_eq!(
            r.rankings,
            vec![vec!["own", "c2", "c1"], vec!["2", "0", "1"]]
        );
        assert_eq!(r.feedback, vec!["fine task"]);
        assert_eq!(
            a.handle_live_update("x", &json!({"message": "get_worker_stats"})),
            Some(stats(2, 2, 1))
        );
    }

    #[test]
    fn agents_are_kept_apart() {
        let mut a = Agents::default();
        a.handle_live_update("x", &json!({"message": "set_cad", "cad": "c"}));
        a.handle_live_update(
            "y",
            &json!({"message": "set_permutation", "permutation": "0"}),
        );
        assert_eq!(
            a.stats("x"),
            WorkerStats {
                num_cads: 1,
                num_rankings: 0,
                num_first_place: 0
            }
        );
        assert_eq!(
            a.stats("y"),
            WorkerStats {
                num_cads: 0,
                num_rankings: 1,
                num_first_place: 1
            }
        );
    }

    #[test]
    fn empty_or_missing_fields_are_not_counted_but_stats_are_pushed() {
        let mut a = Agents::default();
        for msg in [
            json!({"message": "set_cad"}),
            json!({"message": "set_cad", "cad": "   "}),
            json!({"message": "set_cad", "cad": 5}),
            json!({"message": "set_permutation", "permutation": " , ,"}),
            json!({"message": "set_permutation", "permutation": [{"id": 1}]}),
            json!({"message": "set_permutation"}),
            json!({"message": "set_feedback", "feedback": ""}),
        ] {
            assert_eq!(
                a.handle_live_update("x", &msg),
                Some(stats(0, 0, 0)),
                "{msg}"
            );
        }
        assert!(a.record("x").is_none());
    }

    #[test]
    fn other_messages_are_ignored() {
        let mut a = Agents::default();
        assert_eq!(
            a.handle_live_update("x", &json!({"message": "something_else"})),
            None
        );
        assert_eq!(a.handle_live_update("x", &json!({"text": "hi"})), None);
        assert_eq!(a.handle_live_update("x", &Value::Null), None);
    }

    #[test]
    fn permutation_forms() {
        let p = |v: Value| parse_permutation(&v);
        let v = |xs: &[&str]| Some(xs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(json!("own, c2,c1")), v(&["own", "c2", "c1"]));
        assert_eq!(p(json!("2,0,,1, ")), v(&["2", "0", "1"]));
        assert_eq!(p(json!([0, "c1", " c2 "])), v(&["0", "c1", "c2"]));
        assert_eq!(p(json!("[1, 0]")), v(&["1", "0"]));
        assert_eq!(p(json!(" [\"own\", \"b\"] ")), v(&["own", "b"]));
        assert_eq!(p(json!("single")), v(&["single"]));
        assert_eq!(p(json!("")), None);
        assert_eq!(p(json!([])), None);
        assert_eq!(p(json!("[not json")), None);
        assert_eq!(p(json!([null, 1])), None);
        assert_eq!(p(json!(7)), None);
        assert_eq!(p(json!({"a": 1})), None);
    }

    #[test]
    fn first_place_rule() {
        for own in ["own", "OWN", " Own ", "0", "00", "+0", "-0"] {
            assert!(is_own_entry(own), "{own:?} is the agent's own CAD");
        }
        for other in ["1", "c0", "0.5", "0.0", "owner", "", "zero"] {
            assert!(!is_own_entry(other), "{other:?} is not the agent's own CAD");
        }
        let first = |v: Value| {
            let mut a = Agents::default();
            a.handle_live_update(
                "x",
                &json!({"message": "set_permutation", "permutation": v}),
            );
            a.stats("x").num_first_place
        };
        assert_eq!(first(json!([0, 1, 2])), 1);
        assert_eq!(first(json!("own,c1")), 1);
        assert_eq!(first(json!([1, 0, 2])), 0);
        assert_eq!(first(json!("c1, own")), 0);
        assert_eq!(first(json!([0.0, 1])), 0, "only the integer 0 is index 0");
    }

    #[test]
    fn frames_from_the_switch() {
        let mut a = Agents::default();
        let frame = json!({
            "packet_type": "mephisto_bound_live_update", "subject_id": "agent-7",
            "data": {"message": "set_cad", "cad": "x"}, "router_incoming_timestamp": 1.0,
        });
        let outcome = a.handle_frame(&frame.to_string());
        assert!(!outcome.return_statuses);
        let out = outcome.replies;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["packet_type"], "client_bound_live_update");
        assert_eq!(out[0]["subject_id"], "agent-7");
        assert_eq!(out[0]["data"], stats(1, 0, 0));
        assert!(out[0]["server_timestamp"].as_f64().unwrap() > 0.0);

        for ignored in [
            json!({"packet_type": "return_statuses", "subject_id": "mephisto", "data": {"agent-7": "none"}}),
            json!({"packet_type": "register_agent", "subject_id": "req", "data": {}}),
            json!({"packet_type": "log_error", "subject_id": "agent-7", "data": {"error_type": "x"}}),
            json!({"packet_type": "mephisto_bound_live_update", "subject_id": "mephisto", "data": {"message": "get_worker_stats"}}),
            json!({"packet_type": "mephisto_bound_live_update", "data": {"message": "get_worker_stats"}}),
            json!({"error": "invalid JSON", "kind": "bad_json"}),
        ] {
            assert!(
                a.handle_frame(&ignored.to_string()).replies.is_empty(),
                "{ignored}"
            );
        }
        let statuses =
            json!({"packet_type": "return_statuses", "subject_id": "mephisto", "data": {}});
        assert!(a.handle_frame(&statuses.to_string()).return_statuses);
        assert!(a.handle_frame("not json").replies.is_empty());
        assert!(a.handle_frame("[1,2]").replies.is_empty());
        assert_eq!(a.stats("agent-7").num_cads, 1);
    }

    #[test]
    fn backend_packets() {
        let p = alive();
        assert_eq!(
            (
                p["packet_type"].as_str(),
                p["subject_id"].as_str(),
                &p["data"]
            ),
            (Some("alive"), Some("mephisto"), &json!({}))
        );
        let p = request_statuses();
        assert_eq!(
            (p["packet_type"].as_str(), p["subject_id"].as_str()),
            (Some("request_statuses"), Some("mephisto"))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let ms: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, vec![250, 500, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[test]
    fn request_carries_the_bearer_token() {
        let r = build_request("ws://127.0.0.1:3000/", Some("s3cret")).unwrap();
        assert_eq!(r.headers()["Authorization"], "Bearer s3cret");
        let r = build_request("ws://127.0.0.1:3000/", None).unwrap();
        assert!(r.headers().get("Authorization").is_none());
        assert!(build_request("not a url", None).is_err());
        assert!(build_request("ws://127.0.0.1:3000/", Some("bad\ntoken")).is_err());
    }
}
