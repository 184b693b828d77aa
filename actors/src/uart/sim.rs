//! The simulated mesh: a root node and its edge nodes on the far end of a
//! pseudo-terminal, so the switch's real serial code path runs without
//! hardware (the embedded default; `switchyard simulate` runs it alone).
//!
//! Every `interval` each node sends a `[D]` update (GPS moving along a
//! circle, TMP/HUM/BAT drifting plausibly); now and then a node sends an
//! `[M]` message. Commands are answered like a root would: `NINFO` with
//! `[N]`, every other command with `[R]`; a `SEND-`/`SENDI` to a node makes
//! that node answer with an `[M]` reply.
//!
//! This is a peer on a wire, not an actor: it runs on its own thread and
//! speaks bytes through the same frame codec the switch uses.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serialport::{SerialPort, TTYPort};
use tokio_util::codec::Decoder;

use crate::rng::Rng;
use crate::wire::frame::{encode_to_vec, FrameCodec, FrameItem};
use crate::wire::mesh::{Command, DataEntry, NodeAddr, RootMessage};

/// The root's own address in `[R]` and `[N]` frames.
pub const ROOT_ADDR: NodeAddr = 0x0000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Edge nodes, addressed 0x0001..=nodes.
    pub nodes: u16,
    /// Seconds between a node's data updates.
    pub interval_secs: f64,
    /// Seed of the simulation's pseudo-random drift.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 6,
            interval_secs: 1.0,
            seed: 0x5eed,
        }
    }
}

/// One simulated edge node's sensors.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub addr: NodeAddr,
    angle: f64,
    radius: f64,
    celsius: f64,
    humidity: f64,
    millivolts: f64,
    sent: u64,
}

const CENTER_LON: f64 = 13.4050;
const CENTER_LAT: f64 = 52.5200;

impl SimNode {
    pub fn new(addr: NodeAddr, rng: &mut Rng) -> Self {
        SimNode {
            addr,
            angle: rng.signed_unit() * std::f64::consts::PI,
            radius: 0.002 + 0.001 * f64::from(addr),
            celsius: 20.0 + 3.0 * rng.signed_unit(),
            humidity: 50.0 + 10.0 * rng.signed_unit(),
            millivolts: 4100.0 - 50.0 * f64::from(addr),
            sent: 0,
        }
    }

    /// Advances the sensors one step and returns the `[D]` entries.
    pub fn step(&mut self, rng: &mut Rng) -> Vec<DataEntry> {
        self.angle += 0.05 + 0.01 * f64::from(self.addr);
        self.celsius = (self.celsius + 0.2 * rng.signed_unit()).clamp(-20.0, 45.0);
        self.humidity = (self.humidity + rng.signed_unit()).clamp(5.0, 95.0);
        self.millivolts = (self.millivolts - 0.5 + 0.3 * rng.signed_unit()).max(3000.0);
        self.sent += 1;
        let lon = CENTER_LON + self.radius * self.angle.cos();
        let lat = CENTER_LAT + self.radius * self.angle.sin();
        let i24 = |v: f64| {
            let n = (v * 10_000.0).round() as i32;
            let b = n.to_be_bytes();
            [b[1], b[2], b[3]]
        };
        let mut gps = Vec::with_capacity(6);
        gps.extend_from_slice(&i24(lon));
        gps.extend_from_slice(&i24(lat));
        vec![
            DataEntry {
                data_type: "GPS".into(),
                raw: gps,
            },
            DataEntry {
                data_type: "TMP".into(),
                raw: ((self.celsius * 100.0).round() as i16)
                    .to_be_bytes()
                    .to_vec(),
            },
            DataEntry {
                data_type: "HUM".into(),
                raw: vec![self.humidity.round() as u8],
            },
            DataEntry {
                data_type: "BAT".into(),
                raw: (self.millivolts.round() as u16).to_be_bytes().to_vec(),
            },
        ]
    }
}

/// The simulated root's answers to one command: the frames it sends back.
pub fn answer(command: &Command, nodes: &[NodeAddr]) -> Vec<RootMessage> {
    let ok = RootMessage::Result {
        node: ROOT_ADDR,
        outcome: Ok(()),
    };
    match command {
        Command::NetInfo => vec![RootMessage::NetworkInfo {
            node: ROOT_ADDR,
            nodes: nodes.to_vec(),
        }],
        Command::Send { dst, message } | Command::SendTracked { dst, message } => {
            if !nodes.contains(dst) {
                return vec![RootMessage::Result {
                    node: ROOT_ADDR,
                    outcome: Err(format!("no route to 0x{dst:04x}")),
                }];
            }
            vec![ok, reply_from(*dst, message)]
        }
        Command::Broadcast { message } => {
            let mut out = vec![ok];
            out.extend(nodes.iter().map(|n| reply_from(*n, message)));
            out
        }
        Command::Restart | Command::Clean => vec![ok],
    }
}

fn reply_from(node: NodeAddr, message: &[u8]) -> RootMessage {
    let mut text = format!("node 0x{node:04x} got: ").into_bytes();
    text.extend_from_slice(message);
    text.truncate(255);
    RootMessage::Message { node, text }
}

