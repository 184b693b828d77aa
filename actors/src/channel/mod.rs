//! The Channel contract (seed 002): how an actor talks to a remote peer
//! whatever the transport.
//!
//! ## Lifecycle
//!
//! A channel is created idle. `OpenChannel` starts connecting; `IsAlive`
//! stays false until a connection is up, when the owner is told
//! `ChannelNotice::Opened` (the first time) or `Reconnected` (after a loss).
//! While it runs, inbound messages reach the owner as `Inbound`, and
//! `ChannelSend` answers:
//!
//! - `Delivered`: handed to the live connection;
//! - `Transient`: not alive right now (connecting, or reconnecting after a
//!   loss); the channel keeps the message, in order, bounded (oldest
//!   dropped and counted), and delivers it once it is alive again;
//! - `Serious`: the channel is closed or has given up; nothing was kept.
//!
//! A lost connection is retried with capped exponential backoff and jitter.
//! If a retry budget is set and runs out, the channel calls it a
//! catastrophic disconnect: the owner is told `CatastrophicDisconnect`,
//! `IsClosed` turns true and every later send is `Serious`. `CloseChannel`
//! ends it for good and releases the connection; `IsClosed` is true only
//! after that or after giving up.
//!
//! The rules are in [`Lifecycle`], a plain struct; `WebsocketChannel` (the
//! uplink's transport) and `UartManager` (the serial link) both keep them.

pub mod websocket;

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered,
    Transient,
    Serious,
}

/// What a channel tells its owner.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum ChannelNotice {
    Opened,
    Reconnected,
    /// The connection was lost; the channel is retrying.
    Lost {
        reason: String,
    },
    CatastrophicDisconnect {
        reason: String,
    },
    Inbound(Bytes),
    /// The far end answered a command sent through the channel: which one
    /// (`SENDI`, ...), to which node, and how. Told right before the
    /// `Inbound` frame that carried the answer, so an owner that reports
    /// it does so in the order the far end spoke (the serial link's `[R]`).
    Answered {
        command: &'static str,
        dst: Option<u16>,
        outcome: Result<(), String>,
    },
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct OpenChannel;

#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseChannel;

#[derive(Message)]
#[rtype(result = "SendOutcome")]
pub struct ChannelSend(pub Bytes);

#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsAlive;

#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsClosed;

/// Reconnection settings of a channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    pub reconnect_min_secs: f64,
    pub reconnect_max_secs: f64,
    /// Failed attempts in a row before a catastrophic disconnect; 0: retry
    /// forever.
    pub retry_budget: u32,
    /// Messages kept while not alive.
    pub buffer_limit: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            reconnect_min_secs: 0.5,
            reconnect_max_secs: 30.0,
            retry_budget: 0,
            buffer_limit: 100_000,
        }
    }
}

/// What to do after a failed attempt or a lost connection.
#[derive(Debug, PartialEq)]
pub enum Next {
    RetryIn(Duration),
    GiveUp,
}

/// The contract's rules, without IO.
#[derive(Debug)]
pub struct Lifecycle {
    opened: bool,
    alive: bool,
    closed: bool,
    ever_alive: bool,
    failures: u32,
    budget: u32,
    backoff: Backoff,
    rng: Rng,
}

impl Lifecycle {
    pub fn new(config: &ChannelConfig, seed: u64) -> Self {
        Lifecycle {
            opened: false,
            alive: false,
            closed: false,
            ever_alive: false,
            failures: 0,
            budget: config.retry_budget,
            backoff: Backoff::new(
                Duration::from_secs_f64(config.reconnect_min_secs.max(0.0)),
                Duration::from_secs_f64(config.reconnect_max_secs.max(0.0)),
            ),
            rng: Rng::new(seed),
        }
    }

    /// `open`: true if the caller should start connecting now.
    pub fn open(&mut self) -> bool {
        if self.opened || self.closed {
            return false;
        }
        self.opened = true;
        true
    }

    pub fn is_alive(&self) -> bool {
        self.alive && !self.closed
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A connection is up: which notice the owner gets.
    pub fn connected(&mut self) -> ChannelNotice {
        self.alive = true;
        self.failures = 0;
        self.backoff.reset();
        if self.ever_alive {
            ChannelNotice::Reconnected
        } else {
            self.ever_alive = true;
            ChannelNotice::Opened
        }
    }

    /// An attempt failed or the connection was lost.
    pub fn failed(&mut self) -> Next {
        self.alive = false;
        self.failures += 1;
        if self.budget > 0 && self.failures > self.budget {
            self.closed = true;
            return Next::GiveUp;
        }
        // Jitter: 50% to 100% of the backoff, so many edges that lost the
        // same central do not come back in step.
        let d = self.backoff.next_delay();
        let f = 0.75 + 0.25 * self.rng.signed_unit();
        Next::RetryIn(d.mul_f64(f))
    }

    pub fn close(&mut self) {
        self.closed = true;
        self.alive = false;
    }

    /// What a send gets right now if it cannot be delivered.
    pub fn undeliverable(&self) -> SendOutcome {
        if self.closed {
            SendOutcome::Serious
        } else {
            SendOutcome::Transient
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(budget: u32) -> ChannelConfig {
        ChannelConfig {
            reconnect_min_secs: 0.1,
            reconnect_max_secs: 1.0,
            retry_budget: budget,
            buffer_limit: 10,
        }
    }

    #[test]
    fn not_alive_until_connected_and_opened_once() {
        let mut l = Lifecycle::new(&cfg(0), 1);
        assert!(!l.is_alive() && !l.is_closed());
        assert!(l.open());
        assert!(!l.open(), "open twice starts one connection");
        assert!(!l.is_alive());
        assert_eq!(l.undeliverable(), SendOutcome::Transient);
        assert_eq!(l.connected(), ChannelNotice::Opened);
        assert!(l.is_alive());
        assert!(matches!(l.failed(), Next::RetryIn(_)));
        assert!(!l.is_alive() && !l.is_closed());
        assert_eq!(l.connected(), ChannelNotice::Reconnected);
    }

    #[test]
    fn backoff_has_jitter_and_a_cap() {
        let mut l = Lifecycle::new(&cfg(0), 7);
        l.open();
        let delays: Vec<Duration> = (0..8)
            .map(|_| match l.failed() {
                Next::RetryIn(d) => d,
                Next::GiveUp => panic!("no budget"),
            })
            .collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(delays[7] >= Duration::from_millis(500));
    }

    #[test]
    fn the_budget_ends_in_a_catastrophic_disconnect() {
        let mut l = Lifecycle::new(&cfg(2), 1);
        l.open();
        assert!(matches!(l.failed(), Next::RetryIn(_)));
        assert!(matches!(l.failed(), Next::RetryIn(_)));
        assert_eq!(l.failed(), Next::GiveUp);
        assert!(l.is_closed());
        assert_eq!(l.undeliverable(), SendOutcome::Serious);
    }

    #[test]
    fn a_success_resets_the_budget() {
        let mut l = Lifecycle::new(&cfg(1), 1);
        l.open();
        assert!(matches!(l.failed(), Next::RetryIn(_)));
        l.connected();
        assert!(matches!(l.failed(), Next::RetryIn(_)));
    }

    #[test]
    fn close_is_final() {
        let mut l = Lifecycle::new(&cfg(0), 1);
        l.open();
        l.connected();
        l.close();
        assert!(l.is_closed() && !l.is_alive());
        assert!(!l.open());
        assert_eq!(l.undeliverable(), SendOutcome::Serious);
    }
}
