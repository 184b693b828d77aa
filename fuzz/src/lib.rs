//! The checks behind switchyard's fuzz targets, one public function per
//! target (`fuzz_targets/<name>.rs` calls `switchyard_fuzz::<name>`).
//!
//! Every decoder a peer can reach is driven with arbitrary bytes. Each check
//! asserts more than "no panic": what a decoder accepts must encode back to
//! the same bytes (or to bytes that decode to the same value, where the wire
//! format has more than one spelling), and the limits the decoder promises
//! must hold. The checks are plain functions so the committed corpus (and
//! every crash input kept in it) replays on the stable toolchain too:
//! `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! [`seeds`] makes the seed corpus from the crates' own encoders.

use bytes::BytesMut;
use serde_json::{Map, Value};
use switchyard_actors::network::history::{utc_day, HistoryRecord};
use switchyard_actors::wire::client_api::{self, ClientMessage, ClientRequest};
use switchyard_actors::wire::data_types::{DataTypes, Decoded};
use switchyard_actors::wire::frame::{encode_frame, FrameCodec, FrameItem};
use switchyard_actors::wire::mesh::{self, Command, RootMessage};
use switchyard_actors::wire::packet::Packet;
use switchyard_actors::wire::uplink::Envelope;
use tokio_util::codec::Decoder;

/// Every target, by name (the file names under `fuzz_targets/` and
/// `corpus/`).
pub const TARGETS: &[&str] = &[
    "frame_codec",
    "mesh_frames",
    "data_types",
    "client_api",
    "router_packet",
    "uplink_envelope",
    "ws_inbound",
    "history_record",
    "state_snapshot",
    "cluster_records",
    "mqtt_commands",
    "upload_name",
];

/// Runs the check of target `name` on `data`.
pub fn check(name: &str, data: &[u8]) {
    match name {
        "frame_codec" => frame_codec(data),
        "mesh_frames" => mesh_frames(data),
        "data_types" => data_types(data),
        "client_api" => client_api(data),
        "router_packet" => router_packet(data),
        "uplink_envelope" => uplink_envelope(data),
        "ws_inbound" => ws_inbound(data),
        "history_record" => history_record(data),
        "state_snapshot" => state_snapshot(data),
        "cluster_records" => cluster_records(data),
        "mqtt_commands" => mqtt_commands(data),
        "upload_name" => upload_name(data),
        other => panic!("no fuzz target named {other}"),
    }
}

// ---------------------------------------------------------------------------
// Mesh frame codec (PROTOCOL 2.1, 3)

/// Decodes `bytes` fed in the given chunk sizes (cycled; 0 is taken as 1),
/// then the end of the stream. Asserts the decoder's memory bound on the
/// way: no decoded frame is longer than the codec's maximum.
fn decode_chunked(max_len: usize, bytes: &[u8], chunks: &[usize]) -> Vec<FrameItem> {
    let mut codec = FrameCodec::new(max_len);
    let mut items = Vec::new();
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut turn = 0;
    while at < bytes.len() {
        let n = chunks
            .get(turn % chunks.len().max(1))
            .copied()
            .unwrap_or(bytes.len())
            .max(1)
            .min(bytes.len() - at);
        turn += 1;
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        while let Some(item) = codec
            .decode(&mut buf)
            .expect("the frame decoder never fails")
        {
            items.push(item);
        }
        // The decoder consumes everything it looked at.
        assert!(buf.is_empty(), "the frame decoder left bytes unread");
    }
    while let Some(item) = codec
        .decode_eof(&mut buf)
        .expect("the frame decoder never fails")
    {
        items.push(item);
    }
    assert!(codec.is_idle(), "the decoder holds state after the end");
    for item in &items {
        if let FrameItem::Frame(f) = item {
            assert!(
                f.len() <= codec.max_len(),
                "a frame over the maximum came out"
            );
        }
    }
    items
}

/// The byte-stuffing codec: arbitrary bytes in arbitrary chunks give the
/// same items as the whole stream at once (the items do not depend on how
/// the transport cut the bytes), frames stay within the maximum, and every
/// decoded frame (and the input itself, as content) survives an encode and
/// a decode unchanged.
///
/// Input: byte 0 picks the maximum frame length, byte 1 the chunk sizes,
/// the rest is the stream.
pub fn frame_codec(data: &[u8]) {
    let [m, c, stream @ ..] = data else { return };
    let max_len = match m % 4 {
        0 => switchyard_actors::wire::DEFAULT_MAX_FRAME,
        1 => 1,
        2 => 7,
        _ => 1 + *m as usize,
    };
    let chunks: Vec<usize> = match c % 4 {
        0 => vec![1],
        1 => vec![2, 3, 5],
        2 => vec![1 + *c as usize / 4],
        _ => stream.iter().take(8).map(|b| 1 + *b as usize).collect(),
    };
    let whole = decode_chunked(max_len, stream, &[stream.len()]);
    let pieces = decode_chunked(max_len, stream, &chunks);
    assert_eq!(whole, pieces, "items depend on how the stream was cut");

    // Round trip of what came out, and of the input as one frame's content.
    let mut contents: Vec<&[u8]> = whole
        .iter()
        .filter_map(|i| match i {
            FrameItem::Frame(f) => Some(&f[..]),
            FrameItem::Error(_) => None,
        })
        .collect();
    if stream.len() <= max_len {
        contents.push(stream);
    }
    let mut wire = BytesMut::new();
    for content in &contents {
        encode_frame(content, &mut wire);
    }
    let back = decode_chunked(max_len, &wire, &chunks);
    let expected: Vec<FrameItem> = contents
        .iter()
        .map(|c| FrameItem::Frame(bytes::Bytes::copy_from_slice(c)))
        .collect();
    assert_eq!(
        back, expected,
        "encoded frames did not decode to themselves"
    );
}

