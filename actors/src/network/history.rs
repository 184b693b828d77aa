//! The history log (PROTOCOL 2.5): every node data update appended to
//! `DATA_DIR/history/YYYY-MM-DD.jsonl` (UTC day, one JSON record per line),
//! and read back on start so the node cache comes up warm.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// `YYYY-MM-DD` of a Unix timestamp, in UTC.
///
/// A timestamp outside the years 0000..=9999 (a peer's clock may say
/// anything, NaN included) is taken as the nearest end of that range, so
/// the name is always `YYYY-MM-DD` and the arithmetic cannot overflow.
pub fn utc_day(ts: f64) -> String {
    /// 0000-01-01 and 9999-12-31, in days since the epoch.
    const FIRST: i64 = -719_528;
    const LAST: i64 = 2_932_896;
    let days = ((ts / 86_400.0).floor() as i64).clamp(FIRST, LAST);
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
            self.flush()?;
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

    /// Writes buffered lines out (after each frame, so a crash loses none
    /// that were acknowledged to anyone).
    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// The records of the newest `days` day files, oldest first, and the
    /// number of lines that could not be read.
    pub fn load_recent(dir: &Path, days: usize) -> (Vec<HistoryRecord>, usize) {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect(),
            Err(_) => return (Vec::new(), 0),
        };
        files.sort();
        let skip = files.len().saturating_sub(days);
        let mut out = Vec::new();
        let mut bad = 0;
        for f in files.into_iter().skip(skip) {
            let Ok(file) = File::open(&f) else { continue };
            for line in BufReader::new(file).lines() {
                match line.map(|l| serde_json::from_str::<HistoryRecord>(&l)) {
                    Ok(Ok(r)) => out.push(r),
                    _ => bad += 1,
                }
            }
        }
        (out, bad)
    }
}

impl Drop for HistoryLog {
    fn drop(&mut self) {
        let _ = self.flush();
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

    #[test]
    fn appends_by_day_and_loads_back_in_order() {
        let dir = std::env::temp_dir().join(format!("sy-hist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut log = HistoryLog::open(&dir).unwrap();
            log.append(&rec(1_795_651_199.0, 1)).unwrap();
            log.append(&rec(1_795_651_201.0, 2)).unwrap();
            log.flush().unwrap();
        }
        std::fs::write(dir.join("2026-11-27.jsonl"), "not json\n").unwrap();
        assert!(dir.join("2026-11-25.jsonl").exists());
        assert!(dir.join("2026-11-26.jsonl").exists());
        let (all, bad) = HistoryLog::load_recent(&dir, 10);
        assert_eq!(
            all.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(bad, 1);
        let (recent, _) = HistoryLog::load_recent(&dir, 2);
        assert_eq!(recent.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
