//! `NodeCache`: what the switch knows of every mesh node (PROTOCOL 2.5).
//!
//! Per node: first and last seen, `active`/`inactive` by the node timeout,
//! and per data type a bounded history of `(timestamp, raw bytes, decoded
//! value)`. Plain data and rules, no runtime: `NetworkManager` owns one and
//! turns what it reports (status changes) into events.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

/// A node's key: the gateway it is reached through (None: this switch's own
/// mesh link) and its mesh address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeKey {
    pub gateway: Option<String>,
    pub addr: u16,
}

impl NodeKey {
    pub fn local(addr: u16) -> Self {
        NodeKey {
            gateway: None,
            addr,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Active,
    Inactive,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Inactive => "inactive",
        }
    }
}

/// One data update of one type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub ts: f64,
    #[serde(serialize_with = "as_hex")]
    pub raw: Vec<u8>,
    pub value: Value,
}

fn as_hex<S: serde::Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(raw))
}

pub fn hex(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub first_seen: f64,
    pub last_seen: f64,
    pub status: NodeStatus,
    pub history: BTreeMap<String, VecDeque<Sample>>,
}

/// A node as `/api/nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub gateway: Option<String>,
    pub addr: u16,
    pub address: String,
    pub status: NodeStatus,
    pub first_seen: f64,
    pub last_seen: f64,
    /// The latest value per data type.
    pub latest: BTreeMap<String, Sample>,
}

/// Why a sample was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CacheRefusal {
    /// The node already has the most data types a node may have.
    #[error("too many data types for one node")]
    TooManyTypes,
    /// Its source (the local mesh, or one gateway) holds its whole sample
    /// budget and this would start a new series.
    #[error("the source's sample budget is spent")]
    SampleBudget,
}

impl CacheRefusal {
    pub fn kind(self) -> &'static str {
        match self {
            CacheRefusal::TooManyTypes => "too_many_types",
            CacheRefusal::SampleBudget => "sample_budget",
        }
    }
}

/// Default bound on data types per node.
pub const DEFAULT_MAX_TYPES_PER_NODE: usize = 32;
/// Default sample budget per source (the local mesh, each gateway).
pub const DEFAULT_MAX_SAMPLES_PER_SOURCE: usize = 200_000;

#[derive(Debug)]
pub struct NodeCache {
    nodes: HashMap<NodeKey, NodeRecord>,
    history_limit: usize,
    node_timeout_secs: f64,
    max_types_per_node: usize,
    max_samples_per_source: usize,
    /// Samples held per source (gateway, None: the local mesh).
    samples: HashMap<Option<String>, usize>,
}

impl NodeCache {
    pub fn new(history_limit: usize, node_timeout_secs: f64) -> Self {
        NodeCache {
            nodes: HashMap::new(),
            history_limit: history_limit.max(1),
            node_timeout_secs,
            max_types_per_node: DEFAULT_MAX_TYPES_PER_NODE,
            max_samples_per_source: DEFAULT_MAX_SAMPLES_PER_SOURCE,
            samples: HashMap::new(),
        }
    }

    /// Bounds what one source can make the cache hold: data types per node
    /// (each a series of up to `history_limit` samples) and samples in all.
    /// A peer inventing types or nodes thus fills its own budget, not the
    /// switch's memory.
    pub fn with_bounds(mut self, max_types_per_node: usize, max_samples_per_source: usize) -> Self {
        self.max_types_per_node = max_types_per_node.max(1);
        self.max_samples_per_source = max_samples_per_source.max(1);
        self
    }

    /// Forgets every node of `gateway` and its samples; returns how many
    /// nodes.
    pub fn forget_gateway(&mut self, gateway: &str) -> usize {
        let before = self.nodes.len();
        self.nodes
            .retain(|k, _| k.gateway.as_deref() != Some(gateway));
        self.samples.remove(&Some(gateway.to_string()));
        before - self.nodes.len()
    }

