//! `switchyard ctl`: a command-line client of the client socket
//! (PROTOCOL 3), built on the same wire module as the switch.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use switchyard_actors::network::node_cache::hex;
use switchyard_actors::wire::client_api::{parse_get_answer, ClientMessage, ClientRequest};
use switchyard_actors::wire::data_types::{DataTypes, Decoded};
use switchyard_actors::wire::frame::{encode_to_vec, FrameCodec, FrameItem};
use switchyard_actors::wire::mesh::{parse_data_payload, NodeAddr};
use tokio_util::codec::Decoder;

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The switch's client socket.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,
    /// Extra data types (TOML or JSON) for decoding values.
    #[arg(long, value_name = "FILE")]
    pub data_types: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Every node and its status (NSTAT).
    Nodes,
    /// The mesh: link, uptime, nodes, frame counters (NINFO).
    Info,
    /// The latest value of a data type, for one node or all ([GET]).
    Get {
        /// A data type, e.g. TMP.
        data_type: String,
        /// A node address (0x0001 or 1); all nodes if left out.
        addr: Option<String>,
    },
    /// The number of active nodes (ACT-C).
    Count,
    /// Send a message to a node (SEND-, or SENDI with --tracked).
    Send {
        addr: String,
        text: String,
        /// Ask the root to track delivery (it retries up to 3 times).
        #[arg(long)]
        tracked: bool,
    },
    /// Send a message to every node (BCAST).
    Broadcast { text: String },
    /// Write a line to the switch's monitor log (W-LOG).
    Log { text: String },
    /// Print pushed node messages and data updates as they arrive (LISTN).
    Listen {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("no switch listening on {0}")]
    NoSwitch(SocketAddr),
    #[error("{0}")]
    Refused(String),
    #[error("connection to the switch lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("unexpected answer from the switch")]
    BadAnswer,
    #[error("the switch did not answer in time")]
    Timeout,
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// A connection to the client socket.
pub struct Connection {
    stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Result<Connection, CtlError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|_| CtlError::NoSwitch(addr))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Connection {
            stream,
            // Answers (NSTAT, NINFO) grow with the mesh; the 1024-byte bound
            // of the mesh link protects the switch, not its clients.
            codec: FrameCodec::new(1 << 20),
            buf: BytesMut::new(),
        })
    }

    pub fn next_message(&mut self) -> Result<ClientMessage, CtlError> {
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(item) = self.codec.decode(&mut self.buf)? {
                if let FrameItem::Frame(f) = item {
                    return ClientMessage::parse(&f).map_err(|_| CtlError::BadAnswer);
                }
            }
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(CtlError::Timeout)
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(CtlError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one request and returns the `S` payload (or the `F` reason as
    /// an error).
    pub fn request(&mut self, r: &ClientRequest) -> Result<Vec<u8>, CtlError> {
        self.stream.write_all(&encode_to_vec(&r.encode()))?;
        loop {
            match self.next_message()? {
                ClientMessage::Ok(p) => return Ok(p),
                ClientMessage::Fail(reason) => return Err(CtlError::Refused(reason)),
                // A push on a connection that listens too: not our answer.
                _ => continue,
            }
        }
    }
}

fn parse_addr(s: &str) -> Result<NodeAddr, CtlError> {
    switchyard_actors::wire::mesh::parse_node_addr(s).ok_or_else(|| {
        CtlError::Usage(format!("bad node address {:?} (use 0x0001 or 1)", s.trim()))
    })
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn decode(types: &DataTypes, t: &str, raw: &[u8]) -> String {
    match types.decode(t, raw) {
        Decoded::Value(v) => fmt_value(&v),
        Decoded::Unknown => format!("raw {}", hex(raw)),
        Decoded::LengthMismatch { expected, got } => {
            format!("raw {} ({got} bytes, {t} has {expected})", hex(raw))
        }
    }
}

fn json_payload(p: &[u8]) -> Result<Value, CtlError> {
    serde_json::from_slice(p).map_err(|_| CtlError::BadAnswer)
}

/// Runs one `ctl` command, writing its output to `out`.
pub fn run(args: CtlArgs, types: &DataTypes, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut c = Connection::open(args.addr)?;
    match args.command {
        CtlCommand::Nodes => {
            let v = json_payload(&c.request(&ClientRequest::NodeStatus)?)?;
            let addrs = v["node_addr_list"].as_array().cloned().unwrap_or_default();
            let statuses = v["node_status_list"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            writeln!(out, "NODE     STATUS").map_err(CtlError::Output)?;
            for (a, s) in addrs.iter().zip(statuses.iter()) {
                writeln!(
                    out,
                    "0x{:04x}   {}",
                    a.as_u64().unwrap_or(0),
                    s.as_str().unwrap_or("?")
                )
                .map_err(CtlError::Output)?;
            }
            writeln!(out, "{} nodes", v["node_amount"]).map_err(CtlError::Output)?;
        }
        CtlCommand::Info => {
            let v = json_payload(&c.request(&ClientRequest::NetInfo)?)?;
            let link = &v["link"];
            writeln!(
                out,
                "mesh link: {} ({}, {} baud)",
                if v["link_up"] == json!(true) {
                    "up"
                } else {
                    "down"
                },
                link["port"].as_str().unwrap_or("-"),
                link["baud"]
            )?;
            writeln!(
                out,
                "switch uptime: {:.0} s",
                v["uptime_secs"].as_f64().unwrap_or(0.0)
            )
            .map_err(CtlError::Output)?;
            writeln!(
                out,
                "nodes: {} ({} active)",
                v["node_amount"], v["active_nodes"]
            )?;
            let f = &v["frames"];
            writeln!(
                out,
                "frames: {} in, {} out; errors: {}",
                f["in"],
                f["out"],
                fmt_value(&f["errors"])
            )?;
            for n in v["nodes"].as_array().cloned().unwrap_or_default() {
                writeln!(
                    out,
                    "  {} {:<8} last heard {} s ago",
                    n["address"].as_str().unwrap_or("?"),
                    n["status"].as_str().unwrap_or("?"),
                    n["age_secs"]
                )
                .map_err(CtlError::Output)?;
            }
        }
        CtlCommand::Get { data_type, addr } => {
            let node = match &addr {
                Some(a) => parse_addr(a)?,
                None => 0,
            };
            if data_type.len() != 3 {
                return Err(CtlError::Usage(
                    "a data type is 3 characters, e.g. TMP".into(),
                ));
            }
            let p = c.request(&ClientRequest::Get {
                data_type: data_type.clone(),
                node,
            })?;
            let (t, items) = parse_get_answer(&p).map_err(|_| CtlError::BadAnswer)?;
            for (n, raw) in items {
                writeln!(out, "0x{n:04x}  {t}  {}", decode(types, &t, &raw))
                    .map_err(CtlError::Output)?;
            }
        }
        CtlCommand::Count => {
            let p = c.request(&ClientRequest::ActiveCount)?;
            let n = match p.as_slice() {
                [a, b] => u16::from_be_bytes([*a, *b]),
                _ => return Err(CtlError::BadAnswer),
            };
            writeln!(out, "{n}").map_err(CtlError::Output)?;
        }
        CtlCommand::Send {
            addr,
            text,
            tracked,
        } => {
            let dst = parse_addr(&addr)?;
            let message = text.into_bytes();
            let r = if tracked {
                ClientRequest::SendTracked { dst, message }
            } else {
                ClientRequest::Send { dst, message }
            };
            c.request(&r)?;
            writeln!(out, "sent to 0x{dst:04x}").map_err(CtlError::Output)?;
        }
        CtlCommand::Broadcast { text } => {
            c.request(&ClientRequest::Broadcast {
                message: text.into_bytes(),
            })?;
            writeln!(out, "broadcast sent").map_err(CtlError::Output)?;
        }
        CtlCommand::Log { text } => {
            c.request(&ClientRequest::WriteLog { text })?;
            writeln!(out, "logged").map_err(CtlError::Output)?;
        }
        CtlCommand::Listen { json } => {
            c.request(&ClientRequest::Listen)?;
            c.stream.set_read_timeout(None)?;
            loop {
                let line = match c.next_message()? {
                    ClientMessage::PushMessage { src, message } => {
                        let text = String::from_utf8_lossy(&message).into_owned();
                        if json {
                            json!({"event": "M", "node": format!("0x{src:04x}"), "text": text, "hex": hex(&message)}).to_string()
                        } else {
                            format!("M 0x{src:04x} {text:?}")
                        }
                    }
                    ClientMessage::PushData { src, payload } => {
                        let entries = parse_data_payload(&payload).unwrap_or_default();
                        if json {
                            let e: Vec<Value> = entries
                                .iter()
                                .map(|e| {
                                    let value = match types.decode(&e.data_type, &e.raw) {
                                        Decoded::Value(v) => v,
                                        _ => Value::Null,
                                    };
                                    json!({"type": e.data_type, "raw": hex(&e.raw), "value": value})
                                })
                                .collect();
                            json!({"event": "D", "node": format!("0x{src:04x}"), "entries": e})
                                .to_string()
                        } else {
                            let parts: Vec<String> = entries
                                .iter()
                                .map(|e| {
                                    format!(
                                        "{} {}",
                                        e.data_type,
                                        decode(types, &e.data_type, &e.raw)
                                    )
                                })
                                .collect();
                            format!("D 0x{src:04x} {}", parts.join("; "))
                        }
                    }
                    ClientMessage::PushResult { node, outcome } => {
                        if json {
                            json!({"event": "R", "node": format!("0x{node:04x}"), "ok": outcome.is_ok(), "error": outcome.err()}).to_string()
                        } else {
                            match outcome {
                                Ok(()) => format!("R 0x{node:04x} delivered"),
                                Err(e) => format!("R 0x{node:04x} failed: {e}"),
                            }
                        }
                    }
                    _ => continue,
                };
                writeln!(out, "{line}").map_err(CtlError::Output)?;
                out.flush().map_err(CtlError::Output)?;
            }
        }
    }
    Ok(())
}
