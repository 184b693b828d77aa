//! `report`: summarises a results directory of `bench/compare.sh`.
//!
//! Reads every `*.jsonl` file in the directory (lines of the form
//! `{"router", "scenario", "rep", "run", "result": <switchyard-bench JSON>}`),
//! plus `machine.txt` and `settings.txt` when present, and writes
//! - `table.md`: one row per figure, one column per router with the median
//!   and [min–max] over the repetitions, and the ratios switchyard/ceiling and
//!   switchyard/node-fixed;
//! - `latency.svg`: p50 / p99 / p99.9 round-trip latency against offered load
//!   (100 agents: the `--max` ramp steps of scenario c and the fixed runs a
//!   and e), median over repetitions per offered rate, log-log axes.
//!
//! Usage: `report DIR`
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// Known routers, in column order; others found in the data follow.
const ROUTERS: [&str; 5] = ["switchyard", "bare", "ceiling", "node", "node-fixed"];

#[derive(Debug, Clone)]
struct Run {
    router: String,
    scenario: String,
    result: Value,
}

#[derive(Default)]
struct Data {
    runs: Vec<Run>,
    errors: Vec<String>,
}

fn parse_lines(text: &str, data: &mut Data) {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            data.errors
                .push(format!("unreadable line: {}", clip(line, 120)));
            continue;
        };
        let (Some(router), Some(scenario)) = (v["router"].as_str(), v["scenario"].as_str()) else {
            continue;
        };
        if let Some(e) = v["error"].as_str() {
            let run = v["run"].as_str().unwrap_or("?");
            data.errors.push(format!("{run}: {e}"));
            continue;
        }
        if v["result"].is_object() {
            data.runs.push(Run {
                router: router.to_string(),
                scenario: scenario.to_string(),
                result: v["result"].clone(),
            });
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

/// The number at a dotted path, e.g. `latency_ms.p99`.
fn num(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur.get(k)?;
    }
    cur.as_f64()
}

fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A figure with about three significant digits.
fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_cell(xs: &[f64]) -> String {
    match xs.len() {
        0 => "–".into(),
        1 => fmt_num(xs[0]),
        _ => {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!(
                "{} [{}–{}]",
                fmt_num(median(xs).unwrap()),
                fmt_num(lo),
                fmt_num(hi)
            )
        }
    }
}

impl Data {
    fn routers(&self) -> Vec<String> {
        let mut out: Vec<String> = ROUTERS
            .iter()
            .filter(|r| self.runs.iter().any(|x| x.router == **r))
            .map(|r| r.to_string())
            .collect();
        for x in &self.runs {
            if !out.contains(&x.router) {
                out.push(x.router.clone());
            }
        }
        out
    }

    /// Final results of (router, scenario): fixed and connect-only runs, and
    /// the closing `"mode":"max"` line of a ramp (not its steps).
    fn finals<'a>(&'a self, router: &'a str, scenario: &'a str) -> impl Iterator<Item = &'a Value> {
        self.runs
            .iter()
            .filter(move |x| x.router == router && x.scenario == scenario)
            .map(|x| &x.result)
            .filter(|v| !v["mode"].as_str().unwrap_or("").starts_with("max-"))
    }

    /// The figure at `path` of each run; a run in which no echo arrived has
    /// no latency (its percentiles read 0).
    fn values(&self, router: &str, scenario: &str, path: &str) -> Vec<f64> {
        self.finals(router, scenario)
            .filter(|v| !path.starts_with("latency_ms") || num(v, "received").unwrap_or(0.0) > 0.0)
            .filter_map(|v| num(v, path))
            .collect()
    }

    fn any_loss(&self, router: &str, scenario: &str) -> bool {
        self.finals(router, scenario)
            .any(|v| num(v, "lost").unwrap_or(0.0) > 0.0)
    }

    fn has(&self, scenario: &str) -> bool {
        self.runs.iter().any(|x| x.scenario == scenario)
    }
}

enum Kind {
    /// A number per run; `ratio`: show the switchyard ratios; `flag`: mark
    /// routers that lost updates in some run of the scenario.
    Num {
        path: &'static str,
        ratio: bool,
        flag: bool,
    },
    /// Whether every heartbeat of an idle run was answered.
    Heartbeats,
}

