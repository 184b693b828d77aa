//! The monitor's JSON (PROTOCOL 4): one object per event, with `event` and
//! `ts`. Pure conversion from `SwitchEvent`.

use serde_json::{json, Value};

use crate::network::events::SwitchEvent;
use crate::network::node_cache::{hex, NodeKey};

fn node_fields(key: &NodeKey) -> (u16, String, Option<String>) {
    (key.addr, format!("0x{:04x}", key.addr), key.gateway.clone())
}

/// The JSON objects an event becomes (a data update with several entries
/// is one `node_data` per entry).
pub fn event_json(event: &SwitchEvent) -> Vec<Value> {
    match event {
        SwitchEvent::NodeData(d) => {
            let (node, address, gateway) = node_fields(&d.key);
            d.items
                .iter()
                .map(|i| {
                    json!({
                        "event": "node_data", "ts": d.ts, "node": node, "address": address,
                        "gateway": gateway, "type": i.data_type, "raw": hex(&i.raw), "value": i.value,
                    })
                })
                .collect()
        }
        SwitchEvent::NodeMessage { ts, key, message } => {
            let (node, address, gateway) = node_fields(key);
            let mut v = json!({
                "event": "node_message", "ts": ts, "node": node, "address": address,
                "gateway": gateway, "hex": hex(message),
            });
            if let Ok(text) = std::str::from_utf8(message) {
                v["text"] = json!(text);
            }
            vec![v]
        }
        SwitchEvent::NodeStatus { ts, key, status } => {
            let (node, address, gateway) = node_fields(key);
            vec![json!({
                "event": "node_status", "ts": ts, "node": node, "address": address,
                "gateway": gateway, "status": status.as_str(),
            })]
        }
        SwitchEvent::Link { ts, link, state } => {
            vec![json!({"event": "link", "ts": ts, "link": link, "state": state})]
        }
        SwitchEvent::CommandResult {
            ts,
            key,
            command,
            outcome,
        } => {
            let (node, address, gateway) = node_fields(key);
            vec![json!({
                "event": "command_result", "ts": ts, "node": node, "address": address,
                "gateway": gateway, "command": command, "ok": outcome.is_ok(),
                "error": outcome.as_ref().err(),
            })]
        }
        SwitchEvent::AgentStatus {
            ts,
            agent_id,
            status,
        } => {
            vec![json!({"event": "agent_status", "ts": ts, "agent_id": agent_id, "status": status})]
        }
        SwitchEvent::Backend { ts, connected } => {
            vec![json!({"event": "backend", "ts": ts, "connected": connected})]
        }
        SwitchEvent::Log { ts, text } => vec![json!({"event": "log", "ts": ts, "text": text})],
        SwitchEvent::Robots { ts, robots } => {
            vec![json!({"event": "robots", "ts": ts, "robots": robots})]
        }
    }
}

/// Told to a subscriber that lost events.
pub fn lagged(ts: f64, dropped: u64) -> Value {
    json!({"event": "lagged", "ts": ts, "dropped": dropped})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::events::{DataItem, NodeData};
    use crate::network::node_cache::NodeStatus;
    use std::sync::Arc;

    #[test]
    fn node_data_is_one_event_per_entry() {
        let e = SwitchEvent::NodeData(Arc::new(NodeData {
            ts: 1.5,
            key: NodeKey::local(3),
            items: vec![
                DataItem {
                    data_type: "HUM".into(),
                    raw: vec![7],
                    value: json!({"percent": 7}),
                },
                DataItem {
                    data_type: "XYZ".into(),
                    raw: vec![1, 2],
                    value: Value::Null,
                },
            ],
            payload: vec![],
        }));
        let v = event_json(&e);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            json!({"event": "node_data", "ts": 1.5, "node": 3, "address": "0x0003", "gateway": null,
                   "type": "HUM", "raw": "07", "value": {"percent": 7}})
        );
        assert_eq!(v[1]["raw"], json!("0102"));
    }

    #[test]
    fn messages_carry_text_when_utf8_and_hex_always() {
        let m = |b: &[u8]| {
            event_json(&SwitchEvent::NodeMessage {
                ts: 0.0,
                key: NodeKey::local(1),
                message: Arc::new(b.to_vec()),
            })
            .remove(0)
        };
        assert_eq!(m(b"hi")["text"], json!("hi"));
        assert_eq!(m(b"hi")["hex"], json!("6869"));
        assert!(m(b"\xff").get("text").is_none());
    }

    #[test]
    fn every_kind_has_event_and_ts() {
        let events = vec![
            SwitchEvent::NodeStatus {
                ts: 1.0,
                key: NodeKey::local(1),
                status: NodeStatus::Inactive,
            },
            SwitchEvent::Link {
                ts: 1.0,
                link: "mesh".into(),
                state: "up".into(),
            },
            SwitchEvent::AgentStatus {
                ts: 1.0,
                agent_id: "a".into(),
                status: "waiting".into(),
            },
            SwitchEvent::Backend {
                ts: 1.0,
                connected: true,
            },
            SwitchEvent::Log {
                ts: 1.0,
                text: "t".into(),
            },
            SwitchEvent::Robots {
                ts: 1.0,
                robots: json!([]),
            },
            SwitchEvent::CommandResult {
                ts: 1.0,
                key: NodeKey::local(2),
                command: "SENDI",
                outcome: Err("x".into()),
            },
        ];
        for e in &events {
            let v = event_json(e).remove(0);
            assert_eq!(v["event"], json!(e.name()));
            assert_eq!(v["ts"], json!(1.0));
        }
        assert_eq!(
            lagged(2.0, 5),
            json!({"event": "lagged", "ts": 2.0, "dropped": 5})
        );
    }
}
