//! Agent router packets (PROTOCOL 1.1, 1.2).
//!
//! A packet is one JSON object. The switch looks at `packet_type`,
//! `subject_id` and a few `data` fields, and forwards everything else
//! untouched: unknown fields survive the trip because the text they came
//! in is kept and written back (see [`Packet`]).

use std::borrow::Cow;
use std::collections::HashMap;

use bytestring::ByteString;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The subject id of the backend (the Mephisto main process).
pub const MEPHISTO: &str = "mephisto";

/// The packet types of PROTOCOL 1.2. Anything else is `Other`, counted and
/// ignored by the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketType {
    Alive,
    Heartbeat,
    MephistoBoundLiveUpdate,
    ClientBoundLiveUpdate,
    UpdateStatus,
    RequestStatuses,
    ReturnStatuses,
    LogError,
    AgentDetails,
    RegisterAgent,
    SubmitOnboarding,
    SubmitUnit,
    SubmitMetadata,
    Other(String),
}

impl PacketType {
    pub fn parse(s: &str) -> PacketType {
        match s {
            "alive" => PacketType::Alive,
            "heartbeat" => PacketType::Heartbeat,
            "mephisto_bound_live_update" => PacketType::MephistoBoundLiveUpdate,
            "client_bound_live_update" => PacketType::ClientBoundLiveUpdate,
            "update_status" => PacketType::UpdateStatus,
            "request_statuses" => PacketType::RequestStatuses,
            "return_statuses" => PacketType::ReturnStatuses,
            "log_error" => PacketType::LogError,
            "agent_details" => PacketType::AgentDetails,
            "register_agent" => PacketType::RegisterAgent,
            "submit_onboarding" => PacketType::SubmitOnboarding,
            "submit_unit" => PacketType::SubmitUnit,
            "submit_metadata" => PacketType::SubmitMetadata,
            other => PacketType::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PacketType::Alive => "alive",
            PacketType::Heartbeat => "heartbeat",
            PacketType::MephistoBoundLiveUpdate => "mephisto_bound_live_update",
            PacketType::ClientBoundLiveUpdate => "client_bound_live_update",
            PacketType::UpdateStatus => "update_status",
            PacketType::RequestStatuses => "request_statuses",
            PacketType::ReturnStatuses => "return_statuses",
            PacketType::LogError => "log_error",
            PacketType::AgentDetails => "agent_details",
            PacketType::RegisterAgent => "register_agent",
            PacketType::SubmitOnboarding => "submit_onboarding",
            PacketType::SubmitUnit => "submit_unit",
            PacketType::SubmitMetadata => "submit_metadata",
            PacketType::Other(s) => s,
        }
    }
}

/// Why a text frame is not a packet. Each variant is a metric label
/// (`kind()`), and its `Display` is the error text sent back to the peer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PacketError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("a packet must be a JSON object")]
    NotAnObject,
    #[error("missing or non-string field `{0}`")]
    MissingField(&'static str),
    #[error("a packet may have at most {0} top-level fields")]
    TooManyFields(usize),
}

impl PacketError {
    pub fn kind(&self) -> &'static str {
        match self {
            PacketError::InvalidJson(_) => "invalid_json",
            PacketError::NotAnObject => "not_an_object",
            PacketError::MissingField(_) => "missing_field",
            PacketError::TooManyFields(_) => "too_many_fields",
        }
    }
}

/// One router packet: its type and subject decoded, every field kept.
///
/// A packet that arrived as text keeps that text (shared, not copied), and
/// each top-level field is a span of it: the switch reads `packet_type` and
/// `subject_id`, stamps the router timestamps and writes the rest back byte
/// for byte, so a forwarded packet costs no parse of its `data` and no
/// rebuild of it, and every field the switch does not know survives
/// untouched (exact float digits included). Fields the switch sets are
/// JSON values.
#[derive(Debug, Clone)]
pub struct Packet {
    pub packet_type: PacketType,
    pub subject_id: String,
    /// The text the packet arrived as ("" for one the switch made).
    source: ByteString,
    /// Top-level fields in arrival order, `packet_type` and `subject_id`
    /// included; a key appears once (a repeated key keeps its first place
    /// and its last value, as a JSON object map does).
    fields: Vec<(Key, Field)>,
    /// While the first `count` fields are exactly the source object's (none
    /// replaced, no key repeated), the offset of its closing brace: the
    /// text to send is then the source up to it with the fields set since
    /// appended, one copy (`to_text`).
    verbatim: Option<Verbatim>,
}

