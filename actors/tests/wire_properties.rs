//! Property tests (stable toolchain) for the decoders that have no
//! property test next to them: client-API requests and answers (PROTOCOL
//! 3), router packets (1.1), uplink envelopes (5) and history records
//! (2.5). The fuzz targets in `fuzz/` check the same properties with
//! coverage guidance; these run with every `cargo test`.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use switchyard_actors::network::history::{utc_day, HistoryRecord};
use switchyard_actors::wire::client_api::{ClientMessage, ClientRequest};
use switchyard_actors::wire::packet::{Packet, PacketType};
use switchyard_actors::wire::uplink::{Envelope, RemoteCommand, UplinkEvent};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (any::<u16>(), bytes(255)).prop_map(|(dst, message)| ClientRequest::Send { dst, message }),
        (any::<u16>(), bytes(255))
            .prop_map(|(dst, message)| ClientRequest::SendTracked { dst, message }),
        bytes(255).prop_map(|message| ClientRequest::Broadcast { message }),
        Just(ClientRequest::Restart),
        Just(ClientRequest::Clean),
        Just(ClientRequest::NodeStatus),
        Just(ClientRequest::NetInfo),
        Just(ClientRequest::ActiveCount),
        Just(ClientRequest::Listen),
        ("[!-~]{3}", any::<u16>())
            .prop_map(|(data_type, node)| ClientRequest::Get { data_type, node }),
        ".{0,100}".prop_map(|text| ClientRequest::WriteLog { text }),
        bytes(300).prop_map(|json| ClientRequest::WriteRobots { json }),
    ]
}

fn message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        bytes(300).prop_map(ClientMessage::Ok),
        "[ -~]{0,255}".prop_map(ClientMessage::Fail),
        (any::<u16>(), bytes(300))
            .prop_map(|(src, message)| ClientMessage::PushMessage { src, message }),
        (any::<u16>(), bytes(300))
            .prop_map(|(src, payload)| ClientMessage::PushData { src, payload }),
        (any::<u16>(), prop::option::of("[ -~]{0,255}")).prop_map(|(node, e)| {
            ClientMessage::PushResult {
                node,
                outcome: e.map_or(Ok(()), Err),
            }
        }),
    ]
}

/// A JSON value of a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let event = prop_oneof![
        (
            any::<u16>(),
            prop::collection::vec((".{0,5}", bytes(20)), 0..4)
        )
            .prop_map(|(node, entries)| UplinkEvent::NodeData { node, entries }),
        (any::<u16>(), bytes(40))
            .prop_map(|(node, message)| UplinkEvent::NodeMessage { node, message }),
        (any::<u16>(), any::<bool>())
            .prop_map(|(node, active)| UplinkEvent::NodeStatus { node, active }),
        any::<bool>().prop_map(|up| UplinkEvent::Link { up }),
    ];
    let command = prop_oneof![
        bytes(40).prop_map(|message| RemoteCommand::Send { message }),
        bytes(40).prop_map(|message| RemoteCommand::SendTracked { message }),
        bytes(40).prop_map(|message| RemoteCommand::Broadcast { message }),
        Just(RemoteCommand::Restart),
        Just(RemoteCommand::Clean),
        Just(RemoteCommand::NetInfo),
    ];
    prop_oneof![
        (".{0,20}", any::<u64>(), any::<u64>()).prop_map(|(gateway, epoch, resume)| {
            Envelope::Hello {
                gateway,
                epoch,
                resume,
            }
        }),
        (any::<u64>(), -1e12f64..1e12, event).prop_map(|(seq, ts, event)| Envelope::Event {
            seq,
            ts,
            event
        }),
        any::<u64>().prop_map(|seq| Envelope::Ack { seq }),
        (any::<u64>(), any::<u16>(), command).prop_map(|(id, node, command)| Envelope::Command {
            id,
            node,
            command
        }),
        (
            any::<u64>(),
            prop::result::maybe_err(prop::collection::vec(any::<u16>(), 0..5), ".{0,20}")
        )
            .prop_map(|(id, outcome)| Envelope::CommandResult { id, outcome }),
    ]
}

