//! Actor tests of `Monitor` with real subscriber sessions
//! (`testing::FakePeer`) on a paused clock: PROTOCOL 4, the bounded queue
//! per subscriber and the `lagged` rule.

use serde_json::Value;
use tokio::time::pause;

use super::MonitorConfig;
use crate::agent::RouterConfig;
use crate::network::events::SwitchEvent;
use crate::network::Publish;
use crate::testing::TestRouter;

fn log_event(i: usize) -> SwitchEvent {
    SwitchEvent::Log {
        ts: 1.0,
        text: format!("e{i}"),
    }
}

fn log_index(v: &Value) -> usize {
    assert_eq!(v["event"], "log", "expected a log event: {v}");
    v["text"]
        .as_str()
        .and_then(|t| t.strip_prefix('e'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not one of the test's events: {v}"))
}

/// PROTOCOL 4: a subscriber that stops reading loses its oldest events
/// past its bounded queue, and when it reads again is told so with one
/// `lagged` event (the number dropped) before the newest events, in order.
/// It never slows the switch: a subscriber that keeps reading gets every
/// event meanwhile.
#[actix::test]
async fn lagged_4_a_slow_subscriber_loses_its_oldest_events_and_is_told_once() {
    pause();
    let mut r = TestRouter::start(RouterConfig::default());
    let queue_limit = 5;
    let monitor = r.monitor(MonitorConfig {
        queue_limit,
        in_flight_bytes: 1024,
        ..MonitorConfig::default()
    });
    let mut slow = r.subscriber(&monitor);
    let mut fast = r.subscriber(&monitor);
    assert_eq!(slow.next_json().await["event"], "snapshot");
    assert_eq!(fast.next_json().await["event"], "snapshot");

    slow.stop_reading();
    let n = 100;
    for i in 0..n {
        r.rctx.network.do_send(Publish(log_event(i)));
        assert_eq!(
            log_index(&fast.next_json().await),
            i,
            "the fast one keeps up"
        );
    }

    slow.read_again();
    // What was written before the socket filled comes first, in order.
    let mut next = 0;
    let lagged = loop {
        let v = slow.next_json().await;
        if v["event"] == "lagged" {
            break v;
        }
        assert_eq!(log_index(&v), next, "in order, none skipped");
        next += 1;
    };
    let dropped = lagged["dropped"].as_u64().expect("lagged says how many") as usize;
    assert!(dropped > 0);
    assert_eq!(next + dropped + queue_limit, n, "written + dropped + kept");
    for i in n - queue_limit..n {
        assert_eq!(
            log_index(&slow.next_json().await),
            i,
            "the newest, in order"
        );
    }
    assert_eq!(r.metrics.monitor_events_dropped.get() as usize, dropped);

    // One `lagged` only: the next event comes on its own.
    r.rctx.network.do_send(Publish(log_event(n)));
    assert_eq!(log_index(&slow.next_json().await), n);
    assert_eq!(log_index(&fast.next_json().await), n);
}
