//! Restarts lose nothing (PROTOCOL 1.3 agent state, 1.4 backend outbox,
//! 1.5 bounds on what is read back): a graceful stop writes the router's
//! state to `DATA_DIR/state/`, the next start reads it back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::Config;

use crate::common::*;

const STATE: &str = "data/state/router.json";

/// A switch on `dir/data` with timers long enough that nothing expires
/// while the test restarts it.
async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Switch {
    let mut config = Config::for_tests(dir.path().join("data"));
    config.agent.reconnect_grace_secs = 60.0;
    config.agent.ping_timeout_secs = 60.0;
    config.agent.idle_expiry_secs = 600.0;
    config.backend.request_timeout_secs = 30.0;
    tweak(&mut config);
    let running = switchyard::start(config).await.expect("switch starts");
    Switch { running, dir }
}

/// Stops the switch the way SIGTERM does and hands its directory back.
async fn stop(s: Switch) -> tempfile::TempDir {
    let Switch { running, dir } = s;
    running.stop().await;
    dir
}

/// Every packet up to (not including) the first of `until`.
async fn packets_until(ws: &mut Ws, until: &str) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let p = ws.recv().await;
        if p["packet_type"] == json!(until) {
            return (before, p);
        }
        before.push(p);
    }
}

fn ns(packets: &[Value], packet_type: &str, subject: &str) -> Vec<i64> {
    packets
        .iter()
        .filter(|p| p["packet_type"] == json!(packet_type) && p["subject_id"] == json!(subject))
        .map(|p| p["data"]["n"].as_i64().unwrap_or(-1))
        .collect()
}

// PROTOCOL 1.3 and 1.4 across a graceful stop: packets queued for an absent
// agent and for an absent backend, and the agents' statuses, are there
// after the restart, each once and in order; a request waiting for the
// backend at the stop is answered 503.
#[test_deadline::test]
async fn queued_packets_outbox_and_statuses_survive_a_graceful_restart() {
    let s = start_in(tempfile::tempdir().unwrap(), |_| {}).await;
    let mut backend = s.backend().await;
    let mut a1 = s.agent("a1").await;
    a1.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    a1.recv_type("heartbeat").await;
    backend
        .send(json!({"packet_type": "update_status", "subject_id": "a1",
                     "data": {"status": "in task"}}))
        .await;
    assert_eq!(
        a1.recv_type("update_status").await["data"]["status"],
        json!("in task")
    );
    a1.close().await;
    s.wait_metric("switchyard_connections_open", &[("link", "router")], 1.0)
        .await;
    // For the absent agent: queued on it.
    for n in 1..=3 {
        backend
            .send(live_update("a1", "client_bound_live_update", n))
            .await;
    }
    s.wait_metric("switchyard_packets_queued", &[], 3.0).await;

    let mut a2 = s.agent("a2").await;
    backend.close().await;
    s.wait_metric("switchyard_backend_connected", &[], 0.0)
        .await;
    // For the absent backend: kept in the outbox.
    for n in 1..=3 {
        a2.send(live_update("a2", "mephisto_bound_live_update", n))
            .await;
    }
    // A request for an agent, waiting for a backend that is not there.
    let url = s.url("/request_agent");
    let waiting = actix_web::rt::spawn(async move {
        post_json(
            &url,
            json!({"provider_data": {"worker": "w"}, "client_timestamp": 1.0}),
        )
        .await
    });
    s.wait_metric("switchyard_backend_outbox_depth", &[], 4.0)
        .await;

    let dir = stop(s).await;
    let (status, body) = waiting.await.expect("request task");
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().is_some(), "{body}");
    assert!(dir.path().join(STATE).is_file(), "state file written");

    let s = start_in(dir, |_| {}).await;
    assert!(
        !s.dir.path().join(STATE).exists(),
        "a restored state is consumed"
    );
    let (code, _) = get_json(&s.url("/is_alive")).await;
    assert_eq!(code, 200);
    for (kind, n) in [
        ("agents", 2.0),
        ("agent_packets", 3.0),
        ("outbox_packets", 3.0),
    ] {
        assert_eq!(
            s.metric("switchyard_state_restored_total", &[("kind", kind)])
                .await,
            n,
            "{kind}"
        );
    }

    // The backend gets its outbox, in order, once, before anything newer;
    // the cancelled request's register_agent is not among it.
    let mut backend = s.ws().await;
    backend.send(alive("mephisto")).await;
    backend.send(request_statuses(77.5)).await;
    let (before, statuses) = packets_until(&mut backend, "return_statuses").await;
    assert_eq!(
        before
            .iter()
            .map(|p| p["packet_type"].clone())
            .collect::<Vec<_>>(),
        vec![json!("mephisto_bound_live_update"); 3],
        "{before:?}"
    );
    assert_eq!(
        ns(&before, "mephisto_bound_live_update", "a2"),
        vec![1, 2, 3]
    );
    // The agent fields arrive as sent.
    assert_eq!(before[0]["client_timestamp"], json!(1.0));
    // Statuses as before the restart.
    assert_eq!(statuses["data"]["a1"], json!("in task"), "{statuses}");
    assert_eq!(statuses["data"]["a2"], json!("none"), "{statuses}");
    assert_eq!(statuses["client_timestamp"], json!(77.5));

    // The agent gets its queue, in order, once, then its status.
    let mut a1 = s.ws().await;
    a1.send(alive("a1")).await;
    a1.send(json!({"packet_type": "heartbeat", "subject_id": "a1", "data": {}}))
        .await;
    let (before, hb) = packets_until(&mut a1, "heartbeat").await;
    assert_eq!(ns(&before, "client_bound_live_update", "a1"), vec![1, 2, 3]);
    assert_eq!(before.len(), 4, "{before:?}");
    assert_eq!(before[3]["packet_type"], json!("update_status"));
    assert_eq!(before[3]["data"]["status"], json!("in task"));
    assert_eq!(hb["data"]["status"], json!("in task"));
    s.wait_metric("switchyard_packets_queued", &[], 0.0).await;
    s.stop().await;
}

