//! The wall clock as the protocol states times: seconds (`*_timestamp`
//! fields, events, history records) and milliseconds (`last_mephisto_ping`,
//! the state file). Read here and passed into the plain structs, which
//! never read a clock themselves. A support module: it depends on nothing
//! else in the crate.

/// Seconds since the Unix epoch, as the router's `*_timestamp` fields use.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch (what `mephisto-task` compares with
/// `Date.now()`).
pub fn now_ms() -> i64 {
    (now_secs() * 1000.0) as i64
}