// ---------------------------------------------------------------------------
// Mesh frame contents (PROTOCOL 2.2, 2.3) and data types (2.4)

/// Root messages, `[D]` payloads and commands: whatever parses encodes back
/// (the formats have one spelling, except the lossy text of `[R]` errors,
/// which must re-parse to the same message), and every `[D]` entry decodes
/// with the built-in types without a panic.
pub fn mesh_frames(data: &[u8]) {
    if let Ok(msg) = RootMessage::parse(data) {
        match msg {
            // The error text of `[R]` is read lossily (invalid UTF-8 becomes
            // U+FFFD, 3 bytes), so it may grow past what the wire carries;
            // the encoder cuts it to fit, and that parses again as the same
            // kind of result from the same node.
            RootMessage::Result { node, ref outcome } => {
                let again = RootMessage::parse(&msg.encode());
                match again {
                    Ok(RootMessage::Result {
                        node: n,
                        outcome: o,
                    }) => {
                        assert_eq!(n, node);
                        assert_eq!(o.is_ok(), outcome.is_ok());
                    }
                    other => panic!("an [R] did not survive a round trip: {other:?}"),
                }
            }
            _ => {
                let bytes = msg.try_encode().expect("a parsed root message encodes");
                assert_eq!(bytes, data, "a root message changed in a round trip");
            }
        }
        if let RootMessage::Data { entries, .. } = &msg {
            let types = DataTypes::builtin();
            for e in entries {
                assert!(mesh::is_valid_data_type(&e.data_type));
                let _ = types.decode(&e.data_type, &e.raw);
            }
        }
    }
    if let Ok(entries) = mesh::parse_data_payload(data) {
        let bytes = mesh::try_encode_data_payload(&entries).expect("a parsed payload encodes");
        assert_eq!(bytes, data, "a [D] payload changed in a round trip");
    }
    if let Ok(cmd) = Command::parse(data) {
        let bytes = cmd.encode().expect("a parsed command encodes");
        assert_eq!(bytes, data, "a command changed in a round trip");
    }
}