#[derive(Debug, Clone, Copy)]
struct Verbatim {
    count: u32,
    close: u32,
}

/// Top-level fields a packet parsed without a limit of its own may have
/// (Mephisto's packets have about eight).
pub const DEFAULT_MAX_FIELDS: usize = 64;

/// Up to this many fields, a repeated key is found by a scan.
const SCAN_FIELDS: usize = 16;

/// The field the switch stamps as a packet comes in (PROTOCOL 1.1).
const INCOMING: &str = "router_incoming_timestamp";
/// The field the switch stamps as a packet leaves (PROTOCOL 1.1).
const OUTGOING: &str = "router_outgoing_timestamp";

/// A key: a span of the source (no escapes in it), a name of the switch's
/// own, or owned.
#[derive(Debug, Clone)]
enum Key {
    Span(u32, u32),
    /// Plain ASCII with nothing to escape: written as is.
    Static(&'static str),
    Owned(String),
}

/// A value: the exact JSON text of a span of the source, JSON text of its
/// own (kept as text, never parsed into a tree), or a value.
#[derive(Debug, Clone)]
enum Field {
    Span(u32, u32),
    Raw(Box<RawValue>),
    Value(Value),
}

impl PartialEq for Packet {
    fn eq(&self, other: &Packet) -> bool {
        self.clone().into_value() == other.clone().into_value()
    }
}

impl Packet {
    /// Parses one text frame and stamps `router_incoming_timestamp`.
    pub fn parse(text: &str, incoming_ts: f64) -> Result<Packet, PacketError> {
        Packet::parse_shared(ByteString::from(text), incoming_ts)
    }

    /// [`Packet::parse`] of a frame the packet may keep as it is: a
    /// WebSocket text message is handed over without a copy.
    pub fn parse_shared(source: ByteString, incoming_ts: f64) -> Result<Packet, PacketError> {
        Packet::parse_limited(source, incoming_ts, DEFAULT_MAX_FIELDS)
    }

    /// [`Packet::parse_shared`] of a packet with at most `max_fields`
    /// top-level fields: the parse stops at the first field past it, so a
    /// frame of many small fields costs no more than its bytes.
    pub fn parse_limited(
        source: ByteString,
        incoming_ts: f64,
        max_fields: usize,
    ) -> Result<Packet, PacketError> {
        let text: &str = &source;
        let over = std::cell::Cell::new(false);
        let seed = RawObjectSeed {
            max: max_fields,
            over: &over,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut de).and_then(|o| {
            de.end()?;
            Ok(o)
        });
        let raw: Vec<(RawKey, &serde_json::value::RawValue)> = match parsed {
            Ok(o) => o.0,
            Err(_) if over.get() => return Err(PacketError::TooManyFields(max_fields)),
            Err(e) if e.is_data() => return Err(PacketError::NotAnObject),
            Err(e) => return Err(PacketError::InvalidJson(e.to_string())),
        };
        let base = text.as_ptr() as usize;
        let span = |s: &str| {
            let at = s.as_ptr() as usize - base;
            (at as u32, (at + s.len()) as u32)
        };
        let mut fields: Vec<(Key, Field)> = Vec::with_capacity(raw.len() + 2);
        // A repeated key is found by a scan of the few fields a packet has,
        // or by a map past a handful: linear in the fields either way.
        let key_of = |raw_key: &RawKey| match raw_key {
            RawKey::Borrowed(k) => {
                let (a, b) = span(k);
                Key::Span(a, b)
            }
            RawKey::Owned(k) => Key::Owned(k.clone()),
        };
        if raw.len() <= SCAN_FIELDS {
            for (raw_key, value) in &raw {
                let (a, b) = span(value.get());
                set_field(&mut fields, key_of(raw_key), Field::Span(a, b), text);
            }
        } else {
            let mut index: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
            for (raw_key, value) in &raw {
                let name: &str = match raw_key {
                    RawKey::Borrowed(k) => k,
                    RawKey::Owned(k) => k,
                };
                let (a, b) = span(value.get());
                let field = Field::Span(a, b);
                match index.get(name) {
                    Some(&at) => fields[at].1 = field,
                    None => {
                        index.insert(name, fields.len());
                        fields.push((key_of(raw_key), field));
                    }
                }
            }
        }
        let (mut packet_type, mut subject_id) = (None, None);
        for (key, field) in &fields {
            match key.as_str(text) {
                "packet_type" => packet_type = field.as_str(text),
                "subject_id" => subject_id = field.as_str(text),
                _ => {}
            }
        }
        let packet_type = match packet_type {
            Some(t) => PacketType::parse(&t),
            None => return Err(PacketError::MissingField("packet_type")),
        };
        let subject_id = subject_id
            .ok_or(PacketError::MissingField("subject_id"))?
            .into_owned();
        // The parse accepted nothing but whitespace after the object, so
        // its closing brace is the last byte that is not whitespace.
        // (Spans are u32 already: a frame is far below 4 GiB.)
        let verbatim = (fields.len() == raw.len()).then(|| Verbatim {
            count: fields.len() as u32,
            close: (text.trim_end().len() - 1) as u32,
        });
        drop(raw);
        let mut packet = Packet {
            packet_type,
            subject_id,
            source,
            fields,
            verbatim,
        };
        packet.set_own(INCOMING, ts_value(incoming_ts));
        Ok(packet)
    }

