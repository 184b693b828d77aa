//! The mesh on MQTT (`--mqtt`; README, "Into your home or lab"), against a
//! real Mosquitto started by each test on a free loopback port, read and
//! commanded by a real MQTT client (rumqttc) in the test.
//!
//! The broker is `MOSQUITTO`, else Debian's `/usr/sbin/mosquitto`, else
//! `mosquitto` on the PATH; with none of them the tests fail (the test
//! command installs it, so nothing here skips).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::common::*;

fn mosquitto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/sbin/mosquitto");
    if debian.exists() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("mosquitto"))
                .find(|p| p.exists())
        })
        .expect("no mosquitto: set MOSQUITTO, or run scripts/test (it installs Debian's mosquitto)")
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Mosquitto of the test's own. Killed when dropped.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: String,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// With more lines of configuration (after a plain anonymous listener
    /// on `port`).
    fn start_with(extra: &str) -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.to_string(),
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: run by root, mosquitto would otherwise drop
                // to its own user, who cannot read the test's key files.
                "user root\nper_listener_settings true\nlistener {} 127.0.0.1\nallow_anonymous true\npersistence false\n{}\n",
                self.port, self.extra
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        wait_port(self.port);
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the broker dies without a word, forgetting everything.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new broker on the same port (nothing retained survives).
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A message as the test's client got it.
#[derive(Debug, Clone)]
struct Got {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    at: f64,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.topic, self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// What `Client::gather` waits for.
type Pred = Box<dyn Fn(&Got) -> bool>;

/// The test's MQTT client: subscribed to `filters`, every message into a
/// channel.
struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Got>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(port: u16, filters: &[&str]) -> Client {
        let id = format!("test-{}", uuid::Uuid::new_v4());
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut el) = AsyncClient::new(o, 256);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Got {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: switchyard_actors::clock::now_secs(),
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        }
        for _ in filters {
            tokio::time::timeout(WAIT, subscribed.recv())
                .await
                .expect("SUBACK")
                .unwrap();
        }
        Client { client, rx, task }
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }

    /// The next message matching `pred` within `within`.
    async fn next_where(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Got) -> bool,
    ) -> Got {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("client running");
            if pred(&m) {
                return m;
            }
        }
    }

    async fn next_on(&mut self, topic: &str) -> Got {
        let t = topic.to_string();
        self.next_where(WAIT, topic, move |m| m.topic == t).await
    }

    /// The first message matching each predicate, whatever their order.
    async fn gather(&mut self, what: &str, preds: Vec<Pred>) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut found: Vec<Option<Got>> = vec![None; preds.len()];
        while found.iter().any(Option::is_none) {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}: {found:?}"))
                .expect("client running");
            if let Some(i) = (0..preds.len()).find(|i| found[*i].is_none() && preds[*i](&m)) {
                found[i] = Some(m);
            }
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Everything that arrives until `pred` matches one (included).
    async fn until(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Got) -> bool,
    ) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("client running");
            let done = pred(&m);
            all.push(m);
            if done {
                return all;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A switch with the simulated mesh, bridged to `url`.
async fn bridged(url: String, tweak: impl FnOnce(&mut switchyard::Config)) -> Switch {
    Switch::start_with(move |c| {
        c.uart = "sim".into();
        c.sim.interval_secs = 0.2;
        c.mqtt.url = Some(url);
        c.mqtt.client_id = Some("sy-test".into());
        c.mqtt.reconnect_min_secs = 0.05;
        c.mqtt.reconnect_max_secs = 0.5;
        tweak(c);
    })
    .await
}

const DATA_TYPES: [&str; 4] = ["GPS", "TMP", "HUM", "BAT"];

// Out (issue point 2): every node data update on its topic, within a
// second of the node's frame; statuses, links and the switch's own
// availability retained, so a subscriber that comes later sees them.
#[test_deadline::test]
async fn node_data_arrives_on_its_topic_within_a_second_and_state_is_retained() {
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["switchyard/#"]).await;
    let s = bridged(broker.url(), |_| {}).await;
    s.wait_metric("switchyard_mqtt_connected", &[], 1.0).await;

    // One update of every type from every node, each within a second.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 6 * DATA_TYPES.len() {
        let m = c
            .next_where(WAIT, "data of every node and type", |m| {
                m.topic.starts_with("switchyard/local/0x")
                    && DATA_TYPES.iter().any(|t| m.topic.ends_with(t))
            })
            .await;
        let v = m.json();
        let ts = v["ts"].as_f64().expect("ts");
        assert!(
            m.at - ts < 1.0,
            "{}: {:.3} s after the frame",
            m.topic,
            m.at - ts
        );
        assert!(v["value"].is_object(), "{}: {v}", m.topic);
        let raw = v["raw"].as_str().unwrap();
        assert!(
            !raw.is_empty() && raw.len() % 2 == 0 && raw.bytes().all(|b| b.is_ascii_hexdigit())
        );
        seen.insert(m.topic.clone());
    }
    for n in 1..=6 {
        for t in DATA_TYPES {
            assert!(seen.contains(&format!("switchyard/local/0x{n:04x}/{t}")));
        }
    }
    let t = c.next_on("switchyard/local/0x0003/TMP").await.json();
    assert!(t["value"]["celsius"].is_number(), "{t}");

    // A subscriber that comes now finds the current state retained.
    let mut late = Client::connect(
        broker.port,
        &[
            "switchyard/availability",
            "switchyard/local/+/status",
            "switchyard/link/#",
        ],
    )
    .await;
    let mut statuses = std::collections::BTreeMap::new();
    let mut availability = None;
    let mut mesh_link = None;
    while statuses.len() < 6 || availability.is_none() || mesh_link.is_none() {
        let m = late.next_where(WAIT, "retained state", |m| m.retain).await;
        match m.topic.as_str() {
            "switchyard/availability" => availability = Some(m.text()),
            "switchyard/link/mesh" => mesh_link = Some(m.text()),
            t => {
                statuses.insert(t.to_string(), m.text());
            }
        }
    }
    assert_eq!(availability.as_deref(), Some("online"));
    assert_eq!(mesh_link.as_deref(), Some("up"));
    for n in 1..=6 {
        assert_eq!(
            statuses
                .get(&format!("switchyard/local/0x{n:04x}/status"))
                .map(String::as_str),
            Some("active")
        );
    }
    assert!(s.metric("switchyard_mqtt_published_total", &[]).await > 30.0);
    s.stop().await;
}