/// Data types: a built-in type's bytes decode to a value that encodes back
/// to the same bytes; a wrong length is refused, never read past. A
/// data-type file (TOML or JSON, from the input) is parsed and validated,
/// and the types it declares decode arbitrary bytes without a panic.
///
/// Input: byte 0 picks the mode and the type, the rest is the raw entry (or
/// the file's text).
pub fn data_types(data: &[u8]) {
    let [sel, rest @ ..] = data else { return };
    let builtin = DataTypes::builtin();
    match sel % 4 {
        0 | 1 => {
            let name = ["GPS", "TMP", "HUM", "BAT"][(*sel as usize / 4) % 4];
            match builtin.decode(name, rest) {
                Decoded::Value(v) => {
                    let back = builtin.encode(name, &v);
                    assert_eq!(
                        back.as_deref(),
                        Some(rest),
                        "{name} {v} did not encode back"
                    );
                }
                Decoded::LengthMismatch { expected, got } => {
                    assert_eq!(got, rest.len());
                    assert_ne!(expected, got);
                }
                Decoded::Unknown => panic!("built-in type {name} unknown"),
            }
            // Any JSON the input holds: encode refuses or gives the type's
            // length.
            if let Ok(v) = serde_json::from_slice::<Value>(rest) {
                if let Some(bytes) = builtin.encode(name, &v) {
                    assert_eq!(Some(bytes.len()), builtin.get(name).map(|s| s.len));
                }
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let specs = if sel % 4 == 2 {
                DataTypes::from_toml_str(text)
            } else {
                DataTypes::from_json_str(text)
            };
            let Ok(specs) = specs else { return };
            let Ok(types) = DataTypes::empty().with(specs) else {
                panic!("validated specs were refused");
            };
            for spec in types.specs() {
                assert!((1..=255).contains(&spec.len));
                let raw: Vec<u8> = rest.iter().cycle().take(spec.len).copied().collect();
                if let Decoded::Value(v) = types.decode(&spec.name, &raw) {
                    // Any scale: the encoder refuses or gives the right length.
                    if let Some(bytes) = types.encode(&spec.name, &v) {
                        assert_eq!(bytes.len(), spec.len);
                    }
                }
                let _ = types.decode(&spec.name, rest);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Client API (PROTOCOL 3)

/// Client-socket requests and the switch's answers and pushes: a parsed
/// request encodes back to its bytes (`BCAST`, whose destination is not
/// kept, re-parses to the same request), a parsed answer encodes to
/// something that parses, and a `[GET]` answer rebuilds exactly.
pub fn client_api(data: &[u8]) {
    if let Ok(req) = ClientRequest::parse(data) {
        let bytes = req.encode();
        match req {
            ClientRequest::Broadcast { .. } => {
                assert_eq!(ClientRequest::parse(&bytes).as_ref(), Ok(&req));
            }
            _ => assert_eq!(bytes, data, "a request changed in a round trip"),
        }
    }
    if let Ok(msg) = ClientMessage::parse(data) {
        let bytes = msg.encode();
        assert!(
            ClientMessage::parse(&bytes).is_ok(),
            "an encoded client message did not parse"
        );
    }
    if let Ok((t, items)) = client_api::parse_get_answer(data) {
        if t.len() == 3 && !items.is_empty() {
            let mut expected = vec![b'S'];
            expected.extend_from_slice(data);
            assert_eq!(client_api::get_answer(&t, &items), Some(expected));
        }
    }
}

// ---------------------------------------------------------------------------
// Router packets (PROTOCOL 1.1)

const INCOMING: &str = "router_incoming_timestamp";
const OUTGOING: &str = "router_outgoing_timestamp";

/// Router packets: any text; a packet the parser accepts is a JSON object
/// whose `packet_type` and `subject_id` it read right, and `to_text` writes
/// every field back (unknown ones too, a repeated key once with its last
/// value) plus the two router timestamps; that text parses again to the
/// same fields.
pub fn router_packet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut packet) = Packet::parse(text, 1.5) else {
        return;
    };
    let mut expected = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        // The parser keeps values as text and checks their syntax only: a
        // number past f64's range, a lone UTF-16 surrogate escape in a
        // string (or nesting past serde_json's depth limit) is JSON it
        // forwards as it came, which a `Value` cannot hold. Nothing more to
        // compare then.
        Err(e)
            if e.to_string().contains("number out of range")
                || e.to_string().contains("surrogate")
                || e.to_string().contains("hex escape")
                || e.to_string().contains("recursion limit") =>
        {
            let _ = packet.to_text(2.5);
            return;
        }
        other => panic!("the packet parser accepted {text:?}, which is {other:?}"),
    };
    assert_eq!(
        expected.get("packet_type").and_then(Value::as_str),
        Some(packet.packet_type.as_str())
    );
    assert_eq!(
        expected.get("subject_id").and_then(Value::as_str),
        Some(packet.subject_id.as_str())
    );
    expected.insert(INCOMING.into(), Value::from(1.5));
    assert_same_fields(&packet.clone().into_value(), &expected, text);

    let out = packet.to_text(2.5);
    expected.insert(OUTGOING.into(), Value::from(2.5));
    let written: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("to_text wrote invalid JSON ({e}): {out:?}"));
    assert_same_fields(&written, &expected, text);

    let again = Packet::parse(&out, 1.5).expect("a written packet parses again");
    assert_eq!(again.packet_type, packet.packet_type);
    assert_eq!(again.subject_id, packet.subject_id);
    assert_same_fields(&again.into_value(), &expected, text);
}

/// The same fields with the same values, in the same order.
fn assert_same_fields(got: &Value, expected: &Map<String, Value>, source: &str) {
    let Value::Object(got) = got else {
        panic!("not an object: {got}")
    };
    let got_keys: Vec<&String> = got.keys().collect();
    let expected_keys: Vec<&String> = expected.keys().collect();
    assert_eq!(got_keys, expected_keys, "fields differ for {source:?}");
    assert_eq!(got, expected, "values differ for {source:?}");
}

// ---------------------------------------------------------------------------
// Uplink envelopes (PROTOCOL 5)

/// Uplink envelopes: arbitrary bytes decode or are refused without an
/// allocation the frame could not pay for (run under `-malloc_limit_mb`,
/// see scripts/fuzz), and a decoded envelope's encoding decodes to an
/// envelope with the same encoding.
pub fn uplink_envelope(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data) {
        let bytes = env.encode();
        let again = Envelope::decode(&bytes).expect("an encoded envelope decodes");
        assert_eq!(again.encode(), bytes, "an envelope changed in a round trip");
        assert!(
            bytes.len() <= data.len(),
            "the canonical encoding is longer"
        );
    }
}

// ---------------------------------------------------------------------------
// The WebSocket inbound path (src/http/transport.rs)

