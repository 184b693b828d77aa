//! `Monitor`: live events for dashboards and operators (PROTOCOL 4).
//!
//! Owns the `/monitor` subscribers: per subscriber its filter and a bounded
//! queue. Subscribes to `NetworkManager`'s events, turns each into its JSON
//! text once, and hands it to every `MonitorSession` whose socket keeps up.
//!
//! Why the queue lives here and not in the session: a WebSocket actor runs
//! only when the transport pulls its output, so a session whose peer stops
//! reading is frozen and its mailbox would grow without bound. The monitor
//! instead watches each socket's bytes in flight (written by us, not yet
//! taken by the transport: `Flow`) and, past `in_flight_bytes`, keeps events
//! in that subscriber's queue, dropping its oldest and telling it with one
//! `lagged` event once it catches up. A slow subscriber never slows the
//! switch. On `Join` it gathers a snapshot (nodes, links and robots from
//! `NetworkManager`, agents from `AgentDirectory`, the backend from
//! `BackendLink`) for the newcomer. Handles `SwitchEvent`, `Join`, `Leave`,
//! `SetFilter`.

#[cfg(test)]
mod actor_tests;
pub mod json;
mod session;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use crate::flow::Flow;
pub use session::{MonitorSession, MonitorText};

use crate::agent::{BackendLink, GetBackendInfo};
use crate::directory::{AgentDirectory, ListAgents};
use crate::mailbox::Mailbox;
use crate::metrics::{ActorProbe, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{GetMeshInfo, GetRobots, NetworkManager, Subscribe};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Events kept per subscriber that reads slower than events come.
    pub queue_limit: usize,
    /// Bytes written to a subscriber's socket and not yet taken by it,
    /// past which new events wait in the queue.
    pub in_flight_bytes: usize,
    /// Open `/monitor` subscribers; past it a new one is closed with 1013
    /// (try again later) right after the upgrade.
    pub max_subscribers: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            queue_limit: 1000,
            in_flight_bytes: 256 * 1024,
            max_subscribers: 64,
        }
    }
}

/// How often queued events are offered again to subscribers that lagged.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// One subscriber as the monitor sees it: the decisions, no IO.
struct Subscriber {
    session: Mailbox<MonitorSession>,
    flow: Arc<Flow>,
    filter: Option<HashSet<String>>,
    queue: VecDeque<Arc<str>>,
    dropped: u64,
    /// Events wait until the snapshot went first.
    ready: bool,
}

pub struct Monitor {
    config: MonitorConfig,
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    directory: Mailbox<AgentDirectory>,
    backend: Mailbox<BackendLink>,
    subscribers: HashMap<u64, Subscriber>,
    next_id: u64,
}

impl Monitor {
    pub fn start_link(
        config: MonitorConfig,
        metrics: Arc<Metrics>,
        network: Mailbox<NetworkManager>,
        directory: Mailbox<AgentDirectory>,
        backend: Mailbox<BackendLink>,
    ) -> Mailbox<Monitor> {
        let probe = metrics.probe("Monitor", "monitor");
        let m = Monitor {
            config,
            metrics,
            probe: Arc::clone(&probe),
            network,
            directory,
            backend,
            subscribers: HashMap::new(),
            next_id: 1,
        };
        Mailbox::new(m.start(), probe)
    }

    /// Writes what a subscriber's socket can take now.
    fn flush(&mut self, id: u64) {
        let limit = self.config.in_flight_bytes as u64;
        let Some(sub) = self.subscribers.get_mut(&id) else {
            return;
        };
        while sub.ready && !sub.queue.is_empty() && sub.flow.in_flight() < limit {
            if sub.dropped > 0 {
                let lagged: Arc<str> =
                    Arc::from(json::lagged(crate::clock::now_secs(), sub.dropped).to_string());
                sub.dropped = 0;
                sub.flow.wrote(lagged.len());
                sub.session.do_send(MonitorText(lagged));
            }
            if let Some(text) = sub.queue.pop_front() {
                sub.flow.wrote(text.len());
                sub.session.do_send(MonitorText(text));
                self.metrics.monitor_events_sent.inc();
            }
        }
    }

