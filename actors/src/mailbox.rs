//! `Mailbox`: an actor's address together with its probe, the handle every
//! actor is sent to by. Every send is counted against the actor's
//! [`ActorProbe`] (its handlers count what they handled), so its mailbox
//! depth is known (`/metrics/actors`). For an actor that writes to a
//! socket it also carries the socket's [`Flow`]; for an owner that lets
//! live updates past it, its shortcut. A support type: it depends on
//! `metrics` (the probe) and `flow`, and on no actor.

use std::any::Any;
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::flow::Flow;
use crate::metrics::ActorProbe;

/// An actor's address together with its probe: every send is counted, so
/// the mailbox depth is known.
///
/// For an actor that writes to a socket, it also carries the socket's
/// [`Flow`], so senders can hold back while the peer is
/// not reading.
pub struct Mailbox<A: Actor> {
    addr: Addr<A>,
    probe: Arc<ActorProbe>,
    flow: Option<Arc<Flow>>,
    /// The owner's way past its mailbox (an `Agent`'s or the
    /// `BackendLink`'s `Shortcut`), held untyped so that this handle
    /// depends on no actor; `agent` reads it back with its own type.
    shortcut: Option<Arc<dyn Any + Send + Sync>>,
}

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Mailbox {
            addr: self.addr.clone(),
            probe: Arc::clone(&self.probe),
            flow: self.flow.clone(),
            shortcut: self.shortcut.clone(),
        }
    }
}

impl<A: Actor> Mailbox<A> {
    pub fn new(addr: Addr<A>, probe: Arc<ActorProbe>) -> Self {
        Mailbox {
            addr,
            probe,
            flow: None,
            shortcut: None,
        }
    }

    /// For an actor that may let live updates past it (`Agent`,
    /// `BackendLink`): where senders find its socket.
    pub fn with_shortcut<S: Any + Send + Sync>(mut self, shortcut: Arc<S>) -> Self {
        self.shortcut = Some(shortcut);
        self
    }

    /// The shortcut given to [`with_shortcut`](Self::with_shortcut), if it
    /// is an `S`.
    pub fn shortcut_of<S: Any>(&self) -> Option<&S> {
        self.shortcut.as_deref()?.downcast_ref()
    }

    /// The same, shared: for a wait that outlives this borrow.
    pub fn shortcut_shared<S: Any + Send + Sync>(&self) -> Option<Arc<S>> {
        Arc::clone(self.shortcut.as_ref()?).downcast().ok()
    }

    pub fn with_flow(mut self, flow: Arc<Flow>) -> Self {
        self.flow = Some(flow);
        self
    }

    /// Bytes handed to the actor's socket and not yet taken (0 for actors
    /// without a socket).
    pub fn in_flight(&self) -> u64 {
        self.flow.as_ref().map_or(0, |f| f.in_flight())
    }

    pub fn flow(&self) -> Option<&Arc<Flow>> {
        self.flow.as_ref()
    }

    pub fn connected(&self) -> bool {
        self.addr.connected()
    }

    pub fn same(&self, other: &Mailbox<A>) -> bool {
        self.addr == other.addr
    }

    pub fn id(&self) -> &str {
        &self.probe.id
    }

    /// Messages sent to the actor and not yet handled.
    pub fn depth(&self) -> u64 {
        self.probe.depth()
    }

    /// Sends without waiting; fails if the actor has stopped, handing the
    /// message back so the caller can route it elsewhere.
    pub fn try_send<M>(&self, msg: M) -> Result<(), M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.probe.on_sent();
        // `do_send` ignores a full mailbox bound (our bounds are on the
        // domain queues), so the only failure is a closed mailbox.
        if !self.addr.connected() {
            self.probe.on_send_failed();
            return Err(msg);
        }
        self.addr.do_send(msg);
        Ok(())
    }

    /// Sends without waiting; a message to a stopped actor is lost, so use
    /// this only where that is harmless (notifications, close requests).
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        let _ = self.try_send(msg);
    }

    /// Sends and waits for the reply.
    pub fn send<M>(&self, msg: M) -> Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.probe.on_sent();
        self.addr.send(msg)
    }
}

/// One message type of an actor, for a sender that must not know the
/// actor's type (a channel telling its owner, `ChannelNotice`). Made from a
/// [`Mailbox`], its sends are counted as the mailbox's are, so the owner's
/// depth stays true; made from a bare `Recipient`, they are not counted.
pub struct CountedRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    recipient: Recipient<M>,
    probe: Option<Arc<ActorProbe>>,
}

impl<M> Clone for CountedRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        CountedRecipient {
            recipient: self.recipient.clone(),
            probe: self.probe.clone(),
        }
    }
}

impl<M> From<Recipient<M>> for CountedRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn from(recipient: Recipient<M>) -> Self {
        CountedRecipient {
            recipient,
            probe: None,
        }
    }
}

impl<M> CountedRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    /// Sends without waiting; a message to a stopped actor is lost.
    pub fn do_send(&self, msg: M) {
        if let Some(p) = &self.probe {
            p.on_sent();
            if !self.recipient.connected() {
                p.on_send_failed();
                return;
            }
        }
        self.recipient.do_send(msg);
    }

    /// Sends and waits for the reply.
    pub fn send(&self, msg: M) -> RecipientRequest<M> {
        if let Some(p) = &self.probe {
            p.on_sent();
        }
        self.recipient.send(msg)
    }
}

impl<A: Actor> Mailbox<A> {
    /// The actor as a [`CountedRecipient`] of `M`.
    pub fn counted_recipient<M>(&self) -> CountedRecipient<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        CountedRecipient {
            recipient: self.addr.clone().recipient(),
            probe: Some(Arc::clone(&self.probe)),
        }
    }
}