proptest! {
    /// PROTOCOL 3: every request the client API can say parses back to
    /// itself (a broadcast's destination is always 0 on the wire).
    #[test]
    fn client_requests_round_trip(req in request()) {
        let wire = req.encode();
        prop_assert_eq!(ClientRequest::parse(&wire), Ok(req));
    }

    /// PROTOCOL 3 (2.3): a message over 255 bytes is refused by length.
    #[test]
    fn client_messages_over_255_bytes_are_refused(
        cmd in prop::sample::select(vec![&b"SEND-"[..], b"SENDI", b"BCAST"]),
        message in prop::collection::vec(any::<u8>(), 256..600),
    ) {
        let frame = [cmd, &[0, 0][..], &message[..]].concat();
        prop_assert_eq!(
            ClientRequest::parse(&frame),
            Err(switchyard_actors::wire::client_api::ClientApiError::MessageTooLong(message.len()))
        );
    }

    /// PROTOCOL 3: a frame that parses as a request is exactly that
    /// request's encoding (one spelling per request), whatever the bytes.
    #[test]
    fn client_request_parse_is_exact(
        cmd in prop::sample::select(vec![
            &b"SEND-"[..], b"SENDI", b"BCAST", b"RST-R", b"CLEAN", b"NSTAT",
            b"NINFO", b"ACT-C", b"LISTN", b"[GET]", b"W-LOG", b"W-RBT", b"XXXXX",
        ]),
        args in bytes(40),
    ) {
        let frame = [cmd, &args[..]].concat();
        if let Ok(req) = ClientRequest::parse(&frame) {
            if !matches!(req, ClientRequest::Broadcast { .. }) {
                prop_assert_eq!(req.encode(), frame);
            }
        }
    }

    /// PROTOCOL 3: answers and pushes round trip; arbitrary bytes never
    /// panic the answer parser.
    #[test]
    fn client_messages_round_trip(msg in message(), junk in bytes(64)) {
        prop_assert_eq!(ClientMessage::parse(&msg.encode()), Ok(msg));
        let _ = ClientMessage::parse(&junk);
    }

    /// PROTOCOL 1.1: a packet keeps every field it arrived with (unknown
    /// ones, repeated keys as their last value, in first-seen order) and
    /// gains the two router timestamps; what it writes parses again.
    #[test]
    fn packets_keep_every_field(
        packet_type in "[a-z_]{1,30}",
        subject_id in ".{0,40}",
        extra in prop::collection::vec(("[a-z_\"\\\\é]{1,10}", json_value()), 0..6),
        repeat in any::<bool>(),
    ) {
        let mut text = format!(
            "{{\"packet_type\":{},\"subject_id\":{}",
            json!(packet_type), json!(subject_id)
        );
        let mut expected = Map::new();
        expected.insert("packet_type".into(), json!(packet_type));
        expected.insert("subject_id".into(), json!(subject_id));
        let mut fields = extra.clone();
        if repeat {
            if let Some(first) = extra.first() {
                fields.push((first.0.clone(), json!("again")));
            }
        }
        for (k, v) in &fields {
            text.push_str(&format!(",{}:{}", json!(k), v));
            expected.insert(k.clone(), v.clone());
        }
        text.push('}');
        let mut p = Packet::parse(&text, 1.5).unwrap();
        prop_assert_eq!(
            p.packet_type.clone(),
            PacketType::parse(expected["packet_type"].as_str().unwrap())
        );
        prop_assert_eq!(Some(p.subject_id.as_str()), expected["subject_id"].as_str());
        expected.insert("router_incoming_timestamp".into(), json!(1.5));
        expected.insert("router_outgoing_timestamp".into(), json!(2.5));
        let out = p.to_text(2.5);
        let written: Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(&written, &Value::Object(expected.clone()));
        let again = Packet::parse(&out, 1.5).unwrap().into_value();
        prop_assert_eq!(again, Value::Object(expected));
    }

    /// PROTOCOL 1.1: any text is a packet or a typed error, never a panic.
    #[test]
    fn packet_parse_never_panics(text in ".{0,200}") {
        let _ = Packet::parse(&text, 0.0);
    }

    /// PROTOCOL 5: every envelope decodes to itself.
    #[test]
    fn envelopes_round_trip(env in envelope()) {
        let wire = env.encode();
        prop_assert_eq!(Envelope::decode(&wire), Ok(env));
    }

    /// PROTOCOL 2.5: a record written as a line reads back as itself, and
    /// any timestamp names a `YYYY-MM-DD` day file.
    #[test]
    fn history_records_round_trip(
        ts in prop_oneof![any::<f64>().prop_filter("finite", |t| t.is_finite()), 0.0f64..4e9],
        gateway in prop::option::of(".{0,20}"),
        node in any::<u16>(),
        data_type in "[!-~]{3}",
        raw in "([0-9a-f]{2}){0,8}",
        value in json_value(),
    ) {
        let rec = HistoryRecord { ts, gateway, node, data_type, raw, value };
        let line = serde_json::to_string(&rec).unwrap();
        prop_assert!(!line.contains('\n'));
        let back: HistoryRecord = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(back, rec);
        let day = utc_day(ts);
        prop_assert_eq!(day.len(), 10, "{}", day);
    }
}

