//! Frame content of the mesh link (PROTOCOL 2.2 root -> switch, 2.3 switch
//! -> root): the bytes inside one frame of [`super::frame`], already
//! unescaped.
//!
//! Root -> switch: `node_addr` (2, big-endian) | `msg_type` (3 ASCII) |
//! payload, parsed into [`RootMessage`]. Switch -> root: `command` (5 ASCII)
//! | arguments, built from [`Command`]. Both directions encode and parse, so
//! the simulated root and the tests speak the same code as the switch.
//!
//! Parsing is strict: a count or length that runs past the end of the frame,
//! or bytes left over after what the payload declares, reject the whole frame
//! with a [`MeshError`] (PROTOCOL 2.2: "a truncated or inconsistent
//! payload"). The caller counts it under [`MeshError::kind`], logs it and
//! carries on with the next frame: a bad frame never stops the link. Entries
//! of an unknown data type or of the wrong length for their type are *not*
//! frame errors; that is decided per entry by [`super::data_types`].

/// A mesh node address (2 bytes, big-endian on the wire). 0x0000 is the
/// broadcast destination.
pub type NodeAddr = u16;

/// Longest message a command can carry (its length is one byte).
pub const MAX_MESSAGE: usize = 255;

/// A node address as people write it: `0x0001`, `0X1` or `1` (the HTTP
/// API, `switchyard ctl`, MQTT topics).
pub fn parse_node_addr(s: &str) -> Option<NodeAddr> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        // `from_str_radix` takes a leading `+`: `0x+1` is not an address.
        Some(h) if !h.starts_with('+') => u16::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None if !s.starts_with('+') => s.parse().ok(),
        None => None,
    }
}

/// One entry of a `[D]` payload: a data type name and its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// 3 printable ASCII characters (0x20..=0x7E); other bytes are rejected
    /// when parsing.
    pub data_type: String,
    pub raw: Vec<u8>,
}

impl DataEntry {
    pub fn new(data_type: impl Into<String>, raw: impl Into<Vec<u8>>) -> Self {
        DataEntry {
            data_type: data_type.into(),
            raw: raw.into(),
        }
    }
}

/// What the root node sends (PROTOCOL 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootMessage {
    /// `[D]`: a data update from an edge node.
    Data {
        node: NodeAddr,
        entries: Vec<DataEntry>,
    },
    /// `[M]`: a message from an edge node to the client programs.
    Message { node: NodeAddr, text: Vec<u8> },
    /// `[N]`: network info (the answer to `NINFO`).
    NetworkInfo {
        node: NodeAddr,
        nodes: Vec<NodeAddr>,
    },
    /// `[R]`: result of the last command: `S`, or `F` | len | text.
    Result {
        node: NodeAddr,
        outcome: Result<(), String>,
    },
}

/// Why a frame's content was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// Shorter than its fixed header (node address + message type, or a
    /// command name).
    #[error("frame too short for its header")]
    TooShort,
    #[error("unknown message type {0:?}")]
    UnknownMsgType(String),
    /// A count or length runs past the end of the frame.
    #[error("payload truncated: {what} runs past the end of the frame")]
    Truncated { what: &'static str },
    /// Bytes left after everything the payload declares.
    #[error("{0} trailing byte(s) after the payload")]
    TrailingBytes(usize),
    /// A data type that is not 3 printable ASCII characters.
    #[error("data type is not 3 printable ASCII characters")]
    BadDataType,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A message (or error text, or entry) longer than its 1-byte length.
    #[error("message of {0} bytes is longer than {MAX_MESSAGE}")]
    MessageTooLong(usize),
    /// More entries or addresses than a 1-byte count can say.
    #[error("{0} items do not fit a 1-byte count")]
    TooManyItems(usize),
    /// `[R]` whose payload is neither `S` nor `F`.
    #[error("result is neither S nor F")]
    BadResult,
    /// `BCAST` with a destination other than 0x0000.
    #[error("broadcast to {0:#06x} instead of 0x0000")]
    BadBroadcastDst(NodeAddr),
    /// Frame content longer than the link's frame limit.
    #[error("frame of {0} bytes is over the frame limit")]
    FrameTooLong(usize),
}