/// What Home Assistant's MQTT integration requires of a discovery config
/// (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery),
/// checked against a data message of the state topic it names.
fn check_discovery(topic: &str, cfg: &Value, data: &std::collections::BTreeMap<String, Value>) {
    let parts: Vec<&str> = topic.split('/').collect();
    assert_eq!(parts.len(), 5, "{topic}");
    assert_eq!(parts[0], "homeassistant");
    assert_eq!(parts[4], "config");
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    assert!(
        id_ok(parts[2]) && id_ok(parts[3]),
        "node_id / object_id: {topic}"
    );
    let component = parts[1];
    assert!(
        ["sensor", "binary_sensor", "device_tracker"].contains(&component),
        "{topic}"
    );
    assert!(
        cfg["unique_id"].as_str().is_some_and(id_ok),
        "{topic}: unique_id"
    );
    assert!(cfg["name"].is_string(), "{topic}: name");
    let ids = &cfg["device"]["identifiers"];
    assert!(
        ids.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
        "{topic}: device.identifiers"
    );
    // Every availability topic is one the switch publishes.
    let avail: Vec<&Value> = match &cfg["availability"] {
        Value::Array(a) => a.iter().collect(),
        _ => vec![cfg],
    };
    for a in avail {
        let t = a
            .get("topic")
            .or_else(|| a.get("availability_topic"))
            .and_then(Value::as_str)
            .expect("availability topic");
        assert!(
            t == "switchyard/availability"
                || (t.starts_with("switchyard/local/0x") && t.ends_with("/status")),
            "{topic}: availability {t}"
        );
    }
    const SENSOR_CLASSES: &[(&str, &[&str])] = &[
        ("temperature", &["°C", "°F", "K"]),
        ("humidity", &["%"]),
        ("battery", &["%"]),
        ("voltage", &["V", "mV", "µV", "kV", "MV"]),
        (
            "pressure",
            &[
                "Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi",
            ],
        ),
        ("illuminance", &["lx"]),
    ];
    match component {
        "sensor" => {
            let st = cfg["state_topic"].as_str().expect("state_topic");
            let sample = data
                .get(st)
                .unwrap_or_else(|| panic!("{topic}: no data ever on {st}"));
            // The template reads a field the data really has, as a number.
            let tpl = cfg["value_template"].as_str().expect("value_template");
            let field = tpl
                .strip_prefix("{{ value_json.value.")
                .and_then(|r| r.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("{topic}: template {tpl}"));
            assert!(
                sample["value"][field].is_number(),
                "{topic}: {field} of {sample}"
            );
            if let Some(class) = cfg.get("device_class").and_then(Value::as_str) {
                let unit = cfg["unit_of_measurement"]
                    .as_str()
                    .expect("a class has a unit");
                let units = SENSOR_CLASSES
                    .iter()
                    .find(|(c, _)| *c == class)
                    .unwrap_or_else(|| panic!("{topic}: device_class {class}"))
                    .1;
                assert!(units.contains(&unit), "{topic}: {class} in {unit}");
            }
            assert_eq!(cfg["state_class"], "measurement");
        }
        "device_tracker" => {
            assert_eq!(cfg["source_type"], "gps");
            let st = cfg["json_attributes_topic"]
                .as_str()
                .expect("json_attributes_topic");
            let sample = data
                .get(st)
                .unwrap_or_else(|| panic!("{topic}: no data on {st}"));
            assert!(sample["value"]["lat"].is_number() && sample["value"]["lon"].is_number());
            let tpl = cfg["json_attributes_template"].as_str().unwrap();
            assert!(tpl.contains("value_json.value.lat") && tpl.contains("value_json.value.lon"));
        }
        "binary_sensor" => {
            assert_eq!(cfg["state_topic"], "switchyard/link/mesh");
            assert_eq!(cfg["device_class"], "connectivity");
            assert_eq!(
                (cfg["payload_on"].as_str(), cfg["payload_off"].as_str()),
                (Some("up"), Some("down"))
            );
        }
        _ => unreachable!(),
    }
}

