//! Commands arriving over MQTT: what a payload asks for, and how often a
//! topic may ask. Pure: the bridge decides with these and does the IO.
//!
//! Anyone who may publish to the broker may publish here, so a payload is
//! checked before anything reaches the mesh: bounded in bytes before it is
//! parsed, UTF-8, a message of 1 to 255 bytes (PROTOCOL 2.3), no unknown
//! JSON fields. A refusal has a reason, which names the counter's label
//! and is told on the result topic.

use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;

use crate::wire::mesh::MAX_MESSAGE;

/// Largest command payload read at all: a JSON object around a 255-byte
/// message with every byte escaped fits.
pub const MAX_COMMAND_BYTES: usize = 2048;

/// What a send or broadcast asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub message: Vec<u8>,
    pub tracked: bool,
}

/// Why a command was refused (the label of
/// `switchyard_mqtt_commands_refused_total{reason}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    TooLarge(usize),
    NotUtf8,
    BadJson(String),
    MessageTooLong(usize),
    TrackedBroadcast,
    Retained,
    RateLimited,
    BadTopic(String),
    Busy,
}

/// Every `Refusal::reason`.
pub const REASONS: [&str; 10] = [
    "empty",
    "too_large",
    "not_utf8",
    "bad_json",
    "message_too_long",
    "tracked_broadcast",
    "retained",
    "rate_limited",
    "bad_topic",
    "busy",
];

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Empty => "empty",
            Refusal::TooLarge(_) => "too_large",
            Refusal::NotUtf8 => "not_utf8",
            Refusal::BadJson(_) => "bad_json",
            Refusal::MessageTooLong(_) => "message_too_long",
            Refusal::TrackedBroadcast => "tracked_broadcast",
            Refusal::Retained => "retained",
            Refusal::RateLimited => "rate_limited",
            Refusal::BadTopic(_) => "bad_topic",
            Refusal::Busy => "busy",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Empty => write!(f, "empty payload"),
            Refusal::TooLarge(n) => {
                write!(f, "payload of {n} bytes (at most {MAX_COMMAND_BYTES})")
            }
            Refusal::NotUtf8 => write!(f, "payload is not UTF-8"),
            Refusal::BadJson(e) => write!(
                f,
                "bad JSON ({e}); send text, or {{\"text\": \"...\", \"tracked\": false}}"
            ),
            Refusal::MessageTooLong(n) => {
                write!(f, "message too long ({n} bytes, at most {MAX_MESSAGE})")
            }
            Refusal::TrackedBroadcast => write!(f, "a broadcast cannot be tracked"),
            Refusal::Retained => write!(
                f,
                "retained commands are refused (they would run again on every reconnect)"
            ),
            Refusal::RateLimited => write!(f, "too many commands on this topic; slow down"),
            Refusal::BadTopic(e) => write!(f, "{e}"),
            Refusal::Busy => write!(f, "too many commands waiting for the mesh"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendJson {
    text: String,
    #[serde(default)]
    tracked: bool,
}

/// A send (`broadcast` false) or broadcast payload: plain text, or a JSON
/// object `{"text": "...", "tracked": bool}` (a payload whose first
/// non-blank character is `{` is read as JSON).
pub fn parse_send(payload: &[u8], broadcast: bool) -> Result<SendRequest, Refusal> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(Refusal::TooLarge(payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| Refusal::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(Refusal::Empty);
    }
    let (message, tracked) = if text.trim_start().starts_with('{') {
        let j: SendJson =
            serde_json::from_str(text).map_err(|e| Refusal::BadJson(e.to_string()))?;
        (j.text.into_bytes(), j.tracked)
    } else {
        (text.as_bytes().to_vec(), false)
    };
    if message.is_empty() {
        return Err(Refusal::Empty);
    }
    if message.len() > MAX_MESSAGE {
        return Err(Refusal::MessageTooLong(message.len()));
    }
    if broadcast && tracked {
        return Err(Refusal::TrackedBroadcast);
    }
    Ok(SendRequest { message, tracked })
}

/// A token bucket per topic: `rate` commands a second, bursts of `burst`.
/// At most `max_topics` buckets are kept; past that the one unused the
/// longest is forgotten (a flood over many topics cannot grow it).
#[derive(Debug)]
pub struct RateLimits {
    rate: f64,
    burst: f64,
    max_topics: usize,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimits {
    pub fn new(rate: f64, burst: u32, max_topics: usize) -> RateLimits {
        RateLimits {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            max_topics: max_topics.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `topic` at `now`; false when it has none.
    pub fn allow(&mut self, topic: &str, now: Instant) -> bool {
        if !self.buckets.contains_key(topic) && self.buckets.len() >= self.max_topics {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, last) = self
            .buckets
            .entry(topic.to_string())
            .or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn topics(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn text_and_json_payloads() {
        assert_eq!(
            parse_send(b"hello", false),
            Ok(SendRequest {
                message: b"hello".to_vec(),
                tracked: false
            })
        );
        assert_eq!(
            parse_send(br#"{"text": "hi", "tracked": true}"#, false),
            Ok(SendRequest {
                message: b"hi".to_vec(),
                tracked: true
            })
        );
        assert_eq!(
            parse_send(br#" {"text": "all"}"#, true),
            Ok(SendRequest {
                message: b"all".to_vec(),
                tracked: false
            })
        );
    }

    #[test]
    fn bad_payloads_are_refused_with_a_reason() {
        let r = |p: &[u8], b: bool| parse_send(p, b).unwrap_err().reason();
        assert_eq!(r(b"", false), "empty");
        assert_eq!(r(b"   ", false), "empty");
        assert_eq!(r(br#"{"text": ""}"#, false), "empty");
        assert_eq!(r(&[0xff, 0xfe], false), "not_utf8");
        assert_eq!(r(b"{not json", false), "bad_json");
        assert_eq!(r(br#"{"text": 5}"#, false), "bad_json");
        assert_eq!(r(br#"{"text": "a", "evil": 1}"#, false), "bad_json");
        assert_eq!(r(&[b'a'; 256], false), "message_too_long");
        assert_eq!(r(&vec![b'a'; MAX_COMMAND_BYTES + 1], false), "too_large");
        assert_eq!(
            r(br#"{"text": "a", "tracked": true}"#, true),
            "tracked_broadcast"
        );
        assert!(parse_send(&[b'a'; 255], false).is_ok());
    }

    #[test]
    fn each_topic_has_its_own_bucket() {
        let t0 = Instant::now();
        let mut l = RateLimits::new(2.0, 3, 100);
        assert!((0..3).all(|_| l.allow("a", t0)));
        assert!(!l.allow("a", t0));
        // Another topic is not slowed by the first.
        assert!(l.allow("b", t0));
        // Half a second refills one token at 2/s.
        assert!(l.allow("a", t0 + Duration::from_millis(500)));
        assert!(!l.allow("a", t0 + Duration::from_millis(500)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| l.allow("a", later)));
        assert!(!l.allow("a", later));
    }

    #[test]
    fn the_buckets_are_bounded() {
        let t0 = Instant::now();
        let mut l = RateLimits::new(1.0, 1, 4);
        for i in 0..100 {
            assert!(l.allow(&format!("t{i}"), t0 + Duration::from_millis(i)));
        }
        assert_eq!(l.topics(), 4);
    }
}