impl MeshError {
    /// Snake-case label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MeshError::TooShort => "too_short",
            MeshError::UnknownMsgType(_) => "unknown_msg_type",
            MeshError::Truncated { .. } => "truncated",
            MeshError::TrailingBytes(_) => "trailing_bytes",
            MeshError::BadDataType => "bad_data_type",
            MeshError::UnknownCommand(_) => "unknown_command",
            MeshError::MessageTooLong(_) => "message_too_long",
            MeshError::TooManyItems(_) => "too_many_items",
            MeshError::BadResult => "bad_result",
            MeshError::BadBroadcastDst(_) => "bad_broadcast_dst",
            MeshError::FrameTooLong(_) => "frame_too_long",
        }
    }
}

/// Whether `b` may appear in a data type name (printable ASCII).
pub fn is_data_type_byte(b: u8) -> bool {
    (0x20..=0x7E).contains(&b)
}

/// Whether `name` is a valid data type name: 3 printable ASCII characters.
pub fn is_valid_data_type(name: &str) -> bool {
    name.len() == 3 && name.bytes().all(is_data_type_byte)
}

/// Show unknown ASCII-ish names readably (non-printable bytes escaped).
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// A cursor over a payload that turns running off the end into
/// `MeshError::Truncated`.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MeshError> {
        if self.rest.len() < n {
            return Err(MeshError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MeshError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, MeshError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A 1-byte length then that many bytes.
    fn bytes8(
        &mut self,
        len_what: &'static str,
        what: &'static str,
    ) -> Result<&'a [u8], MeshError> {
        let n = self.u8(len_what)? as usize;
        self.take(n, what)
    }

    fn finish(self) -> Result<(), MeshError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(MeshError::TrailingBytes(self.rest.len()))
        }
    }
}

impl RootMessage {
    /// Parse one frame's content (PROTOCOL 2.2).
    pub fn parse(frame: &[u8]) -> Result<RootMessage, MeshError> {
        if frame.len() < 5 {
            return Err(MeshError::TooShort);
        }
        let node = u16::from_be_bytes([frame[0], frame[1]]);
        let payload = &frame[5..];
        match &frame[2..5] {
            b"[D]" => Ok(RootMessage::Data {
                node,
                entries: parse_data_payload(payload)?,
            }),
            b"[M]" => {
                let mut r = Reader::new(payload);
                let text = r.bytes8("message length", "message")?.to_vec();
                r.finish()?;
                Ok(RootMessage::Message { node, text })
            }
            b"[N]" => {
                let mut r = Reader::new(payload);
                let count = r.u8("node count")? as usize;
                let mut nodes = Vec::with_capacity(count);
                for _ in 0..count {
                    nodes.push(r.u16("node list")?);
                }
                r.finish()?;
                Ok(RootMessage::NetworkInfo { node, nodes })
            }
            b"[R]" => {
                let mut r = Reader::new(payload);
                let outcome = match r.u8("result")? {
                    b'S' => Ok(()),
                    b'F' => {
                        let text = r.bytes8("error length", "error text")?;
                        Err(String::from_utf8_lossy(text).into_owned())
                    }
                    _ => return Err(MeshError::BadResult),
                };
                r.finish()?;
                Ok(RootMessage::Result { node, outcome })
            }
            other => Err(MeshError::UnknownMsgType(show(other))),
        }
    }

