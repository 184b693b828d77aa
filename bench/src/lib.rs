//! What the bench binaries share: reading a process's CPU time and RSS
//! from `/proc`, and reporting latency histograms.

pub mod procfs {
    fn clk_tck() -> f64 {
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    }

    /// utime+stime in seconds of a process (`self` or a pid).
    pub fn proc_cpu(pid: &str) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ut: f64 = f.get(11)?.parse().ok()?;
        let st: f64 = f.get(12)?.parse().ok()?;
        Some((ut + st) / clk_tck())
    }

    pub fn proc_rss_kb(pid: &str) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

/// Latency histograms as the JSON summaries report them: milliseconds, 3
/// decimals. `ticks_per_ms` is the histogram's unit (1000 for µs, 1e6 for
/// ns).
pub mod latency {
    use hdrhistogram::Histogram;
    use serde_json::{json, Value};

    /// Rounds to 3 decimals.
    pub fn r3(x: f64) -> f64 {
        (x * 1000.0).round() / 1000.0
    }

    /// The `q` quantile in ms (0 for an empty histogram).
    pub fn pct(h: &Histogram<u64>, q: f64, ticks_per_ms: f64) -> f64 {
        if h.is_empty() {
            return 0.0;
        }
        h.value_at_quantile(q) as f64 / ticks_per_ms
    }

    /// p50, p90, p99, p99.9, max and mean in ms.
    pub fn summary(h: &Histogram<u64>, ticks_per_ms: f64) -> Value {
        let p = |q| r3(pct(h, q, ticks_per_ms));
        let (max, mean) = if h.is_empty() {
            (0.0, 0.0)
        } else {
            (h.max() as f64 / ticks_per_ms, h.mean() / ticks_per_ms)
        };
        json!({
            "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "p999": p(0.999),
            "max": r3(max), "mean": r3(mean),
        })
    }
}

/// What the reference relays (`ceiling`, `bare_relay`) share: the little of
/// a packet they read, and the heartbeat answer the generator expects.
pub mod relay {
    use std::borrow::Cow;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A packet's `packet_type` and `subject_id`; the rest is not read.
    #[derive(serde::Deserialize)]
    pub struct Head<'a> {
        #[serde(borrow, default)]
        pub packet_type: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub subject_id: Option<Cow<'a, str>>,
    }

    fn now_ms() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    }

    /// The answer to a `heartbeat` of `subject`.
    pub fn heartbeat_reply(subject: &str) -> String {
        format!(
            "{{\"packet_type\":\"heartbeat\",\"subject_id\":{},\"data\":{{\"last_mephisto_ping\":{}}}}}",
            serde_json::to_string(subject).unwrap_or_default(),
            now_ms()
        )
    }
}
