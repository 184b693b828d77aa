//! Actor tests of `BackendLink`'s outbox across a backend reconnect
//! (PROTOCOL 1.2 `mephisto_bound_live_update`, 1.4 "one ordered backend
//! outbox"), driven through real sessions (`testing::FakePeer`).

use serde_json::json;
use tokio::time::pause;

use super::RouterConfig;
use crate::metrics::drop_reason;
use crate::testing::{until, TestRouter};

/// PROTOCOL 1.4: packets for the backend made while no backend is
/// connected wait in the outbox (bounded; overflow dropped oldest-first and
/// counted) and reach the next backend socket in order when it says
/// `alive`; then packets flow straight again, after them.
#[actix::test]
async fn outbox_1_4_packets_wait_for_the_next_backend_in_order_within_the_bound() {
    pause();
    let mut config = RouterConfig::default();
    config.backend.outbox_limit = 3;
    let mut r = TestRouter::start(config);
    let update = "mephisto_bound_live_update";

    let mut first = r.backend_socket().await;
    let mut agent = r.agent_socket("a1").await;
    agent.send_packet(update, "a1", json!({ "n": 0 }));
    assert_eq!(first.next_packet(update).await["data"]["n"], 0);

    first.vanish();
    first.until_closed().await;
    let away = || async { !r.backend_info().await.connected };
    until("the backend link saw its socket go", away).await;

    for n in 1..=5 {
        agent.send_packet(update, "a1", json!({ "n": n }));
    }
    let full = r
        .metrics
        .packets_dropped
        .with_label_values(&[drop_reason::BACKEND_OUTBOX_FULL]);
    let two_dropped = || async { full.get() == 2 };
    until("two packets past the bound are dropped", two_dropped).await;
    assert_eq!(r.backend_info().await.outbox_depth, 3, "the bound holds");
    assert_eq!(r.metrics.backend_outbox_depth.get(), 3);

    let mut second = r.backend_socket().await;
    for n in 3..=5 {
        let p = second.next_packet(update).await;
        assert_eq!(p["data"]["n"], n, "the newest three, oldest first");
        assert_eq!(p["subject_id"], "a1");
    }
    let empty = || async { r.backend_info().await.outbox_depth == 0 };
    until("the outbox is empty", empty).await;
    assert_eq!(r.metrics.backend_outbox_depth.get(), 0);

    agent.send_packet(update, "a1", json!({ "n": 6 }));
    assert_eq!(second.next_packet(update).await["data"]["n"], 6);
    assert_eq!(full.get(), 2, "nothing more was dropped");
}
