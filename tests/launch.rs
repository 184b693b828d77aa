//! The Mephisto launcher (`deploy/mephisto/server.js`) started the way
//! Mephisto's local architect starts a router: the folder copied elsewhere,
//! `node server.js` run inside the copy in its own process group with `PORT`
//! set, stopped with SIGTERM to the node process alone.
//!
//! A module of tests/tests.rs that uses nothing from its siblings (no
//! `super::`/`crate::` paths): it drives the built binary, not the library.

use crate::common::{alive, free_port};
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const START_DEADLINE: Duration = Duration::from_secs(20);
const REPLY_DEADLINE: Duration = Duration::from_secs(5);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Owns the node process and the temp dir: on drop (a failed test
/// included) the whole process group (node and the switch it started) is
/// killed, the launcher's output is printed if the test failed, and the
/// temp dir is removed.
struct Launch {
    root: PathBuf,
    server_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Launch {
    fn new() -> Launch {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let root =
            std::env::temp_dir().join(format!("switchyard-launch-{}-{stamp}", std::process::id()));
        let server_dir = root.join("server");
        let log = root.join("launcher.log");
        fs::create_dir_all(&root).expect("create the temp dir");
        Launch {
            root,
            server_dir,
            log,
            child: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("poll the node process")
    }

    fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Panics with the launcher's output when node has already exited.
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.try_wait() {
            panic!(
                "node server.js exited ({status}) while {what}; its output:\n{}",
                self.output()
            );
        }
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // The process group led by node: node and the switch.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- launcher output ---\n{}\n---", self.output());
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A copy like Mephisto's `shutil.copytree`, minus anything a local run of
/// the launcher may have left behind.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy");
    for entry in fs::read_dir(from).expect("read deploy/mephisto") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if name == "node_modules" || name == "switchyard-data" {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).expect("copy a file");
        }
    }
}

async fn next_json(ws: &mut Ws, what: &str) -> Value {
    let deadline = tokio::time::Instant::now() + REPLY_DEADLINE;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no {what} within {REPLY_DEADLINE:?}"),
            Ok(None) => panic!("socket ended while waiting for {what}"),
            Ok(Some(Err(e))) => panic!("socket error while waiting for {what}: {e}"),
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Text(text) => {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// Reads packets until one of `packet_type` arrives.
async fn packet_of_type(ws: &mut Ws, packet_type: &str) -> Value {
    loop {
        let packet = next_json(ws, packet_type).await;
        if packet["packet_type"] == packet_type {
            return packet;
        }
    }
}

/// `GET path` over plain HTTP/1.1; the whole response as text.
async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect for HTTP");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send HTTP request");
    let mut response = Vec::new();
    tokio::time::timeout(REPLY_DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("HTTP response in time")
        .expect("read HTTP response");
    String::from_utf8_lossy(&response).into_owned()
}

#[test_deadline::test(tokio)]
async fn mephisto_launcher_starts_serves_and_stops_cleanly() {
    // Not a skip: the test command installs node, so its absence is a
    // failure of the run, never a silent green.
    assert!(
        node_available(),
        "`node` is not on PATH: this test needs it (scripts/test installs nodejs)"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mephisto");
    assert!(
        source.join("server.js").is_file(),
        "missing {}",
        source.join("server.js").display()
    );

    let mut launch = Launch::new();
    copy_tree(&source, &launch.server_dir);
    let port = free_port();

    // As Mephisto's LocalArchitect.deploy: cwd = the copy, env = ours + PORT,
    // own process group (preexec_fn=os.setpgrp). The launcher's default is
    // 0.0.0.0:$PORT; the test keeps to loopback through SWITCHYARD_ARGS.
    let log = fs::File::create(&launch.log).expect("create the log");
    let child = Command::new("node")
        .arg("server.js")
        .current_dir(&launch.server_dir)
        .env("PORT", port.to_string())
        .env("SWITCHYARD_BIN", env!("CARGO_BIN_EXE_switchyard"))
        .env("SWITCHYARD_ARGS", format!("--http 127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("spawn node server.js");
    launch.child = Some(child);

    // Wait until the WebSocket accepts.
    let url = format!("ws://127.0.0.1:{port}/");
    let started = Instant::now();
    let mut ws: Ws = loop {
        launch.assert_running("starting");
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => break ws,
            Err(_) if started.elapsed() < START_DEADLINE => tokio::time::sleep(POLL).await,
            Err(e) => panic!(
                "the WebSocket at {url} did not accept within {START_DEADLINE:?}: {e}\n{}",
                launch.output()
            ),
        }
    };
    println!("WebSocket accepted after {:?}", started.elapsed());

    // The switch runs from the copied folder.
    let index = http_get(port, "/").await;
    assert!(index.starts_with("HTTP/1.1 200"), "GET /: {index}");
    assert!(
        index.contains("wrap_crowd_source.js") && index.contains("bundle.js"),
        "GET / should serve the copied static/index.html: {index}"
    );
    assert!(
        launch.server_dir.join("switchyard-data").is_dir(),
        "the data dir should be beside server.js"
    );

    // alive -> update_status
    let agent = "launch-agent-1";
    ws.send(Message::Text(alive(agent).to_string()))
        .await
        .expect("send alive");
    let status = packet_of_type(&mut ws, "update_status").await;
    assert_eq!(status["subject_id"], agent, "{status}");
    assert_eq!(status["data"]["status"], "none", "{status}");

    // heartbeat -> the same packet with last_mephisto_ping
    ws.send(Message::Text(
        json!({"packet_type": "heartbeat", "subject_id": agent, "data": {}}).to_string(),
    ))
    .await
    .expect("send heartbeat");
    let beat = packet_of_type(&mut ws, "heartbeat").await;
    assert_eq!(beat["subject_id"], agent, "{beat}");
    assert!(
        beat["data"]["last_mephisto_ping"].is_u64() || beat["data"]["last_mephisto_ping"].is_i64(),
        "last_mephisto_ping should be integer milliseconds: {beat}"
    );
    assert_eq!(beat["data"]["status"], "none", "{beat}");

    // SIGTERM to node alone, as Mephisto's shutdown (Popen.terminate) does.
    launch.assert_running("serving");
    let pid = launch.pid().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let stop_started = Instant::now();

    // The socket is closed with 1001 ...
    let close_code = loop {
        let left = STOP_DEADLINE.saturating_sub(stop_started.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("no close frame within {STOP_DEADLINE:?} of SIGTERM"),
            Ok(None) => panic!("socket ended without a close frame"),
            Ok(Some(Err(e))) => panic!("socket error instead of a close frame: {e}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                break frame.map(|f| u16::from(f.code));
            }
            Ok(Some(Ok(_))) => continue,
        }
    };
    assert_eq!(close_code, Some(1001), "close code after SIGTERM");

    // ... and node exits 0 within the deadline.
    let status = loop {
        if let Some(status) = launch.try_wait() {
            break status;
        }
        assert!(
            stop_started.elapsed() < STOP_DEADLINE,
            "node server.js still running {STOP_DEADLINE:?} after SIGTERM"
        );
        tokio::time::sleep(POLL).await;
    };
    println!(
        "node server.js exited ({status}) {:?} after SIGTERM",
        stop_started.elapsed()
    );
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let output = launch.output();
    assert!(
        output.contains("switchyard exited with status 0"),
        "launcher output:\n{output}"
    );
}