struct Fig {
    label: String,
    scenario: &'static str,
    kind: Kind,
}

fn fig(label: &str, scenario: &'static str, path: &'static str, ratio: bool, flag: bool) -> Fig {
    Fig {
        label: label.to_string(),
        scenario,
        kind: Kind::Num { path, ratio, flag },
    }
}

fn figures(d: &Data) -> Vec<Fig> {
    let idle_n = d
        .runs
        .iter()
        .filter(|x| x.scenario == "dmax")
        .filter_map(|x| x.result["agents"].as_u64())
        .max()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "max".into());
    let gen100k = "generator.cpu_s_per_100k";
    let mut f = Vec::new();
    for (s, what) in [
        ("a", "(a) 100 agents × 10/s"),
        ("b", "(b) 1000 agents × 1/s"),
    ] {
        f.push(fig(
            &format!("{what}: p50 latency, ms"),
            s,
            "latency_ms.p50",
            true,
            true,
        ));
        f.push(fig(
            &format!("{what}: p99 latency, ms"),
            s,
            "latency_ms.p99",
            true,
            true,
        ));
        f.push(fig(
            &format!("{what}: lost updates"),
            s,
            "lost",
            false,
            false,
        ));
        f.push(fig(
            &format!("{what}: duplicated updates"),
            s,
            "duplicated",
            false,
            false,
        ));
        f.push(fig(
            &format!("{what}: ↳ generator CPU, s per 100k updates"),
            s,
            gen100k,
            false,
            false,
        ));
    }
    f.push(fig(
        "(c) max sustained throughput, 100 agents, round trips/s",
        "c",
        "max_throughput",
        true,
        false,
    ));
    f.push(fig(
        "(c) p99 latency at that rate, ms",
        "c",
        "at_highest.latency_ms.p99",
        true,
        false,
    ));
    f.push(fig(
        "(c) ↳ generator CPU at that rate, s per 100k updates",
        "c",
        "at_highest.generator.cpu_s_per_100k",
        false,
        false,
    ));
    for (s, n) in [("d5k", "5000".to_string()), ("dmax", idle_n)] {
        f.push(fig(
            &format!("(d) RSS per idle agent at {n} agents, kB"),
            s,
            "router.rss_kb_per_agent",
            true,
            false,
        ));
        f.push(Fig {
            label: format!("(d) {n} idle agents: all connected, every heartbeat answered"),
            scenario: s,
            kind: Kind::Heartbeats,
        });
        f.push(fig(
            &format!("(d) {n} idle agents: connect p99, ms"),
            s,
            "connect_ms.p99",
            true,
            false,
        ));
        f.push(fig(
            &format!("(d) {n} idle agents: ↳ generator CPU in the window, s"),
            s,
            "generator.cpu_s",
            false,
            false,
        ));
    }
    f.push(fig(
        "(e) router CPU per 100k updates at 1000/s (runs of a), s",
        "a",
        "router.cpu_s_per_100k",
        true,
        true,
    ));
    f.push(fig(
        "(e) ↳ generator CPU at 1000/s, s per 100k updates",
        "a",
        gen100k,
        false,
        false,
    ));
    f.push(fig(
        "(e) router CPU per 100k updates at 25000/s (100 × 250/s), s",
        "e25k",
        "router.cpu_s_per_100k",
        true,
        true,
    ));
    f.push(fig(
        "(e) ↳ generator CPU at 25000/s, s per 100k updates",
        "e25k",
        gen100k,
        false,
        false,
    ));
    f.push(fig(
        "(e) 25000/s: p99 latency, ms",
        "e25k",
        "latency_ms.p99",
        true,
        true,
    ));
    f.push(fig(
        "(e) 25000/s: lost updates",
        "e25k",
        "lost",
        false,
        false,
    ));
    f.push(fig(
        "(e) 25000/s: duplicated updates",
        "e25k",
        "duplicated",
        false,
        false,
    ));
    f
}