/// A running simulated mesh. Dropping it stops the thread and closes the
/// pty, which the switch sees as the port disappearing.
pub struct SimulatedRoot {
    path: String,
    link: Option<std::path::PathBuf>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SimulatedRoot {
    /// Opens a pseudo-terminal pair and starts the mesh on its master end.
    /// The switch opens `path()`. With `link`, a symlink there points at
    /// the pty (replaced if it exists), so a restarted simulator is found
    /// at the same name.
    pub fn spawn(config: SimConfig, link: Option<std::path::PathBuf>) -> std::io::Result<Self> {
        let (mut master, slave) = TTYPort::pair().map_err(std::io::Error::other)?;
        let path = slave
            .name()
            .ok_or_else(|| std::io::Error::other("pty has no name"))?;
        master
            .set_timeout(Duration::from_millis(20))
            .map_err(std::io::Error::other)?;
        if let Some(l) = &link {
            let _ = std::fs::remove_file(l);
            std::os::unix::fs::symlink(&path, l)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sim-root".into())
            .spawn(move || {
                // Holding the slave end open keeps the master readable while
                // no switch has the port open.
                let _slave = slave;
                run(master, config, &stop2);
            })?;
        Ok(SimulatedRoot {
            path,
            link,
            stop,
            thread: Some(thread),
        })
    }

    /// The port the switch should open (the symlink if one was asked for).
    pub fn path(&self) -> String {
        match &self.link {
            Some(l) => l.to_string_lossy().into_owned(),
            None => self.path.clone(),
        }
    }

    /// The pty device itself.
    pub fn device(&self) -> &str {
        &self.path
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimulatedRoot {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(mut port: TTYPort, config: SimConfig, stop: &AtomicBool) {
    let mut rng = Rng::new(config.seed);
    let mut nodes: Vec<SimNode> = (1..=config.nodes)
        .map(|a| SimNode::new(a, &mut rng))
        .collect();
    let addrs: Vec<NodeAddr> = nodes.iter().map(|n| n.addr).collect();
    let interval = Duration::from_secs_f64(config.interval_secs.max(0.001));
    // Spread the nodes over the interval so updates do not come in bursts.
    let per_node = interval / (nodes.len().max(1) as u32);
    let mut next_node = 0usize;
    let mut next_due = Instant::now();
    let mut codec = FrameCodec::default();
    let mut inbuf = BytesMut::new();
    let mut readbuf = [0u8; 1024];
    let mut messages_sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if !nodes.is_empty() && Instant::now() >= next_due {
            let node = &mut nodes[next_node];
            let entries = node.step(&mut rng);
            let frame = RootMessage::Data {
                node: node.addr,
                entries,
            };
            send(&mut port, &frame);
            // About one message per node every 20 updates.
            if rng.next_u64().is_multiple_of(20) {
                messages_sent += 1;
                let text =
                    format!("hello from 0x{:04x} (#{messages_sent})", node.addr).into_bytes();
                send(
                    &mut port,
                    &RootMessage::Message {
                        node: node.addr,
                        text,
                    },
                );
            }
            next_node = (next_node + 1) % nodes.len();
            next_due += per_node;
            if next_due < Instant::now() {
                next_due = Instant::now() + per_node;
            }
        }
        match port.read(&mut readbuf) {
            Ok(n) if n > 0 => {
                inbuf.extend_from_slice(&readbuf[..n]);
                while let Ok(Some(item)) = codec.decode(&mut inbuf) {
                    if let FrameItem::Frame(content) = item {
                        let replies = match Command::parse(&content) {
                            Ok(cmd) => answer(&cmd, &addrs),
                            Err(e) => vec![RootMessage::Result {
                                node: ROOT_ADDR,
                                outcome: Err(e.to_string()),
                            }],
                        };
                        for r in replies {
                            send(&mut port, &r);
                        }
                    }
                }
            }
            // Timeouts are the idle tick; an error means nobody holds the
            // other end right now: wait and carry on.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn send(port: &mut TTYPort, message: &RootMessage) {
    // A full pty buffer (no reader) just loses simulated data, as a real
    // radio would.
    let _ = port.write_all(&encode_to_vec(&message.encode()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_produce_four_plausible_entries() {
        let mut rng = Rng::new(7);
        let mut n = SimNode::new(3, &mut rng);
        for _ in 0..100 {
            let e = n.step(&mut rng);
            let types: Vec<&str> = e.iter().map(|d| d.data_type.as_str()).collect();
            assert_eq!(types, vec!["GPS", "TMP", "HUM", "BAT"]);
            assert_eq!(e[0].raw.len(), 6);
            let c = i16::from_be_bytes([e[1].raw[0], e[1].raw[1]]) as f64 / 100.0;
            assert!((-20.0..=45.0).contains(&c));
            assert!(e[2].raw[0] <= 100);
        }
    }

    #[test]
    fn answers_follow_the_root_protocol() {
        let nodes = [1, 2];
        assert_eq!(
            answer(&Command::NetInfo, &nodes),
            vec![RootMessage::NetworkInfo {
                node: 0,
                nodes: vec![1, 2]
            }]
        );
        let r = answer(
            &Command::Send {
                dst: 2,
                message: b"hi".to_vec(),
            },
            &nodes,
        );
        assert_eq!(
            r[0],
            RootMessage::Result {
                node: 0,
                outcome: Ok(())
            }
        );
        assert_eq!(
            r[1],
            RootMessage::Message {
                node: 2,
                text: b"node 0x0002 got: hi".to_vec()
            }
        );
        let r = answer(
            &Command::SendTracked {
                dst: 9,
                message: b"x".to_vec(),
            },
            &nodes,
        );
        assert!(matches!(
            &r[..],
            [RootMessage::Result {
                outcome: Err(_),
                ..
            }]
        ));
        assert_eq!(
            answer(
                &Command::Broadcast {
                    message: b"b".to_vec()
                },
                &nodes
            )
            .len(),
            3
        );
        assert_eq!(answer(&Command::Clean, &nodes).len(), 1);
    }
}
