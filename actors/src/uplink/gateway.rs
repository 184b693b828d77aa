//! `GatewayServer`: the central switch's side of the uplinks.
//!
//! Owns the connected gateways (one `GatewaySession` each), each gateway's
//! sequence gate (kept across its reconnections, reset when the edge
//! restarts: a new epoch), and the commands waiting for a gateway's result.
//! Applies each gateway event once, in order, by handing it to
//! `NetworkManager` keyed by gateway id. Handles `GatewayHello`,
//! `GatewayEvent`, `GatewayResult`, `GatewayGone`, `GatewayCommand`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::session::{GatewaySession, SendEnvelope};
use crate::metrics::{ActorProbe, Mailbox, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{GatewayMessage, NetworkManager, Publish};
use crate::uart::{CommandError, RootReply};
use crate::wire::mesh::NodeAddr;
use crate::wire::uplink::{Envelope, RemoteCommand, SeqGate, SeqVerdict, UplinkEvent};

/// How long a command waits for its gateway's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

struct Gateway {
    session: Option<(u64, Mailbox<GatewaySession>)>,
    epoch: u64,
    gate: SeqGate,
}

pub struct GatewayServer {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    network: Mailbox<NetworkManager>,
    gateways: HashMap<String, Gateway>,
    pending: HashMap<u64, oneshot::Sender<Result<RootReply, CommandError>>>,
    next_id: u64,
}

impl GatewayServer {
    pub fn start_link(
        metrics: Arc<Metrics>,
        network: Mailbox<NetworkManager>,
    ) -> Mailbox<GatewayServer> {
        let probe = metrics.probe("GatewayServer", "central");
        let g = GatewayServer {
            metrics,
            probe: Arc::clone(&probe),
            network,
            gateways: HashMap::new(),
            pending: HashMap::new(),
            next_id: 1,
        };
        Mailbox::new(g.start(), probe)
    }

    fn link_event(&self, gateway: &str, state: &str) {
        self.network.do_send(Publish(SwitchEvent::Link {
            ts: crate::now_secs(),
            link: format!("gateway:{gateway}"),
            state: state.into(),
        }));
    }
}

impl Actor for GatewayServer {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

/// A gateway said who it is on session `session_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayHello {
    pub gateway: String,
    pub epoch: u64,
    pub resume: u64,
    pub session_id: u64,
    pub session: Mailbox<GatewaySession>,
}

impl Handler<GatewayHello> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayHello, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayHello");
        let g = self.gateways.entry(msg.gateway.clone()).or_insert(Gateway {
            session: None,
            epoch: msg.epoch,
            gate: SeqGate::resuming_at(msg.resume),
        });
        if g.epoch != msg.epoch {
            // The edge restarted: its numbering starts again.
            g.epoch = msg.epoch;
            g.gate = SeqGate::resuming_at(msg.resume);
        }
        let lost = g.gate.skip_to(msg.resume);
        if lost > 0 {
            log::warn!(
                "gateway {}: {lost} events were dropped by the edge before they reached us",
                msg.gateway
            );
        }
        let applied = g.gate.applied();
        g.session = Some((msg.session_id, msg.session.clone()));
        msg.session
            .do_send(SendEnvelope(Envelope::Ack { seq: applied }));
        self.metrics
            .gateway_connected
            .with_label_values(&[&msg.gateway])
            .set(1);
        log::info!("gateway {} connected", msg.gateway);
        self.link_event(&msg.gateway, "up");
    }
}

/// A numbered event from a gateway.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayEvent {
    pub gateway: String,
    pub seq: u64,
    pub ts: f64,
    pub event: UplinkEvent,
}

impl Handler<GatewayEvent> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayEvent, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayEvent");
        let Some(g) = self.gateways.get_mut(&msg.gateway) else {
            return;
        };
        match g.gate.check(msg.seq) {
            SeqVerdict::Apply => {
                self.metrics
                    .gateway_events_in
                    .with_label_values(&[&msg.gateway])
                    .inc();
                self.network.do_send(GatewayMessage {
                    gateway: msg.gateway.clone(),
                    ts: msg.ts,
                    event: msg.event,
                });
            }
            SeqVerdict::Duplicate | SeqVerdict::Gap => {
                self.metrics
                    .gateway_duplicates
                    .with_label_values(&[&msg.gateway])
                    .inc();
            }
        }
        if let Some((_, s)) = &g.session {
            s.do_send(SendEnvelope(Envelope::Ack {
                seq: g.gate.applied(),
            }));
        }
    }
}

/// A gateway's answer to a command.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayResult {
    pub id: u64,
    pub outcome: Result<Vec<NodeAddr>, String>,
}

impl Handler<GatewayResult> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayResult, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayResult");
        if let Some(tx) = self.pending.remove(&msg.id) {
            let r = match msg.outcome {
                Ok(nodes) if nodes.is_empty() => Ok(RootReply::Ok),
                Ok(nodes) => Ok(RootReply::NetworkInfo(nodes)),
                Err(e) => Err(CommandError::Root(e)),
            };
            let _ = tx.send(r);
        }
    }
}

/// A gateway's session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GatewayGone {
    pub gateway: String,
    pub session_id: u64,
}

impl Handler<GatewayGone> for GatewayServer {
    type Result = ();
    fn handle(&mut self, msg: GatewayGone, _: &mut Context<Self>) {
        let _h = self.probe.handling("GatewayGone");
        if let Some(g) = self.gateways.get_mut(&msg.gateway) {
            if g.session
                .as_ref()
                .is_some_and(|(id, _)| *id == msg.session_id)
            {
                g.session = None;
                self.metrics
                    .gateway_connected
                    .with_label_values(&[&msg.gateway])
                    .set(0);
                log::warn!("gateway {} disconnected", msg.gateway);
                self.link_event(&msg.gateway, "down");
            }
        }
    }
}

/// A command for a node behind a gateway.
#[derive(Message)]
#[rtype(result = "Result<RootReply, CommandError>")]
pub struct GatewayCommand {
    pub gateway: String,
    pub node: NodeAddr,
    pub command: RemoteCommand,
}

impl Handler<GatewayCommand> for GatewayServer {
    type Result = ResponseFuture<Result<RootReply, CommandError>>;
    fn handle(&mut self, msg: GatewayCommand, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GatewayCommand");
        let Some((_, session)) = self
            .gateways
            .get(&msg.gateway)
            .and_then(|g| g.session.clone())
        else {
            return Box::pin(async { Err(CommandError::LinkDown) });
        };
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        session.do_send(SendEnvelope(Envelope::Command {
            id,
            node: msg.node,
            command: msg.command,
        }));
        Box::pin(async move {
            match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(CommandError::LinkDown),
                Err(_) => Err(CommandError::Timeout(COMMAND_TIMEOUT)),
            }
        })
    }
}