    /// Samples held for `gateway` (None: the local mesh).
    pub fn samples_of(&self, gateway: Option<&str>) -> usize {
        self.samples
            .get(&gateway.map(str::to_string))
            .copied()
            .unwrap_or(0)
    }

    /// The node was heard from at `ts`. Returns its new status if it
    /// changed (a new node, or an inactive one back).
    pub fn touch(&mut self, key: &NodeKey, ts: f64) -> Option<NodeStatus> {
        match self.nodes.get_mut(key) {
            Some(n) => {
                // Late news (a sample older than the newest heard, say one
                // relayed late by a gateway) does not bring a silent node
                // back: only hearing from it anew does.
                let newest = ts >= n.last_seen;
                if newest {
                    n.last_seen = ts;
                }
                if n.status == NodeStatus::Inactive && newest {
                    n.status = NodeStatus::Active;
                    return Some(NodeStatus::Active);
                }
                None
            }
            None => {
                self.nodes.insert(
                    key.clone(),
                    NodeRecord {
                        first_seen: ts,
                        last_seen: ts,
                        status: NodeStatus::Active,
                        history: BTreeMap::new(),
                    },
                );
                Some(NodeStatus::Active)
            }
        }
    }

    /// Records one data update (touching the node first); a refused sample
    /// is dropped (see [`NodeCache::record_checked`]).
    pub fn record(&mut self, key: &NodeKey, data_type: &str, sample: Sample) -> Option<NodeStatus> {
        match self.record_checked(key, data_type, sample) {
            Ok(change) | Err((change, _)) => change,
        }
    }

    /// Records one data update (touching the node first). A sample that
    /// would start a new series past the node's type bound or its source's
    /// sample budget is refused; one for an existing series is kept, and
    /// when the budget is spent the series' oldest sample makes room.
    #[allow(clippy::type_complexity)]
    pub fn record_checked(
        &mut self,
        key: &NodeKey,
        data_type: &str,
        sample: Sample,
    ) -> Result<Option<NodeStatus>, (Option<NodeStatus>, CacheRefusal)> {
        let change = self.touch(key, sample.ts);
        let limit = self.history_limit;
        let budget = self.max_samples_per_source;
        let max_types = self.max_types_per_node;
        let Some(n) = self.nodes.get_mut(key) else {
            return Ok(change);
        };
        let held = self.samples.entry(key.gateway.clone()).or_insert(0);
        let h = match n.history.get_mut(data_type) {
            Some(h) => h,
            None => {
                if n.history.len() >= max_types {
                    return Err((change, CacheRefusal::TooManyTypes));
                }
                if *held >= budget {
                    return Err((change, CacheRefusal::SampleBudget));
                }
                n.history.entry(data_type.to_string()).or_default()
            }
        };
        // Keep time order even when a warm-up replays older lines.
        let pos = h
            .iter()
            .rposition(|s| s.ts <= sample.ts)
            .map_or(0, |p| p + 1);
        h.insert(pos, sample);
        *held += 1;
        while h.len() > limit || (*held > budget && h.len() > 1) {
            h.pop_front();
            *held -= 1;
        }
        Ok(change)
    }

    /// Marks nodes silent for longer than the timeout inactive; returns them.
    pub fn sweep(&mut self, now: f64) -> Vec<(NodeKey, NodeStatus)> {
        let timeout = self.node_timeout_secs;
        let mut changed = Vec::new();
        for (k, n) in self.nodes.iter_mut() {
            if n.status == NodeStatus::Active && now - n.last_seen > timeout {
                n.status = NodeStatus::Inactive;
                changed.push((k.clone(), NodeStatus::Inactive));
            }
        }
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        changed
    }

    /// After a warm-up from the log, statuses follow the clock.
    pub fn settle(&mut self, now: f64) {
        let timeout = self.node_timeout_secs;
        for n in self.nodes.values_mut() {
            n.status = if now - n.last_seen > timeout {
                NodeStatus::Inactive
            } else {
                NodeStatus::Active
            };
        }
    }

