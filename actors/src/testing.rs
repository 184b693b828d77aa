//! Test helpers behind the `test-util` feature: probes that let a test see
//! what the switch publishes without a monitor or a client socket.

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::metrics::Mailbox;
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
