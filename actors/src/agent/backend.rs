//! `BackendLink`: the one link to the backend (PROTOCOL 1.2, 1.4, 1.5).
//!
//! Owns the backend's socket, the ordered bounded outbox of packets waiting
//! for it, and the HTTP requests waiting for an `agent_details` answer,
//! keyed by `request_id`. Handles `BackendAlive`, `BackendClosed`,
//! `ToBackend`, `RegisterRequest`, `CancelRequest`, `AgentDetails`,
//! `GetBackendInfo`. Talks to the backend `WsSession`; `Agent`s and the
//! HTTP handlers talk to it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::outbox::Outbox;
use super::session::{CloseSocket, Deliver, WsSession};
use super::BackendConfig;
use crate::metrics::{drop_reason, ActorProbe, Mailbox, Metrics};
use crate::network::events::SwitchEvent;
use crate::network::{NetworkManager, Publish};
use crate::wire::Packet;

pub struct BackendLink {
    metrics: Arc<Metrics>,
    probe: Arc<ActorProbe>,
    session: Option<Mailbox<WsSession>>,
    outbox: Outbox<Packet>,
    pending: HashMap<String, oneshot::Sender<Packet>>,
    /// Where to announce connects and disconnects (set once the manager
    /// exists: it is started after this link).
    network: Option<Mailbox<NetworkManager>>,
}

impl BackendLink {
    pub fn new(config: BackendConfig, metrics: Arc<Metrics>) -> Self {
        let probe = metrics.probe("BackendLink", "backend");
        BackendLink {
            outbox: Outbox::new(config.outbox_limit),
            metrics,
            probe,
            session: None,
            pending: HashMap::new(),
            network: None,
        }
    }

    pub fn start_link(config: BackendConfig, metrics: Arc<Metrics>) -> Mailbox<BackendLink> {
        let link = BackendLink::new(config, metrics);
        let probe = Arc::clone(&link.probe);
        Mailbox::new(link.start(), probe)
    }

    fn set_connected(&mut self, session: Option<Mailbox<WsSession>>) {
        let changed = self.session.is_some() != session.is_some();
        self.metrics.backend_connected.set(session.is_some() as i64);
        self.session = session;
        if let (true, Some(n)) = (changed, &self.network) {
            n.do_send(Publish(SwitchEvent::Backend {
                ts: crate::now_secs(),
                connected: self.session.is_some(),
            }));
        }
    }

    /// Writes to the backend, or keeps the packet in order for the next one.
    fn deliver(&mut self, packet: Packet) {
        let packet = match &self.session {
            Some(s) => match s.try_send(Deliver::to_backend(packet)) {
                Ok(()) => return,
                Err(Deliver { packet, .. }) => {
                    log::warn!("backend socket gone without notice; queueing for the next one");
                    self.set_connected(None);
                    packet
                }
            },
            None => packet,
        };
        self.keep(packet);
    }

    fn keep(&mut self, packet: Packet) {
        if let Some(old) = self.outbox.push(packet) {
            self.metrics.dropped(drop_reason::BACKEND_OUTBOX_FULL, 1);
            log::warn!(
                "backend outbox full ({}): dropped its oldest `{}` packet for {}",
                self.outbox.limit(),
                old.packet_type.as_str(),
                old.subject_id
            );
        }
        self.metrics
            .backend_outbox_depth
            .set(self.outbox.len() as i64);
    }

    fn flush(&mut self) {
        let queued = self.outbox.take_all();
        if !queued.is_empty() {
            log::info!(
                "backend connected: delivering {} queued packets",
                queued.len()
            );
        }
        for p in queued {
            self.deliver(p);
        }
        self.metrics
            .backend_outbox_depth
            .set(self.outbox.len() as i64);
    }
}

impl Actor for BackendLink {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.probe.retire();
    }
}

/// A socket said `alive` as `mephisto` (and passed the token check).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendAlive {
    pub session: Mailbox<WsSession>,
}