    fn offer(&mut self, id: u64, name: &str, text: &Arc<str>) {
        let limit = self.config.queue_limit.max(1);
        let Some(sub) = self.subscribers.get_mut(&id) else {
            return;
        };
        if sub.filter.as_ref().is_some_and(|f| !f.contains(name)) {
            return;
        }
        if sub.queue.len() >= limit {
            sub.queue.pop_front();
            sub.dropped += 1;
            self.metrics.monitor_events_dropped.inc();
        }
        sub.queue.push_back(Arc::clone(text));
        self.flush(id);
    }
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.network
            .do_send(Subscribe(ctx.address().recipient::<SwitchEvent>()));
        ctx.run_interval(FLUSH_EVERY, |act, _| {
            let lagging: Vec<u64> = act
                .subscribers
                .iter()
                .filter(|(_, s)| !s.queue.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for id in lagging {
                act.flush(id);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

impl Handler<SwitchEvent> for Monitor {
    type Result = ();
    fn handle(&mut self, event: SwitchEvent, _: &mut Context<Self>) {
        let _h = self.probe.handling_unqueued("SwitchEvent");
        if self.subscribers.is_empty() {
            return;
        }
        let name = event.name();
        let ids: Vec<u64> = self.subscribers.keys().copied().collect();
        for v in json::event_json(&event) {
            let text: Arc<str> = Arc::from(v.to_string());
            for id in &ids {
                self.offer(*id, name, &text);
            }
        }
    }
}

/// A subscriber arrived: register it, then send it a snapshot.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Join {
    pub session: Mailbox<MonitorSession>,
    pub flow: Arc<Flow>,
}

impl Handler<Join> for Monitor {
    type Result = u64;
    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> u64 {
        let _h = self.probe.handling("Join");
        let id = self.next_id;
        self.next_id += 1;
        self.subscribers.insert(
            id,
            Subscriber {
                session: msg.session.clone(),
                flow: Arc::clone(&msg.flow),
                filter: None,
                queue: VecDeque::new(),
                dropped: 0,
                ready: false,
            },
        );
        self.metrics
            .monitor_subscribers
            .set(self.subscribers.len() as i64);
        let mesh = self.network.send(GetMeshInfo);
        let agents = self.directory.send(ListAgents);
        let robots = self.network.send(GetRobots);
        let backend = self.backend.send(GetBackendInfo);
        let session = msg.session;
        let flow = msg.flow;
        ctx.spawn(
            async move {
                let (mesh, agents, robots, backend) =
                    futures_util::join!(mesh, agents, robots, backend);
                let mesh = mesh.ok();
                let link = match &mesh {
                    None => "none",
                    Some(m) if m.link.is_none() => "none",
                    Some(m) if m.link_up => "up",
                    Some(_) => "down",
                };
                let snapshot = json!({
                    "event": "snapshot",
                    "ts": crate::clock::now_secs(),
                    "nodes": mesh.map(|m| m.nodes).unwrap_or_default(),
                    "agents": agents.unwrap_or_default(),
                    "backend": backend.ok(),
                    "links": {"mesh": link},
                    "robots": robots.unwrap_or_default(),
                });
                let text: Arc<str> = Arc::from(snapshot.to_string());
                flow.wrote(text.len());
                session.do_send(MonitorText(text));
            }
            .into_actor(self)
            .map(move |_, act, _| {
                if let Some(sub) = act.subscribers.get_mut(&id) {
                    sub.ready = true;
                }
                act.flush(id);
            }),
        );
        id
    }
}

/// A subscriber left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub id: u64,
}

impl Handler<Leave> for Monitor {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        let _h = self.probe.handling("Leave");
        self.subscribers.remove(&msg.id);
        self.metrics
            .monitor_subscribers
            .set(self.subscribers.len() as i64);
    }
}

/// A subscriber's `{"subscribe": [...]}`: only these events from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetFilter {
    pub id: u64,
    pub events: HashSet<String>,
}

impl Handler<SetFilter> for Monitor {
    type Result = ();
    fn handle(&mut self, msg: SetFilter, _: &mut Context<Self>) {
        let _h = self.probe.handling("SetFilter");
        if let Some(sub) = self.subscribers.get_mut(&msg.id) {
            // Queued events of other kinds go too.
            sub.queue.retain(|t| {
                serde_json::from_str::<serde_json::Value>(t)
                    .ok()
                    .and_then(|v| v["event"].as_str().map(|e| msg.events.contains(e)))
                    .unwrap_or(false)
            });
            sub.filter = Some(msg.events);
        }
    }
}
