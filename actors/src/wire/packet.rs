//! Agent router packets (PROTOCOL 1.1, 1.2).
//!
//! A packet is one JSON object. The switch looks at `packet_type`,
//! `subject_id` and a few `data` fields, and forwards everything else
//! untouched: unknown fields survive the trip because the whole object is
//! kept as a `serde_json::Map` (in arrival order).

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
}

impl PacketError {
    pub fn kind(&self) -> &'static str {
        match self {
            PacketError::InvalidJson(_) => "invalid_json",
            PacketError::NotAnObject => "not_an_object",
            PacketError::MissingField(_) => "missing_field",
        }
    }
}

/// One router packet: its type and subject decoded, every field kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub packet_type: PacketType,
    pub subject_id: String,
    /// Every field of the object, `packet_type` and `subject_id` included.
    pub fields: Map<String, Value>,
}

impl Packet {
    /// Parses one text frame and stamps `router_incoming_timestamp`.
    pub fn parse(text: &str, incoming_ts: f64) -> Result<Packet, PacketError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PacketError::InvalidJson(e.to_string()))?;
        let Value::Object(mut fields) = value else {
            return Err(PacketError::NotAnObject);
        };
        let packet_type = match fields.get("packet_type") {
            Some(Value::String(s)) => PacketType::parse(s),
            _ => return Err(PacketError::MissingField("packet_type")),
        };
        let subject_id = match fields.get("subject_id") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(PacketError::MissingField("subject_id")),
        };
        fields.insert("router_incoming_timestamp".into(), ts_value(incoming_ts));
        Ok(Packet {
            packet_type,
            subject_id,
            fields,
        })
    }

    /// A packet made by the switch itself.
    pub fn new(packet_type: PacketType, subject_id: impl Into<String>, data: Value) -> Packet {
        let subject_id = subject_id.into();
        let mut fields = Map::new();
        fields.insert(
            "packet_type".into(),
            Value::String(packet_type.as_str().into()),
        );
        fields.insert("subject_id".into(), Value::String(subject_id.clone()));
        fields.insert("data".into(), data);
        Packet {
            packet_type,
            subject_id,
            fields,
        }
    }

    /// Sets a top-level field (builder style).
    pub fn with(mut self, key: &str, value: Value) -> Packet {
        self.fields.insert(key.into(), value);
        self
    }

    pub fn data(&self) -> Option<&Value> {
        self.fields.get("data")
    }

    pub fn set_data(&mut self, data: Value) {
        self.fields.insert("data".into(), data);
    }

    /// `data.<key>` as a string, if the packet has it.
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data()?.get(key)?.as_str()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    pub fn is_backend(&self) -> bool {
        self.subject_id == MEPHISTO
    }

    /// Serialises the packet for the wire, stamping
    /// `router_outgoing_timestamp` as it leaves.
    pub fn to_text(&mut self, outgoing_ts: f64) -> String {
        self.fields
            .insert("router_outgoing_timestamp".into(), ts_value(outgoing_ts));
        // A Map of Values always serialises.
        serde_json::to_string(&self.fields).unwrap_or_default()
    }

    /// The packet as a JSON value (what an HTTP handler answers with).
    pub fn into_value(self) -> Value {
        Value::Object(self.fields)
    }
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
        assert_eq!(p.get("extra"), Some(&json!([1, 2])));
        assert_eq!(p.get("router_incoming_timestamp"), Some(&json!(100.25)));
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
        assert_eq!(
            Packet::parse(r#"{"subject_id":"a"}"#, 0.0),
            Err(PacketError::MissingField("packet_type"))
        );
        assert_eq!(
            Packet::parse(r#"{"packet_type":"alive","subject_id":5}"#, 0.0),
            Err(PacketError::MissingField("subject_id"))
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
