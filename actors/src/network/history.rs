//! The history log (PROTOCOL 2.5): every node data update appended to
//! `DATA_DIR/history/YYYY-MM-DD.jsonl` (UTC day of this switch's clock, one
//! JSON record per line), and read back on start so the node cache comes
//! up warm.
//!
//! The files are input like any other (DESIGN house rule 12):
//! - which files a warm start reads is decided by the date parsed from
//!   each name, within a window of days ending today; names that do not
//!   parse, or dates in the future, are ignored ([`warm_files`]);
//! - a warm start streams each file line by line into a sink (the bounded
//!   node cache), so memory at start follows the cache, not the files;
//!   lines longer than [`MAX_LINE_BYTES`], invalid lines, anything that is
//!   not a regular file (a directory, a FIFO) and unreadable files are
//!   skipped and counted, never waited on ([`stream_records`]);
//! - retention deletes the oldest day files past an age and a total size
//!   ([`retention_plan`]);
//! - writes run on their own thread ([`HistoryWriter`]), fed by a bounded
//!   queue (overflow dropped and counted), and are synced to disk on a
//!   timer, so a slow disk never stalls the actors that serve agents.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::Metrics;

/// The longest history line read back; longer ones are skipped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// History settings (`[history]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Day files older than this many days are deleted.
    pub retention_days: u32,
    /// Total size of the day files past which the oldest are deleted
    /// (today's file is kept).
    pub max_total_bytes: u64,
    /// Seconds between syncs of the log to disk.
    pub sync_secs: f64,
    /// Records waiting for the writer thread; past it new ones are dropped
    /// and counted.
    pub queue_limit: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention_days: 7,
            max_total_bytes: 1024 * 1024 * 1024,
            sync_secs: 1.0,
            queue_limit: 10_000,
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub ts: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub node: u16,
    #[serde(rename = "type")]
    pub data_type: String,
    /// The raw bytes, hex.
    pub raw: String,
    pub value: Value,
}

/// Days since 1970-01-01 of a Unix timestamp.
pub fn day_number(ts: f64) -> i64 {
    (ts / 86_400.0).floor() as i64
}

/// `YYYY-MM-DD` of a Unix timestamp, in UTC.
///
/// A timestamp outside the years 0000..=9999 (a peer's clock may say
/// anything, NaN included) is taken as the nearest end of that range, so
/// the name is always `YYYY-MM-DD` and the arithmetic cannot overflow.
pub fn utc_day(ts: f64) -> String {
    /// 0000-01-01 and 9999-12-31, in days since the epoch.
    const FIRST: i64 = -719_528;
    const LAST: i64 = 2_932_896;
    let days = day_number(ts).clamp(FIRST, LAST);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a file named `YYYY-MM-DD.jsonl` (a real date), or
/// None for any other name.
pub fn parse_day_file(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".jsonl")?;
    let b = stem.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (num(&stem[..4])?, num(&stem[5..7])?, num(&stem[8..])?);
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Reject days past the month's end (2026-02-30 would roll over).
    if utc_day(days as f64 * 86_400.0) != stem {
        return None;
    }
    Some(days)
}

/// A day file in the history directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DayFile {
    pub day: i64,
    pub path: PathBuf,
    pub bytes: u64,
}

/// The history directory's entries whose names are day files, oldest
/// first. Other names are ignored.
pub fn day_files(dir: &Path) -> Vec<DayFile> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<DayFile> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let day = parse_day_file(e.file_name().to_str()?)?;
            // No following of links, no opening: only the entry's size.
            let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
            Some(DayFile {
                day,
                path: e.path(),
                bytes,
            })
        })
        .collect();
    out.sort_by_key(|f| f.day);
    out
}

/// The files a warm start reads: dated within the `warm_days` days that
/// end `today` (never in the future), oldest first (so each record lands
/// at the back of its bounded history).
pub fn warm_files(files: &[DayFile], today: i64, warm_days: usize) -> Vec<DayFile> {
    let first = today - warm_days as i64 + 1;
    files
        .iter()
        .filter(|f| f.day >= first && f.day <= today)
        .cloned()
        .collect()
}