    pub fn contains(&self, key: &NodeKey) -> bool {
        self.nodes.contains_key(key)
    }

    pub fn get(&self, key: &NodeKey) -> Option<&NodeRecord> {
        self.nodes.get(key)
    }

    pub fn view(&self, key: &NodeKey) -> Option<NodeView> {
        self.nodes.get(key).map(|n| NodeView {
            gateway: key.gateway.clone(),
            addr: key.addr,
            address: format!("0x{:04x}", key.addr),
            status: n.status,
            first_seen: n.first_seen,
            last_seen: n.last_seen,
            latest: n
                .history
                .iter()
                .filter_map(|(t, h)| h.back().map(|s| (t.clone(), s.clone())))
                .collect(),
        })
    }

    /// Every node, ordered by gateway then address.
    pub fn views(&self) -> Vec<NodeView> {
        let mut keys: Vec<&NodeKey> = self.nodes.keys().collect();
        keys.sort();
        keys.into_iter().filter_map(|k| self.view(k)).collect()
    }

    /// The last `limit` samples of one type, oldest first.
    pub fn history(&self, key: &NodeKey, data_type: &str, limit: usize) -> Option<Vec<Sample>> {
        let h = self.nodes.get(key)?.history.get(data_type)?;
        let skip = h.len().saturating_sub(limit);
        Some(h.iter().skip(skip).cloned().collect())
    }

    /// The latest sample of `data_type` for each node that has one (of one
    /// gateway, or the local mesh), ordered by address.
    pub fn latest_of_type(&self, gateway: Option<&str>, data_type: &str) -> Vec<(u16, Sample)> {
        let mut out: Vec<(u16, Sample)> = self
            .nodes
            .iter()
            .filter(|(k, _)| k.gateway.as_deref() == gateway)
            .filter_map(|(k, n)| Some((k.addr, n.history.get(data_type)?.back()?.clone())))
            .collect();
        out.sort_by_key(|(a, _)| *a);
        out
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn active_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.status == NodeStatus::Active)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(ts: f64, v: i64) -> Sample {
        Sample {
            ts,
            raw: vec![v as u8],
            value: json!(v),
        }
    }

    #[test]
    fn first_touch_makes_an_active_node() {
        let mut c = NodeCache::new(10, 60.0);
        let k = NodeKey::local(1);
        // `len` and `is_empty` agree (clippy's len_without_is_empty).
        assert!(c.is_empty());
        assert_eq!(c.touch(&k, 100.0), Some(NodeStatus::Active));
        assert!(!c.is_empty());
        assert_eq!(c.touch(&k, 101.0), None);
        let n = c.get(&k).unwrap();
        assert_eq!((n.first_seen, n.last_seen), (100.0, 101.0));
    }

    #[test]
    fn history_is_bounded_and_ordered() {
        let mut c = NodeCache::new(3, 60.0);
        let k = NodeKey::local(1);
        for i in 0..5 {
            c.record(&k, "TMP", s(i as f64, i));
        }
        // An older replayed line lands in order, then the bound applies.
        c.record(&k, "TMP", s(2.5, 99));
        let h = c.history(&k, "TMP", 10).unwrap();
        let ts: Vec<f64> = h.iter().map(|x| x.ts).collect();
        assert_eq!(ts, vec![2.5, 3.0, 4.0]);
    }