/// Found by the `mesh_frames` fuzz target: an `[R]` error text that is not
/// UTF-8 is read lossily and grows (each bad byte becomes 3 bytes of
/// U+FFFD) past the 255 bytes the wire carries. The encoder cuts it to fit
/// (at a byte, so a cut character reads as U+FFFD again), and the cut
/// message parses again as the same kind of result from the same node.
#[test]
fn a_lossy_root_result_text_is_cut_to_fit_when_encoded() {
    use switchyard_actors::wire::mesh::RootMessage;
    // node 0, `[R]`, `F`, length 0x72, then the text.
    let mut frame = b"\x00\x00[R]F\x72\xe4 on\x00\x00".to_vec();
    frame.extend_from_slice(&[0xFF; 0x72 - 6]);
    assert_eq!(frame.len(), 7 + 0x72);
    let msg = RootMessage::parse(&frame).unwrap();
    let RootMessage::Result {
        outcome: Err(text), ..
    } = &msg
    else {
        panic!("{msg:?}")
    };
    assert!(text.len() > 255);
    let again = RootMessage::parse(&msg.encode()).unwrap();
    assert!(matches!(
        again,
        RootMessage::Result {
            node: 0,
            outcome: Err(_)
        }
    ));
}

/// Found by the `router_packet` fuzz target: a number past f64's range is
/// valid JSON syntax; the packet keeps it as the text it came in and
/// forwards it byte for byte.
#[test]
fn a_number_past_f64_is_forwarded_as_it_came() {
    let text = r#"{"packet_type":"hEartbeat","subject_id":"agent-1","dent_timestamp":111111e11111111111111111113}"#;
    let mut p = Packet::parse(text, 1.5).unwrap();
    assert_eq!(p.packet_type, PacketType::Other("hEartbeat".into()));
    let out = p.to_text(2.5);
    assert!(
        out.contains(r#""dent_timestamp":111111e11111111111111111113"#),
        "{out}"
    );
}

/// Found by the `router_packet` fuzz target: a lone UTF-16 surrogate escape
/// inside `data` is valid JSON syntax that a `serde_json::Value` refuses;
/// the packet forwards it as it came (the backend's own parser decides).
#[test]
fn a_lone_surrogate_escape_in_data_is_forwarded_as_it_came() {
    for data in [r#"{"k":"\uDDDD"}"#, r#"{"k":"\uda999919"}"#] {
        let text = format!(
            r#"{{"packet_type":"mephisto_bound_live_update","subject_id":"agent-1","data":{data}}}"#
        );
        let mut p = Packet::parse(&text, 1.5).unwrap();
        assert_eq!(p.packet_type, PacketType::MephistoBoundLiveUpdate);
        let out = p.to_text(2.5);
        assert!(out.contains(&format!(r#""data":{data}"#)), "{out}");
    }
}