fn heartbeat_cell(d: &Data, router: &str, scenario: &str) -> String {
    let mut n = 0;
    let mut ok = 0;
    for v in d.finals(router, scenario) {
        n += 1;
        let agents = num(v, "agents").unwrap_or(-1.0);
        let good = num(v, "connected") == Some(agents)
            && num(v, "heartbeats.sent").unwrap_or(0.0) > 0.0
            && num(v, "heartbeats.sent") == num(v, "heartbeats.answered")
            && num(v, "heartbeats.bad_replies").unwrap_or(1.0) == 0.0;
        ok += good as usize;
    }
    match n {
        0 => "–".into(),
        _ if ok == n => format!("yes ({ok}/{n})"),
        _ => format!("**no** ({ok}/{n} runs)"),
    }
}

fn ratio(a: &[f64], b: &[f64]) -> String {
    match (median(a), median(b)) {
        (Some(x), Some(y)) if y != 0.0 => fmt_num(x / y),
        _ => "–".into(),
    }
}

fn read_facts(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn build_table(d: &Data, machine: &[String], settings: &[String]) -> String {
    let routers = d.routers();
    let has = |r: &str| routers.iter().any(|x| x == r);
    let mut ratio_cols: Vec<&str> = Vec::new();
    if has("switchyard") {
        // The bare relay first: the ceiling that shares nothing with
        // switchyard's stack.
        for other in ["bare", "ceiling", "node-fixed"] {
            if has(other) {
                ratio_cols.push(other);
            }
        }
    }
    let reps = d
        .runs
        .iter()
        .filter(|x| x.scenario != "c" || x.result["mode"] == "max")
        .fold(BTreeMap::<(&str, &str), usize>::new(), |mut m, x| {
            *m.entry((&x.router, &x.scenario)).or_default() += 1;
            m
        });
    let max_reps = reps.values().copied().max().unwrap_or(0);

    let mut out = String::new();
    let _ = writeln!(out, "# switchyard, ceiling and the Node router compared\n");
    if !machine.is_empty() {
        let _ = writeln!(out, "Machine:\n");
        for l in machine {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
    if !settings.is_empty() {
        let _ = writeln!(out, "Settings:\n");
        for l in settings {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
    let _ = write!(out, "| figure |");
    for r in &routers {
        let _ = write!(out, " {r} |");
    }
    for o in &ratio_cols {
        let _ = write!(out, " switchyard / {o} |");
    }
    out.push('\n');
    let _ = write!(out, "|---|");
    for _ in 0..routers.len() + ratio_cols.len() {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    let mut flagged = false;
    for f in figures(d) {
        if !d.has(f.scenario) {
            continue;
        }
        let mut cells = Vec::new();
        let mut ratios = Vec::new();
        let mut any = false;
        match f.kind {
            Kind::Num {
                path,
                ratio: r,
                flag,
            } => {
                let vals: Vec<Vec<f64>> = routers
                    .iter()
                    .map(|x| d.values(x, f.scenario, path))
                    .collect();
                for (i, x) in routers.iter().enumerate() {
                    any |= !vals[i].is_empty();
                    let ran = d.finals(x, f.scenario).next().is_some();
                    let mut c = if vals[i].is_empty() && ran && path.starts_with("latency_ms") {
                        any = true;
                        "nothing received".to_string()
                    } else {
                        fmt_cell(&vals[i])
                    };
                    if flag && ran && d.any_loss(x, f.scenario) {
                        c.push_str(" †");
                        flagged = true;
                    }
                    cells.push(c);
                }
                let idx = |name: &str| routers.iter().position(|x| x == name);
                for o in &ratio_cols {
                    ratios.push(match (r, idx("switchyard"), idx(o)) {
                        (true, Some(s), Some(k)) => ratio(&vals[s], &vals[k]),
                        _ => String::new(),
                    });
                }
            }
            Kind::Heartbeats => {
                for x in &routers {
                    let c = heartbeat_cell(d, x, f.scenario);
                    any |= c != "–";
                    cells.push(c);
                }
                ratios.resize(ratio_cols.len(), String::new());
            }
        }
        if !any {
            continue;
        }
        let _ = write!(out, "| {} |", f.label);
        for c in cells.iter().chain(ratios.iter()) {
            let _ = write!(out, " {c} |");
        }
        out.push('\n');
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Cells: median [min–max] over the repetitions ({max_reps} per router and scenario), \
         each against a fresh router process. Ratio columns: switchyard's median divided by \
         the other router's median (for latency, RSS and CPU below 1 favours switchyard, for \
         throughput above 1)."
    );
    if flagged {
        let _ = writeln!(
            out,
            "\n† at least one repetition of that scenario lost updates \
             (the router did not keep up with the offered load)."
        );
    }
    let _ = writeln!(
        out,
        "\nLatency is the open-loop round trip agent → router → backend → router → agent, \
         measured from each update's scheduled send time; duplicated updates are copies of \
         an update the agent had already received (not counted in the latency). \
         `latency.svg` plots the latency percentiles against the offered load."
    );
    if !d.errors.is_empty() {
        let _ = writeln!(out, "\nRuns without a result:\n");
        for e in &d.errors {
            let _ = writeln!(out, "- {e}");
        }
    }
    out
}

// ---------------------------------------------------------------- plot

#[derive(Debug, Clone, Copy)]
struct Point {
    rate: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    lossy: bool,
}

/// Points per router: 100-agent runs (ramp steps of c, fixed runs of a and
/// e25k), median over the runs at each offered rate.
fn series(d: &Data) -> Vec<(String, Vec<Point>)> {
    let mut out = Vec::new();
    for r in d.routers() {
        let mut by_rate: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
        for x in d.runs.iter().filter(|x| x.router == r) {
            let mode = x.result["mode"].as_str().unwrap_or("");
            let take = match x.scenario.as_str() {
                "c" => mode.starts_with("max-"),
                "a" | "e25k" => mode == "fixed",
                _ => false,
            };
            let Some(rate) = num(&x.result, "offered_rate") else {
                continue;
            };
            if take && num(&x.result, "received").unwrap_or(0.0) > 0.0 {
                by_rate
                    .entry(rate.round() as i64)
                    .or_default()
                    .push(&x.result);
            }
        }
        let pts: Vec<Point> = by_rate
            .into_iter()
            .map(|(rate, vs)| {
                let m = |p: &str| {
                    let xs: Vec<f64> = vs.iter().filter_map(|v| num(v, p)).collect();
                    median(&xs).unwrap_or(0.0)
                };
                let lossy_runs = vs
                    .iter()
                    .filter(|v| num(v, "lost").unwrap_or(0.0) > 0.0)
                    .count();
                Point {
                    rate: rate as f64,
                    p50: m("latency_ms.p50"),
                    p99: m("latency_ms.p99"),
                    p999: m("latency_ms.p999"),
                    lossy: lossy_runs * 2 > vs.len(),
                }
            })
            .collect();
        if !pts.is_empty() {
            out.push((r, pts));
        }
    }
    out
}

fn color(router: &str, i: usize) -> &'static str {
    match router {
        "switchyard" => "#1f5fbf",
        "ceiling" => "#2a9d3a",
        "bare" => "#6a3d9a",
        "node" => "#d62728",
        "node-fixed" => "#e68a00",
        _ => ["#8c564b", "#9467bd", "#7f7f7f", "#17becf"][i % 4],
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{}k", x / 1e3)
    } else {
        format!("{x}")
    }
}

fn fmt_ms(x: f64) -> String {
    if x >= 1.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').to_string()
    }
}

struct LogAxis {
    lo: f64, // log10 of the axis start
    hi: f64,
    a: f64, // pixel at lo
    b: f64, // pixel at hi
}

impl LogAxis {
    fn new(min: f64, max: f64, a: f64, b: f64) -> Self {
        let lo = min.log10().floor();
        let mut hi = max.log10().ceil();
        if hi <= lo {
            hi = lo + 1.0;
        }
        LogAxis { lo, hi, a, b }
    }
    fn px(&self, v: f64) -> f64 {
        self.a + (v.log10() - self.lo) / (self.hi - self.lo) * (self.b - self.a)
    }
    /// (value, is a decade) for every 1..9 × 10^k inside the axis.
    fn ticks(&self) -> Vec<(f64, bool)> {
        let mut t = Vec::new();
        for e in self.lo as i32..=self.hi as i32 {
            for m in 1..10 {
                let v = m as f64 * 10f64.powi(e);
                if v.log10() <= self.hi + 1e-9 {
                    t.push((v, m == 1));
                }
            }
        }
        t
    }
}

fn build_svg(d: &Data) -> String {
    const W: f64 = 960.0;
    const H: f64 = 600.0;
    let (l, r, t, b) = (80.0, 700.0, 70.0, 530.0);
    let data = series(d);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="17" font-weight="bold">Round-trip latency against offered load (100 agents)</text>"#,
        (l + r) / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="48" text-anchor="middle" fill="#444">points: --max ramp steps of (c) and the fixed runs (a) and (e); median over the runs at each rate</text>"##,
        (l + r) / 2.0
    );
    let all: Vec<&Point> = data.iter().flat_map(|(_, p)| p.iter()).collect();
    if all.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">no latency data (scenarios a, c or e were not run)</text></svg>"#,
            (l + r) / 2.0,
            (t + b) / 2.0
        );
        return s;
    }
    let lat = |p: &Point| [p.p50, p.p99, p.p999];
    let xmin = all.iter().map(|p| p.rate).fold(f64::INFINITY, f64::min);
    let xmax = all.iter().map(|p| p.rate).fold(0.0, f64::max);
    let ys = all.iter().flat_map(|p| lat(p)).filter(|v| *v > 0.0);
    let ymin = ys.clone().fold(f64::INFINITY, f64::min).max(0.01);
    let limit = d
        .runs
        .iter()
        .find_map(|x| num(&x.result, "max_p99_ms"))
        .filter(|_| d.has("c"));
    let ymax = ys.fold(0.0, f64::max).max(limit.unwrap_or(0.0));
    let xa = LogAxis::new(xmin, xmax, l, r);
    let ya = LogAxis::new(ymin, ymax, b, t);

    // Grid and ticks.
    let decades_x = xa.hi - xa.lo;
    for (v, major) in xa.ticks() {
        let x = xa.px(v);
        let m = (v / 10f64.powf(v.log10().floor())).round();
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{b}" stroke="{}" stroke-width="1"/>"##,
            if major { "#c8c8c8" } else { "#ececec" }
        );
        if major || (decades_x <= 3.0 && (m == 2.0 || m == 5.0)) {
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                b + 18.0,
                fmt_rate(v)
            );
        }
    }
    let decades_y = ya.hi - ya.lo;
    for (v, major) in ya.ticks() {
        let y = ya.px(v);
        let m = (v / 10f64.powf(v.log10().floor())).round();
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="{}" stroke-width="1"/>"##,
            if major { "#c8c8c8" } else { "#ececec" }
        );
        if major || (decades_y <= 3.0 && (m == 2.0 || m == 5.0)) {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                l - 6.0,
                y + 4.0,
                fmt_ms(v)
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        r - l,
        b - t
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">offered load, round trips per second (log scale)</text>"#,
        (l + r) / 2.0,
        b + 42.0
    );
    let _ = writeln!(
        s,
        r#"<text x="22" y="{}" text-anchor="middle" font-size="13" transform="rotate(-90 22 {})">round-trip latency, ms (log scale)</text>"#,
        (t + b) / 2.0,
        (t + b) / 2.0
    );
    if let Some(lim) = limit {
        let y = ya.px(lim);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#777" stroke-width="1.2" stroke-dasharray="8 3 2 3"/>"##
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555" font-size="11">p99 limit of the ramp ({} ms)</text>"##,
            r - 4.0,
            y - 4.0,
            fmt_ms(lim)
        );
    }

    // Series: one colour per router, one dash style per percentile.
    let styles = [("p50", ""), ("p99", "7 4"), ("p99.9", "2 3")];
    let _ = writeln!(s, r#"<g>"#);
    for (i, (router, pts)) in data.iter().enumerate() {
        let c = color(router, i);
        for (k, (_, dash)) in styles.iter().enumerate() {
            let xy: Vec<(f64, f64, bool)> = pts
                .iter()
                .filter(|p| lat(p)[k] > 0.0)
                .map(|p| (xa.px(p.rate), ya.px(lat(p)[k]), p.lossy))
                .collect();
            if xy.is_empty() {
                continue;
            }
            let path: Vec<String> = xy
                .iter()
                .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="{}" stroke-dasharray="{dash}"/>"#,
                path.join(" "),
                if k == 0 { 2.2 } else { 1.6 }
            );
            for (x, y, lossy) in xy {
                let fill = if lossy { "white" } else { c };
                let _ = match k {
                    0 => writeln!(
                        s,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{fill}" stroke="{c}" stroke-width="1.5"/>"#
                    ),
                    1 => writeln!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{fill}" stroke="{c}" stroke-width="1.5"/>"#,
                        x - 3.5,
                        y - 3.5
                    ),
                    _ => writeln!(
                        s,
                        r#"<path d="M{x:.1},{:.1} l4,7 h-8 z" fill="{fill}" stroke="{c}" stroke-width="1.3"/>"#,
                        y - 4.0
                    ),
                };
            }
        }
    }
    let _ = writeln!(s, "</g>");

    // Legend.
    let lx = r + 25.0;
    let mut ly = t + 10.0;
    let _ = writeln!(
        s,
        r#"<text x="{lx}" y="{ly}" font-weight="bold">router</text>"#
    );
    ly += 20.0;
    for (i, (router, _)) in data.iter().enumerate() {
        let c = color(router, i);
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{c}" stroke-width="3"/>"#,
            ly - 4.0,
            lx + 28.0,
            ly - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{ly}">{}</text>"#,
            lx + 36.0,
            esc(router)
        );
        ly += 20.0;
    }
    ly += 12.0;
    let _ = writeln!(
        s,
        r#"<text x="{lx}" y="{ly}" font-weight="bold">percentile</text>"#
    );
    ly += 20.0;
    for (k, (name, dash)) in styles.iter().enumerate() {
        let y = ly - 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{y}" x2="{}" y2="{y}" stroke="#333" stroke-width="1.6" stroke-dasharray="{dash}"/>"##,
            lx + 28.0
        );
        let xm = lx + 14.0;
        let _ = match k {
            0 => writeln!(s, r##"<circle cx="{xm}" cy="{y}" r="3.5" fill="#333"/>"##),
            1 => writeln!(
                s,
                r##"<rect x="{}" y="{}" width="7" height="7" fill="#333"/>"##,
                xm - 3.5,
                y - 3.5
            ),
            _ => writeln!(
                s,
                r##"<path d="M{xm},{} l4,7 h-8 z" fill="#333"/>"##,
                y - 4.0
            ),
        };
        let _ = writeln!(s, r#"<text x="{}" y="{ly}">{name}</text>"#, lx + 36.0);
        ly += 20.0;
    }
    ly += 12.0;
    let _ = writeln!(
        s,
        r##"<circle cx="{}" cy="{}" r="3.5" fill="white" stroke="#333" stroke-width="1.5"/>"##,
        lx + 14.0,
        ly - 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{ly}">hollow: most runs at</text>"#,
        lx + 36.0
    );
    ly += 15.0;
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{ly}">this rate lost updates</text>"#,
        lx + 36.0
    );
    let _ = writeln!(s, "</svg>");
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: report DIR   (a results directory of bench/compare.sh)");
        std::process::exit(2);
    }
    let dir = Path::new(&args[0]);
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) => {
            eprintln!("report: cannot read {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    files.sort();
    let mut data = Data::default();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(t) => parse_lines(&t, &mut data),
            Err(e) => data.errors.push(format!("{}: {e}", f.display())),
        }
    }
    if data.runs.is_empty() {
        eprintln!("report: no runs in {}/*.jsonl", dir.display());
    }
    let table = build_table(
        &data,
        &read_facts(dir, "machine.txt"),
        &read_facts(dir, "settings.txt"),
    );
    let svg = build_svg(&data);
    for (name, text) in [("table.md", table), ("latency.svg", svg)] {
        if let Err(e) = std::fs::write(dir.join(name), text) {
            eprintln!("report: cannot write {name}: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(router: &str, scen: &str, rep: u32, result: &str) -> String {
        format!(
            r#"{{"router":"{router}","scenario":"{scen}","rep":{rep},"run":"x","result":{result}}}"#
        )
    }

    fn sample() -> Data {
        let mut text = String::new();
        for (router, p50s) in [
            ("switchyard", [1.0, 2.0, 4.0]),
            ("ceiling", [1.0, 1.0, 1.0]),
        ] {
            for (i, p50) in p50s.iter().enumerate() {
                text += &line(
                    router,
                    "a",
                    i as u32 + 1,
                    &format!(
                        r#"{{"mode":"fixed","offered_rate":1000.0,"received":10,"lost":0,"duplicated":0,
                        "latency_ms":{{"p50":{p50},"p99":5.0,"p999":6.0}},
                        "router":{{"cpu_s_per_100k":10.0}},"generator":{{"cpu_s_per_100k":12.0}}}}"#
                    )
                    .replace('\n', ""),
                );
                text.push('\n');
            }
        }
        text += &line(
            "switchyard",
            "c",
            1,
            r#"{"mode":"max-step","offered_rate":2000.0,"received":10,"lost":3,"latency_ms":{"p50":3.0,"p99":50.0,"p999":70.0}}"#,
        );
        text.push('\n');
        text += &line(
            "switchyard",
            "c",
            1,
            r#"{"mode":"max","max_throughput":1999.5,"max_p99_ms":100.0,"at_highest":{"latency_ms":{"p99":9.0}}}"#,
        );
        text.push('\n');
        text += &line(
            "ceiling",
            "e25k",
            1,
            r#"{"mode":"fixed","offered_rate":25000.0,"received":0,"lost":75000,"latency_ms":{"p50":0.0,"p99":0.0,"p999":0.0},"router":{"cpu_s_per_100k":4.0}}"#,
        );
        text.push('\n');
        text += r#"{"router":"node","scenario":"a","rep":1,"run":"a-node-rep1","error":"generator exit 1, 0 JSON lines"}"#;
        text.push('\n');
        let mut d = Data::default();
        parse_lines(&text, &mut d);
        d
    }

    #[test]
    fn medians_and_cells() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(fmt_cell(&[]), "–");
        assert_eq!(fmt_cell(&[1.5]), "1.50");
        assert_eq!(fmt_cell(&[1.0, 2.0, 40.0]), "2.00 [1.00–40.0]");
        assert_eq!(fmt_num(41499.0), "41499");
        assert_eq!(fmt_num(0.1234), "0.123");
    }

    #[test]
    fn table_has_medians_ratios_and_errors() {
        let d = sample();
        assert_eq!(d.routers(), vec!["switchyard", "ceiling"]);
        let t = build_table(&d, &["nproc: 2".into()], &[]);
        assert!(
            t.contains("| figure | switchyard | ceiling | switchyard / ceiling |"),
            "{t}"
        );
        assert!(t.contains("| (a) 100 agents × 10/s: p50 latency, ms | 2.00 [1.00–4.00] | 1.00 [1.00–1.00] | 2.00 |"), "{t}");
        assert!(
            t.contains("| (c) max sustained throughput, 100 agents, round trips/s | 2000 | – |"),
            "{t}"
        );
        assert!(t.contains("a-node-rep1: generator exit 1"), "{t}");
        assert!(t.contains("- nproc: 2"));
        assert!(!t.contains("(d)"), "{t}");
        assert!(
            t.contains("| (e) 25000/s: p99 latency, ms | – | nothing received † |"),
            "{t}"
        );
        assert!(t.contains("(100 × 250/s), s | – | 4.00 † |"), "{t}");
    }

    #[test]
    fn svg_has_series_and_legend() {
        let d = sample();
        let pts = series(&d);
        assert_eq!(pts.len(), 2);
        let sy = &pts[0].1;
        assert_eq!(sy.len(), 2);
        assert_eq!((sy[0].rate, sy[0].p50, sy[0].lossy), (1000.0, 2.0, false));
        assert_eq!((sy[1].rate, sy[1].lossy), (2000.0, true));
        let svg = build_svg(&d);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">switchyard</text>") && svg.contains(">ceiling</text>"));
        assert!(svg.contains("p99 limit of the ramp (100 ms)"));
        assert!(svg.contains(">1k</text>"));
    }
}