/// A state file written by hand: `agents` agents with `packets` queued
/// packets each, and nothing for the backend.
fn state_file(agents: usize, packets: usize) -> Value {
    let agents: Vec<Value> = (0..agents)
        .map(|i| {
            let id = format!("w{i}");
            json!({
                "agent_id": id,
                "status": "waiting",
                // Times no switch wrote: not believed past now.
                "last_ping_ms": i64::MAX,
                "disconnect_time": null,
                "queue": (0..packets).map(|n| json!({
                    "text": live_update(&id, "client_bound_live_update", n as i64).to_string()
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"format": "switchyard-router-state", "version": 1, "saved_at_ms": i64::MIN,
           "agents": agents, "outbox": []})
}

fn write_state(dir: &Path, bytes: &[u8]) {
    let path = dir.join(STATE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The files the state directory holds, by name.
fn state_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("data/state"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// PROTOCOL 1.5 (bounds) for the state file: a damaged file, one of another
// version, and one over `[state] max_bytes` are each moved aside with a
// count, and the switch starts and serves; a readable one is held to the
// live bounds (agents, queue length).
#[test_deadline::test]
async fn damaged_foreign_or_oversized_state_is_set_aside_and_bounds_hold() {
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "damaged",
            b"{\"format\":\"switchyard-router-state\",\"version\":1,\"agents\":[{".to_vec(),
        ),
        (
            "version",
            json!({"format": "switchyard-router-state", "version": 999, "agents": "?"})
                .to_string()
                .into_bytes(),
        ),
        ("too_large", state_file(1, 200).to_string().into_bytes()),
    ];
    for (reason, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_state(dir.path(), &bytes);
        let s = start_in(dir, |c| c.state.max_bytes = 16 * 1024).await;
        let (code, body) = get_json(&s.url("/is_alive")).await;
        assert_eq!((code, &body["status"]), (200, &json!("Alive!")), "{reason}");
        assert_eq!(
            s.metric("switchyard_state_set_aside_total", &[("reason", reason)])
                .await,
            1.0,
            "{reason}"
        );
        s.assert_not_counted("switchyard_state_restored_total", &[("kind", "agents")])
            .await;
        let names = state_names(s.dir.path());
        assert_eq!(names.len(), 1, "{reason}: {names:?}");
        assert!(
            names[0].starts_with(&format!("router.json.{reason}-")),
            "{names:?}"
        );
        // Kept as it was, for a look.
        let kept = std::fs::read(s.dir.path().join("data/state").join(&names[0])).unwrap();
        assert_eq!(kept, bytes);
        // Agents still work.
        let mut backend = s.backend().await;
        let _a = s.agent("fresh").await;
        backend.send(request_statuses(77.5)).await;
        let r = backend.recv_type("return_statuses").await;
        assert_eq!(r["data"], json!({"fresh": "none"}));
        s.stop().await;
    }

    // Readable, but past the live bounds: 5 agents of 4 packets each for a
    // switch of 3 agents and 2 packets per agent.
    let dir = tempfile::tempdir().unwrap();
    write_state(dir.path(), state_file(5, 4).to_string().as_bytes());
    let s = start_in(dir, |c| {
        c.agent.max_agents = 3;
        c.agent.queue_limit = 2;
    })
    .await;
    for (kind, n) in [("agents", 3.0), ("agent_packets", 6.0)] {
        assert_eq!(
            s.metric("switchyard_state_restored_total", &[("kind", kind)])
                .await,
            n,
            "{kind}"
        );
    }
    for (reason, n) in [("bad_agent", 2.0), ("over_bounds", 6.0)] {
        assert_eq!(
            s.metric("switchyard_state_skipped_total", &[("reason", reason)])
                .await,
            n,
            "{reason}"
        );
    }
    assert_eq!(s.metric("switchyard_packets_queued", &[]).await, 6.0);
    // The newest two of each queue, in order.
    let mut w0 = s.ws().await;
    w0.send(alive("w0")).await;
    let (before, status) = packets_until(&mut w0, "update_status").await;
    assert_eq!(ns(&before, "client_bound_live_update", "w0"), vec![2, 3]);
    assert_eq!(status["data"]["status"], json!("waiting"));
    // The others keep their status (no ping timeout for a heartbeat from
    // the future, no overflow for a file from the distant past).
    let mut backend = s.backend().await;
    backend.send(request_statuses(77.5)).await;
    let r = backend.recv_type("return_statuses").await;
    assert_eq!(
        r["data"],
        json!({"w0": "waiting", "w1": "waiting", "w2": "waiting"})
    );
    s.stop().await;
}

fn binary() -> PathBuf {
    std::env::var_os("SWITCHYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchyard")))
}

/// The switch binary as a child process; killed if a test fails.
async fn spawn_switch(data: &Path, port: u16) -> KillOnDrop {
    let child = Command::new(binary())
        .args(["--http", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--uart", "none", "--tcp", "none", "--reconnect-grace", "60"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the switch");
    let p = KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}/is_alive");
    wait_for_within("the switch to start", Duration::from_secs(20), || async {
        match http().get(&url).send().await {
            Ok(mut r) => r.status().is_success() && r.body().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    p
}

/// Sends SIGTERM and waits for a clean exit.
async fn sigterm(mut p: KillOnDrop) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let mut exited = None;
    wait_for_within("an exit after SIGTERM", Duration::from_secs(20), || {
        exited = p.0.try_wait().expect("wait");
        std::future::ready(exited.is_some())
    })
    .await;
    let status = exited.expect("exited within the wait");
    assert!(status.success(), "exit status {status}");
}

// PROTOCOL 1.3, 1.4 with a real SIGTERM on the binary: the pending
// /request_agent is answered 503 before exit, the backend's outbox and the
// agent survive into the next process.
#[test_deadline::test]
async fn sigterm_on_the_binary_keeps_the_outbox_and_answers_waiting_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let p = spawn_switch(&data, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let ws = format!("ws://127.0.0.1:{port}/");

    let mut agent = Ws::connect(&ws).await;
    agent.send(alive("w1")).await;
    agent.recv_type("update_status").await;
    for n in 1..=2 {
        agent
            .send(live_update("w1", "mephisto_bound_live_update", n))
            .await;
    }
    let url = format!("{base}/request_agent");
    let waiting = actix_web::rt::spawn(async move {
        post_json(&url, json!({"provider_data": {}, "client_timestamp": 1.0})).await
    });
    let metrics = format!("{base}/metrics");
    wait_for("3 packets for the backend", || {
        let m = metrics.clone();
        async move { metric_at(&m, "switchyard_backend_outbox_depth", &[]).await == 3.0 }
    })
    .await;

    sigterm(p).await;
    let (status, body) = waiting.await.expect("request task");
    assert_eq!(status, 503, "{body}");
    assert!(data.join("state/router.json").is_file());

    let p = spawn_switch(&data, port).await;
    assert!(!data.join("state/router.json").exists());
    let mut backend = Ws::connect(&ws).await;
    backend.send(alive("mephisto")).await;
    backend.send(request_statuses(77.5)).await;
    let (before, statuses) = packets_until(&mut backend, "return_statuses").await;
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(ns(&before, "mephisto_bound_live_update", "w1"), vec![1, 2]);
    assert_eq!(statuses["data"]["w1"], json!("none"));
    sigterm(p).await;
}