    /// Frame content (unframed) for this message. Never fails: anything that
    /// does not fit the wire format is cut to fit (entries and addresses
    /// past 255, data and text past 255 bytes; a data type name is cut or
    /// space-padded to 3 bytes). Use [`RootMessage::try_encode`] to be told
    /// instead.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.node().to_be_bytes());
        match self {
            RootMessage::Data { entries, .. } => {
                out.extend_from_slice(b"[D]");
                encode_data_payload_into(entries, &mut out);
            }
            RootMessage::Message { text, .. } => {
                out.extend_from_slice(b"[M]");
                put_bytes8(text, &mut out);
            }
            RootMessage::NetworkInfo { nodes, .. } => {
                out.extend_from_slice(b"[N]");
                let nodes = &nodes[..nodes.len().min(255)];
                out.push(nodes.len() as u8);
                for n in nodes {
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            RootMessage::Result { outcome, .. } => {
                out.extend_from_slice(b"[R]");
                match outcome {
                    Ok(()) => out.push(b'S'),
                    Err(text) => {
                        out.push(b'F');
                        put_bytes8(text.as_bytes(), &mut out);
                    }
                }
            }
        }
        out
    }

    /// Like [`RootMessage::encode`], but refuses what does not fit instead
    /// of cutting it.
    pub fn try_encode(&self) -> Result<Vec<u8>, MeshError> {
        match self {
            RootMessage::Data { entries, .. } => check_entries(entries)?,
            RootMessage::Message { text, .. } => check_len(text.len())?,
            RootMessage::NetworkInfo { nodes, .. } => {
                if nodes.len() > 255 {
                    return Err(MeshError::TooManyItems(nodes.len()));
                }
            }
            RootMessage::Result { outcome, .. } => {
                if let Err(text) = outcome {
                    check_len(text.len())?;
                }
            }
        }
        Ok(self.encode())
    }

    /// The node the frame came from (for `[N]`/`[R]`, the root's address).
    pub fn node(&self) -> NodeAddr {
        match self {
            RootMessage::Data { node, .. }
            | RootMessage::Message { node, .. }
            | RootMessage::NetworkInfo { node, .. }
            | RootMessage::Result { node, .. } => *node,
        }
    }

    /// The 3-byte message type as text: `"[D]"`, `"[M]"`, `"[N]"`, `"[R]"`.
    pub fn msg_type(&self) -> &'static str {
        match self {
            RootMessage::Data { .. } => "[D]",
            RootMessage::Message { .. } => "[M]",
            RootMessage::NetworkInfo { .. } => "[N]",
            RootMessage::Result { .. } => "[R]",
        }
    }
}

fn check_len(len: usize) -> Result<(), MeshError> {
    if len > MAX_MESSAGE {
        Err(MeshError::MessageTooLong(len))
    } else {
        Ok(())
    }
}

fn check_entries(entries: &[DataEntry]) -> Result<(), MeshError> {
    if entries.len() > 255 {
        return Err(MeshError::TooManyItems(entries.len()));
    }
    for e in entries {
        if !is_valid_data_type(&e.data_type) {
            return Err(MeshError::BadDataType);
        }
        check_len(e.raw.len())?;
    }
    Ok(())
}

/// 1-byte length then the bytes, cut at 255.
fn put_bytes8(bytes: &[u8], out: &mut Vec<u8>) {
    let bytes = &bytes[..bytes.len().min(MAX_MESSAGE)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// The `[D]` payload alone (count, entries) — also reused by the TCP client
/// protocol's `D` push (PROTOCOL 3).
pub fn parse_data_payload(payload: &[u8]) -> Result<Vec<DataEntry>, MeshError> {
    let mut r = Reader::new(payload);
    let count = r.u8("entry count")? as usize;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.take(3, "data type")?;
        if !name.iter().all(|&b| is_data_type_byte(b)) {
            return Err(MeshError::BadDataType);
        }
        // Printable ASCII is valid UTF-8 byte for byte.
        let data_type = name.iter().map(|&b| b as char).collect();
        let raw = r.bytes8("entry length", "entry data")?.to_vec();
        entries.push(DataEntry { data_type, raw });
    }
    r.finish()?;
    Ok(entries)
}

/// Encode a `[D]` payload. Never fails; see [`RootMessage::encode`] for
/// what is cut to fit. [`try_encode_data_payload`] refuses instead.
pub fn encode_data_payload(entries: &[DataEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.iter().map(|e| 4 + e.raw.len()).sum::<usize>());
    encode_data_payload_into(entries, &mut out);
    out
}

/// [`encode_data_payload`] that refuses more than 255 entries, data longer
/// than 255 bytes and data type names that are not 3 printable ASCII bytes.
pub fn try_encode_data_payload(entries: &[DataEntry]) -> Result<Vec<u8>, MeshError> {
    check_entries(entries)?;
    Ok(encode_data_payload(entries))
}

fn encode_data_payload_into(entries: &[DataEntry], out: &mut Vec<u8>) {
    let entries = &entries[..entries.len().min(255)];
    out.push(entries.len() as u8);
    for e in entries {
        let mut name = [b' '; 3];
        for (slot, b) in name.iter_mut().zip(e.data_type.bytes()) {
            *slot = b;
        }
        out.extend_from_slice(&name);
        put_bytes8(&e.raw, out);
    }
}

/// What the switch sends to the root (PROTOCOL 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SEND-`: deliver to one node, no delivery tracking.
    Send { dst: NodeAddr, message: Vec<u8> },
    /// `SENDI`: deliver with tracking (the root retries up to 3 times).
    SendTracked { dst: NodeAddr, message: Vec<u8> },
    /// `BCAST`: to every node (destination 0x0000 on the wire).
    Broadcast { message: Vec<u8> },
    /// `RST-R`: restart the root module.
    Restart,
    /// `CLEAN`: reset the network in the root's persistent memory.
    Clean,
    /// `NINFO`: ask for network info (answered with `[N]`).
    NetInfo,
}