/// The transport's frame splitting: `frame_len` reads the RFC 6455 header
/// exactly as actix-http's codec does (a whole frame by `frame_len` is one
/// frame, or one refusal, for the codec, never "more bytes needed"; the
/// codec never takes more bytes than `frame_len` says), and the stream cut
/// into frames by `frame_len` decodes with the switch's configured frame
/// limit without a panic or an item over the limit.
///
/// Input: byte 0 picks the codec's maximum, the rest is the stream (the
/// client's frames are masked; the codec is the server's).
pub fn ws_inbound(data: &[u8]) {
    use actix_http::ws;
    use switchyard::http::transport::frame_len;

    let [m, stream @ ..] = data else { return };
    let max = match m % 4 {
        0 => switchyard::config::Config::default()
            .session
            .hard_frame_bytes(),
        1 => {
            switchyard::config::Config::default()
                .session
                .max_frame_bytes
        }
        2 => 125,
        _ => *m as usize,
    };
    if let Some(len) = frame_len(stream) {
        assert!(len >= 2, "a frame shorter than its header");
        assert_eq!(Some(len), reference_frame_len(stream));
    } else {
        assert!(reference_frame_len(stream).is_none());
    }

    let mut codec = ws::Codec::new().max_size(max);
    let mut rest = stream;
    while let Some(len) = frame_len(rest) {
        if len > rest.len() {
            // What the transport holds back until more comes; the codec
            // must not claim a frame out of it.
            let mut buf = BytesMut::from(rest);
            if let Ok(Some(frame)) = codec.decode(&mut buf) {
                panic!("the codec decoded {frame:?} from a partial frame");
            }
            return;
        }
        let mut buf = BytesMut::from(&rest[..len]);
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(buf.is_empty(), "the codec left part of a frame");
                let payload = match &frame {
                    ws::Frame::Text(b) | ws::Frame::Binary(b) => b.len(),
                    ws::Frame::Continuation(
                        ws::Item::FirstText(b)
                        | ws::Item::FirstBinary(b)
                        | ws::Item::Continue(b)
                        | ws::Item::Last(b),
                    ) => b.len(),
                    ws::Frame::Ping(b) | ws::Frame::Pong(b) => b.len(),
                    ws::Frame::Close(_) => 0,
                };
                assert!(payload <= max, "a frame over the limit came out");
            }
            Ok(None) => panic!("frame_len says {len} bytes make a frame; the codec wants more"),
            // A refused frame ends the session.
            Err(_) => return,
        }
        rest = &rest[len..];
    }
}

/// RFC 6455 5.2 frame length, written out independently of `frame_len`.
fn reference_frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (header, payload) = match buf[1] & 0x7f {
        126 => {
            let b = buf.get(2..4)?;
            (4u64, u64::from(b[0]) << 8 | u64::from(b[1]))
        }
        127 => {
            let b = buf.get(2..10)?;
            (10u64, b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x)))
        }
        n => (2u64, u64::from(n)),
    };
    let total = (header + if masked { 4 } else { 0 }).checked_add(payload)?;
    usize::try_from(total).ok()
}

// ---------------------------------------------------------------------------
// History records (PROTOCOL 2.5)

/// One line of the history log: a record that parses names a day file of
/// the form `YYYY-MM-DD` (no panic, whatever its timestamp), and writes
/// back to a line that parses to the same record.
pub fn history_record(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rec) = serde_json::from_str::<HistoryRecord>(line) else {
        return;
    };
    let day = utc_day(rec.ts);
    assert!(
        day.len() == 10 && day.as_bytes()[4] == b'-' && day.as_bytes()[7] == b'-',
        "ts {} names the day file {day:?}",
        rec.ts
    );
    let written = serde_json::to_string(&rec).expect("a record serialises");
    assert!(!written.contains('\n'), "a record spans lines");
    let back: HistoryRecord = serde_json::from_str(&written).expect("a written record parses");
    assert_eq!(back, rec);
}

// ---------------------------------------------------------------------------
// The router state file (DATA_DIR/state/router.json)

/// The limits the switch reads its state file with, by default, but small
/// enough that the fuzzer reaches every one of them.
fn snapshot_limits() -> switchyard_actors::agent::snapshot::SnapshotLimits {
    switchyard_actors::agent::snapshot::SnapshotLimits {
        max_bytes: 64 * 1024,
        max_agents: 8,
        max_agent_id_bytes: 16,
        max_status_bytes: 16,
        queue_limit: 4,
        queue_bytes_limit: 4096,
        outbox_limit: 4,
        outbox_bytes_limit: 4096,
        max_packet_fields: 8,
    }
}