// Home Assistant discovery (issue point 3): a retained, valid config for
// every node and data type, the nodes as devices through the switch's.
#[test_deadline::test]
async fn discovery_messages_are_valid_home_assistant_configs_for_every_node_and_type() {
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["switchyard/#", "homeassistant/#"]).await;
    let s = bridged(broker.url(), |_| {}).await;
    let mut configs = std::collections::BTreeMap::new();
    let mut data = std::collections::BTreeMap::new();
    // 6 nodes x (GPS tracker + 3 sensors) + the switch's link sensor.
    let want = 6 * 4 + 1;
    let deadline = tokio::time::Instant::now() + WAIT;
    while configs.len() < want || data.len() < 6 * 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "configs {} data {}",
            configs.len(),
            data.len()
        );
        let m = c.next_where(WAIT, "discovery and data", |_| true).await;
        if m.topic.starts_with("homeassistant/") {
            configs.insert(m.topic.clone(), m.json());
        } else if DATA_TYPES.iter().any(|t| m.topic.ends_with(t)) {
            data.insert(m.topic.clone(), m.json());
        }
    }
    let mut unique = std::collections::BTreeSet::new();
    for (topic, cfg) in &configs {
        check_discovery(topic, cfg, &data);
        assert!(
            unique.insert(cfg["unique_id"].as_str().unwrap().to_string()),
            "{topic}: unique_id twice"
        );
    }
    // Each node is one device, through the switch's device, with a
    // temperature, a humidity, a battery voltage and a position.
    for n in 1..=6 {
        let node_id = format!("switchyard_sy-test_local_{n:04x}");
        let of_node: Vec<&Value> = configs
            .iter()
            .filter(|(t, _)| t.contains(&format!("/{node_id}/")))
            .map(|(_, c)| c)
            .collect();
        assert_eq!(of_node.len(), 4, "{node_id}");
        let classes: std::collections::BTreeSet<&str> = of_node
            .iter()
            .filter_map(|c| c["device_class"].as_str())
            .collect();
        assert_eq!(
            classes,
            ["humidity", "temperature", "voltage"].into_iter().collect()
        );
        assert!(of_node.iter().any(|c| c["source_type"] == "gps"));
        for c in of_node {
            assert_eq!(c["device"]["identifiers"], json!([node_id]));
            assert_eq!(c["device"]["via_device"], "switchyard_sy-test");
        }
    }
    // Retained: a client that subscribes now gets every one of them
    // (MQTT sets the retain flag only on what a new subscription brings).
    let mut late = Client::connect(broker.port, &["homeassistant/#"]).await;
    let mut again = std::collections::BTreeSet::new();
    while again.len() < configs.len() {
        let m = late
            .next_where(WAIT, "retained configs", |m| m.retain)
            .await;
        assert_eq!(configs.get(&m.topic), Some(&m.json()), "{}", m.topic);
        again.insert(m.topic);
    }
    // Home Assistant coming online asks for them again.
    c.publish("homeassistant/status", "online", false).await;
    c.next_where(WAIT, "configs again", |m| {
        m.topic.starts_with("homeassistant/sensor/")
    })
    .await;
    s.stop().await;

    // Switched off: no config at all, while data flows.
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["#"]).await;
    let s = bridged(broker.url(), |c| c.mqtt.discovery = false).await;
    // The configs of a type are queued before its first update: had any
    // been made, it would come before this.
    let before = c
        .until(WAIT, "data", |m| {
            m.topic.starts_with("switchyard/local/") && m.topic.ends_with("/TMP")
        })
        .await;
    assert!(
        before
            .iter()
            .all(|m| !m.topic.starts_with("homeassistant/")),
        "{:?}",
        before.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    s.stop().await;
}

