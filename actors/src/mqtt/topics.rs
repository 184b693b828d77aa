//! The bridge's topics and payloads (README, "Into your home or lab"):
//! pure, no IO.
//!
//! ```text
//! PREFIX/availability                     online | offline (retained; offline is the last will)
//! PREFIX/<source>/<node>/<TYPE>           {"value": ..., "raw": "09c4", "ts": 1764700000.5}
//! PREFIX/<source>/<node>/status           active | inactive (retained)
//! PREFIX/<source>/<node>/message          {"text": "hi" | null, "raw": "6869", "ts": ...}
//! PREFIX/link/<link>                      up | down (retained; `mesh`, `gateway:<id>/mesh`)
//! PREFIX/[<source>/]<node>/send           in: text, or {"text": "...", "tracked": true}
//! PREFIX/[<source>/]broadcast             in: text, or {"text": "..."}
//! <command topic>/result                  out: the result of each command
//! ```
//!
//! `<source>` is `local` (this switch's own mesh) or the gateway's id (a
//! central switch); `<node>` is `0x0001`. A data type's name is 3
//! printable characters, some of which MQTT topics cannot carry (`/`
//! splits a level, `+` and `#` are wildcards): every byte outside
//! `A-Z a-z 0-9 _ - .` is written as `%XX`.

use serde_json::{json, Value};

use crate::network::events::DataItem;
use crate::network::node_cache::{hex, NodeKey};
use crate::wire::mesh::{parse_node_addr, NodeAddr};
use crate::wire::uplink::is_valid_gateway_name;

/// The topic level of this switch's own mesh.
pub const LOCAL: &str = "local";

/// Where a command goes: the HTTP API's targets.
pub use crate::node_send::Target;

/// Why a topic we are subscribed to names no target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadTopic {
    Source(String),
    Node(String),
}

impl std::fmt::Display for BadTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadTopic::Source(s) => write!(f, "unknown source {s:?} (use `local` or a gateway id)"),
            BadTopic::Node(s) => write!(f, "bad node address {s:?} (use 0x0001 or 1)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    discovery_prefix: String,
}

