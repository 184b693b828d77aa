//! `/metrics` and `/metrics/actors` (DESIGN house rule 10: metrics are a
//! contract).

use serde_json::json;

use crate::common::*;

#[test_deadline::test]
async fn actors_endpoint_lists_every_live_actor_with_totals() {
    let s = Switch::start().await;
    let _b = s.backend().await;
    let _a = s.agent("a1").await;
    let _a2 = s.agent("a2").await;
    let (status, v) = get_json(&s.url("/metrics/actors")).await;
    assert_eq!(status, 200);
    assert_eq!(v["totals"]["Agent"]["live"], json!(2));
    assert_eq!(v["totals"]["WsSession"]["live"], json!(3));
    assert_eq!(v["totals"]["NetworkManager"]["live"], json!(1));
    assert_eq!(v["totals"]["AgentDirectory"]["live"], json!(1));
    assert_eq!(v["totals"]["BackendLink"]["live"], json!(1));
    let actors = v["actors"].as_array().unwrap();
    let agent = actors
        .iter()
        .find(|a| a["kind"] == json!("Agent") && a["id"] == json!("a1"))
        .expect("agent a1 listed");
    assert!(agent["handled"].as_u64().unwrap() >= 1);
    assert!(agent["mailbox_depth"].is_u64());
    assert!(agent["started_at"].as_f64().unwrap() > 1.6e9);
    // A socket is named by its peer's address (what a log line of a
    // refused peer quotes, PROTOCOL 1.5).
    let sessions: Vec<_> = actors
        .iter()
        .filter(|a| a["kind"] == json!("WsSession"))
        .collect();
    assert_eq!(sessions.len(), 3);
    for session in sessions {
        let id = session["id"].as_str().unwrap();
        assert!(id.starts_with("127.0.0.1:"), "{session}");
    }
    s.stop().await;
}

/// The sum of every series of `name` whose labels include `labels`.
fn sum_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    assert_declared(name);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, l) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels.iter().all(|(k, v)| {
                    l.split(',')
                        .any(|kv| kv.trim_end_matches('}') == format!("{k}=\"{v}\""))
                })
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

// DESIGN house rule 10 (metrics are a contract) and PROTOCOL 1.2: the
// Prometheus text counts every forwarded packet by direction, the open
// sockets by link, the backend link, and the work of each actor by its
// architecture name (which messages an actor handles is its own business,
// so the test sums over them rather than naming them).
#[test_deadline::test]
async fn prometheus_text_counts_packets_sockets_and_actor_work() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let mut a = s.agent("a1").await;
    for n in 0..3 {
        a.send(live_update("a1", "mephisto_bound_live_update", n))
            .await;
        b.recv_type("mephisto_bound_live_update").await;
    }
    for n in 0..2 {
        b.send(live_update("a1", "client_bound_live_update", n))
            .await;
        a.recv_type("client_bound_live_update").await;
    }
    let (status, ctype, text) = get(&s.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let v = |name: &str, l: &[(&str, &str)]| parse_metric(&text, name, l);
    assert_eq!(
        v(
            "switchyard_packets_forwarded_total",
            &[("direction", "to_backend")]
        ),
        3.0
    );
    // The agent's `update_status` (its answer to `alive`) and the two
    // updates.
    assert_eq!(
        v(
            "switchyard_packets_forwarded_total",
            &[("direction", "to_agent")]
        ),
        3.0
    );
    assert_eq!(v("switchyard_actors_live", &[("kind", "Agent")]), 1.0);
    assert_eq!(v("switchyard_actors_live", &[("kind", "WsSession")]), 2.0);
    assert_eq!(v("switchyard_connections_open", &[("link", "router")]), 2.0);
    assert_eq!(v("switchyard_backend_connected", &[]), 1.0);
    assert_eq!(v("switchyard_agents", &[("status", "none")]), 1.0);
    for kind in ["Agent", "WsSession", "AgentDirectory", "BackendLink"] {
        assert!(
            sum_of(&text, "switchyard_actor_messages_total", &[("kind", kind)]) >= 1.0,
            "{kind} handled nothing"
        );
        assert!(
            v("switchyard_actor_handle_seconds_count", &[("kind", kind)]) >= 1.0,
            "{kind} timed nothing"
        );
        v("switchyard_actor_mailbox_depth", &[("kind", kind)]);
    }
    s.stop().await;
}