// In (issue point 4): a command on a node's send topic reaches the
// simulated node, its reply arrives on the message topic, the root's
// result on the result topic; broadcasts reach every node.
#[test_deadline::test]
async fn a_command_reaches_the_node_and_its_reply_comes_back() {
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["switchyard/#"]).await;
    let s = bridged(broker.url(), |_| {}).await;
    s.wait_metric("switchyard_nodes", &[("status", "active")], 6.0)
        .await;
    s.wait_metric("switchyard_mqtt_connected", &[], 1.0).await;

    // The result and the node's reply race each other: wait for both.
    c.publish("switchyard/0x0003/send", "ping over mqtt", false)
        .await;
    let got = c
        .gather(
            "the result and the node's reply",
            vec![
                Box::new(|m: &Got| m.topic == "switchyard/0x0003/send/result"),
                Box::new(|m: &Got| {
                    m.topic == "switchyard/local/0x0003/message" && m.text().contains("got: ping")
                }),
            ],
        )
        .await;
    assert_eq!(got[0].json(), json!({"status": "ok", "command": "SEND-"}));
    assert_eq!(got[1].json()["text"], "node 0x0003 got: ping over mqtt");

    // JSON, tracked, on the long form of the topic: the root's result and
    // its delivery report on the result topic, the reply on the node's.
    c.publish(
        "switchyard/local/0x0002/send",
        r#"{"text": "tracked hi", "tracked": true}"#,
        false,
    )
    .await;
    let result = "switchyard/local/0x0002/send/result";
    let got = c
        .gather(
            "results and the tracked reply",
            vec![
                Box::new(move |m: &Got| m.topic == result && m.text().contains("\"ok\"")),
                Box::new(move |m: &Got| m.topic == result && m.text().contains("delivered")),
                Box::new(|m: &Got| {
                    m.topic == "switchyard/local/0x0002/message"
                        && m.text().contains("got: tracked hi")
                }),
            ],
        )
        .await;
    assert_eq!(got[0].json(), json!({"status": "ok", "command": "SENDI"}));
    assert_eq!(got[1].json()["status"], "delivered");
    assert_eq!(got[1].json()["command"], "SENDI");

    // A broadcast: every node answers.
    c.publish("switchyard/broadcast", "all of you", false).await;
    let mut wanted: Vec<Pred> = vec![Box::new(|m: &Got| m.topic == "switchyard/broadcast/result")];
    for n in 1..=6 {
        let topic = format!("switchyard/local/0x{n:04x}/message");
        wanted.push(Box::new(move |m: &Got| {
            m.topic == topic && m.text().contains("got: all of you")
        }));
    }
    let got = c.gather("the result and every node's reply", wanted).await;
    assert_eq!(got[0].json(), json!({"status": "ok", "command": "BCAST"}));

    // A node the switch never heard of: an error, before the radio.
    c.publish("switchyard/0x0063/send", "anyone?", false).await;
    let r = c.next_on("switchyard/0x0063/send/result").await.json();
    assert_eq!(r["status"], "error");
    assert!(r["error"].as_str().unwrap().contains("0x0063"), "{r}");
    s.wait_metric("switchyard_mqtt_commands_total", &[("outcome", "ok")], 3.0)
        .await;
    s.wait_metric(
        "switchyard_mqtt_commands_total",
        &[("outcome", "failed")],
        1.0,
    )
    .await;
    s.stop().await;
}

