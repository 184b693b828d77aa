//! The client socket's messages (PROTOCOL 3), framed like the mesh link
//! (2.1) so binary payloads are safe.
//!
//! Requests are a 5-byte command and its arguments; each request gets one
//! answer: `S` and a payload, or `F` | len (1) | reason. A listening
//! connection (after `LISTN`) also receives pushes: `M` | src (2) | message,
//! `D` | src (2) | the `[D]` payload, and `R` | node (2) | `S` or `F` | len |
//! text for the root's result of a tracked send.
//!
//! Both sides live here: the switch parses requests and encodes answers;
//! `switchyard ctl` (and tests) encode requests and parse answers.

use super::mesh::{NodeAddr, MAX_MESSAGE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// `SEND-`, `SENDI`, `BCAST`: `dst` (2) | message.
    Send {
        dst: NodeAddr,
        message: Vec<u8>,
    },
    SendTracked {
        dst: NodeAddr,
        message: Vec<u8>,
    },
    Broadcast {
        message: Vec<u8>,
    },
    Restart,
    Clean,
    NodeStatus,
    NetInfo,
    /// `[GET]`: data type (3) | node (2; 0 = every node).
    Get {
        data_type: String,
        node: NodeAddr,
    },
    ActiveCount,
    WriteLog {
        text: String,
    },
    WriteRobots {
        json: Vec<u8>,
    },
    Listen,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientApiError {
    #[error("empty request")]
    Empty,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{command}: arguments too short (need {need} bytes, got {got})")]
    Truncated {
        command: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{0}: takes no arguments")]
    UnexpectedArguments(&'static str),
    #[error("message too long ({0} bytes, at most 255)")]
    MessageTooLong(usize),
    #[error("data type must be 3 ASCII characters")]
    BadDataType,
    #[error("text is not UTF-8")]
    NotUtf8,
    #[error("malformed answer")]
    BadAnswer,
}

impl ClientApiError {
    pub fn kind(&self) -> &'static str {
        match self {
            ClientApiError::Empty => "empty",
            ClientApiError::UnknownCommand(_) => "unknown_command",
            ClientApiError::Truncated { .. } => "truncated",
            ClientApiError::UnexpectedArguments(_) => "unexpected_arguments",
            ClientApiError::MessageTooLong(_) => "message_too_long",
            ClientApiError::BadDataType => "bad_data_type",
            ClientApiError::NotUtf8 => "not_utf8",
            ClientApiError::BadAnswer => "bad_answer",
        }
    }
}

fn addr(b: &[u8]) -> NodeAddr {
    u16::from_be_bytes([b[0], b[1]])
}

fn dst_and_message(
    command: &'static str,
    args: &[u8],
) -> Result<(NodeAddr, Vec<u8>), ClientApiError> {
    if args.len() < 2 {
        return Err(ClientApiError::Truncated {
            command,
            need: 2,
            got: args.len(),
        });
    }
    let message = args[2..].to_vec();
    if message.len() > MAX_MESSAGE {
        return Err(ClientApiError::MessageTooLong(message.len()));
    }
    Ok((addr(args), message))
}

fn no_args(
    command: &'static str,
    args: &[u8],
    r: ClientRequest,
) -> Result<ClientRequest, ClientApiError> {
    if args.is_empty() {
        Ok(r)
    } else {
        Err(ClientApiError::UnexpectedArguments(command))
    }
}

impl ClientRequest {
    pub fn parse(frame: &[u8]) -> Result<ClientRequest, ClientApiError> {
        if frame.is_empty() {
            return Err(ClientApiError::Empty);
        }
        if frame.len() < 5 {
            return Err(ClientApiError::UnknownCommand(
                String::from_utf8_lossy(frame).into_owned(),
            ));
        }
        let (cmd, args) = frame.split_at(5);
        match cmd {
            b"SEND-" => {
                let (dst, message) = dst_and_message("SEND-", args)?;
                Ok(ClientRequest::Send { dst, message })
            }
            b"SENDI" => {
                let (dst, message) = dst_and_message("SENDI", args)?;
                Ok(ClientRequest::SendTracked { dst, message })
            }
            b"BCAST" => {
                let (_, message) = dst_and_message("BCAST", args)?;
                Ok(ClientRequest::Broadcast { message })
            }
            b"RST-R" => no_args("RST-R", args, ClientRequest::Restart),
            b"CLEAN" => no_args("CLEAN", args, ClientRequest::Clean),
            b"NSTAT" => no_args("NSTAT", args, ClientRequest::NodeStatus),
            b"NINFO" => no_args("NINFO", args, ClientRequest::NetInfo),
            b"ACT-C" => no_args("ACT-C", args, ClientRequest::ActiveCount),
            b"LISTN" => no_args("LISTN", args, ClientRequest::Listen),
            b"[GET]" => {
                if args.len() < 5 {
                    return Err(ClientApiError::Truncated {
                        command: "[GET]",
                        need: 5,
                        got: args.len(),
                    });
                }
                if args.len() > 5 {
                    return Err(ClientApiError::UnexpectedArguments("[GET]"));
                }
                let t = &args[..3];
                if !t.iter().all(|b| b.is_ascii_graphic()) {
                    return Err(ClientApiError::BadDataType);
                }
                Ok(ClientRequest::Get {
                    data_type: String::from_utf8_lossy(t).into_owned(),
                    node: addr(&args[3..5]),
                })
            }
            b"W-LOG" => Ok(ClientRequest::WriteLog {
                text: String::from_utf8(args.to_vec()).map_err(|_| ClientApiError::NotUtf8)?,
            }),
            b"W-RBT" => Ok(ClientRequest::WriteRobots {
                json: args.to_vec(),
            }),
            other => Err(ClientApiError::UnknownCommand(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let with = |cmd: &[u8], rest: &[u8]| {
            let mut v = cmd.to_vec();
            v.extend_from_slice(rest);
            v
        };
        let dm = |dst: NodeAddr, m: &[u8]| {
            let mut v = dst.to_be_bytes().to_vec();
            v.extend_from_slice(m);
            v
        };
        match self {
            ClientRequest::Send { dst, message } => with(b"SEND-", &dm(*dst, message)),
            ClientRequest::SendTracked { dst, message } => with(b"SENDI", &dm(*dst, message)),
            ClientRequest::Broadcast { message } => with(b"BCAST", &dm(0, message)),
            ClientRequest::Restart => b"RST-R".to_vec(),
            ClientRequest::Clean => b"CLEAN".to_vec(),
            ClientRequest::NodeStatus => b"NSTAT".to_vec(),
            ClientRequest::NetInfo => b"NINFO".to_vec(),
            ClientRequest::ActiveCount => b"ACT-C".to_vec(),
            ClientRequest::Listen => b"LISTN".to_vec(),
            ClientRequest::Get { data_type, node } => {
                let mut v = b"[GET]".to_vec();
                v.extend_from_slice(data_type.as_bytes());
                v.extend_from_slice(&node.to_be_bytes());
                v
            }
            ClientRequest::WriteLog { text } => with(b"W-LOG", text.as_bytes()),
            ClientRequest::WriteRobots { json } => with(b"W-RBT", json),
        }
    }
}

/// `S` | payload.
pub fn ok(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 1);
    v.push(b'S');
    v.extend_from_slice(payload);
    v
}

/// `F` | len | reason (cut to 255 bytes at a character boundary).
pub fn fail(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(255);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let r = &reason.as_bytes()[..end];
    let mut v = Vec::with_capacity(r.len() + 2);
    v.push(b'F');
    v.push(r.len() as u8);
    v.extend_from_slice(r);
    v
}

/// The `[GET]` answer: data type | len | count | (node | data)...; nodes
/// whose data is not `len` bytes long are left out (a type's length is
/// fixed; an unknown type takes the first node's length).
pub fn get_answer(data_type: &str, values: &[(NodeAddr, Vec<u8>)]) -> Option<Vec<u8>> {
    let len = values.first()?.1.len();
    if len > 255 || data_type.len() != 3 {
        return None;
    }
    let same: Vec<&(NodeAddr, Vec<u8>)> = values
        .iter()
        .filter(|(_, d)| d.len() == len)
        .take(255)
        .collect();
    let mut v = vec![b'S'];
    v.extend_from_slice(data_type.as_bytes());
    v.push(len as u8);
    v.push(same.len() as u8);
    for (n, d) in same {
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(d);
    }
    Some(v)
}

/// A parsed `[GET]` answer: (data type, [(node, data)]).
/// A `[GET]` answer's data type and (node, data) pairs.
pub type GetAnswer = (String, Vec<(NodeAddr, Vec<u8>)>);

pub fn parse_get_answer(payload: &[u8]) -> Result<GetAnswer, ClientApiError> {
    if payload.len() < 5 {
        return Err(ClientApiError::BadAnswer);
    }
    let t = String::from_utf8_lossy(&payload[..3]).into_owned();
    let len = payload[3] as usize;
    let count = payload[4] as usize;
    let body = &payload[5..];
    if body.len() != count * (2 + len) {
        return Err(ClientApiError::BadAnswer);
    }
    let items = body
        .chunks(2 + len)
        .map(|c| (addr(c), c[2..].to_vec()))
        .collect();
    Ok((t, items))
}

/// What the switch sends a client: an answer or, to a listener, a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Ok(Vec<u8>),
    Fail(String),
    PushMessage {
        src: NodeAddr,
        message: Vec<u8>,
    },
    PushData {
        src: NodeAddr,
        payload: Vec<u8>,
    },
    PushResult {
        node: NodeAddr,
        outcome: Result<(), String>,
    },
}

impl ClientMessage {
    pub fn parse(frame: &[u8]) -> Result<ClientMessage, ClientApiError> {
        let (&tag, rest) = frame.split_first().ok_or(ClientApiError::BadAnswer)?;
        let fail_text = |r: &[u8]| -> Result<String, ClientApiError> {
            let (&len, text) = r.split_first().ok_or(ClientApiError::BadAnswer)?;
            if text.len() != len as usize {
                return Err(ClientApiError::BadAnswer);
            }
            Ok(String::from_utf8_lossy(text).into_owned())
        };
        match tag {
            b'S' => Ok(ClientMessage::Ok(rest.to_vec())),
            b'F' => Ok(ClientMessage::Fail(fail_text(rest)?)),
            b'M' | b'D' | b'R' if rest.len() >= 2 => {
                let src = addr(rest);
                let body = &rest[2..];
                Ok(match tag {
                    b'M' => ClientMessage::PushMessage {
                        src,
                        message: body.to_vec(),
                    },
                    b'D' => ClientMessage::PushData {
                        src,
                        payload: body.to_vec(),
                    },
                    _ => ClientMessage::PushResult {
                        node: src,
                        outcome: match body.split_first() {
                            Some((b'S', [])) => Ok(()),
                            Some((b'F', r)) => Err(fail_text(r)?),
                            _ => return Err(ClientApiError::BadAnswer),
                        },
                    },
                })
            }
            _ => Err(ClientApiError::BadAnswer),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let push = |tag: u8, src: NodeAddr, body: &[u8]| {
            let mut v = Vec::with_capacity(body.len() + 3);
            v.push(tag);
            v.extend_from_slice(&src.to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        match self {
            ClientMessage::Ok(p) => ok(p),
            ClientMessage::Fail(r) => fail(r),
            ClientMessage::PushMessage { src, message } => push(b'M', *src, message),
            ClientMessage::PushData { src, payload } => push(b'D', *src, payload),
            ClientMessage::PushResult { node, outcome } => match outcome {
                Ok(()) => push(b'R', *node, b"S"),
                Err(e) => push(b'R', *node, &fail(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_literal_bytes() {
        assert_eq!(
            ClientRequest::parse(b"SEND-\x00\x03hi"),
            Ok(ClientRequest::Send {
                dst: 3,
                message: b"hi".to_vec()
            })
        );
        assert_eq!(
            ClientRequest::parse(b"SENDI\x01\x00"),
            Ok(ClientRequest::SendTracked {
                dst: 256,
                message: vec![]
            })
        );
        assert_eq!(
            ClientRequest::parse(b"BCAST\x00\x00all"),
            Ok(ClientRequest::Broadcast {
                message: b"all".to_vec()
            })
        );
        assert_eq!(
            ClientRequest::parse(b"[GET]TMP\x00\x00"),
            Ok(ClientRequest::Get {
                data_type: "TMP".into(),
                node: 0
            })
        );
        assert_eq!(
            ClientRequest::parse(b"NSTAT"),
            Ok(ClientRequest::NodeStatus)
        );
        assert_eq!(ClientRequest::parse(b"LISTN"), Ok(ClientRequest::Listen));
        assert_eq!(
            ClientRequest::parse(b"W-LOGhello"),
            Ok(ClientRequest::WriteLog {
                text: "hello".into()
            })
        );
    }

    #[test]
    fn bad_requests_have_reasons() {
        assert_eq!(ClientRequest::parse(b""), Err(ClientApiError::Empty));
        assert!(matches!(
            ClientRequest::parse(b"HELLO"),
            Err(ClientApiError::UnknownCommand(_))
        ));
        assert!(matches!(
            ClientRequest::parse(b"SEN"),
            Err(ClientApiError::UnknownCommand(_))
        ));
        assert!(matches!(
            ClientRequest::parse(b"SEND-\x00"),
            Err(ClientApiError::Truncated { .. })
        ));
        assert!(matches!(
            ClientRequest::parse(b"[GET]TM"),
            Err(ClientApiError::Truncated { .. })
        ));
        assert_eq!(
            ClientRequest::parse(b"NSTATx"),
            Err(ClientApiError::UnexpectedArguments("NSTAT"))
        );
        let mut long = b"SEND-\x00\x01".to_vec();
        long.extend([b'a'; 256]);
        assert_eq!(
            ClientRequest::parse(&long),
            Err(ClientApiError::MessageTooLong(256))
        );
        assert_eq!(
            ClientRequest::parse(b"W-LOG\xff"),
            Err(ClientApiError::NotUtf8)
        );
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            ClientRequest::Send {
                dst: 9,
                message: vec![0xff, 0xfe, 0xfa],
            },
            ClientRequest::Broadcast {
                message: b"x".to_vec(),
            },
            ClientRequest::Get {
                data_type: "GPS".into(),
                node: 7,
            },
            ClientRequest::WriteRobots {
                json: b"[]".to_vec(),
            },
            ClientRequest::ActiveCount,
        ] {
            assert_eq!(ClientRequest::parse(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn answers_encode_as_the_protocol_says() {
        assert_eq!(ok(b"\x00\x06"), b"S\x00\x06");
        assert_eq!(fail("mesh link down"), b"F\x0emesh link down");
        assert_eq!(fail(&"é".repeat(200)).len(), 2 + 254);
        assert_eq!(
            get_answer("TMP", &[(1, vec![0, 1]), (2, vec![0, 2]), (3, vec![9])]).unwrap(),
            b"STMP\x02\x02\x00\x01\x00\x01\x00\x02\x00\x02"
        );
        assert_eq!(get_answer("TMP", &[]), None);
        let (t, items) = parse_get_answer(&b"STMP\x02\x01\x00\x01\x00\x01"[1..]).unwrap();
        assert_eq!((t.as_str(), items), ("TMP", vec![(1, vec![0, 1])]));
    }

    #[test]
    fn client_messages_round_trip() {
        for m in [
            ClientMessage::Ok(b"{}".to_vec()),
            ClientMessage::Fail("no".into()),
            ClientMessage::PushMessage {
                src: 3,
                message: b"hi".to_vec(),
            },
            ClientMessage::PushData {
                src: 4,
                payload: vec![1, b'H', b'U', b'M', 1, 5],
            },
            ClientMessage::PushResult {
                node: 5,
                outcome: Ok(()),
            },
            ClientMessage::PushResult {
                node: 5,
                outcome: Err("nack".into()),
            },
        ] {
            assert_eq!(ClientMessage::parse(&m.encode()), Ok(m));
        }
        assert_eq!(
            ClientMessage::parse(b"F\x05ab"),
            Err(ClientApiError::BadAnswer)
        );
    }

    use proptest::prelude::*;

    proptest! {
        // Any frame a client (or a switch, for the answers) sends: a value
        // or a typed error, never a panic; a parsed request encodes to a
        // frame that parses to it again.
        #[test]
        fn any_frame_parses_or_fails_cleanly(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = ClientRequest::parse(&frame) {
                prop_assert_eq!(ClientRequest::parse(&r.encode()), Ok(r));
            }
            let _ = ClientMessage::parse(&frame);
            let _ = parse_get_answer(&frame);
        }
    }
}