/// Why retention deletes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Age,
    Size,
}

impl Removal {
    pub fn label(self) -> &'static str {
        match self {
            Removal::Age => "age",
            Removal::Size => "size",
        }
    }
}

/// The files to delete: older than `retention_days` days before `today`,
/// then the oldest while the rest are over `max_total_bytes`. Today's file
/// (the one being written) is always kept.
pub fn retention_plan(
    files: &[DayFile],
    today: i64,
    retention_days: u32,
    max_total_bytes: u64,
) -> Vec<(DayFile, Removal)> {
    let mut sorted = files.to_vec();
    sorted.sort_by_key(|f| f.day);
    let oldest_kept = today - i64::from(retention_days);
    let mut plan = Vec::new();
    let mut kept = Vec::new();
    for f in sorted {
        if f.day < oldest_kept {
            plan.push((f, Removal::Age));
        } else {
            kept.push(f);
        }
    }
    let mut total: u64 = kept.iter().map(|f| f.bytes).sum();
    for f in kept {
        if total <= max_total_bytes || f.day >= today {
            break;
        }
        total -= f.bytes;
        plan.push((f, Removal::Size));
    }
    plan
}

/// What a warm start met besides good records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarmReport {
    pub records: usize,
    pub bad_lines: usize,
    pub long_lines: usize,
    pub bad_files: usize,
}

/// Reads one line of at most `MAX_LINE_BYTES` into `buf`; a longer line is
/// read past (without keeping it) and reported as `Ok(Some(false))`.
/// `Ok(None)` at the end.
fn read_bounded_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') || buf.len() <= MAX_LINE_BYTES {
        return Ok(Some(true));
    }
    // Too long: skip to the end of the line, a chunk at a time.
    loop {
        let (done, used) = {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                (true, 0)
            } else {
                match avail.iter().position(|&b| b == b'\n') {
                    Some(p) => (true, p + 1),
                    None => (false, avail.len()),
                }
            }
        };
        r.consume(used);
        if done {
            return Ok(Some(false));
        }
    }
}

/// Streams the records of `files` (in the order given) into `sink`, one
/// at a time. Never blocks on a special file and never loops on a read
/// error: such files are skipped and counted. Records stamped after
/// `not_after` (a clock gone wrong) are counted as bad lines.
pub fn stream_records(
    files: &[DayFile],
    not_after: f64,
    mut sink: impl FnMut(HistoryRecord),
) -> WarmReport {
    let mut report = WarmReport::default();
    let mut buf = Vec::new();
    for f in files {
        // A FIFO would block `open`, a directory fails every read.
        let regular = std::fs::symlink_metadata(&f.path).is_ok_and(|m| m.file_type().is_file());
        if !regular {
            report.bad_files += 1;
            log::warn!(
                "history log: {} is not a regular file; skipped",
                f.path.display()
            );
            continue;
        }
        let file = match File::open(&f.path) {
            Ok(file) => file,
            Err(e) => {
                report.bad_files += 1;
                log::warn!(
                    "history log: cannot read {}: {e}; skipped",
                    f.path.display()
                );
                continue;
            }
        };
        let mut r = BufReader::with_capacity(64 * 1024, file);
        loop {
            match read_bounded_line(&mut r, &mut buf) {
                Ok(None) => break,
                Ok(Some(false)) => report.long_lines += 1,
                Ok(Some(true)) => match serde_json::from_slice::<HistoryRecord>(trim_line(&buf)) {
                    Ok(rec) if rec.ts.is_finite() && rec.ts <= not_after => {
                        report.records += 1;
                        sink(rec);
                    }
                    _ => report.bad_lines += 1,
                },
                Err(e) => {
                    report.bad_files += 1;
                    log::warn!(
                        "history log: read error in {}: {e}; rest of the file skipped",
                        f.path.display()
                    );
                    break;
                }
            }
        }
    }
    report
}