// Bad payloads (issue points 4 and 6): each refused on the result topic
// with what was wrong, counted by reason, and the mesh never sees it;
// commands are rate-limited per topic; a packet past the bridge's bound
// costs a reconnection and nothing else.
#[test_deadline::test]
async fn garbage_payloads_are_refused_and_counted() {
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["switchyard/#"]).await;
    // A retained command, there before the switch: its new subscription
    // brings it with the retain flag, and it is refused (it would run
    // again at every reconnection).
    c.publish("switchyard/local/0x0001/send", "again and again", true)
        .await;
    let s = bridged(broker.url(), |c| {
        c.mqtt.commands_per_sec = 1.0;
        c.mqtt.command_burst = 5;
    })
    .await;
    s.wait_metric("switchyard_mqtt_connected", &[], 1.0).await;
    // Every node known, so a well-formed command is answered `ok`.
    s.wait_metric("switchyard_nodes", &[("status", "active")], 6.0)
        .await;
    let r = c
        .next_on("switchyard/local/0x0001/send/result")
        .await
        .json();
    assert_eq!(r["status"], "error", "{r}");
    assert!(r["error"].as_str().unwrap().contains("retained"), "{r}");
    s.wait_metric(
        "switchyard_mqtt_commands_refused_total",
        &[("reason", "retained")],
        1.0,
    )
    .await;
    // Cleared, so no later subscriber runs it. The bridge sees the empty
    // payload that clears it, and refuses it as empty.
    c.publish("switchyard/local/0x0001/send", Vec::new(), true)
        .await;
    let r = c
        .next_on("switchyard/local/0x0001/send/result")
        .await
        .json();
    assert!(r["error"].as_str().unwrap().contains("empty"), "{r}");
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "switchyard/0x0001/send",
            vec![0xff, 0xfe, 0x00],
            false,
            "not_utf8",
        ),
        (
            "switchyard/0x0002/send",
            b"{\"text\": ".to_vec(),
            false,
            "bad_json",
        ),
        (
            "switchyard/0x0003/send",
            br#"{"text": "a", "evil": true}"#.to_vec(),
            false,
            "bad_json",
        ),
        (
            "switchyard/0x0004/send",
            vec![b'x'; 300],
            false,
            "message_too_long",
        ),
        (
            "switchyard/0x0005/send",
            vec![b'x'; 100_000],
            false,
            "too_large",
        ),
        ("switchyard/0x0006/send", b"   ".to_vec(), false, "empty"),
        (
            "switchyard/broadcast",
            br#"{"text": "a", "tracked": true}"#.to_vec(),
            false,
            "tracked_broadcast",
        ),
        ("switchyard/zz/send", b"hi".to_vec(), false, "bad_topic"),
    ];
    let mut counts = std::collections::BTreeMap::from([("empty", 1.0)]);
    for (topic, payload, retain, reason) in &cases {
        c.publish(topic, payload.clone(), *retain).await;
        let result = format!("{topic}/result");
        let r = c.next_on(&result).await.json();
        assert_eq!(r["status"], "error", "{topic}: {r}");
        assert!(
            r["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{topic}: {r}"
        );
        let n = counts.entry(*reason).or_insert(0.0);
        *n += 1.0;
        s.wait_metric(
            "switchyard_mqtt_commands_refused_total",
            &[("reason", reason)],
            *n,
        )
        .await;
    }
    assert_eq!(
        s.metric("switchyard_mqtt_commands_total", &[("outcome", "ok")])
            .await,
        0.0
    );

    // 20 at once on one topic: the burst of 5 (and what refills) passes,
    // the rest is refused as rate-limited; another topic is not slowed.
    for i in 0..20 {
        c.publish("switchyard/local/0x0006/send", format!("n{i}"), false)
            .await;
    }
    let mut ok = 0;
    let mut limited = 0;
    while ok + limited < 20 {
        let r = c
            .next_on("switchyard/local/0x0006/send/result")
            .await
            .json();
        match r["status"].as_str() {
            Some("ok") => ok += 1,
            _ => {
                assert!(r["error"].as_str().unwrap().contains("too many"), "{r}");
                limited += 1;
            }
        }
    }
    assert!((5..=8).contains(&ok), "{ok} passed");
    s.wait_metric(
        "switchyard_mqtt_commands_refused_total",
        &[("reason", "rate_limited")],
        limited as f64,
    )
    .await;
    c.publish("switchyard/local/0x0002/send", "other topic", false)
        .await;
    assert_eq!(
        c.next_on("switchyard/local/0x0002/send/result")
            .await
            .json()["status"],
        "ok"
    );

    // Past the bridge's packet bound (1 MiB): the connection goes, the
    // bridge comes back, and commands work again.
    c.publish("switchyard/0x0003/send", vec![b'y'; 2 << 20], false)
        .await;
    wait_for("the bridge reconnected", || async {
        s.metric("switchyard_mqtt_reconnects_total", &[]).await >= 1.0
            && s.metric("switchyard_mqtt_connected", &[]).await == 1.0
    })
    .await;
    c.publish("switchyard/0x0004/send", "still there?", false)
        .await;
    assert_eq!(
        c.next_on("switchyard/0x0004/send/result").await.json()["status"],
        "ok"
    );
    s.stop().await;
}

/// A TCP relay in front of the broker for the switch alone, whose gate the
/// test opens: with it the test's own client is subscribed to a restarted
/// broker before the bridge is let back in.
struct Gate {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, rx) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    // Held until the gate is open; closed when it shuts.
                    if rx.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.wait_for(|o| !*o) => {}
                    }
                });
            }
        });
        Gate { port, open, task }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TMP samples of node 1 the switch recorded (its history API).