/// A state file read back at start: whatever it holds, decoding never
/// panics and what it restores keeps every live bound.
pub fn state_snapshot(data: &[u8]) {
    let l = snapshot_limits();
    let Ok(r) = switchyard_actors::agent::snapshot::decode(data, &l) else {
        return;
    };
    assert!(r.agents.len() <= l.max_agents, "{} agents", r.agents.len());
    assert!(
        r.outbox.len() <= l.outbox_limit,
        "{} outbox packets",
        r.outbox.len()
    );
    for a in &r.agents {
        assert!(
            a.agent_id.len() <= l.max_agent_id_bytes,
            "agent id {:?}",
            a.agent_id
        );
    }
}

// ---------------------------------------------------------------------------
// What switches of a cluster read from NATS (CLUSTER.md section 2)

/// Byte 0 picks the decoder, the rest is its input:
/// - 0: an id as a subject token: every id has a token of the allowed
///   characters that maps back to it, and a token that maps to an id is
///   that id's only token (two agents never share a mailbox);
/// - 1: an ownership record (KV `sy_agents`) and 2: a heartbeat: what
///   parses writes back to what parses the same;
/// - 3: `request_statuses` reply parts (split at `0xFF`) gathered for two
///   switches with a bound of 4 statuses each: the bound holds, every reply
///   is either taken or refused, and the answer is complete exactly when
///   no switch is missing;
/// - 4: a `request_statuses` question: what parses writes back to what
///   parses the same, and nothing longer than its bound parses.
pub fn cluster_records(data: &[u8]) {
    use switchyard_actors::cluster::actor::Heartbeat;
    use switchyard_actors::cluster::mailbox::Owner;
    use switchyard_actors::cluster::names::{id_of, token};
    use switchyard_actors::cluster::statuses::{Ask, Gathered, MAX_ASK_BYTES};
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let t = token(text);
            assert!(
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)),
                "{text:?} gave the token {t:?}"
            );
            assert_eq!(id_of(&t).as_deref(), Some(text), "token {t:?}");
            if let Some(id) = id_of(text) {
                assert_eq!(token(&id), text, "{text:?} is not the token of {id:?}");
            }
        }
        1 => {
            if let Some(o) = Owner::parse(rest) {
                let back = serde_json::to_vec(&o).expect("a record serialises");
                assert_eq!(Owner::parse(&back).as_ref(), Some(&o));
            }
        }
        2 => {
            if let Some(h) = Heartbeat::parse(rest) {
                let back = serde_json::to_vec(&h).expect("a heartbeat serialises");
                assert_eq!(Heartbeat::parse(&back).as_ref(), Some(&h));
            }
        }
        4 => {
            if let Some(a) = Ask::parse(rest) {
                assert!(rest.len() <= MAX_ASK_BYTES, "{} bytes parsed", rest.len());
                let back = serde_json::to_vec(&a).expect("a question serialises");
                assert_eq!(Ask::parse(&back).as_ref(), Some(&a));
            }
        }
        _ => {
            let mut g = Gathered::new(["n1".to_string(), "n2".to_string()], 4);
            let mut replies = 0;
            for reply in rest.split(|&b| b == 0xFF) {
                replies += 1;
                let refused = g.refused;
                let len = g.statuses.len();
                let complete = g.take(reply);
                assert!(g.statuses.len() <= 8, "{} statuses", g.statuses.len());
                assert!(g.refused == refused || g.refused == refused + 1);
                assert_eq!(complete, g.missing().is_empty());
                assert!(g.refused > refused || g.statuses.len() >= len);
            }
            assert!(g.refused <= replies);
        }
    }
}

// ---------------------------------------------------------------------------
// Seeds

/// The seed corpus of target `name`: valid inputs made by the crates' own
/// encoders (and a few near misses).
// ---------------------------------------------------------------------------
// MQTT bridge: what anyone who may publish to the broker sends it

/// What arrives on the bridge's subscriptions. The first byte picks:
/// - even: a command payload for a node (odd second byte: a broadcast). A
///   payload past `MAX_COMMAND_BYTES` is never parsed; what is accepted is
///   a message of 1 to 255 bytes, never a tracked broadcast; JSON with
///   unknown fields is refused;
/// - odd: a topic (UTF-8). What parses as a command names a node or a
///   broadcast under the prefix; a topic the bridge publishes on itself
///   (`.../result`, data, status) is never a command; a data type's topic
///   level never holds `/`, `+` or `#`.
pub fn mqtt_commands(data: &[u8]) {
    use switchyard_actors::mqtt::commands::{parse_send, MAX_COMMAND_BYTES};
    use switchyard_actors::mqtt::topics::{level, Topics};
    use switchyard_actors::wire::mesh::MAX_MESSAGE;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        let Some((&kind, payload)) = rest.split_first() else {
            return;
        };
        let broadcast = kind % 2 == 1;
        if let Ok(req) = parse_send(payload, broadcast) {
            assert!(payload.len() <= MAX_COMMAND_BYTES);
            assert!(!req.message.is_empty() && req.message.len() <= MAX_MESSAGE);
            assert!(!(broadcast && req.tracked));
            if !payload.trim_ascii_start().starts_with(b"{") {
                assert_eq!(req.message, payload, "plain text is sent as it came");
            }
        }
        return;
    }
    let Ok(topic) = std::str::from_utf8(rest) else {
        return;
    };
    let t = Topics::new("switchyard", "homeassistant");
    if t.parse_command(topic).is_some() {
        assert!(topic.starts_with("switchyard/"), "{topic:?}");
        assert!(
            topic.ends_with("/send") || topic.ends_with("/broadcast"),
            "{topic:?}"
        );
    }
    assert_eq!(
        t.parse_command(&Topics::result_of(topic)),
        None,
        "{topic:?}/result"
    );
    let l = level(topic);
    assert!(
        !l.is_empty() && !l.contains(['/', '+', '#']),
        "{topic:?} -> {l:?}"
    );
}