    /// Gives the packet a copy of its text in an allocation of its own. A
    /// frame's text is a slice of the buffer it was read into, which may be
    /// far larger (up to the largest frame that socket sent): a packet that
    /// waits in a queue must not keep that buffer alive.
    pub fn detach(&mut self) {
        if !self.source.is_empty() {
            let own: &str = &self.source;
            self.source = ByteString::from(own.to_owned());
        }
    }

    /// A packet made by the switch itself.
    pub fn new(packet_type: PacketType, subject_id: impl Into<String>, data: Value) -> Packet {
        let subject_id = subject_id.into();
        let mut p = Packet {
            packet_type: packet_type.clone(),
            subject_id: subject_id.clone(),
            source: ByteString::new(),
            fields: Vec::with_capacity(4),
            verbatim: None,
        };
        p.set_own("packet_type", Value::String(packet_type.as_str().into()));
        p.set_own("subject_id", Value::String(subject_id));
        p.set_own("data", data);
        p
    }

    /// Sets a field whose name is the switch's own (plain ASCII).
    fn set_own(&mut self, key: &'static str, value: Value) {
        self.set_key(Key::Static(key), Field::Value(value));
    }

    /// Sets a top-level field, in place if it exists, else at the end.
    fn set_key(&mut self, key: Key, field: Field) {
        let at = set_field(&mut self.fields, key, field, &self.source);
        if matches!(self.verbatim, Some(v) if at < v.count as usize) {
            self.verbatim = None;
        }
    }

    /// Sets a top-level field (builder style).
    pub fn with(mut self, key: &str, value: Value) -> Packet {
        self.set_key(Key::Owned(key.to_string()), Field::Value(value));
        self
    }

    /// Sets a top-level field to JSON text, kept as text: a large body
    /// costs its bytes once, not a tree of values.
    pub fn with_raw(mut self, key: &str, raw: Box<RawValue>) -> Packet {
        self.set_key(Key::Owned(key.to_string()), Field::Raw(raw));
        self
    }

    /// Sets `data` to JSON text, kept as text.
    pub fn set_raw_data(&mut self, raw: Box<RawValue>) {
        self.set_key(Key::Static("data"), Field::Raw(raw));
    }

    /// The packet as JSON text kept as text (for a report that carries it).
    pub fn to_raw(&mut self, outgoing_ts: f64) -> Box<RawValue> {
        let text = self.to_text(outgoing_ts);
        // `to_text` writes one JSON object.
        RawValue::from_string(text).unwrap_or_else(|_| null_raw())
    }

    /// About the bytes this packet holds: its text and what was set since
    /// (for queues bounded in bytes; the fields' own bookkeeping aside).
    pub fn weight(&self) -> usize {
        let mut n = self.source.len();
        for (k, f) in &self.fields {
            if let Key::Owned(k) = k {
                n += k.len();
            }
            n += match f {
                Field::Span(..) => 0,
                Field::Raw(r) => r.get().len(),
                Field::Value(v) => json_len(v),
            };
        }
        n
    }

    /// A top-level field as a JSON value.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_str(&self.source) == key)
            .map(|(_, f)| f.to_value(&self.source))
    }