impl Topics {
    pub fn new(prefix: &str, discovery_prefix: &str) -> Topics {
        Topics {
            prefix: prefix.trim_end_matches('/').to_string(),
            discovery_prefix: discovery_prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn discovery_prefix(&self) -> &str {
        &self.discovery_prefix
    }

    /// `local`, or the gateway's id.
    pub fn source(key: &NodeKey) -> &str {
        key.gateway.as_deref().unwrap_or(LOCAL)
    }

    pub fn node(&self, key: &NodeKey) -> String {
        format!("{}/{}/0x{:04x}", self.prefix, Self::source(key), key.addr)
    }

    pub fn data(&self, key: &NodeKey, data_type: &str) -> String {
        format!("{}/{}", self.node(key), level(data_type))
    }

    pub fn status(&self, key: &NodeKey) -> String {
        format!("{}/status", self.node(key))
    }

    pub fn message(&self, key: &NodeKey) -> String {
        format!("{}/message", self.node(key))
    }

    /// Where the root's result of a tracked send to this node goes.
    pub fn send_result(&self, key: &NodeKey) -> String {
        format!("{}/send/result", self.node(key))
    }

    pub fn availability(&self) -> String {
        format!("{}/availability", self.prefix)
    }

    /// A link's state; `gateway:edge-1/mesh` keeps its `/` as a level.
    pub fn link(&self, link: &str) -> String {
        let levels: Vec<String> = link.split('/').map(level).collect();
        format!("{}/link/{}", self.prefix, levels.join("/"))
    }

    /// Home Assistant's own availability (`online` after it starts): the
    /// discovery configs are published again when it says so.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// What the bridge subscribes to.
    pub fn subscriptions(&self, discovery: bool) -> Vec<String> {
        let p = &self.prefix;
        let mut v = vec![
            format!("{p}/broadcast"),
            format!("{p}/+/broadcast"),
            format!("{p}/+/send"),
            format!("{p}/+/+/send"),
        ];
        if discovery {
            v.push(self.ha_status());
        }
        v
    }

    /// The target of a command topic; `None` if the topic is not one
    /// (`Some(Err)`: it is shaped like one but names nothing).
    pub fn parse_command(&self, topic: &str) -> Option<Result<Target, BadTopic>> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        Some(match levels.as_slice() {
            ["broadcast"] => Ok(Target::Broadcast(None)),
            [source, "broadcast"] => gateway_of(source).map(Target::Broadcast),
            [node, "send"] => addr(node).map(|a| Target::Node(NodeKey::local(a))),
            [source, node, "send"] => {
                let gateway = gateway_of(source);
                let a = addr(node);
                gateway.and_then(|gateway| a.map(|addr| Target::Node(NodeKey { gateway, addr })))
            }
            _ => return None,
        })
    }

    /// Where the result of a command that arrived on `topic` goes.
    pub fn result_of(topic: &str) -> String {
        format!("{topic}/result")
    }
}

fn gateway_of(source: &str) -> Result<Option<String>, BadTopic> {
    if source == LOCAL {
        Ok(None)
    } else if is_valid_gateway_name(source) {
        Ok(Some(source.to_string()))
    } else {
        Err(BadTopic::Source(source.to_string()))
    }
}

fn addr(s: &str) -> Result<NodeAddr, BadTopic> {
    parse_node_addr(s).ok_or_else(|| BadTopic::Node(s.to_string()))
}

/// One topic level: every byte outside `A-Z a-z 0-9 _ - .` as `%XX`, so
/// no name can add a level or a wildcard.
pub fn level(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A data update of one type.
pub fn data_payload(ts: f64, item: &DataItem) -> Vec<u8> {
    json!({"value": item.value, "raw": hex(&item.raw), "ts": ts})
        .to_string()
        .into_bytes()
}

/// A node's message: its text when it is UTF-8, and always its bytes.
pub fn message_payload(ts: f64, message: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(message).ok();
    json!({"text": text, "raw": hex(message), "ts": ts})
        .to_string()
        .into_bytes()
}

/// A command's result: `ok`, or `error` with what went wrong.
pub fn result_payload(command: Option<&str>, outcome: Result<(), &str>) -> Vec<u8> {
    let v = match outcome {
        Ok(()) => json!({"status": "ok", "command": command}),
        Err(e) => json!({"status": "error", "command": command, "error": e}),
    };
    v.to_string().into_bytes()
}

/// The root's final word on a tracked send (`SENDI`).
pub fn delivery_payload(ts: f64, command: &str, outcome: &Result<(), String>) -> Vec<u8> {
    let v: Value = match outcome {
        Ok(()) => json!({"status": "delivered", "command": command, "ts": ts}),
        Err(e) => json!({"status": "failed", "command": command, "error": e, "ts": ts}),
    };
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Topics {
        Topics::new("switchyard", "homeassistant")
    }

    #[test]
    fn node_topics_name_the_source_and_the_address() {
        let t = t();
        let local = NodeKey::local(1);
        let gw = NodeKey {
            gateway: Some("edge-1".into()),
            addr: 0xbeef,
        };
        assert_eq!(t.data(&local, "TMP"), "switchyard/local/0x0001/TMP");
        assert_eq!(t.status(&gw), "switchyard/edge-1/0xbeef/status");
        assert_eq!(t.message(&local), "switchyard/local/0x0001/message");
        assert_eq!(
            t.link("gateway:edge-1/mesh"),
            "switchyard/link/gateway%3Aedge-1/mesh"
        );
        assert_eq!(t.link("mesh"), "switchyard/link/mesh");
    }

    #[test]
    fn a_type_name_never_adds_a_level_or_a_wildcard() {
        let t = t();
        let k = NodeKey::local(2);
        assert_eq!(t.data(&k, "a/#"), "switchyard/local/0x0002/a%2F%23");
        assert_eq!(t.data(&k, "+ x"), "switchyard/local/0x0002/%2B%20x");
        for name in ["/", "#", "+", "a/b", " ", ""] {
            let l = level(name);
            assert!(
                !l.contains(['/', '#', '+']) && !l.is_empty(),
                "{name:?} -> {l:?}"
            );
        }
    }

    #[test]
    fn command_topics() {
        let t = t();
        let p = |s: &str| t.parse_command(s);
        assert_eq!(p("switchyard/broadcast"), Some(Ok(Target::Broadcast(None))));
        assert_eq!(
            p("switchyard/local/broadcast"),
            Some(Ok(Target::Broadcast(None)))
        );
        assert_eq!(
            p("switchyard/edge-1/broadcast"),
            Some(Ok(Target::Broadcast(Some("edge-1".into()))))
        );
        assert_eq!(
            p("switchyard/0x0003/send"),
            Some(Ok(Target::Node(NodeKey::local(3))))
        );
        assert_eq!(
            p("switchyard/3/send"),
            Some(Ok(Target::Node(NodeKey::local(3))))
        );
        assert_eq!(
            p("switchyard/local/0x0003/send"),
            Some(Ok(Target::Node(NodeKey::local(3))))
        );
        assert_eq!(
            p("switchyard/gw/0x0003/send"),
            Some(Ok(Target::Node(NodeKey {
                gateway: Some("gw".into()),
                addr: 3
            })))
        );
        assert_eq!(
            p("switchyard/zz/send"),
            Some(Err(BadTopic::Node("zz".into())))
        );
        assert_eq!(
            p("switchyard/bad name/1/send"),
            Some(Err(BadTopic::Source("bad name".into())))
        );
        assert_eq!(
            p("switchyard/0x10000/send"),
            Some(Err(BadTopic::Node("0x10000".into())))
        );
        // What the bridge itself publishes is never a command.
        for own in [
            "switchyard/0x0003/send/result",
            "switchyard/local/0x0003/send/result",
            "switchyard/broadcast/result",
            "switchyard/local/0x0003/TMP",
            "switchyard/availability",
            "other/0x0003/send",
            "switchyardx/broadcast",
        ] {
            assert_eq!(p(own), None, "{own}");
        }
    }

    #[test]
    fn payloads() {
        let item = DataItem {
            data_type: "TMP".into(),
            raw: vec![0x09, 0xc4],
            value: json!({"celsius": 25.0}),
        };
        let v: Value = serde_json::from_slice(&data_payload(1.5, &item)).unwrap();
        assert_eq!(
            v,
            json!({"value": {"celsius": 25.0}, "raw": "09c4", "ts": 1.5})
        );
        let v: Value = serde_json::from_slice(&message_payload(2.0, b"hi")).unwrap();
        assert_eq!(v, json!({"text": "hi", "raw": "6869", "ts": 2.0}));
        let v: Value = serde_json::from_slice(&message_payload(2.0, &[0xff])).unwrap();
        assert_eq!(v["text"], Value::Null);
        let v: Value =
            serde_json::from_slice(&result_payload(Some("SEND-"), Err("link down"))).unwrap();
        assert_eq!(
            v,
            json!({"status": "error", "command": "SEND-", "error": "link down"})
        );
    }
}