async fn history_ts(s: &Switch) -> Vec<f64> {
    let (_, h) = get_json(&s.url("/api/nodes/0x0001/history?type=TMP&limit=1000")).await;
    h["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["ts"].as_f64().unwrap())
        .collect()
}

// Faults (issue points 5 and 6): the broker is killed and restarted.
// Meanwhile `switchyard_mqtt_connected` is 0 and updates wait in the
// bridge's buffer; after the reconnection every one of them arrives, in
// order, and the retained state the new broker lost is published again.
#[test_deadline::test]
async fn the_broker_killed_and_restarted_loses_nothing_within_the_buffer_and_keeps_order() {
    let tmp1 = |m: &Got| m.topic == "switchyard/local/0x0001/TMP";
    let ts_of = |m: &Got| m.json()["ts"].as_f64().unwrap();
    let mut broker = Mosquitto::start();
    let gate = Gate::start(broker.port).await;
    let mut c1 = Client::connect(broker.port, &["switchyard/#"]).await;
    let s = bridged(gate.url(), |_| {}).await;
    let first = ts_of(&c1.next_where(WAIT, "node 1's TMP", tmp1).await);

    // The broker stops answering (SIGSTOP) long enough for the bridge's
    // window of unacknowledged publishes to fill; then its connection is
    // cut and the broker dies. The bridge cannot get back in until the
    // test's new client is subscribed.
    let cut = switchyard_actors::clock::now_secs();
    broker.signal("-STOP");
    wait_for("the window full and more waiting", || async {
        s.metric("switchyard_mqtt_buffered", &[]).await >= 100.0
    })
    .await;
    gate.set(false);
    s.wait_metric("switchyard_mqtt_connected", &[], 0.0).await;
    broker.kill();
    // What the first client got from the dead broker, all of it.
    let mut seen: Vec<f64> = Vec::new();
    while let Ok(m) = c1.rx.try_recv() {
        if tmp1(&m) {
            seen.push(ts_of(&m));
        }
    }
    drop(c1);
    // Updates made while it is away wait in the bridge.
    wait_for("updates made while the broker is away", || async {
        history_ts(&s).await.iter().filter(|t| **t > cut).count() >= 10
    })
    .await;
    assert!(s.metric("switchyard_mqtt_buffered", &[]).await >= 40.0);
    broker.restart();
    let mut c2 = Client::connect(broker.port, &["switchyard/#"]).await;
    gate.set(true);
    s.wait_metric("switchyard_mqtt_connected", &[], 1.0).await;

    // Up to an update made after the reconnection, every TMP update of
    // node 1 since the first one seen: none missing, the second client's
    // in order.
    let reopened = switchyard_actors::clock::now_secs();
    let got = c2
        .until(WAIT, "an update made after the reconnection", |m| {
            tmp1(m) && ts_of(m) > reopened
        })
        .await;
    let after: Vec<f64> = got.iter().filter(|m| tmp1(m)).map(ts_of).collect();
    assert!(after.windows(2).all(|w| w[0] < w[1]), "order: {after:?}");
    let last = *after.last().unwrap();
    let recorded: Vec<f64> = history_ts(&s)
        .await
        .into_iter()
        .filter(|t| *t > first && *t <= last)
        .collect();
    let away: Vec<&f64> = recorded
        .iter()
        .filter(|t| **t > cut && **t < reopened)
        .collect();
    assert!(away.len() >= 10, "made while away: {away:?}");
    for t in &recorded {
        assert!(
            seen.contains(t) || after.contains(t),
            "the update of {t} was lost (cut at {cut}, reopened at {reopened})"
        );
    }
    assert_eq!(
        s.metric(
            "switchyard_mqtt_dropped_total",
            &[("reason", "buffer_full")]
        )
        .await,
        0.0
    );
    // The new broker knows the state again.
    let mut late = Client::connect(
        broker.port,
        &["switchyard/availability", "switchyard/local/0x0001/status"],
    )
    .await;
    let a = late.next_on("switchyard/availability").await;
    assert_eq!((a.text().as_str(), a.retain), ("online", true));
    let st = late.next_on("switchyard/local/0x0001/status").await;
    assert_eq!((st.text().as_str(), st.retain), ("active", true));
    assert!(s.metric("switchyard_mqtt_reconnects_total", &[]).await >= 1.0);
    s.stop().await;
}

// The buffer's bound (issue point 5): past it the oldest are dropped and
// counted; the newest are kept and arrive in order after the
// reconnection.
#[test_deadline::test]
async fn past_the_buffer_bound_the_oldest_are_dropped_and_counted() {
    let tmp1 = |m: &Got| m.topic == "switchyard/local/0x0001/TMP";
    let ts_of = |m: &Got| m.json()["ts"].as_f64().unwrap();
    let broker = Mosquitto::start();
    let gate = Gate::start(broker.port).await;
    let mut c = Client::connect(broker.port, &["switchyard/local/0x0001/TMP"]).await;
    // One node: 4 updates a round, so 40 messages are about 10 rounds.
    let s = bridged(gate.url(), |c| {
        c.sim.nodes = 1;
        c.mqtt.buffer_limit = 40;
    })
    .await;
    c.next_where(WAIT, "node 1's TMP", tmp1).await;
    gate.set(false);
    s.wait_metric("switchyard_mqtt_connected", &[], 0.0).await;
    let cut = switchyard_actors::clock::now_secs();
    while c.rx.try_recv().is_ok() {}
    wait_for_within("the buffer overflows", Duration::from_secs(20), || async {
        s.metric(
            "switchyard_mqtt_dropped_total",
            &[("reason", "buffer_full")],
        )
        .await
            >= 40.0
    })
    .await;
    gate.set(true);
    s.wait_metric("switchyard_mqtt_connected", &[], 1.0).await;
    let reopened = switchyard_actors::clock::now_secs();
    let got = c
        .until(WAIT, "an update made after the reconnection", |m| {
            ts_of(m) > reopened
        })
        .await;
    let kept: Vec<f64> = got.iter().map(ts_of).filter(|t| *t < reopened).collect();
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "order: {kept:?}");
    assert!(!kept.is_empty() && kept.len() <= 12, "kept {kept:?}");
    // The newest were kept: every update of the kept span arrived; the
    // oldest of the outage were dropped.
    let recorded: Vec<f64> = history_ts(&s)
        .await
        .into_iter()
        .filter(|t| *t > cut && *t < reopened)
        .collect();
    let span: Vec<&f64> = recorded.iter().filter(|t| **t >= kept[0]).collect();
    assert_eq!(span.len(), kept.len(), "recorded {span:?}, kept {kept:?}");
    assert!(
        recorded[0] < kept[0],
        "the oldest were dropped: {recorded:?} vs {kept:?}"
    );
    s.stop().await;
}

