//! Test helpers behind the `test-util` feature: probes that let a test see
//! what the switch publishes without a monitor or a client socket.

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::mailbox::Mailbox;
use crate::network::events::SwitchEvent;
use crate::network::{NetworkManager, Subscribe};

/// Collects every `SwitchEvent` into a channel.
pub struct EventProbe {
    tx: mpsc::UnboundedSender<SwitchEvent>,
}

impl Actor for EventProbe {
    type Context = Context<Self>;
}

impl Handler<SwitchEvent> for EventProbe {
    type Result = ();
    fn handle(&mut self, msg: SwitchEvent, _: &mut Context<Self>) {
        let _ = self.tx.send(msg);
    }
}

impl EventProbe {
    /// Subscribes a new probe to `network` and returns its receiving end.
    pub fn subscribe(network: &Mailbox<NetworkManager>) -> mpsc::UnboundedReceiver<SwitchEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = EventProbe { tx }.start();
        network.do_send(Subscribe(probe.recipient()));
        rx
    }
}

/// Collects a channel's notices into a channel of the test's.
pub struct NoticeProbe {
    tx: mpsc::UnboundedSender<crate::channel::ChannelNotice>,
}

impl Actor for NoticeProbe {
    type Context = Context<Self>;
}

impl Handler<crate::channel::ChannelNotice> for NoticeProbe {
    type Result = ();
    fn handle(&mut self, msg: crate::channel::ChannelNotice, _: &mut Context<Self>) {
        let _ = self.tx.send(msg);
    }
}

impl NoticeProbe {
    /// A recipient for a channel's owner, and the notices it gets.
    pub fn start() -> (
        Recipient<crate::channel::ChannelNotice>,
        mpsc::UnboundedReceiver<crate::channel::ChannelNotice>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        (NoticeProbe { tx }.start().recipient(), rx)
    }
}