impl Command {
    /// Frame content for this command. `MessageTooLong` if the message is
    /// longer than [`MAX_MESSAGE`] bytes (PROTOCOL 2.3: refused with an error
    /// to the requester).
    pub fn encode(&self) -> Result<Vec<u8>, MeshError> {
        let mut out = Vec::with_capacity(8);
        out.extend_from_slice(self.name().as_bytes());
        let (dst, message) = match self {
            Command::Send { dst, message } | Command::SendTracked { dst, message } => {
                (*dst, message)
            }
            Command::Broadcast { message } => (0x0000, message),
            Command::Restart | Command::Clean | Command::NetInfo => return Ok(out),
        };
        check_len(message.len())?;
        out.extend_from_slice(&dst.to_be_bytes());
        out.push(message.len() as u8);
        out.extend_from_slice(message);
        Ok(out)
    }

    /// Parse a command frame (the simulated root's side).
    pub fn parse(frame: &[u8]) -> Result<Command, MeshError> {
        if frame.len() < 5 {
            return Err(MeshError::TooShort);
        }
        let mut r = Reader::new(&frame[5..]);
        let cmd = match &frame[..5] {
            b"SEND-" | b"SENDI" | b"BCAST" => {
                let dst = r.u16("destination")?;
                let message = r.bytes8("message length", "message")?.to_vec();
                match &frame[..5] {
                    b"SEND-" => Command::Send { dst, message },
                    b"SENDI" => Command::SendTracked { dst, message },
                    _ if dst != 0 => return Err(MeshError::BadBroadcastDst(dst)),
                    _ => Command::Broadcast { message },
                }
            }
            b"RST-R" => Command::Restart,
            b"CLEAN" => Command::Clean,
            b"NINFO" => Command::NetInfo,
            other => return Err(MeshError::UnknownCommand(show(other))),
        };
        r.finish()?;
        Ok(cmd)
    }

    /// The 5-byte command name: `"SEND-"`, `"SENDI"`, `"BCAST"`, `"RST-R"`,
    /// `"CLEAN"`, `"NINFO"`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Send { .. } => "SEND-",
            Command::SendTracked { .. } => "SENDI",
            Command::Broadcast { .. } => "BCAST",
            Command::Restart => "RST-R",
            Command::Clean => "CLEAN",
            Command::NetInfo => "NINFO",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(t: &str, raw: &[u8]) -> DataEntry {
        DataEntry::new(t, raw)
    }

    // --- root -> switch, both ways -------------------------------------------