// A slow broker never slows the mesh or the agents (issue point 5): with
// the broker stopped (SIGSTOP) the bridge's buffer fills while an agent's
// round trip and the mesh API answer as before.
#[test_deadline::test]
async fn a_stopped_broker_never_slows_the_mesh_or_the_agents() {
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["switchyard/local/0x0001/TMP"]).await;
    let s = bridged(broker.url(), |c| c.mqtt.keepalive_secs = 60).await;
    c.next_on("switchyard/local/0x0001/TMP").await;
    broker.signal("-STOP");
    let buffered = s.metric("switchyard_mqtt_buffered", &[]).await;
    wait_for("the bridge's buffer grows", || async {
        s.metric("switchyard_mqtt_buffered", &[]).await > buffered + 100.0
    })
    .await;
    let mut backend = s.backend().await;
    let mut agent = s.agent("worker-1").await;
    for n in 0..20 {
        let t0 = Instant::now();
        agent
            .send(live_update("worker-1", "mephisto_bound_live_update", n))
            .await;
        let p = backend.recv_type("mephisto_bound_live_update").await;
        assert_eq!(p["data"]["n"], json!(n), "{p}");
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
    let (code, nodes) = get_json(&s.url("/api/nodes")).await;
    assert_eq!(code, 200);
    assert_eq!(nodes.as_array().unwrap().len(), 6);
    broker.signal("-CONT");
    c.next_where(WAIT, "updates flow again", |m| {
        m.json()["ts"].as_f64().unwrap() > switchyard_actors::clock::now_secs() - 0.5
    })
    .await;
    s.stop().await;
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs")
        .success();
    assert!(ok, "openssl {args:?}");
}

// `mqtts://` with the broker's CA and a username and password (issue
// point 1): the bridge connects over TLS to a listener that refuses
// anonymous clients; a wrong password is never connected.
#[test_deadline::test]
async fn tls_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
    let passwd = d.join("passwd");
    let ok = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["bridge", "s3cret"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_passwd runs")
        .success();
    assert!(ok, "mosquitto_passwd");
    let tls_port = free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\ncafile {}\ncertfile {}\nkeyfile {}\n",
        passwd.display(),
        d.join("ca.pem").display(),
        d.join("server.pem").display(),
        d.join("server.key").display()
    ));
    wait_port(tls_port);
    let mut c = Client::connect(broker.port, &["switchyard/local/0x0001/TMP"]).await;
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let ca = d.join("ca.pem");
    let s = bridged(url.clone(), |c| {
        c.mqtt.username = Some("bridge".into());
        c.mqtt.password = Some("s3cret".into());
        c.mqtt.ca_file = Some(ca.clone());
    })
    .await;
    s.wait_metric("switchyard_mqtt_connected", &[], 1.0).await;
    c.next_on("switchyard/local/0x0001/TMP").await;
    let (_, st) = get_json(&s.url("/api/mqtt")).await;
    assert_eq!(st["enabled"], true);
    assert_eq!(st["connected"], true);
    assert_eq!(st["broker"], url);
    s.stop().await;

    // A wrong password: never connected, the reason kept for the operator.
    let s = bridged(url, |c| {
        c.mqtt.username = Some("bridge".into());
        c.mqtt.password = Some("wrong".into());
        c.mqtt.ca_file = Some(ca.clone());
    })
    .await;
    wait_for("a refused attempt", || async {
        s.metric("switchyard_mqtt_reconnects_total", &[]).await >= 2.0
    })
    .await;
    assert_eq!(s.metric("switchyard_mqtt_connected", &[]).await, 0.0);
    let (_, st) = get_json(&s.url("/api/mqtt")).await;
    assert_eq!(st["connected"], false);
    assert!(
        st["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{st}"
    );
    s.stop().await;
}