    #[test]
    fn types_per_node_and_samples_per_source_are_bounded() {
        let mut c = NodeCache::new(100, 60.0).with_bounds(2, 5);
        let k = NodeKey::local(1);
        assert!(c.record_checked(&k, "AAA", s(1.0, 1)).is_ok());
        assert!(c.record_checked(&k, "BBB", s(1.0, 1)).is_ok());
        assert_eq!(
            c.record_checked(&k, "CCC", s(1.0, 1)).unwrap_err().1,
            CacheRefusal::TooManyTypes
        );
        for i in 0..3 {
            assert!(c.record_checked(&k, "AAA", s(2.0 + i as f64, i)).is_ok());
        }
        assert_eq!(c.samples_of(None), 5);
        // A new node's first series: over the budget.
        let k2 = NodeKey::local(2);
        assert_eq!(
            c.record_checked(&k2, "AAA", s(1.0, 1)).unwrap_err().1,
            CacheRefusal::SampleBudget
        );
        assert!(c.contains(&k2));
        // An existing series keeps taking samples; its oldest make room.
        assert!(c.record_checked(&k, "AAA", s(9.0, 9)).is_ok());
        assert_eq!(c.samples_of(None), 5);
        assert_eq!(c.history(&k, "AAA", 100).unwrap().len(), 4);
        assert_eq!(c.history(&k, "AAA", 100).unwrap()[3].ts, 9.0);
        // Another source has its own budget.
        let g = NodeKey {
            gateway: Some("g".into()),
            addr: 1,
        };
        assert!(c.record_checked(&g, "AAA", s(1.0, 1)).is_ok());
        assert_eq!(c.samples_of(Some("g")), 1);
        assert_eq!(c.forget_gateway("g"), 1);
        assert_eq!(c.samples_of(Some("g")), 0);
        assert!(!c.contains(&g));
        assert!(c.contains(&k));
    }

    /// PROTOCOL 5: a gateway that goes takes its nodes with it, and says
    /// how many (its log line); the local mesh's nodes stay.
    #[test]
    fn forgetting_a_gateway_counts_its_nodes_only() {
        let mut c = NodeCache::new(10, 60.0);
        let on = |gateway: &str, addr| NodeKey {
            gateway: Some(gateway.into()),
            addr,
        };
        for key in [
            NodeKey::local(1),
            on("g", 1),
            on("g", 2),
            on("g", 3),
            on("h", 1),
        ] {
            c.touch(&key, 1.0);
        }
        assert_eq!(c.forget_gateway("g"), 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.forget_gateway("g"), 0);
        assert!(c.contains(&on("h", 1)) && c.contains(&NodeKey::local(1)));
    }

    #[test]
    fn sweep_marks_silent_nodes_inactive_and_touch_brings_them_back() {
        let mut c = NodeCache::new(3, 60.0);
        let a = NodeKey::local(1);
        let b = NodeKey::local(2);
        c.touch(&a, 1.0);
        c.touch(&b, 50.0);
        assert_eq!(c.sweep(61.5), vec![(a.clone(), NodeStatus::Inactive)]);
        assert_eq!(c.sweep(62.0), vec![]);
        assert_eq!(c.active_count(), 1);
        // Late news of the silent node is not news of it.
        assert_eq!(c.touch(&a, 0.5), None);
        assert_eq!(c.active_count(), 1);
        assert_eq!(c.touch(&a, 63.0), Some(NodeStatus::Active));
        assert_eq!(c.active_count(), 2);
    }

    /// A realistic clock (2026-11-25): times near 1.8e9 s, where a ratio
    /// of timestamps is about 1 and only their difference tells silence.
    const T: f64 = 1_795_638_897.0;

    // PROTOCOL 2.5: `inactive` once not heard from within the node timeout
    // (60 s), measured on wall-clock timestamps.
    #[test]
    fn sweep_counts_silence_on_epoch_timestamps() {
        let mut c = NodeCache::new(3, 60.0);
        let k = NodeKey::local(1);
        c.touch(&k, T);
        assert_eq!(c.sweep(T + 30.0), vec![], "heard 30 s ago");
        assert_eq!(c.sweep(T + 61.0), vec![(k.clone(), NodeStatus::Inactive)]);
        assert_eq!(c.get(&k).unwrap().status, NodeStatus::Inactive);
    }

