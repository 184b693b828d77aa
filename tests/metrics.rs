//! `/metrics` and `/metrics/actors` (issue: actor metrics endpoint).

use serde_json::json;

use crate::common::*;

#[actix_web::test]
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
    s.stop().await;
}

#[actix_web::test]
async fn prometheus_text_counts_messages_by_kind_and_type() {
    let s = Switch::start().await;
    let mut b = s.backend().await;
    let mut a = s.agent("a1").await;
    for n in 0..3 {
        a.send(live_update("a1", "mephisto_bound_live_update", n))
            .await;
        b.recv_type("mephisto_bound_live_update").await;
    }
    let (status, ctype, text) = get(&s.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"));
    let v = |name: &str, l: &[(&str, &str)]| parse_metric(&text, name, l);
    assert_eq!(
        v(
            "switchyard_actor_messages_total",
            &[("kind", "Agent"), ("message", "AgentAlive")]
        ),
        1.0
    );
    // The updates pass the Agent and the BackendLink by their shortcuts
    // and are written by the backend's session.
    assert_eq!(
        v(
            "switchyard_packets_forwarded_total",
            &[("direction", "to_backend")]
        ),
        3.0
    );
    assert!(
        v(
            "switchyard_actor_messages_total",
            &[("kind", "WsSession"), ("message", "Deliver")]
        ) >= 4.0
    );
    assert_eq!(
        v(
            "switchyard_actor_messages_total",
            &[("kind", "AgentDirectory"), ("message", "BindAgent")]
        ),
        1.0
    );
    assert_eq!(v("switchyard_actors_live", &[("kind", "Agent")]), 1.0);
    assert_eq!(v("switchyard_connections_open", &[("link", "router")]), 2.0);
    assert_eq!(v("switchyard_backend_connected", &[]), 1.0);
    assert!(
        v(
            "switchyard_actor_handle_seconds_count",
            &[("kind", "Agent")]
        ) >= 1.0
    );
    assert!(text.contains("switchyard_actor_mailbox_depth{kind=\"Agent\"}"));
    assert!(text.contains("switchyard_http_requests_total"));
    s.stop().await;
}