// Without --mqtt nothing of MQTT runs: no metric, the API says so.
#[test_deadline::test]
async fn without_mqtt_nothing_of_it_runs() {
    let s = Switch::start().await;
    let (_, text) = {
        let (c, _, t) = get(&s.url("/metrics")).await;
        (c, t)
    };
    assert!(
        !text.contains("switchyard_mqtt_"),
        "mqtt metrics without --mqtt"
    );
    let (code, st) = get_json(&s.url("/api/mqtt")).await;
    assert_eq!((code, st), (200, json!({"enabled": false})));
    s.stop().await;
}

// Out and in through a gateway (issue point 2): a central switch bridges
// its gateways' nodes under their gateway id, with their discovery, and a
// command on a gateway node's send topic reaches the edge's simulated node.
#[test_deadline::test]
async fn a_central_switch_bridges_its_gateways_nodes_under_their_id() {
    const TOKEN: &str = "gw-token";
    let broker = Mosquitto::start();
    let mut c = Client::connect(broker.port, &["switchyard/#", "homeassistant/#"]).await;
    let url = broker.url();
    let central = Switch::start_with(move |c| {
        c.gateway_token = Some(TOKEN.into());
        c.mqtt.url = Some(url);
        c.mqtt.client_id = Some("central".into());
    })
    .await;
    let gw = format!("ws://{}/gateway", central.running.http_addr);
    let edge = Switch::start_with(move |c| {
        c.uart = "sim".into();
        c.sim.interval_secs = 0.2;
        c.uplink.url = Some(gw);
        c.uplink.gateway_id = Some("edge-1".into());
        c.uplink.token = Some(TOKEN.into());
    })
    .await;
    let got = c
        .gather(
            "the gateway node's data, status and discovery",
            vec![
                Box::new(|m: &Got| m.topic == "switchyard/edge-1/0x0003/TMP"),
                Box::new(|m: &Got| m.topic == "switchyard/edge-1/0x0003/status"),
                Box::new(|m: &Got| {
                    m.topic
                        == "homeassistant/sensor/switchyard_central_edge-1_0003/TMP_celsius/config"
                }),
            ],
        )
        .await;
    assert!(got[0].json()["value"]["celsius"].is_number());
    assert_eq!(got[1].text(), "active");
    let cfg = got[2].json();
    assert_eq!(cfg["state_topic"], "switchyard/edge-1/0x0003/TMP");
    assert_eq!(
        cfg["availability"][1]["topic"],
        "switchyard/edge-1/0x0003/status"
    );
    assert!(cfg["device"]["name"].as_str().unwrap().contains("edge-1"));

    c.publish("switchyard/edge-1/0x0003/send", "via the gateway", false)
        .await;
    let got = c
        .gather(
            "the result and the reply through the gateway",
            vec![
                Box::new(|m: &Got| m.topic == "switchyard/edge-1/0x0003/send/result"),
                Box::new(|m: &Got| {
                    m.topic == "switchyard/edge-1/0x0003/message"
                        && m.text().contains("got: via the gateway")
                }),
            ],
        )
        .await;
    assert_eq!(got[0].json(), json!({"status": "ok", "command": "SEND-"}));
    // A gateway the central does not know: an error, never a send.
    c.publish("switchyard/nowhere/0x0003/send", "lost?", false)
        .await;
    let r = c
        .next_on("switchyard/nowhere/0x0003/send/result")
        .await
        .json();
    assert_eq!(r["status"], "error", "{r}");
    edge.stop().await;
    central.stop().await;
}

// The switch's availability (issue point 2): `online` on connecting,
// `offline` from the broker (the last will) when its connection dies
// without a word, and `offline` from the switch itself on a clean stop.
#[test_deadline::test]
async fn availability_online_then_the_last_will_then_offline_on_a_clean_stop() {
    let broker = Mosquitto::start();
    let gate = Gate::start(broker.port).await;
    let mut c = Client::connect(broker.port, &["switchyard/availability"]).await;
    let s = bridged(gate.url(), |_| {}).await;
    assert_eq!(c.next_on("switchyard/availability").await.text(), "online");
    // The connection cut: the broker says the will.
    gate.set(false);
    assert_eq!(c.next_on("switchyard/availability").await.text(), "offline");
    gate.set(true);
    assert_eq!(c.next_on("switchyard/availability").await.text(), "online");
    s.stop().await;
    assert_eq!(c.next_on("switchyard/availability").await.text(), "offline");
    // Retained: a newcomer finds it.
    let mut late = Client::connect(broker.port, &["switchyard/availability"]).await;
    let m = late.next_on("switchyard/availability").await;
    assert_eq!((m.text().as_str(), m.retain), ("offline", true));
}
