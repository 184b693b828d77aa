//! Actor tests of `BackendLink`'s outbox across a backend reconnect
//! (PROTOCOL 1.2 `mephisto_bound_live_update`, 1.4 "one ordered backend
//! outbox"), driven through real sessions (`testing::FakePeer`).

use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::pause;

use super::{CancelRequest, RegisterRequest, RouterConfig};
use crate::metrics::drop_reason;
use crate::network::events::SwitchEvent;
use crate::testing::{until, wait_event, TestRouter, WAIT};
use crate::wire::{Packet, PacketType};

/// PROTOCOL 1.4: packets for the backend made while no backend is
/// connected wait in the outbox (bounded; overflow dropped oldest-first and
/// counted) and reach the next backend socket in order when it says
/// `alive`; then packets flow straight again, after them.
#[actix::test]
async fn packets_wait_for_the_next_backend_in_order_within_the_bound() {
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

/// A request's packet as the HTTP handlers make it: `request_id` as the
/// subject and in `data`.
fn request(
    packet_type: PacketType,
    request_id: &str,
) -> (RegisterRequest, oneshot::Receiver<Packet>) {
    let (reply, answer) = oneshot::channel();
    let packet = Packet::new(
        packet_type,
        request_id,
        json!({ "provider_data": {}, "request_id": request_id }),
    );
    let msg = RegisterRequest {
        request_id: request_id.into(),
        packet,
        reply,
    };
    (msg, answer)
}

/// PROTOCOL 1.4: the outbox delivers in order, and a request that timed
/// out takes only its own packet out of it: another request's packet
/// waiting beside it still reaches the next backend.
#[actix::test]
async fn a_cancelled_request_takes_only_its_own_packet_out() {
    pause();
    let mut r = TestRouter::start(RouterConfig::default());
    let (first, _r1) = request(PacketType::RegisterAgent, "r1");
    let (second, _r2) = request(PacketType::SubmitOnboarding, "r2");
    r.rctx.backend.do_send(first);
    r.rctx.backend.do_send(second);
    assert_eq!(r.backend_info().await.outbox_depth, 2, "no backend yet");

    r.rctx.backend.do_send(CancelRequest {
        request_id: "r1".into(),
    });
    let info = r.backend_info().await;
    assert_eq!(info.outbox_depth, 1, "r2's packet still waits");
    assert_eq!(info.pending_requests, 1);
    let stale = r
        .metrics
        .packets_dropped
        .with_label_values(&[drop_reason::STALE_REQUEST]);
    assert_eq!(stale.get(), 1);

    let mut backend = r.backend_socket().await;
    let p = backend.next_json().await;
    assert_eq!(p["packet_type"], "submit_onboarding", "{p}");
    assert_eq!(p["data"]["request_id"], "r2");
    let empty = || async { r.backend_info().await.outbox_depth == 0 };
    until("the outbox is empty", empty).await;
}

/// PROTOCOL 4 `backend` events: a backend connecting and going away is
/// published to the switch's subscribers (`/monitor`).
#[actix::test]
async fn the_backend_connecting_and_going_away_is_published() {
    pause();
    let mut r = TestRouter::start(RouterConfig::default());
    let mut events = r.events();
    let backend_event = |want: bool| {
        move |e: &SwitchEvent| {
            matches!(e, SwitchEvent::Backend { connected, .. } if *connected == want).then_some(())
        }
    };

    let mut backend = r.backend_socket().await;
    wait_event(&mut events, "backend connected", WAIT, backend_event(true)).await;

    backend.vanish();
    backend.until_closed().await;
    wait_event(&mut events, "backend gone", WAIT, backend_event(false)).await;
}
