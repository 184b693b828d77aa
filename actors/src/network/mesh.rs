//! `MeshState`: what `NetworkManager` knows of the mesh, and the rules for
//! each frame from the root (PROTOCOL 2.2, 2.4, 2.5). Synchronous: it
//! returns the events to publish and the history records to append; the
//! actor does both.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::events::{DataItem, NodeData, SwitchEvent};
use super::history::HistoryRecord;
use super::node_cache::{hex, unhex, NodeCache, NodeKey, Sample};
use crate::metrics::Metrics;
use crate::wire::data_types::{DataTypes, Decoded};
use crate::wire::mesh::{encode_data_payload, NodeAddr, RootMessage};

/// The mesh side of the manager's configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// Seconds without hearing from a node before it is `inactive`.
    pub node_timeout_secs: f64,
    /// Samples kept per node and data type.
    pub history_limit: usize,
    /// Day files of the history log read back on start.
    pub warm_days: usize,
    /// A file of extra data types (TOML or JSON).
    pub data_types: Option<PathBuf>,
    /// Data types one node may have in the cache; entries of a further
    /// type are dropped and counted.
    pub max_types_per_node: usize,
    /// Samples the cache holds for one source (the local mesh, or one
    /// gateway); past it, new series are refused (counted) and existing
    /// ones make room by dropping their oldest.
    pub max_samples_per_source: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            node_timeout_secs: 60.0,
            history_limit: 1000,
            warm_days: 2,
            data_types: None,
            max_types_per_node: super::node_cache::DEFAULT_MAX_TYPES_PER_NODE,
            max_samples_per_source: super::node_cache::DEFAULT_MAX_SAMPLES_PER_SOURCE,
        }
    }
}

pub struct MeshState {
    pub cache: NodeCache,
    pub data_types: DataTypes,
    pub link_up: bool,
    /// Node addresses from the root's last `[N]`.
    pub root_nodes: Vec<NodeAddr>,
    /// Rejected entries are logged at most once a second: a peer can send
    /// them in a loop.
    log_limit: crate::log_limit::LogLimit,
}

/// What one root frame means: events to publish, records to log.
#[derive(Default)]
pub struct Outcome {
    pub events: Vec<SwitchEvent>,
    pub records: Vec<HistoryRecord>,
}

impl MeshState {
    pub fn new(config: &MeshConfig, data_types: DataTypes) -> Self {
        MeshState {
            cache: NodeCache::new(config.history_limit, config.node_timeout_secs)
                .with_bounds(config.max_types_per_node, config.max_samples_per_source),
            data_types,
            link_up: false,
            root_nodes: Vec::new(),
            log_limit: crate::log_limit::LogLimit::per_second(),
        }
    }

    fn value_of(&self, data_type: &str, raw: &[u8]) -> Result<serde_json::Value, (usize, usize)> {
        match self.data_types.decode(data_type, raw) {
            Decoded::Value(v) => Ok(v),
            // Types the switch does not know stay raw (shown as hex): edge
            // and client programs may agree on their own.
            Decoded::Unknown => Ok(serde_json::Value::Null),
            Decoded::LengthMismatch { expected, got } => Err((expected, got)),
        }
    }

    /// Applies a frame from the root of `gateway` (None: our own mesh).
    pub fn on_root_message(
        &mut self,
        gateway: Option<&str>,
        message: RootMessage,
        now: f64,
        metrics: &Metrics,
    ) -> Outcome {
        let mut out = Outcome::default();
        let key = NodeKey {
            gateway: gateway.map(str::to_string),
            addr: message.node(),
        };
        match message {
            RootMessage::Data { entries, .. } => {
                let mut items = Vec::with_capacity(entries.len());
                let mut kept = Vec::with_capacity(entries.len());
                for e in entries {
                    match self.value_of(&e.data_type, &e.raw) {
                        Ok(value) => {
                            items.push(DataItem {
                                data_type: e.data_type.clone(),
                                raw: e.raw.clone(),
                                value,
                            });
                            kept.push(e);
                        }
                        Err((expected, got)) => {
                            metrics
                                .data_entries_rejected
                                .with_label_values(&["length_mismatch"])
                                .inc();
                            if let Some(held) = self.log_limit.admit(std::time::Instant::now()) {
                                log::warn!(
                                    "node {key:?}: {} entry of {got} bytes, the type says {expected}; entry dropped{}",
                                    e.data_type,
                                    crate::log_limit::held_note(held)
                                );
                            }
                        }
                    }
                }
                if let Some(status) = self.cache.touch(&key, now) {
                    out.events.push(SwitchEvent::NodeStatus {
                        ts: now,
                        key: key.clone(),
                        status,
                    });
                }
                let mut refused = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let kept_sample = self.cache.record_checked(
                        &key,
                        &item.data_type,
                        Sample {
                            ts: now,
                            raw: item.raw.clone(),
                            value: item.value.clone(),
                        },
                    );
                    if let Err((_, why)) = kept_sample {
                        metrics
                            .data_entries_rejected
                            .with_label_values(&[why.kind()])
                            .inc();
                        if let Some(held) = self.log_limit.admit(std::time::Instant::now()) {
                            log::warn!(
                                "node {key:?}: {} entry dropped: {why}{}",
                                item.data_type,
                                crate::log_limit::held_note(held)
                            );
                        }
                        refused.push(i);
                        continue;
                    }
                    out.records.push(HistoryRecord {
                        ts: now,
                        gateway: key.gateway.clone(),
                        node: key.addr,
                        data_type: item.data_type.clone(),
                        raw: hex(&item.raw),
                        value: item.value.clone(),
                    });
                }
                for i in refused.into_iter().rev() {
                    items.remove(i);
                    kept.remove(i);
                }
                metrics.node_updates.inc_by(items.len() as u64);
                if !items.is_empty() {
                    out.events.push(SwitchEvent::NodeData(Arc::new(NodeData {
                        ts: now,
                        key,
                        payload: encode_data_payload(&kept),
                        items,
                    })));
                }
            }
            RootMessage::Message { text, .. } => {
                if let Some(status) = self.cache.touch(&key, now) {
                    out.events.push(SwitchEvent::NodeStatus {
                        ts: now,
                        key: key.clone(),
                        status,
                    });
                }
                metrics.node_messages.inc();
                out.events.push(SwitchEvent::NodeMessage {
                    ts: now,
                    key,
                    message: Arc::new(text),
                });
            }
            RootMessage::NetworkInfo { nodes, .. } => {
                self.root_nodes = nodes;
            }
            RootMessage::Result { .. } => {}
        }
        out
    }

    /// Puts one history record back into the cache (the log, on start).
    /// The cache keeps the last `history_limit` samples per node and type,
    /// so streaming a whole file through here holds no more than that.
    pub fn warm_one(&mut self, r: HistoryRecord) -> bool {
        let Some(raw) = unhex(&r.raw) else {
            return false;
        };
        let key = NodeKey {
            gateway: r.gateway,
            addr: r.node,
        };
        self.cache.record(
            &key,
            &r.data_type,
            Sample {
                ts: r.ts,
                raw,
                value: r.value,
            },
        );
        true
    }

    /// Statuses that changed with the clock, as events.
    pub fn sweep(&mut self, now: f64) -> Vec<SwitchEvent> {
        self.cache
            .sweep(now)
            .into_iter()
            .map(|(key, status)| SwitchEvent::NodeStatus {
                ts: now,
                key,
                status,
            })
            .collect()
    }
}