    pub fn data(&self) -> Option<Value> {
        self.get("data")
    }

    pub fn set_data(&mut self, data: Value) {
        self.set_own("data", data);
    }

    /// `data.<key>` as a string, if the packet has it.
    pub fn data_str(&self, key: &str) -> Option<String> {
        match self.data()?.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn is_backend(&self) -> bool {
        self.subject_id == MEPHISTO
    }

    /// Serialises the packet for the wire, stamping
    /// `router_outgoing_timestamp` as it leaves.
    pub fn to_text(&mut self, outgoing_ts: f64) -> String {
        self.set_own(OUTGOING, ts_value(outgoing_ts));
        let src = self.source.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(src.len() + 96);
        // The source object as it came, its closing brace left off, or a
        // new object.
        let done = match self.verbatim {
            Some(v) => {
                out.extend_from_slice(&src[..v.close as usize]);
                v.count as usize
            }
            None => {
                out.push(b'{');
                0
            }
        };
        for (i, (key, field)) in self.fields.iter().enumerate().skip(done) {
            if i > 0 {
                out.push(b',');
            }
            match key {
                Key::Span(a, b) => {
                    out.push(b'"');
                    out.extend_from_slice(&src[*a as usize..*b as usize]);
                    out.push(b'"');
                }
                Key::Static(k) => {
                    out.push(b'"');
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'"');
                }
                // A string always serialises.
                Key::Owned(k) => serde_json::to_writer(&mut out, k).unwrap_or_default(),
            }
            out.push(b':');
            match field {
                Field::Span(a, b) => out.extend_from_slice(&src[*a as usize..*b as usize]),
                Field::Raw(r) => out.extend_from_slice(r.get().as_bytes()),
                // A Value always serialises.
                Field::Value(v) => serde_json::to_writer(&mut out, v).unwrap_or_default(),
            }
        }
        out.push(b'}');
        // Spans are whole JSON tokens of a `str`, the rest is serde_json's.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The packet as a JSON value (what an HTTP handler answers with).
    pub fn into_value(self) -> Value {
        let mut map = Map::with_capacity(self.fields.len());
        for (k, f) in &self.fields {
            map.insert(k.as_str(&self.source).to_string(), f.to_value(&self.source));
        }
        Value::Object(map)
    }
}

/// Sets `key` in `fields`: in place if it is there, else at the end.
/// Returns where it is.
fn set_field(fields: &mut Vec<(Key, Field)>, key: Key, field: Field, source: &str) -> usize {
    let k = key.as_str(source);
    match fields.iter().position(|(have, _)| have.as_str(source) == k) {
        Some(at) => {
            fields[at].1 = field;
            at
        }
        None => {
            fields.push((key, field));
            fields.len() - 1
        }
    }
}

impl Key {
    fn as_str<'a>(&'a self, source: &'a str) -> &'a str {
        match self {
            Key::Span(a, b) => &source[*a as usize..*b as usize],
            Key::Static(k) => k,
            Key::Owned(k) => k,
        }
    }
}

impl Field {
    fn to_value(&self, source: &str) -> Value {
        match self {
            // The span was checked to be JSON when the packet was parsed.
            Field::Span(a, b) => {
                serde_json::from_str(&source[*a as usize..*b as usize]).unwrap_or(Value::Null)
            }
            Field::Raw(r) => serde_json::from_str(r.get()).unwrap_or(Value::Null),
            Field::Value(v) => v.clone(),
        }
    }