    // PROTOCOL 2.5 "active if heard from within the node timeout": a node
    // silent for exactly the timeout is still active, for the sweep and
    // for the settling after a warm start alike.
    #[test]
    fn a_node_silent_for_exactly_the_timeout_is_active() {
        let mut c = NodeCache::new(3, 60.0);
        let k = NodeKey::local(1);
        c.touch(&k, T);
        assert_eq!(c.sweep(T + 60.0), vec![]);
        c.settle(T + 60.0);
        assert_eq!(c.get(&k).unwrap().status, NodeStatus::Active);
    }

    #[test]
    fn views_show_latest_values_and_hex_addresses() {
        let mut c = NodeCache::new(3, 60.0);
        let k = NodeKey::local(0x1a);
        c.record(&k, "TMP", s(1.0, 1));
        c.record(&k, "TMP", s(2.0, 2));
        c.record(&k, "HUM", s(1.5, 7));
        let v = c.view(&k).unwrap();
        assert_eq!(v.address, "0x001a");
        assert_eq!(v.latest["TMP"].value, json!(2));
        assert_eq!(v.latest["HUM"].value, json!(7));
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["latest"]["TMP"]["raw"], json!("02"));
        assert_eq!(j["status"], json!("active"));
    }

    #[test]
    fn latest_of_type_is_per_gateway() {
        let mut c = NodeCache::new(3, 60.0);
        c.record(&NodeKey::local(2), "TMP", s(1.0, 20));
        c.record(&NodeKey::local(1), "TMP", s(1.0, 10));
        c.record(
            &NodeKey {
                gateway: Some("g".into()),
                addr: 1,
            },
            "TMP",
            s(1.0, 30),
        );
        let l = c.latest_of_type(None, "TMP");
        assert_eq!(l.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(c.latest_of_type(Some("g"), "TMP").len(), 1);
        assert!(c.latest_of_type(None, "GPS").is_empty());
    }

    // PROTOCOL 2.5 (the cache is warmed from the log on start): after the
    // warm-up each node's status follows the clock, checked per node (a
    // count of one would also hold with the two statuses swapped).
    #[test]
    fn settle_follows_the_clock() {
        let mut c = NodeCache::new(3, 60.0);
        let (old, recent) = (NodeKey::local(1), NodeKey::local(2));
        c.touch(&old, T);
        c.touch(&recent, T + 100.0);
        c.settle(T + 120.0);
        assert_eq!(c.get(&old).unwrap().status, NodeStatus::Inactive);
        assert_eq!(c.get(&recent).unwrap().status, NodeStatus::Active);
        assert_eq!(c.active_count(), 1);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00abff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    use proptest::prelude::*;

    proptest! {
        // Whatever sources, nodes and types send, in any order: no series
        // is longer than the history limit, no node has more types than
        // the bound, no source holds more samples than its budget, and the
        // per-source count is exactly what the series hold.
        #[test]
        fn the_cache_bounds_hold(ops in proptest::collection::vec(
            (0u8..3, 0u16..6, 0u8..8, -10.0f64..10.0), 0..400)
        ) {
            let mut c = NodeCache::new(5, 60.0).with_bounds(3, 20);
            for (src, addr, t, ts) in ops {
                let key = NodeKey {
                    gateway: (src > 0).then(|| format!("g{src}")),
                    addr,
                };
                let _ = c.record_checked(&key, &format!("T{t:02}"), s(ts, 1));
            }
            let mut held: HashMap<Option<String>, usize> = HashMap::new();
            for (k, n) in &c.nodes {
                prop_assert!(n.history.len() <= 3);
                for h in n.history.values() {
                    prop_assert!(!h.is_empty() && h.len() <= 5);
                    prop_assert!(h.iter().zip(h.iter().skip(1)).all(|(a, b)| a.ts <= b.ts));
                    *held.entry(k.gateway.clone()).or_default() += h.len();
                }
            }
            for (src, n) in &held {
                prop_assert!(*n <= 20);
                prop_assert_eq!(*n, c.samples_of(src.as_deref()));
            }
        }
    }
}
