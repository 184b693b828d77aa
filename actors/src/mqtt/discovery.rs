//! Home Assistant MQTT discovery: the retained config messages that make
//! every node a device and every decoded field a sensor. Pure.
//!
//! - A node is a device (`switchyard_<bridge>_<source>_<address>`), named
//!   by its address (and gateway), reached through the switch's own
//!   device (`switchyard_<bridge>`, with the mesh link as a connectivity
//!   sensor).
//! - A data type's value is a JSON object of fields: one sensor per field
//!   (`value_json.value.<field>`), with a unit and device class where the
//!   field's name says what it is (`celsius`, `percent` of `HUM`,
//!   `millivolts`, ...). A type whose fields are `lat` and `lon` is a
//!   device tracker instead (`GPS`). A type the switch cannot decode is
//!   one sensor showing its raw bytes as hex.
//! - Every entity is available while the switch is online *and* the node
//!   is active (`availability_mode: all`).
//!
//! Only fields named with `A-Z a-z 0-9 _` become sensors: the name goes
//! into a template Home Assistant evaluates.

use serde_json::{json, Map, Value};

use super::topics::Topics;
use crate::network::node_cache::NodeKey;

/// One discovery message: its topic and retained JSON config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub topic: String,
    pub payload: Value,
}

/// `[A-Za-z0-9_-]` only, as discovery topics and ids require; any other
/// byte as `_XX` (hex).
pub fn id_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn template_safe(field: &str) -> bool {
    !field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Unit, device class and a friendly name for a field, where its name
/// says what it is.
fn field_kind(data_type: &str, field: &str) -> (Option<&'static str>, Option<&'static str>) {
    match field.to_ascii_lowercase().as_str() {
        "celsius" => (Some("°C"), Some("temperature")),
        "fahrenheit" => (Some("°F"), Some("temperature")),
        "kelvin" => (Some("K"), Some("temperature")),
        "humidity" => (Some("%"), Some("humidity")),
        "percent" if data_type == "HUM" => (Some("%"), Some("humidity")),
        "percent" if data_type == "BAT" => (Some("%"), Some("battery")),
        "percent" => (Some("%"), None),
        "millivolts" | "mv" => (Some("mV"), Some("voltage")),
        "volts" | "voltage" => (Some("V"), Some("voltage")),
        "hpa" => (Some("hPa"), Some("pressure")),
        "pa" | "pascal" => (Some("Pa"), Some("pressure")),
        "lux" => (Some("lx"), Some("illuminance")),
        "ppm" => (Some("ppm"), None),
        _ => (None, None),
    }
}

fn friendly(data_type: &str, field: &str) -> String {
    match (data_type, field) {
        ("TMP", "celsius") => "Temperature".into(),
        ("HUM", "percent") => "Humidity".into(),
        ("BAT", "millivolts") => "Battery voltage".into(),
        _ => format!("{data_type} {field}"),
    }
}

/// The switch's identity in discovery.
#[derive(Debug, Clone)]
pub struct Discovery {
    topics: Topics,
    bridge: String,
}

impl Discovery {
    /// `bridge_id`: this switch's MQTT client id.
    pub fn new(topics: Topics, bridge_id: &str) -> Discovery {
        Discovery {
            topics,
            bridge: format!("switchyard_{}", id_part(bridge_id)),
        }
    }

    fn node_id(&self, key: &NodeKey) -> String {
        format!(
            "{}_{}_{:04x}",
            self.bridge,
            id_part(Topics::source(key)),
            key.addr
        )
    }

    fn availability(&self, key: &NodeKey) -> Value {
        json!([
            {"topic": self.topics.availability(), "payload_available": "online", "payload_not_available": "offline"},
            {"topic": self.topics.status(key), "payload_available": "active", "payload_not_available": "inactive"},
        ])
    }

    fn device(&self, key: &NodeKey) -> Value {
        let name = match &key.gateway {
            Some(g) => format!("Mesh node 0x{:04x} ({g})", key.addr),
            None => format!("Mesh node 0x{:04x}", key.addr),
        };
        json!({
            "identifiers": [self.node_id(key)],
            "name": name,
            "model": "mesh node",
            "manufacturer": "switchyard",
            "serial_number": format!("{}/0x{:04x}", Topics::source(key), key.addr),
            "via_device": self.bridge,
        })
    }

    fn origin() -> Value {
        json!({"name": "switchyard", "sw_version": env!("CARGO_PKG_VERSION")})
    }

    /// The switch's own device: its mesh link as a connectivity sensor.
    pub fn bridge_configs(&self) -> Vec<Config> {
        let dp = self.topics.discovery_prefix();
        vec![Config {
            topic: format!("{dp}/binary_sensor/{}/mesh_link/config", self.bridge),
            payload: json!({
                "name": "Mesh link",
                "unique_id": format!("{}_mesh_link", self.bridge),
                "state_topic": self.topics.link("mesh"),
                "payload_on": "up",
                "payload_off": "down",
                "device_class": "connectivity",
                "availability_topic": self.topics.availability(),
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": {
                    "identifiers": [self.bridge],
                    "name": format!("switchyard {}", self.bridge.trim_start_matches("switchyard_")),
                    "model": "message switch",
                    "manufacturer": "switchyard",
                    "sw_version": env!("CARGO_PKG_VERSION"),
                },
                "origin": Self::origin(),
            }),
        }]
    }

    /// The configs for one data type of one node, given a value of it.
    pub fn configs(&self, key: &NodeKey, data_type: &str, value: &Value) -> Vec<Config> {
        let dp = self.topics.discovery_prefix();
        let node_id = self.node_id(key);
        let type_id = id_part(data_type);
        let state_topic = self.topics.data(key, data_type);
        let common = |name: String, unique: String| -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("unique_id".into(), json!(unique));
            m.insert("availability".into(), self.availability(key));
            m.insert("availability_mode".into(), json!("all"));
            m.insert("device".into(), self.device(key));
            m.insert("origin".into(), Self::origin());
            m
        };
        let fields: Vec<&str> = match value {
            Value::Object(o) => o.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        // A position: one device tracker.
        if fields.len() == 2 && fields.contains(&"lat") && fields.contains(&"lon") {
            let mut m = common("Position".into(), format!("{node_id}_{type_id}"));
            m.insert("json_attributes_topic".into(), json!(state_topic));
            m.insert(
                "json_attributes_template".into(),
                json!("{{ {'latitude': value_json.value.lat, 'longitude': value_json.value.lon, 'gps_accuracy': 0} | tojson }}"),
            );
            m.insert("source_type".into(), json!("gps"));
            return vec![Config {
                topic: format!("{dp}/device_tracker/{node_id}/{type_id}/config"),
                payload: Value::Object(m),
            }];
        }
        // Not decoded: its bytes.
        if fields.is_empty() {
            let mut m = common(
                format!("{data_type} raw"),
                format!("{node_id}_{type_id}_raw"),
            );
            m.insert("state_topic".into(), json!(state_topic));
            m.insert("value_template".into(), json!("{{ value_json.raw }}"));
            return vec![Config {
                topic: format!("{dp}/sensor/{node_id}/{type_id}_raw/config"),
                payload: Value::Object(m),
            }];
        }
        fields
            .into_iter()
            .filter(|f| template_safe(f))
            .map(|field| {
                let object = format!("{type_id}_{}", id_part(field));
                let mut m = common(friendly(data_type, field), format!("{node_id}_{object}"));
                m.insert("state_topic".into(), json!(state_topic));
                m.insert(
                    "value_template".into(),
                    json!(format!("{{{{ value_json.value.{field} }}}}")),
                );
                m.insert("state_class".into(), json!("measurement"));
                let (unit, class) = field_kind(data_type, field);
                if let Some(u) = unit {
                    m.insert("unit_of_measurement".into(), json!(u));
                }
                if let Some(c) = class {
                    m.insert("device_class".into(), json!(c));
                }
                Config {
                    topic: format!("{dp}/sensor/{node_id}/{object}/config"),
                    payload: Value::Object(m),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Discovery {
        Discovery::new(Topics::new("switchyard", "homeassistant"), "sw-1:3000")
    }

    #[test]
    fn a_temperature_is_a_temperature_sensor_of_its_node() {
        let c = d().configs(&NodeKey::local(1), "TMP", &json!({"celsius": 21.5}));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].topic,
            "homeassistant/sensor/switchyard_sw-1_3a3000_local_0001/TMP_celsius/config"
        );
        let p = &c[0].payload;
        assert_eq!(p["state_topic"], "switchyard/local/0x0001/TMP");
        assert_eq!(p["value_template"], "{{ value_json.value.celsius }}");
        assert_eq!(p["device_class"], "temperature");
        assert_eq!(p["unit_of_measurement"], "°C");
        assert_eq!(
            p["device"]["identifiers"][0],
            "switchyard_sw-1_3a3000_local_0001"
        );
        assert_eq!(p["device"]["via_device"], "switchyard_sw-1_3a3000");
        assert_eq!(p["availability_mode"], "all");
    }

    #[test]
    fn gps_is_a_device_tracker_and_unknown_types_show_raw() {
        let gw = NodeKey {
            gateway: Some("edge.1".into()),
            addr: 0x10,
        };
        let c = d().configs(&gw, "GPS", &json!({"lon": 1.0, "lat": 2.0}));
        assert_eq!(
            c[0].topic,
            "homeassistant/device_tracker/switchyard_sw-1_3a3000_edge_2e1_0010/GPS/config"
        );
        assert_eq!(c[0].payload["source_type"], "gps");
        assert_eq!(
            c[0].payload["json_attributes_topic"],
            "switchyard/edge.1/0x0010/GPS"
        );
        let c = d().configs(&gw, "X/Z", &Value::Null);
        assert_eq!(c[0].payload["value_template"], "{{ value_json.raw }}");
        assert_eq!(
            c[0].payload["state_topic"],
            "switchyard/edge.1/0x0010/X%2FZ"
        );
        assert!(c[0].topic.ends_with("/X_2fZ_raw/config"), "{}", c[0].topic);
    }

    #[test]
    fn field_names_that_are_not_plain_never_reach_a_template() {
        let c = d().configs(
            &NodeKey::local(1),
            "WND",
            &json!({"speed": 1, "dir}} {{ 7*7": 2}),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].payload["value_template"],
            "{{ value_json.value.speed }}"
        );
    }

    #[test]
    fn ids_and_topics_use_only_what_discovery_allows() {
        for (key, ty, v) in [
            (NodeKey::local(1), "BAT", json!({"millivolts": 3700})),
            (NodeKey::local(2), "HUM", json!({"percent": 40})),
            (NodeKey::local(3), "+#/", Value::Null),
        ] {
            for c in d().configs(&key, ty, &v) {
                let parts: Vec<&str> = c.topic.split('/').collect();
                assert_eq!(parts.len(), 5, "{}", c.topic);
                for p in &parts[2..4] {
                    assert!(
                        p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                        "{}",
                        c.topic
                    );
                }
            }
        }
    }
}
