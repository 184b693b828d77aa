//! The map of `actors/src` stays true: reading the `crate::` paths of every
//! source file, no two top-level modules depend on each other, directly or
//! round a loop, except `directory` and `agent` (the directory makes
//! agents; an agent tells the directory when it retires). Support modules
//! (`clock`, `mailbox`, `outbox`, ...) and `metrics` depend on no actor.
//!
//! It reads the sources as they are, so it cannot fall behind them.
//! Test-only files (`*_tests.rs`) are not read: they drive actors through
//! `testing`, which may name every module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The one pair of modules allowed to need each other.
const ALLOWED: [&str; 2] = ["agent", "directory"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("actors/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line, without its comment (`//` outside a string).
fn code_of(line: &str) -> &str {
    let mut in_str = false;
    let mut prev = '\0';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '/' if !in_str && prev == '/' => return &line[..i - 1],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The top-level modules a source text names with `crate::`, including
/// those inside `crate::{a, b::c}`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().map(code_of).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Top-level module -> the top-level modules its files name.
fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?;
            let first = rel.components().next()?.as_os_str().to_str()?;
            Some(first.trim_end_matches(".rs").to_string())
        })
        .filter(|m| m != "lib")
        .collect();
    let mut graph = Graph::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_str()
            .expect("utf-8 names")
            .trim_end_matches(".rs")
            .to_string();
        // Test-only files (`*_tests.rs`, compiled under `cfg(test)`) may
        // use the fakes of `testing`, which start every actor: what they
        // name is not a dependency of the product.
        let test_only = f
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("_tests.rs"));
        if module == "lib" || test_only {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("a readable source file");
        let edges = graph.entry(module.clone()).or_default();
        for named in named_modules(&text) {
            if named != module && modules.contains(&named) {
                edges.insert(named);
            }
        }
    }
    graph
}

/// The groups of modules that reach each other (strongly connected
/// components of more than one module).
fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for (m, r) in &reached {
        let group: BTreeSet<String> = r
            .iter()
            .filter(|n| reached.get(n).is_some_and(|back| back.contains(*m)))
            .cloned()
            .chain(std::iter::once((*m).clone()))
            .collect();
        if group.len() > 1 && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

fn allowed(group: &BTreeSet<String>) -> bool {
    group.len() == 2 && ALLOWED.iter().all(|m| group.contains(*m))
}

#[test]
fn no_module_cycle_but_directory_and_agent() {
    let graph = crate_graph();
    assert!(
        graph.contains_key("agent") && graph.contains_key("network"),
        "the sources were read: {graph:?}"
    );
    let bad: Vec<_> = cycles(&graph).into_iter().filter(|g| !allowed(g)).collect();
    assert!(
        bad.is_empty(),
        "modules that need each other: {bad:?}\n{graph:#?}"
    );
}

#[test]
fn metrics_and_the_support_modules_name_no_actor() {
    let graph = crate_graph();
    let actors = [
        "agent",
        "directory",
        "network",
        "uart",
        "socket",
        "monitor",
        "uplink",
        "channel",
    ];
    for support in [
        "metrics",
        "mailbox",
        "flow",
        "clock",
        "shutdown",
        "outbox",
        "backoff",
        "rng",
        "log_limit",
        "wire",
    ] {
        let named = graph.get(support).cloned().unwrap_or_default();
        let bad: Vec<_> = actors.iter().filter(|a| named.contains(**a)).collect();
        assert!(bad.is_empty(), "{support} names {bad:?}");
    }
}

#[test]
fn the_reading_finds_paths_groups_and_loops() {
    let text = "use crate::a::B;\nuse crate::{b, c::D};\n// crate::e\nlet s = \"x\"; // crate::f\nlet u = \"ws://h\"; crate::g::h();";
    let named = named_modules(text);
    assert_eq!(
        named,
        ["a", "b", "c", "g"].iter().map(|s| s.to_string()).collect()
    );
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
    };
    edge(&mut g, "agent", "directory");
    edge(&mut g, "directory", "agent");
    assert!(cycles(&g).iter().all(allowed));
    edge(&mut g, "uart", "network");
    edge(&mut g, "network", "clock");
    assert!(cycles(&g).iter().all(allowed));
    edge(&mut g, "clock", "uart");
    let found = cycles(&g);
    assert!(found.iter().any(|c| !allowed(c)), "{found:?}");
}