    /// The field as a string, if it is one (borrowed unless it had escapes).
    fn as_str<'a>(&'a self, source: &'a str) -> Option<Cow<'a, str>> {
        match self {
            Field::Span(a, b) => {
                let raw = &source[*a as usize..*b as usize];
                if !raw.starts_with('"') {
                    return None;
                }
                match raw.find('\\') {
                    None => Some(Cow::Borrowed(&raw[1..raw.len() - 1])),
                    Some(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
                }
            }
            Field::Raw(r) => serde_json::from_str::<String>(r.get()).ok().map(Cow::Owned),
            Field::Value(Value::String(s)) => Some(Cow::Borrowed(s)),
            Field::Value(_) => None,
        }
    }
}

/// A top-level object read as keys and the raw text of their values.
struct RawObject<'a>(Vec<(RawKey<'a>, &'a serde_json::value::RawValue)>);

enum RawKey<'a> {
    /// Unescaped: a slice of the input.
    Borrowed(&'a str),
    Owned(String),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawKey<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<RawKey<'de>, E> {
                Ok(RawKey::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawKey<'de>, E> {
                Ok(RawKey::Owned(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads a [`RawObject`] of at most `max` fields; past it the read stops
/// with an error and `over` is set.
struct RawObjectSeed<'c> {
    max: usize,
    over: &'c std::cell::Cell<bool>,
}

impl<'de, 'c> serde::de::DeserializeSeed<'de> for RawObjectSeed<'c> {
    type Value = RawObject<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawObject<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'c> serde::de::Visitor<'de> for RawObjectSeed<'c> {
    type Value = RawObject<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<RawObject<'de>, M::Error> {
        let mut out = Vec::with_capacity(8);
        while let Some(k) = m.next_key::<RawKey<'de>>()? {
            if out.len() >= self.max {
                self.over.set(true);
                return Err(serde::de::Error::custom("too many fields"));
            }
            out.push((k, m.next_value::<&'de serde_json::value::RawValue>()?));
        }
        Ok(RawObject(out))
    }
}

fn null_raw() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_default()
}

/// The length of `v` as JSON text, without writing it anywhere.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn ts_value(ts: f64) -> Value {
    serde_json::Number::from_f64(ts)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_keeps_unknown_fields_and_stamps_incoming() {
        let p = Packet::parse(
            r#"{"packet_type":"heartbeat","subject_id":"a1","data":{},"extra":[1,2],"client_timestamp":1.5}"#,
            100.25,
        )
        .unwrap();
        assert_eq!(p.packet_type, PacketType::Heartbeat);
        assert_eq!(p.subject_id, "a1");
        assert_eq!(p.get("extra"), Some(json!([1, 2])));
        assert_eq!(p.get("router_incoming_timestamp"), Some(json!(100.25)));
    }

    #[test]
    fn forwarded_text_keeps_every_other_byte() {
        let text = r#"{"packet_type":"client_bound_live_update","subject_id":"a1","data":{"x": 0.1000000000000000055511151231257827, "s":"\u00e9\n"},"router_outgoing_timestamp":1,"z\u0041":[ 1 ]}"#;
        let mut p = Packet::parse(text, 2.5).unwrap();
        assert_eq!(p.subject_id, "a1");
        let out = p.to_text(3.5);
        // data and the unknown fields are copied byte for byte, the
        // outgoing stamp is replaced in place, the incoming one appended.
        assert_eq!(
            out,
            r#"{"packet_type":"client_bound_live_update","subject_id":"a1","data":{"x": 0.1000000000000000055511151231257827, "s":"\u00e9\n"},"router_outgoing_timestamp":3.5,"zA":[ 1 ],"router_incoming_timestamp":2.5}"#
        );
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["zA"], json!([1]));
    }

    #[test]
    fn an_unchanged_packet_is_sent_as_it_came_with_the_stamps_appended() {
        // Whitespace, an escaped key and exact digits stay as they were.
        let text = " {\"packet_type\" : \"mephisto_bound_live_update\", \"subject_id\":\"a1\",\"z\\u0041\":1.50,\"data\":{ }} \n";
        let mut p = Packet::parse(text, 2.5).unwrap();
        let out = p.to_text(3.5);
        assert_eq!(
            out,
            " {\"packet_type\" : \"mephisto_bound_live_update\", \"subject_id\":\"a1\",\"z\\u0041\":1.50,\"data\":{ },\"router_incoming_timestamp\":2.5,\"router_outgoing_timestamp\":3.5}"
        );
        // Sent again (a packet that waited and is written later), the
        // outgoing stamp is replaced, not repeated.
        let again = p.to_text(4.5);
        let back: Value = serde_json::from_str(&again).unwrap();
        assert_eq!(back["router_outgoing_timestamp"], json!(4.5));
        assert_eq!(again.matches("router_outgoing_timestamp").count(), 1);
    }

    #[test]
    fn a_detached_packet_no_longer_holds_the_buffer_it_was_cut_from() {
        let frame = r#"{"packet_type":"alive","subject_id":"a","data":{}}"#;
        let mut buf = frame.as_bytes().to_vec();
        buf.extend(std::iter::repeat_n(b' ', 1 << 20));
        let big = bytes::Bytes::from(buf);
        let text = ByteString::try_from(big.slice(..frame.len())).unwrap();
        let mut p = Packet::parse_shared(text, 1.0).unwrap();
        let range = big.as_ptr_range();
        assert!(range.contains(&p.source.as_ptr()), "shared before");
        let before = p.clone().to_text(2.0);
        p.detach();
        assert!(
            !range.contains(&p.source.as_ptr()),
            "a copy of its own after"
        );
        assert_eq!(p.to_text(2.0), before);
    }

    #[test]
    fn a_changed_packet_is_written_field_by_field() {
        let text =
            r#"{"packet_type":"update_status","subject_id":"a","data":{"status":"x"},"k":[1, 2]}"#;
        let mut p = Packet::parse(text, 1.0).unwrap();
        p.set_data(json!({"status": "y"}));
        let out = p.to_text(2.0);
        assert_eq!(
            out,
            r#"{"packet_type":"update_status","subject_id":"a","data":{"status":"y"},"k":[1, 2],"router_incoming_timestamp":1.0,"router_outgoing_timestamp":2.0}"#
        );
        // A repeated key: one field, its first place, its last value.
        let mut p = Packet::parse(
            r#"{"packet_type":"alive","subject_id":"a","n":1,"n":2}"#,
            1.0,
        )
        .unwrap();
        let back: Value = serde_json::from_str(&p.to_text(2.0)).unwrap();
        assert_eq!(back["n"], json!(2));
        assert_eq!(back.as_object().unwrap().len(), 5);
    }

    #[test]
    fn escaped_type_and_subject_are_decoded_and_repeated_keys_keep_the_last() {
        let p = Packet::parse(
            r#"{"packet_type":"alive","packet_type":"heart\u0062eat","subject_id":"a\"1","data":{}}"#,
            0.0,
        )
        .unwrap();
        assert_eq!(p.packet_type, PacketType::Heartbeat);
        assert_eq!(p.subject_id, "a\"1");
        let v = p.into_value();
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert_eq!(v["packet_type"], json!("heartbeat"));
    }

    #[test]
    fn data_is_read_on_demand() {
        let mut p = Packet::parse(
            r#"{"packet_type":"update_status","subject_id":"a","data":{"status":"done","n":1}}"#,
            0.0,
        )
        .unwrap();
        assert_eq!(p.data_str("status").as_deref(), Some("done"));
        assert_eq!(p.data_str("n"), None);
        p.set_data(json!({"status": "x"}));
        assert_eq!(p.data(), Some(json!({"status": "x"})));
    }

    #[test]
    fn fields_past_the_limit_are_refused_and_many_keys_parse_in_linear_time() {
        let many = |n: usize| {
            let mut t = String::from(r#"{"packet_type":"alive","subject_id":"a""#);
            for i in 0..n {
                t.push_str(&format!(",\"k{i}\":{i}"));
            }
            t.push('}');
            t
        };
        assert_eq!(
            Packet::parse_limited(many(10).into(), 0.0, 8).unwrap_err(),
            PacketError::TooManyFields(8)
        );
        assert!(Packet::parse_limited(many(6).into(), 0.0, 8).is_ok());
        // 100 000 distinct keys: refused at once with the default limit,
        // and parsed (no limit) in linear time with repeats still merged.
        let big = many(100_000);
        assert_eq!(
            Packet::parse(&big, 0.0).unwrap_err(),
            PacketError::TooManyFields(DEFAULT_MAX_FIELDS)
        );
        let t = std::time::Instant::now();
        let mut p = Packet::parse_limited(big.into(), 0.0, usize::MAX).unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        let dup = r#"{"packet_type":"alive","subject_id":"a","n":1,"a1":1,"a2":1,"a3":1,"a4":1,"a5":1,"a6":1,"a7":1,"a8":1,"a9":1,"a10":1,"a11":1,"a12":1,"a13":1,"a14":1,"a15":1,"n":2}"#;
        let back: Value =
            serde_json::from_str(&Packet::parse(dup, 0.0).unwrap().to_text(1.0)).unwrap();
        assert_eq!(back["n"], json!(2));
        assert_eq!(back.as_object().unwrap().len(), 20);
        assert_eq!(p.get("k99999"), Some(json!(99_999)));
        let _ = p.to_text(1.0);
    }

    #[test]
    fn raw_fields_are_written_as_they_are_and_weighed() {
        let raw = RawValue::from_string(r#"{"big": [1, 2.50, "x"]}"#.into()).unwrap();
        let mut p = Packet::new(PacketType::SubmitMetadata, "a", Value::Null);
        p.set_raw_data(raw);
        let p = p.with_raw("extra", RawValue::from_string("\"s\"".into()).unwrap());
        assert_eq!(p.data(), Some(json!({"big": [1, 2.5, "x"]})));
        assert!(p.weight() >= r#"{"big": [1, 2.50, "x"]}"#.len());
        let mut q = p.clone();
        let text = q.to_text(1.0);
        assert!(text.contains(r#""data":{"big": [1, 2.50, "x"]}"#), "{text}");
        assert!(text.contains(r#""extra":"s""#), "{text}");
        let r = q.to_raw(2.0);
        let back: Value = serde_json::from_str(r.get()).unwrap();
        assert_eq!(back["data"]["big"][2], json!("x"));
        let parsed =
            Packet::parse(r#"{"packet_type":"alive","subject_id":"a","data":{}}"#, 0.0).unwrap();
        assert!(parsed.weight() >= 40);
        // A field set by name weighs its name too: a peer's long key names
        // fill a byte-bounded queue like any other bytes (PROTOCOL 1.5).
        let key = "k".repeat(1000);
        let keyed = parsed.clone().with(&key, json!("v".repeat(500)));
        let added = keyed.weight() - parsed.weight();
        assert!((1502..1512).contains(&added), "{added}");
    }

    #[test]
    fn unknown_type_is_other() {
        let p = Packet::parse(r#"{"packet_type":"zzz","subject_id":"a"}"#, 0.0).unwrap();
        assert_eq!(p.packet_type, PacketType::Other("zzz".into()));
        assert_eq!(p.packet_type.as_str(), "zzz");
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            Packet::parse("{nope", 0.0),
            Err(PacketError::InvalidJson(_))
        ));
        assert_eq!(Packet::parse("[1]", 0.0), Err(PacketError::NotAnObject));
        assert_eq!(Packet::parse("\"s\"", 0.0), Err(PacketError::NotAnObject));
        assert!(matches!(
            Packet::parse(r#"{"packet_type":"alive","subject_id":"a"} x"#, 0.0),
            Err(PacketError::InvalidJson(_))
        ));
        assert_eq!(
            Packet::parse(r#"{"subject_id":"a"}"#, 0.0),
            Err(PacketError::MissingField("packet_type"))
        );
        assert_eq!(
            Packet::parse(r#"{"packet_type":"alive","subject_id":5}"#, 0.0),
            Err(PacketError::MissingField("subject_id"))
        );
    }

    // Packets are equal when their JSON is: the same fields and values,
    // whatever text they came from.
    #[test]
    fn packets_compare_by_their_json() {
        let a = Packet::parse(r#"{"packet_type":"alive","subject_id":"a","data":{}}"#, 1.0);
        let spaced = Packet::parse(
            r#"{ "subject_id": "a", "packet_type": "alive", "data": {} }"#,
            1.0,
        );
        assert_eq!(a, spaced);
        let other = Packet::parse(r#"{"packet_type":"alive","subject_id":"b","data":{}}"#, 1.0);
        assert_ne!(a, other);
        assert_ne!(
            a,
            Packet::parse(r#"{"packet_type":"alive","subject_id":"a","data":{}}"#, 2.0)
        );
    }

    #[test]
    fn to_text_stamps_outgoing_and_round_trips() {
        let mut p = Packet::new(PacketType::UpdateStatus, "a", json!({"status": "waiting"}));
        let text = p.to_text(7.5);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["router_outgoing_timestamp"], json!(7.5));
        assert_eq!(back["data"]["status"], json!("waiting"));
        assert_eq!(back["packet_type"], json!("update_status"));
    }

    #[test]
    fn every_named_type_round_trips_its_name() {
        for name in [
            "alive",
            "heartbeat",
            "mephisto_bound_live_update",
            "client_bound_live_update",
            "update_status",
            "request_statuses",
            "return_statuses",
            "log_error",
            "agent_details",
            "register_agent",
            "submit_onboarding",
            "submit_unit",
            "submit_metadata",
        ] {
            let t = PacketType::parse(name);
            assert!(!matches!(t, PacketType::Other(_)), "{name}");
            assert_eq!(t.as_str(), name);
        }
    }
}
