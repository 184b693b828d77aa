//! `LogLimit`: at most one log line per interval for a kind of event that
//! can repeat once per packet.
//!
//! Under overload a switch drops or refuses packets by the thousand per
//! second; writing a line for each would spend the CPU the switch is short
//! of on its log, and bury everything else in it. Every event is still
//! counted in the metrics; the log gets the first line of each interval,
//! and that line says how many like it were held back since the last one.

use std::time::{Duration, Instant};

/// Small (24 bytes): every agent and every socket keeps one.
#[derive(Debug)]
pub struct LogLimit {
    last: Option<Instant>,
    every_ms: u32,
    held: u32,
}

impl LogLimit {
    /// One line per second.
    pub fn per_second() -> LogLimit {
        LogLimit::every(Duration::from_secs(1))
    }

    pub fn every(every: Duration) -> LogLimit {
        LogLimit {
            last: None,
            every_ms: u32::try_from(every.as_millis()).unwrap_or(u32::MAX),
            held: 0,
        }
    }

    /// `Some(held)` when a line may be written at `now`, `held` being the
    /// lines held back since the last one; `None` (and one more held back)
    /// otherwise.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(at)
                if now.saturating_duration_since(at)
                    < Duration::from_millis(u64::from(self.every_ms)) =>
            {
                self.held = self.held.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(u64::from(std::mem::take(&mut self.held)))
            }
        }
    }
}

/// The tail a limited line ends with: "" or " (and N more like it since
/// the last such line)".
pub fn held_note(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" (and {held} more like it since the last such line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_one_counts_the_rest() {
        let mut l = LogLimit::every(Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(l.admit(t0), Some(0));
        assert_eq!(l.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(l.admit(t0 + Duration::from_millis(99)), None);
        assert_eq!(l.admit(t0 + Duration::from_millis(100)), Some(2));
        assert_eq!(l.admit(t0 + Duration::from_millis(150)), None);
        assert_eq!(l.admit(t0 + Duration::from_millis(350)), Some(1));
        assert_eq!(held_note(0), "");
        assert_eq!(
            held_note(3),
            " (and 3 more like it since the last such line)"
        );
    }
}