    #[test]
    fn data_literal() {
        let bytes = b"\x00\x2a[D]\x02TMP\x02\x09\xc4HUM\x01\x37".to_vec();
        let msg = RootMessage::Data {
            node: 0x002a,
            entries: vec![d("TMP", &[0x09, 0xc4]), d("HUM", &[0x37])],
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
        assert_eq!(msg.try_encode(), Ok(bytes));
        assert_eq!(msg.node(), 42);
        assert_eq!(msg.msg_type(), "[D]");
    }

    #[test]
    fn data_with_zero_entries_and_empty_entry() {
        let bytes = b"\x01\x00[D]\x00".to_vec();
        let msg = RootMessage::Data {
            node: 0x0100,
            entries: vec![],
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
        let bytes = b"\x01\x00[D]\x01XYZ\x00".to_vec();
        let msg = RootMessage::Data {
            node: 0x0100,
            entries: vec![d("XYZ", &[])],
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
    }

    #[test]
    fn data_payload_alone() {
        let payload = b"\x01GPS\x06\x01\x02\x03\xfe\xff\xfa".to_vec();
        let entries = vec![d("GPS", &[1, 2, 3, 0xfe, 0xff, 0xfa])];
        assert_eq!(parse_data_payload(&payload), Ok(entries.clone()));
        assert_eq!(encode_data_payload(&entries), payload);
        assert_eq!(try_encode_data_payload(&entries), Ok(payload));
    }

    #[test]
    fn message_literal() {
        let bytes = b"\xbe\xef[M]\x05hello".to_vec();
        let msg = RootMessage::Message {
            node: 0xbeef,
            text: b"hello".to_vec(),
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
        // Empty message.
        let bytes = b"\x00\x01[M]\x00".to_vec();
        let msg = RootMessage::Message {
            node: 1,
            text: vec![],
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
    }

    #[test]
    fn network_info_literal() {
        let bytes = b"\x00\x01[N]\x03\x00\x02\x01\x00\xff\xfe".to_vec();
        let msg = RootMessage::NetworkInfo {
            node: 1,
            nodes: vec![0x0002, 0x0100, 0xfffe],
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
        let bytes = b"\x00\x01[N]\x00".to_vec();
        let msg = RootMessage::NetworkInfo {
            node: 1,
            nodes: vec![],
        };
        assert_eq!(RootMessage::parse(&bytes), Ok(msg.clone()));
        assert_eq!(msg.encode(), bytes);
    }

    #[test]
    fn result_literals() {
        let ok = b"\x00\x01[R]S".to_vec();
        let msg = RootMessage::Result {
            node: 1,
            outcome: Ok(()),
        };
        assert_eq!(RootMessage::parse(&ok), Ok(msg.clone()));
        assert_eq!(msg.encode(), ok);

        let fail = b"\x00\x01[R]F\x07no route".to_vec();
        assert_eq!(RootMessage::parse(&fail), Err(MeshError::TrailingBytes(1)));
        let fail = b"\x00\x01[R]F\x08no route".to_vec();
        let msg = RootMessage::Result {
            node: 1,
            outcome: Err("no route".into()),
        };
        assert_eq!(RootMessage::parse(&fail), Ok(msg.clone()));
        assert_eq!(msg.encode(), fail);
    }

    // --- root -> switch, rejected frames -----------------------------------

    #[test]
    fn too_short_and_unknown_type() {
        assert_eq!(RootMessage::parse(b""), Err(MeshError::TooShort));
        assert_eq!(RootMessage::parse(b"\x00\x01[D"), Err(MeshError::TooShort));
        assert_eq!(
            RootMessage::parse(b"\x00\x01[X]\x00"),
            Err(MeshError::UnknownMsgType("[X]".into()))
        );
        assert_eq!(
            RootMessage::parse(b"\x00\x01\xff\x00]"),
            Err(MeshError::UnknownMsgType("\\xff\\x00]".into()))
        );
    }

    #[test]
    fn data_truncations() {
        let t = |what| Err(MeshError::Truncated { what });
        assert_eq!(RootMessage::parse(b"\x00\x01[D]"), t("entry count"));
        assert_eq!(RootMessage::parse(b"\x00\x01[D]\x01"), t("data type"));
        assert_eq!(RootMessage::parse(b"\x00\x01[D]\x01TM"), t("data type"));
        assert_eq!(RootMessage::parse(b"\x00\x01[D]\x01TMP"), t("entry length"));
        assert_eq!(
            RootMessage::parse(b"\x00\x01[D]\x01TMP\x02\x09"),
            t("entry data")
        );
        // Count says two, one present.
        assert_eq!(
            RootMessage::parse(b"\x00\x01[D]\x02HUM\x01\x37"),
            t("data type")
        );
        // Count says one, two present.
        assert_eq!(
            RootMessage::parse(b"\x00\x01[D]\x01HUM\x01\x37HUM\x01\x38"),
            Err(MeshError::TrailingBytes(5))
        );
        assert_eq!(
            parse_data_payload(b""),
            Err(MeshError::Truncated {
                what: "entry count"
            })
        );
        assert_eq!(
            parse_data_payload(b"\x00\x00"),
            Err(MeshError::TrailingBytes(1))
        );
    }

    #[test]
    fn data_type_must_be_printable_ascii() {
        assert_eq!(
            RootMessage::parse(b"\x00\x01[D]\x01T\xc3\xa9\x00"),
            Err(MeshError::BadDataType)
        );
        assert_eq!(
            RootMessage::parse(b"\x00\x01[D]\x01T\x00P\x00"),
            Err(MeshError::BadDataType)
        );
        assert_eq!(
            try_encode_data_payload(&[d("TMPX", &[])]),
            Err(MeshError::BadDataType)
        );
        assert_eq!(
            try_encode_data_payload(&[d("Té", &[])]),
            Err(MeshError::BadDataType)
        );
        // `encode` cuts or pads instead.
        assert_eq!(encode_data_payload(&[d("TMPX", &[1])]), b"\x01TMP\x01\x01");
        assert_eq!(encode_data_payload(&[d("AB", &[])]), b"\x01AB \x00");
    }

    #[test]
    fn message_truncations() {
        let t = |what| Err(MeshError::Truncated { what });
        assert_eq!(RootMessage::parse(b"\x00\x01[M]"), t("message length"));
        assert_eq!(RootMessage::parse(b"\x00\x01[M]\x05hell"), t("message"));
        assert_eq!(
            RootMessage::parse(b"\x00\x01[M]\x04hello"),
            Err(MeshError::TrailingBytes(1))
        );
    }

    #[test]
    fn network_info_truncations() {
        let t = |what| Err(MeshError::Truncated { what });
        assert_eq!(RootMessage::parse(b"\x00\x01[N]"), t("node count"));
        assert_eq!(
            RootMessage::parse(b"\x00\x01[N]\x02\x00\x02\x01"),
            t("node list")
        );
        assert_eq!(
            RootMessage::parse(b"\x00\x01[N]\x01\x00\x02\x01"),
            Err(MeshError::TrailingBytes(1))
        );
    }

    #[test]
    fn result_errors() {
        let t = |what| Err(MeshError::Truncated { what });
        assert_eq!(RootMessage::parse(b"\x00\x01[R]"), t("result"));
        assert_eq!(RootMessage::parse(b"\x00\x01[R]F"), t("error length"));
        assert_eq!(RootMessage::parse(b"\x00\x01[R]F\x03ab"), t("error text"));
        assert_eq!(
            RootMessage::parse(b"\x00\x01[R]X"),
            Err(MeshError::BadResult)
        );
        assert_eq!(
            RootMessage::parse(b"\x00\x01[R]SS"),
            Err(MeshError::TrailingBytes(1))
        );
    }

    #[test]
    fn encode_cuts_what_does_not_fit_and_try_encode_refuses() {
        let msg = RootMessage::Message {
            node: 1,
            text: vec![b'a'; 300],
        };
        let bytes = msg.encode();
        assert_eq!(bytes.len(), 5 + 1 + 255);
        assert_eq!(bytes[5], 255);
        assert!(RootMessage::parse(&bytes).is_ok());
        assert_eq!(msg.try_encode(), Err(MeshError::MessageTooLong(300)));

        let msg = RootMessage::NetworkInfo {
            node: 1,
            nodes: (0..300).collect(),
        };
        let RootMessage::NetworkInfo { nodes, .. } = RootMessage::parse(&msg.encode()).unwrap()
        else {
            panic!("not [N]")
        };
        assert_eq!(nodes, (0..255).collect::<Vec<u16>>());
        assert_eq!(msg.try_encode(), Err(MeshError::TooManyItems(300)));

        let entries: Vec<DataEntry> = (0..256).map(|_| d("HUM", &[1])).collect();
        assert_eq!(
            parse_data_payload(&encode_data_payload(&entries))
                .unwrap()
                .len(),
            255
        );
        assert_eq!(
            try_encode_data_payload(&entries),
            Err(MeshError::TooManyItems(256))
        );
        assert_eq!(
            try_encode_data_payload(&[d("BIG", &[0; 256])]),
            Err(MeshError::MessageTooLong(256))
        );
        // PROTOCOL 2.2: counts are one byte, so 255 items is the most that
        // fits, and fits whole.
        let msg = RootMessage::NetworkInfo {
            node: 1,
            nodes: (0..255).collect(),
        };
        assert_eq!(msg.try_encode(), Ok(msg.encode()));
        let entries: Vec<DataEntry> = (0..255).map(|_| d("HUM", &[1])).collect();
        assert_eq!(
            try_encode_data_payload(&entries),
            Ok(encode_data_payload(&entries))
        );
    }

    // The HTTP API, `switchyard ctl` and MQTT topics name nodes in hex or
    // decimal; a sign is not part of an address, though the std parsers
    // would take one.
    #[test]
    fn node_addresses_as_people_write_them() {
        assert_eq!(parse_node_addr("0x0102"), Some(0x0102));
        assert_eq!(parse_node_addr("0X1"), Some(1));
        assert_eq!(parse_node_addr(" 258 "), Some(258));
        for bad in [
            "0x+1", "+1", "0x", "", "65536", "0x10000", "-1", "0x-1", "x1",
        ] {
            assert_eq!(parse_node_addr(bad), None, "{bad:?}");
        }
    }

    // --- switch -> root ----------------------------------------------------

    #[test]
    fn command_literals() {
        let cases: Vec<(Command, &[u8])> = vec![
            (
                Command::Send {
                    dst: 0x0102,
                    message: b"hi".to_vec(),
                },
                b"SEND-\x01\x02\x02hi",
            ),
            (
                Command::SendTracked {
                    dst: 0xfffe,
                    message: vec![0xff],
                },
                b"SENDI\xff\xfe\x01\xff",
            ),
            (
                Command::Broadcast {
                    message: b"all".to_vec(),
                },
                b"BCAST\x00\x00\x03all",
            ),
            (
                Command::Send {
                    dst: 7,
                    message: vec![],
                },
                b"SEND-\x00\x07\x00",
            ),
            (Command::Restart, b"RST-R"),
            (Command::Clean, b"CLEAN"),
            (Command::NetInfo, b"NINFO"),
        ];
        for (cmd, bytes) in cases {
            assert_eq!(cmd.encode().unwrap(), bytes, "{cmd:?}");
            assert_eq!(Command::parse(bytes), Ok(cmd.clone()));
            assert_eq!(&bytes[..5], cmd.name().as_bytes());
        }
    }

    #[test]
    fn command_message_255_ok_256_refused() {
        let cmd = Command::Send {
            dst: 1,
            message: vec![0xAB; 255],
        };
        let bytes = cmd.encode().unwrap();
        assert_eq!(bytes.len(), 5 + 2 + 1 + 255);
        assert_eq!(bytes[7], 255);
        assert_eq!(Command::parse(&bytes), Ok(cmd));

        for cmd in [
            Command::Send {
                dst: 1,
                message: vec![0; 256],
            },
            Command::SendTracked {
                dst: 1,
                message: vec![0; 256],
            },
            Command::Broadcast {
                message: vec![0; 256],
            },
        ] {
            assert_eq!(cmd.encode(), Err(MeshError::MessageTooLong(256)));
        }
    }

    #[test]
    fn command_parse_errors() {
        let t = |what| Err(MeshError::Truncated { what });
        assert_eq!(Command::parse(b"SEND"), Err(MeshError::TooShort));
        assert_eq!(
            Command::parse(b"HELLO"),
            Err(MeshError::UnknownCommand("HELLO".into()))
        );
        assert_eq!(Command::parse(b"SEND-\x00"), t("destination"));
        assert_eq!(Command::parse(b"SEND-\x00\x01"), t("message length"));
        assert_eq!(Command::parse(b"SENDI\x00\x01\x03ab"), t("message"));
        assert_eq!(
            Command::parse(b"SEND-\x00\x01\x01ab"),
            Err(MeshError::TrailingBytes(1))
        );
        assert_eq!(Command::parse(b"RST-Rx"), Err(MeshError::TrailingBytes(1)));
        assert_eq!(
            Command::parse(b"BCAST\x00\x05\x00"),
            Err(MeshError::BadBroadcastDst(5))
        );
    }

    #[test]
    fn error_kinds_are_snake_case() {
        let all = [
            MeshError::TooShort,
            MeshError::UnknownMsgType("x".into()),
            MeshError::Truncated { what: "x" },
            MeshError::TrailingBytes(1),
            MeshError::BadDataType,
            MeshError::UnknownCommand("x".into()),
            MeshError::MessageTooLong(1),
            MeshError::TooManyItems(1),
            MeshError::BadResult,
            MeshError::BadBroadcastDst(1),
        ];
        for e in all {
            let k = e.kind();
            assert!(
                k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{k}"
            );
            assert!(!e.to_string().is_empty());
        }
    }

    fn arb_entry() -> impl Strategy<Value = DataEntry> {
        (
            prop::collection::vec(0x20u8..=0x7E, 3),
            prop::collection::vec(any::<u8>(), 0..=255),
        )
            .prop_map(|(name, raw)| DataEntry {
                data_type: String::from_utf8(name).unwrap(),
                raw,
            })
    }

    fn arb_root() -> impl Strategy<Value = RootMessage> {
        prop_oneof![
            (any::<u16>(), prop::collection::vec(arb_entry(), 0..8))
                .prop_map(|(node, entries)| RootMessage::Data { node, entries }),
            (any::<u16>(), prop::collection::vec(any::<u8>(), 0..=255))
                .prop_map(|(node, text)| RootMessage::Message { node, text }),
            (any::<u16>(), prop::collection::vec(any::<u16>(), 0..=255))
                .prop_map(|(node, nodes)| RootMessage::NetworkInfo { node, nodes }),
            any::<u16>().prop_map(|node| RootMessage::Result {
                node,
                outcome: Ok(())
            }),
            (any::<u16>(), "[ -~]{0,255}").prop_map(|(node, text)| RootMessage::Result {
                node,
                outcome: Err(text)
            }),
        ]
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let msg = || prop::collection::vec(any::<u8>(), 0..=255);
        prop_oneof![
            (any::<u16>(), msg()).prop_map(|(dst, message)| Command::Send { dst, message }),
            (any::<u16>(), msg()).prop_map(|(dst, message)| Command::SendTracked { dst, message }),
            msg().prop_map(|message| Command::Broadcast { message }),
            Just(Command::Restart),
            Just(Command::Clean),
            Just(Command::NetInfo),
        ]
    }

    proptest! {
        #[test]
        fn root_round_trip(msg in arb_root()) {
            let bytes = msg.try_encode().unwrap();
            prop_assert_eq!(&bytes, &msg.encode());
            prop_assert_eq!(RootMessage::parse(&bytes), Ok(msg));
        }

        #[test]
        fn command_round_trip(cmd in arb_command()) {
            let bytes = cmd.encode().unwrap();
            prop_assert_eq!(Command::parse(&bytes), Ok(cmd));
        }

        /// Any prefix of a valid frame, or the frame with a byte added, is
        /// rejected, never mis-parsed and never a panic.
        #[test]
        fn cut_or_extended_frames_are_rejected(msg in arb_root(), extra in any::<u8>()) {
            let bytes = msg.encode();
            for n in 0..bytes.len() {
                prop_assert!(RootMessage::parse(&bytes[..n]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(extra);
            prop_assert_eq!(RootMessage::parse(&longer), Err(MeshError::TrailingBytes(1)));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = RootMessage::parse(&bytes);
            let _ = Command::parse(&bytes);
        }
    }
}