// ---------------------------------------------------------------------------
// Uploaded files' names (PROTOCOL 1.4 `/submit_task`, `/download_file`)

/// Whatever a worker calls a file (the multipart part's `filename`), the
/// name it is stored under is one the download serves: plain characters
/// only, no path step, at most 100 characters of the original's, never
/// empty or hidden.
pub fn upload_name(data: &[u8]) {
    use switchyard::http::uploads::{clean_name, servable_name, UploadStore};
    let original = String::from_utf8_lossy(data);
    let cleaned = clean_name(&original);
    assert!(!cleaned.is_empty() && cleaned.len() <= 100, "{cleaned:?}");
    assert!(
        cleaned
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')),
        "{cleaned:?}"
    );
    assert!(!cleaned.starts_with('.'), "{cleaned:?}");
    let stored = UploadStore::fresh_name(&original);
    assert!(stored.ends_with(&cleaned), "{stored:?} of {cleaned:?}");
    assert!(servable_name(&stored), "{stored:?} could not be downloaded");
}

pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    use switchyard_actors::wire::mesh::DataEntry;
    use switchyard_actors::wire::uplink::{RemoteCommand, UplinkEvent};
    let with = |head: &[u8], body: &[u8]| [head, body].concat();
    let gps = DataTypes::builtin()
        .encode("GPS", &serde_json::json!({"lon": 13.4050, "lat": 52.52}))
        .unwrap_or_default();
    let data_msg = RootMessage::Data {
        node: 0x0102,
        entries: vec![
            DataEntry::new("GPS", gps.clone()),
            DataEntry::new("TMP", vec![0x09, 0xC4]),
            DataEntry::new("HUM", vec![55]),
            DataEntry::new("BAT", vec![0x0E, 0x10]),
            DataEntry::new("SEQ", 7u64.to_be_bytes().to_vec()),
        ],
    };
    let root_msgs = vec![
        data_msg.clone(),
        RootMessage::Message {
            node: 5,
            text: b"hello \xff\xfe\xfa".to_vec(),
        },
        RootMessage::NetworkInfo {
            node: 0,
            nodes: vec![1, 2, 0xFFFF],
        },
        RootMessage::Result {
            node: 0,
            outcome: Ok(()),
        },
        RootMessage::Result {
            node: 0,
            outcome: Err("no route".into()),
        },
    ];
    match name {
        "frame_codec" => {
            let mut stream = Vec::new();
            for m in &root_msgs {
                let mut b = BytesMut::new();
                encode_frame(&m.encode(), &mut b);
                stream.extend_from_slice(&b);
            }
            vec![
                with(&[0, 0], &stream),
                with(&[1, 1], &stream),
                with(&[3, 2], b"junk\xff\x01\xfa\x05\xfe\xff\xfa\xfe\xff\x01"),
                with(&[6, 3], &[&stream[..], b"\xff\x00\x01"].concat()),
            ]
        }
        "mesh_frames" => {
            let mut v: Vec<Vec<u8>> = root_msgs.iter().map(|m| m.encode()).collect();
            if let RootMessage::Data { entries, .. } = &data_msg {
                v.push(mesh::encode_data_payload(entries));
            }
            for c in [
                Command::Send {
                    dst: 3,
                    message: b"on".to_vec(),
                },
                Command::SendTracked {
                    dst: 0x0102,
                    message: vec![0xFF; 4],
                },
                Command::Broadcast {
                    message: b"all".to_vec(),
                },
                Command::Restart,
                Command::Clean,
                Command::NetInfo,
            ] {
                v.extend(c.encode().ok());
            }
            v
        }
        "data_types" => vec![
            with(&[0], &gps),
            with(&[4], &[0x09, 0xC4]),
            with(&[9], &[55]),
            with(&[12], &[0x0E, 0x10]),
            with(&[4], br#"{"celsius": 21.5}"#),
            with(
                &[2],
                b"[[type]]\nname = \"PRS\"\nlen = 4\nfields = [{ name = \"hpa\", kind = \"u32\", scale = 0.01 }]\n",
            ),
            with(
                &[3],
                br#"{"types":[{"name":"ACC","len":6,"fields":[{"name":"x","kind":"i16","scale":0.001},{"name":"y","kind":"i16","scale":0.001},{"name":"z","kind":"i16"}]}]}"#,
            ),
        ],
        "client_api" => {
            let mut v: Vec<Vec<u8>> = [
                ClientRequest::Send {
                    dst: 1,
                    message: b"hi".to_vec(),
                },
                ClientRequest::SendTracked {
                    dst: 2,
                    message: vec![0xFA, 0xFF],
                },
                ClientRequest::Broadcast {
                    message: b"all".to_vec(),
                },
                ClientRequest::Restart,
                ClientRequest::Clean,
                ClientRequest::NodeStatus,
                ClientRequest::NetInfo,
                ClientRequest::Get {
                    data_type: "TMP".into(),
                    node: 0,
                },
                ClientRequest::ActiveCount,
                ClientRequest::WriteLog {
                    text: "robot 3 stuck".into(),
                },
                ClientRequest::WriteRobots {
                    json: br#"[{"id":1,"name":"r1","state":"idle","node":2}]"#.to_vec(),
                },
                ClientRequest::Listen,
            ]
            .iter()
            .map(ClientRequest::encode)
            .collect();
            v.extend(
                [
                    ClientMessage::Ok(b"{}".to_vec()),
                    ClientMessage::Fail("mesh link down".into()),
                    ClientMessage::PushMessage {
                        src: 4,
                        message: b"ping".to_vec(),
                    },
                    ClientMessage::PushData {
                        src: 4,
                        payload: vec![1, b'H', b'U', b'M', 1, 50],
                    },
                    ClientMessage::PushResult {
                        node: 4,
                        outcome: Err("no ack".into()),
                    },
                ]
                .iter()
                .map(ClientMessage::encode),
            );
            if let Some(a) = client_api::get_answer("TMP", &[(1, vec![9, 196]), (2, vec![0, 1])]) {
                v.push(a[1..].to_vec());
            }
            v
        }
        "cluster_records" => {
            let part = |node: &str, last: bool| {
                let mut m = Map::new();
                m.insert("a1".into(), Value::from("in task"));
                serde_json::to_vec(&switchyard_actors::cluster::statuses::Part {
                    node: node.into(),
                    statuses: m,
                    last,
                })
                .unwrap_or_default()
            };
            let parts = [part("n1", false), part("n1", true), part("n2", true)].join(&0xFF);
            vec![
                with(&[0], b"agent-1"),
                with(&[0], "a.b c\u{e9}".as_bytes()),
                with(&[0], b"=YS5i"),
                with(
                    &[1],
                    br#"{"owner":"n2","since":1700000000.5,"status":"in task","last_ping_ms":1700000000123}"#,
                ),
                with(&[2], br#"{"node":"n1","boot":17,"agents":3,"has_backend":true}"#),
                with(&[3], &parts),
                with(&[4], br#"{"from":"n1","last_ping_ms":1700000000123}"#),
            ]
        }
        "upload_name" => [
            "photo.png",
            "../../etc/passwd",
            "C:\\x\\my file.png",
            "report..final.pdf",
            "....hidden",
            "a/..\\..b\u{0}c",
            "",
            "\u{e9}t\u{e9} \u{1F600}.txt",
        ]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect(),
        "mqtt_commands" => vec![
            with(&[0, 0], b"hello node"),
            with(&[0, 0], br#"{"text": "hi", "tracked": true}"#),
            with(&[0, 1], br#"{"text": "all"}"#),
            with(&[0, 1], br#"{"text": "a", "tracked": true}"#),
            with(&[0, 0], br#"{"text": "a", "evil": 1}"#),
            with(&[0, 0], &[0xff, 0xfe]),
            with(&[1], b"switchyard/0x0003/send"),
            with(&[1], b"switchyard/local/0x0003/send"),
            with(&[1], b"switchyard/edge-1/3/send"),
            with(&[1], b"switchyard/broadcast"),
            with(&[1], b"switchyard/edge-1/broadcast"),
            with(&[1], b"switchyard/0x0003/send/result"),
            with(&[1], b"switchyard/bad name/1/send"),
        ],
        "router_packet" => [
            r#"{"packet_type":"alive","subject_id":"mephisto","data":{}}"#,
            r#"{"packet_type":"heartbeat","subject_id":"agent-1","data":{},"client_timestamp":1700000000.123}"#,
            r#"{"packet_type":"mephisto_bound_live_update","subject_id":"agent-1","data":{"seq":1,"t":12,"pad":"xx"},"client_timestamp":null,"server_timestamp":null,"router_incoming_timestamp":null,"router_outgoing_timestamp":null}"#,
            r#"{"packet_type":"request_statuses","subject_id":"mephisto","data":{},"server_timestamp":1.5}"#,
            r#"{"subject_id":"a\"b","packet_type":"other","data":[1,2.50,{"k":"\u00e9"}],"x":1,"x":2}"#,
            r#" { "packet_type" : "update_status" , "subject_id" : "agent-2" , "data" : { "status" : "in task" } } "#,
            r#"{"packet_type":"agent_details","subject_id":"r","data":{"request_id":"r","agent_id":"a"},"\u0070acket_type":"log_error"}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "uplink_envelope" => [
            Envelope::Hello {
                gateway: "edge-1".into(),
                epoch: 42,
                resume: 1,
            },
            Envelope::Event {
                seq: 7,
                ts: 1.7e9,
                event: UplinkEvent::NodeData {
                    node: 3,
                    entries: vec![("TMP".into(), vec![9, 196]), ("GPS".into(), gps.clone())],
                },
            },
            Envelope::Event {
                seq: 8,
                ts: 1.7e9,
                event: UplinkEvent::NodeMessage {
                    node: 3,
                    message: b"hi".to_vec(),
                },
            },
            Envelope::Event {
                seq: 9,
                ts: 1.7e9,
                event: UplinkEvent::NodeStatus {
                    node: 3,
                    active: true,
                },
            },
            Envelope::Event {
                seq: 10,
                ts: 1.7e9,
                event: UplinkEvent::Link { up: false },
            },
            Envelope::Ack { seq: 10 },
            Envelope::Command {
                id: 1,
                node: 2,
                command: RemoteCommand::SendTracked {
                    message: b"go".to_vec(),
                },
            },
            Envelope::Command {
                id: 2,
                node: 0,
                command: RemoteCommand::NetInfo,
            },
            Envelope::CommandResult {
                id: 2,
                outcome: Ok(vec![1, 2, 3]),
            },
            Envelope::CommandResult {
                id: 1,
                outcome: Err("mesh link down".into()),
            },
        ]
        .iter()
        .map(Envelope::encode)
        .collect(),
        "ws_inbound" => {
            let text = masked_frame(0x81, br#"{"packet_type":"alive","subject_id":"agent-1","data":{}}"#);
            let first = masked_frame(0x01, b"{\"packet_type\":");
            let last = masked_frame(0x80, b"\"heartbeat\"}");
            let ping = masked_frame(0x89, b"p");
            let close = masked_frame(0x88, &[0x03, 0xE8]);
            let big = masked_frame(0x82, &[7u8; 300]);
            let mut huge = vec![0x82, 0xFF];
            huge.extend_from_slice(&(4u64 << 30).to_be_bytes());
            huge.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0]);
            vec![
                with(&[0], &text),
                with(&[1], &[&first[..], &ping[..], &last[..], &close[..]].concat()),
                with(&[2], &[&text[..], &big[..]].concat()),
                with(&[0], &huge),
                with(&[3], &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o']),
            ]
        }
        "history_record" => [
            HistoryRecord {
                ts: 1_795_638_897.25,
                gateway: None,
                node: 1,
                data_type: "TMP".into(),
                raw: "09c4".into(),
                value: serde_json::json!({"celsius": 25.0}),
            },
            HistoryRecord {
                ts: 1_795_638_898.5,
                gateway: Some("edge-1".into()),
                node: 0x0102,
                data_type: "SEQ".into(),
                raw: "0000000000000007".into(),
                value: Value::Null,
            },
        ]
        .iter()
        .filter_map(|r| serde_json::to_vec(r).ok())
        .chain([br#"{"ts":1e18,"node":1,"type":"GPS","raw":"","value":{}}"#.to_vec()])
        .collect(),
        "state_snapshot" => {
            use switchyard_actors::agent::snapshot::{
                encode, AgentRecord, RouterSnapshot, StoredPacket,
            };
            let packet = |n: u32| StoredPacket {
                incoming: Some(1.5),
                text: format!(
                    r#"{{"packet_type":"client_bound_live_update","subject_id":"a","data":{{"n":{n}}}}}"#
                ),
            };
            let agent = |id: &str, n: u32| AgentRecord {
                agent_id: id.into(),
                status: "in task".into(),
                last_ping_ms: 5,
                disconnect_time: Some(7.5),
                queue: (0..n).map(packet).collect(),
            };
            vec![
                encode(&RouterSnapshot::new(99, vec![agent("a", 2)], vec![packet(10)])),
                // Past the limits the target reads with: more agents, a
                // longer queue and id than it keeps.
                encode(&RouterSnapshot::new(
                    99,
                    (0..10).map(|i| agent(&format!("agent-{i}-{}", "x".repeat(i)), 6)).collect(),
                    (0..6).map(packet).collect(),
                )),
                br#"{"format":"switchyard-router-state","version":2,"saved_at_ms":0,"agents":[],"outbox":[]}"#.to_vec(),
            ]
        }
        other => panic!("no fuzz target named {other}"),
    }
}

/// A client's WebSocket frame: first byte `b0`, masked payload.
fn masked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}