impl Handler<BackendAlive> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: BackendAlive, _: &mut Context<Self>) {
        let _h = self.probe.handling("BackendAlive");
        if let Some(old) = &self.session {
            if old.same(&msg.session) {
                return;
            }
            log::info!("a newer backend socket replaces the current one");
            old.do_send(CloseSocket::normal("replaced by a newer backend socket"));
        } else {
            log::info!("backend connected");
        }
        self.set_connected(Some(msg.session));
        self.flush();
    }
}

/// The backend's socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendClosed {
    pub session: Mailbox<WsSession>,
}

impl Handler<BackendClosed> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: BackendClosed, _: &mut Context<Self>) {
        let _h = self.probe.handling("BackendClosed");
        if matches!(&self.session, Some(s) if s.same(&msg.session)) {
            log::warn!("backend disconnected; packets for it wait in the outbox");
            self.set_connected(None);
        }
    }
}

/// A packet for the backend.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToBackend(pub Packet);

impl Handler<ToBackend> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: ToBackend, _: &mut Context<Self>) {
        let _h = self.probe.handling("ToBackend");
        self.deliver(msg.0);
    }
}

/// An HTTP request sends `packet` to the backend and waits for the
/// `agent_details` carrying `request_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterRequest {
    pub request_id: String,
    pub packet: Packet,
    pub reply: oneshot::Sender<Packet>,
}

impl Handler<RegisterRequest> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: RegisterRequest, _: &mut Context<Self>) {
        let _h = self.probe.handling("RegisterRequest");
        self.pending.insert(msg.request_id, msg.reply);
        self.deliver(msg.packet);
    }
}

/// The HTTP request gave up waiting (timeout or client gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelRequest {
    pub request_id: String,
}

impl Handler<CancelRequest> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: CancelRequest, _: &mut Context<Self>) {
        let _h = self.probe.handling("CancelRequest");
        self.pending.remove(&msg.request_id);
    }
}

/// The backend's answer to a `register_agent` or `submit_onboarding`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentDetails(pub Packet);

impl Handler<AgentDetails> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: AgentDetails, _: &mut Context<Self>) {
        let _h = self.probe.handling("AgentDetails");
        let packet = msg.0;
        let key = packet
            .data_str("request_id")
            .unwrap_or(&packet.subject_id)
            .to_string();
        match self.pending.remove(&key) {
            Some(reply) => {
                if reply.send(packet).is_err() {
                    // The HTTP client went away between the lookup and now.
                    self.metrics
                        .dropped(drop_reason::UNMATCHED_AGENT_DETAILS, 1);
                }
            }
            None => {
                self.metrics
                    .dropped(drop_reason::UNMATCHED_AGENT_DETAILS, 1);
                log::info!(
                    "agent_details for {key}: no request waits for it (timed out?); dropped"
                );
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendInfo {
    pub connected: bool,
    pub outbox_depth: usize,
    pub pending_requests: usize,
}

#[derive(Message)]
#[rtype(result = "BackendInfo")]
pub struct GetBackendInfo;

impl Handler<GetBackendInfo> for BackendLink {
    type Result = MessageResult<GetBackendInfo>;
    fn handle(&mut self, _: GetBackendInfo, _: &mut Context<Self>) -> Self::Result {
        let _h = self.probe.handling("GetBackendInfo");
        MessageResult(BackendInfo {
            connected: self.session.is_some(),
            outbox_depth: self.outbox.len(),
            pending_requests: self.pending.len(),
        })
    }
}

/// Names the manager to announce backend connects and disconnects to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachNetwork(pub Mailbox<NetworkManager>);

impl Handler<AttachNetwork> for BackendLink {
    type Result = ();
    fn handle(&mut self, msg: AttachNetwork, _: &mut Context<Self>) {
        let _h = self.probe.handling("AttachNetwork");
        self.network = Some(msg.0);
    }
}