fn trim_line(buf: &[u8]) -> &[u8] {
    let mut b = buf;
    while let Some((&last, rest)) = b.split_last() {
        if last == b'\n' || last == b'\r' {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The log file of the current day, written through a buffer.
pub struct HistoryLog {
    dir: PathBuf,
    day: Option<String>,
    writer: Option<BufWriter<File>>,
}

impl HistoryLog {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<HistoryLog> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(HistoryLog {
            dir,
            day: None,
            writer: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record to the file of its UTC day.
    pub fn append(&mut self, rec: &HistoryRecord) -> std::io::Result<()> {
        let day = utc_day(rec.ts);
        if self.day.as_deref() != Some(day.as_str()) || self.writer.is_none() {
            self.sync()?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{day}.jsonl")))?;
            self.writer = Some(BufWriter::new(file));
            self.day = Some(day);
        }
        if let Some(w) = self.writer.as_mut() {
            serde_json::to_writer(&mut *w, rec)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes buffered lines out to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Flushes and syncs the file's data to disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }
}

impl Drop for HistoryLog {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// Applies retention to `dir` now; returns the files deleted.
pub fn apply_retention(dir: &Path, config: &HistoryConfig, now: f64, metrics: &Metrics) -> usize {
    let plan = retention_plan(
        &day_files(dir),
        day_number(now),
        config.retention_days,
        config.max_total_bytes,
    );
    let mut n = 0;
    for (f, why) in plan {
        match std::fs::remove_file(&f.path) {
            Ok(()) => {
                n += 1;
                metrics
                    .history_files_removed
                    .with_label_values(&[why.label()])
                    .inc();
                log::info!(
                    "history log: removed {} ({} bytes, by {})",
                    f.path.display(),
                    f.bytes,
                    why.label()
                );
            }
            Err(e) => {
                metrics.history_errors.inc();
                log::warn!("history log: cannot remove {}: {e}", f.path.display());
            }
        }
    }
    n
}

/// How often retention runs while the switch is up.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// The history log on its own thread: `write` never blocks (a full queue
/// drops and counts); the thread appends, flushes what it has when its
/// queue runs dry, syncs on a timer, applies retention hourly, and syncs
/// once more when the writer is dropped.
pub struct HistoryWriter {
    tx: Option<SyncSender<HistoryRecord>>,
    metrics: Arc<Metrics>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HistoryWriter {
    pub fn spawn(
        log: HistoryLog,
        config: HistoryConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<HistoryWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_limit.max(1));
        let m = Arc::clone(&metrics);
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer_loop(log, config, m, rx))?;
        Ok(HistoryWriter {
            tx: Some(tx),
            metrics,
            thread: Some(thread),
        })
    }

    /// Hands records to the writer thread; those that do not fit its queue
    /// are dropped and counted.
    pub fn write(&self, records: impl IntoIterator<Item = HistoryRecord>) {
        let Some(tx) = &self.tx else { return };
        for r in records {
            match tx.try_send(r) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.metrics.history_dropped.inc();
                }
            }
        }
    }
}

impl Drop for HistoryWriter {
    fn drop(&mut self) {
        // Closing the queue ends the thread after it has written and
        // synced what is queued.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// When the writer thread syncs and applies retention. Decisions only
/// (DESIGN house rule 3): `writer_loop` waits, syncs and deletes.
#[derive(Debug)]
struct WriterSchedule {
    sync_every: Duration,
    retention_every: Duration,
    next_sync: Instant,
    next_retention: Instant,
    /// Records were written since the last sync.
    dirty: bool,
}

/// What one turn of the writer loop does besides appending.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Due {
    sync: bool,
    retention: bool,
}

impl WriterSchedule {
    /// The first sync tick is one period after `start`; so is the first
    /// retention run (the switch applies retention itself before the
    /// thread starts).
    fn new(start: Instant, sync_every: Duration, retention_every: Duration) -> Self {
        WriterSchedule {
            sync_every,
            retention_every,
            next_sync: start + sync_every,
            next_retention: start + retention_every,
            dirty: false,
        }
    }

    /// How long to wait for records before the next sync tick.
    fn wait(&self, now: Instant) -> Duration {
        self.next_sync.saturating_duration_since(now)
    }

    /// Records were appended (and flushed): the next sync tick syncs.
    fn wrote(&mut self) {
        self.dirty = true;
    }

    /// What is due at `now`. A sync tick syncs only what was written since
    /// the last one; each deadline reached moves to one period after `now`.
    fn tick(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        if now >= self.next_sync {
            due.sync = self.dirty;
            self.dirty = false;
            self.next_sync = now + self.sync_every;
        }
        if now >= self.next_retention {
            due.retention = true;
            self.next_retention = now + self.retention_every;
        }
        due
    }
}

fn writer_loop(
    mut log: HistoryLog,
    config: HistoryConfig,
    metrics: Arc<Metrics>,
    rx: Receiver<HistoryRecord>,
) {
    let sync_every = Duration::from_secs_f64(config.sync_secs.clamp(0.01, 3600.0));
    let mut schedule = WriterSchedule::new(Instant::now(), sync_every, RETENTION_EVERY);
    let mut failing = false;
    let report = |r: std::io::Result<()>, what: &str, failing: &mut bool| match r {
        Ok(()) => *failing = false,
        Err(e) => {
            metrics.history_errors.inc();
            if !*failing {
                log::error!("history log: cannot {what}: {e}");
            }
            *failing = true;
        }
    };
    loop {
        match rx.recv_timeout(schedule.wait(Instant::now())) {
            Ok(rec) => {
                let mut r = log.append(&rec).map(|_| 1u64);
                // Take what else is queued before flushing once.
                while let Ok(rec) = rx.try_recv() {
                    r = r.and_then(|n| log.append(&rec).map(|_| n + 1));
                }
                match r {
                    Ok(n) => {
                        metrics.history_records.inc_by(n);
                        report(log.flush(), "write", &mut failing);
                    }
                    Err(e) => report(Err(e), "write", &mut failing),
                }
                schedule.wrote();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                report(log.sync(), "sync", &mut failing);
                return;
            }
        }
        let due = schedule.tick(Instant::now());
        if due.sync {
            report(log.sync(), "sync", &mut failing);
        }
        if due.retention {
            apply_retention(log.dir(), &config, crate::clock::now_secs(), &metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0.0), "1970-01-01");
        assert_eq!(utc_day(951_782_400.0), "2000-02-29");
        assert_eq!(utc_day(1_795_638_897.0), "2026-11-25");
        assert_eq!(utc_day(1_795_651_199.9), "2026-11-25");
        assert_eq!(utc_day(1_795_651_200.0), "2026-11-26");
        // PROTOCOL 2.5 (a file per UTC day): fixed dates around March 1
        // and century years, where the era arithmetic is easiest to get
        // wrong (a round trip through parse_day_file would agree with a
        // wrong utc_day, so the expected names are written out).
        assert_eq!(utc_day(-2_203_891_200.0), "1900-03-01");
        assert_eq!(utc_day(951_868_800.0), "2000-03-01");
        assert_eq!(utc_day(1_772_236_800.0), "2026-02-28");
        assert_eq!(utc_day(4_107_542_400.0), "2100-03-01");
    }

    #[test]
    fn day_file_names_parse_to_real_dates_only() {
        assert_eq!(parse_day_file("1970-01-01.jsonl"), Some(0));
        assert_eq!(parse_day_file("2000-02-29.jsonl"), Some(11_016));
        assert_eq!(
            parse_day_file("2026-11-25.jsonl"),
            Some(day_number(1_795_638_897.0))
        );
        // PROTOCOL 2.5: a day file of the next century is still a day file.
        assert_eq!(
            parse_day_file("2100-03-01.jsonl"),
            Some(day_number(4_107_542_400.0))
        );
        for bad in [
            "31688740476-10-23.jsonl",
            "2026-02-30.jsonl",
            "2026-13-01.jsonl",
            "2026-1-01.jsonl",
            "2026-01-01.json",
            "+026-01-01.jsonl",
            "x.jsonl",
            "2026-01-01.jsonl.bak",
            // Ten bytes but not ASCII: the name is refused before it is
            // sliced (a cut inside `é` would panic the warm start; DESIGN
            // house rule 12, the history files are hostile input).
            "2026-0é01.jsonl",
            "2026-01-0é.jsonl",
        ] {
            assert_eq!(parse_day_file(bad), None, "{bad}");
        }
    }

    fn df(day: i64, bytes: u64) -> DayFile {
        DayFile {
            day,
            path: PathBuf::from(format!("{day}")),
            bytes,
        }
    }

    #[test]
    fn warm_files_are_chosen_by_date_within_the_window() {
        let files = vec![df(1, 0), df(8, 0), df(9, 0), df(10, 0), df(11, 0)];
        let days: Vec<i64> = warm_files(&files, 10, 2).iter().map(|f| f.day).collect();
        assert_eq!(days, vec![9, 10]);
        assert!(warm_files(&files, 10, 0).is_empty());
        let days: Vec<i64> = warm_files(&files, 10, 100).iter().map(|f| f.day).collect();
        assert_eq!(days, vec![1, 8, 9, 10]);
    }

    #[test]
    fn retention_by_age_then_by_size_keeping_today() {
        let files = vec![df(1, 10), df(5, 10), df(8, 10), df(9, 10), df(10, 10)];
        let plan = retention_plan(&files, 10, 7, 1000);
        assert_eq!(plan, vec![(df(1, 10), Removal::Age)]);
        let plan = retention_plan(&files, 10, 7, 25);
        assert_eq!(
            plan,
            vec![
                (df(1, 10), Removal::Age),
                (df(5, 10), Removal::Size),
                (df(8, 10), Removal::Size),
            ]
        );
        // Today's file stays even alone over the size.
        let plan = retention_plan(&[df(10, 100)], 10, 7, 1);
        assert!(plan.is_empty());
        // `retention_days`: files *older* than that many days are deleted,
        // so a file exactly that old is kept and one a day older is not.
        assert!(retention_plan(&[df(3, 10)], 10, 7, 1000).is_empty());
        assert_eq!(
            retention_plan(&[df(2, 10)], 10, 7, 1000),
            vec![(df(2, 10), Removal::Age)]
        );
    }

    /// Found by the `history_record` fuzz target: a timestamp of 1e300
    /// overflowed the day arithmetic; 1e18 named a file of year 31688740476.
    #[test]
    fn utc_day_of_any_timestamp_is_a_four_digit_year() {
        assert_eq!(utc_day(-62_167_219_200.0), "0000-01-01");
        assert_eq!(utc_day(253_402_300_799.0), "9999-12-31");
        assert_eq!(utc_day(1e18), "9999-12-31");
        assert_eq!(utc_day(1e300), "9999-12-31");
        assert_eq!(utc_day(f64::INFINITY), "9999-12-31");
        assert_eq!(utc_day(-1e300), "0000-01-01");
        assert_eq!(utc_day(f64::NAN), "1970-01-01");
        let line = r#"{"ts":1e300,"node":1,"type":"TMP","raw":"","value":null}"#;
        let rec: HistoryRecord = serde_json::from_str(line).unwrap();
        assert_eq!(utc_day(rec.ts), "9999-12-31");
    }

    fn rec(ts: f64, v: i64) -> HistoryRecord {
        HistoryRecord {
            ts,
            gateway: None,
            node: 1,
            data_type: "TMP".into(),
            raw: "0001".into(),
            value: json!(v),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sy-hist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appends_by_day_and_streams_back_in_order() {
        let dir = temp_dir("order");
        {
            let mut log = HistoryLog::open(&dir).unwrap();
            log.append(&rec(1_795_651_199.0, 1)).unwrap();
            log.append(&rec(1_795_651_201.0, 2)).unwrap();
            log.sync().unwrap();
        }
        std::fs::write(dir.join("2026-11-27.jsonl"), "not json\n").unwrap();
        let files = day_files(&dir);
        assert_eq!(files.len(), 3);
        let mut got = Vec::new();
        let report = stream_records(&files, f64::MAX, |r| got.push(r.value));
        assert_eq!(got, vec![json!(1), json!(2)]);
        assert_eq!(report.bad_lines, 1);
        let recent = warm_files(&files, parse_day_file("2026-11-27.jsonl").unwrap(), 2);
        let mut n = 0;
        stream_records(&recent, f64::MAX, |_| n += 1);
        assert_eq!(n, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // A directory or a FIFO named like a day file, an over-long line, a
    // truncated line and a record from the future are skipped and counted;
    // nothing blocks.
    #[test]
    fn bad_entries_are_skipped_never_waited_on() {
        let dir = temp_dir("bad");
        std::fs::create_dir(dir.join("2026-11-24.jsonl")).unwrap();
        let fifo = dir.join("2026-11-23.jsonl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let mut text = serde_json::to_string(&rec(100.0, 1)).unwrap();
        text.push('\n');
        text.push_str(&"x".repeat(MAX_LINE_BYTES * 3));
        text.push('\n');
        text.push_str(&serde_json::to_string(&rec(101.0, 2)).unwrap());
        text.push('\n');
        text.push_str(&serde_json::to_string(&rec(1e18, 3)).unwrap());
        text.push('\n');
        text.push_str("{\"ts\": 1");
        std::fs::write(dir.join("2026-11-25.jsonl"), text).unwrap();
        let files = day_files(&dir);
        let mut got = Vec::new();
        let report = stream_records(&files, 1e12, |r| got.push(r.value));
        assert_eq!(got, vec![json!(1), json!(2)]);
        assert_eq!(report.long_lines, 1);
        assert_eq!(report.bad_lines, 2);
        let specials = 1 + usize::from(made.is_ok_and(|s| s.success()));
        assert_eq!(report.bad_files, specials);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A record whose JSON line is `len` bytes long (without the `\n`).
    fn line_of(len: usize) -> String {
        let mut r = rec(100.0, 0);
        r.value = json!("");
        let base = serde_json::to_string(&r).unwrap().len();
        r.value = json!("x".repeat(len - base));
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line.len(), len);
        line
    }

    // PROTOCOL 2.5 (the cache warms from the log) and DESIGN house rule 12:
    // the line bound is 64 KiB, pinned from both sides with a literal (a
    // test relative to the constant would follow it wherever it moved).
    #[test]
    fn lines_up_to_64_kib_are_read_back_and_longer_ones_skipped() {
        let dir = temp_dir("bound");
        let mut text = line_of(64 * 1024);
        text.push('\n');
        text.push_str(&line_of(64 * 1024 + 1));
        text.push('\n');
        std::fs::write(dir.join("2026-11-25.jsonl"), text).unwrap();
        let report = stream_records(&day_files(&dir), f64::MAX, |_| {});
        assert_eq!((report.records, report.long_lines), (1, 1));
        assert_eq!(report.bad_lines, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // PROTOCOL 2.5: a file whose last line lost its `\n` (copied, edited
    // by hand, or cut by a crash between the record and its newline) still
    // gives that record back.
    #[test]
    fn a_last_line_without_newline_is_still_a_record() {
        let dir = temp_dir("no-newline");
        let text = serde_json::to_string(&rec(100.0, 1)).unwrap();
        std::fs::write(dir.join("2026-11-25.jsonl"), text).unwrap();
        let mut got = Vec::new();
        let report = stream_records(&day_files(&dir), f64::MAX, |r| got.push(r));
        assert_eq!(got, vec![rec(100.0, 1)]);
        assert_eq!((report.records, report.bad_lines), (1, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    // The writer thread waits for records until the next sync tick; a tick
    // left in the past would make it spin on `recv_timeout(0)`, a core
    // burnt by an idle switch.
    #[test]
    fn after_a_tick_the_next_sync_is_in_the_future() {
        let every = Duration::from_millis(50);
        let start = Instant::now();
        let mut s = WriterSchedule::new(start, every, RETENTION_EVERY);
        assert_eq!(s.wait(start), every);
        assert_eq!(s.tick(start), Due::default(), "nothing is due at start");
        // Nothing written: the tick passes without a sync.
        let t1 = start + every;
        assert_eq!(s.tick(t1), Due::default());
        assert_eq!(s.wait(t1), every);
        // Written: the next tick syncs, once.
        s.wrote();
        assert_eq!(s.tick(t1 + every / 2), Due::default(), "not yet");
        let t2 = t1 + every;
        let due = s.tick(t2);
        assert!(due.sync && !due.retention, "{due:?}");
        assert_eq!(s.wait(t2), every);
        // A late tick (the thread was busy) counts the period from then.
        let late = t2 + every * 5;
        assert_eq!(s.tick(late), Due::default());
        assert_eq!(s.wait(late), every);
        assert_eq!(s.wait(late + every * 2), Duration::ZERO);
    }

    // Retention runs when the switch starts (before the writer thread) and
    // then once per RETENTION_EVERY, not on every batch or tick.
    #[test]
    fn retention_runs_once_per_period() {
        let every = Duration::from_millis(50);
        let hour = RETENTION_EVERY;
        let start = Instant::now();
        let mut s = WriterSchedule::new(start, every, hour);
        assert!(!s.tick(start).retention, "the switch ran it at start");
        assert!(!s.tick(start + hour / 2).retention);
        assert!(s.tick(start + hour).retention);
        assert!(!s.tick(start + hour + every).retention);
        assert!(!s.tick(start + hour * 2 - every).retention);
        assert!(s.tick(start + hour * 2).retention);
    }

    /// A writer thread over a log in `dir`, and the metrics it counts in.
    fn spawn_writer(dir: &Path, config: HistoryConfig) -> (HistoryWriter, Arc<Metrics>) {
        let metrics = Metrics::new();
        let log = HistoryLog::open(dir).unwrap();
        let w = HistoryWriter::spawn(log, config, Arc::clone(&metrics)).unwrap();
        (w, metrics)
    }

    // PROTOCOL 2.5 (every update is appended to the log on disk): the
    // writer flushes each batch to the OS at once, without waiting for the
    // sync tick, so a restart right after reads it back.
    #[test]
    fn a_written_record_is_on_disk_before_the_sync_tick() {
        let dir = temp_dir("prompt");
        let (w, _) = spawn_writer(
            &dir,
            HistoryConfig {
                sync_secs: 3600.0,
                ..HistoryConfig::default()
            },
        );
        w.write([rec(1_795_651_199.0, 7)]);
        let file = dir.join("2026-11-25.jsonl");
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.ends_with('\n') || Instant::now() >= deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(text.lines().count(), 1, "{text:?}");
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_writer_thread_writes_syncs_and_counts_overflow() {
        let dir = temp_dir("writer");
        let (w, metrics) = spawn_writer(
            &dir,
            HistoryConfig {
                sync_secs: 0.01,
                queue_limit: 4,
                ..HistoryConfig::default()
            },
        );
        w.write((0..1000).map(|i| rec(1_795_651_199.0, i)));
        drop(w);
        let written = metrics.history_records.get();
        let dropped = metrics.history_dropped.get();
        assert_eq!(written + dropped, 1000);
        assert!(written >= 4, "{written}");
        let text = std::fs::read_to_string(dir.join("2026-11-25.jsonl")).unwrap();
        assert_eq!(text.lines().count() as u64, written);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
