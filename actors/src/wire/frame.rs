//! The byte-stuffing frame codec of the mesh link and the client socket
//! (PROTOCOL 2.1; the TCP client socket of PROTOCOL 3 reuses it as is).
//!
//! On the wire a frame is `0xFF` (START), the content with every byte in
//! `0xFA..=0xFF` sent as `0xFA, byte ^ 0xFA`, then `0xFE` (END). [`FrameCodec`]
//! is a `tokio_util::codec` [`Decoder`]/[`Encoder`] so the UART reader and
//! the TCP connections can wrap it in `FramedRead`/`FramedWrite`.
//!
//! # Why bad frames are items, not errors
//!
//! A serial line carries noise, a root node reboots mid-frame, a client
//! writes garbage: PROTOCOL 2.1 says a bad frame never stops the link, and
//! every dropped byte or frame is counted. A `Decoder` that returned `Err`
//! would end the `FramedRead` stream, so the decoder never fails on input:
//! each problem comes out as a [`FrameItem::Error`] carrying a
//! [`FrameError`] (whose [`FrameError::kind`] is the metric label), in stream
//! order between the good frames, and decoding simply carries on.
//!
//! # Decoder rules
//!
//! - Bytes outside a frame are discarded; each run of them is reported as
//!   one [`FrameError::OutsideFrame`] when the run ends (at the next START, or
//!   at end of stream). A run is never held as bytes, only counted; a run
//!   longer than the maximum frame length is reported every `max_len` bytes so
//!   a babbling line is visible without waiting for a START. Because a run is
//!   reported where it ends, not where a read happens to stop, the items do
//!   not depend on how the bytes were chunked by the transport.
//!   [`FrameCodec::take_outside`] lets a caller report a pending run early
//!   (for example when the line goes idle).
//! - START inside a frame drops the partial frame ([`FrameError::Restarted`])
//!   and starts a new one.
//! - ESC then START or END is [`FrameError::BadEscape`]: the frame is dropped
//!   and the decoder resyncs on that byte (START opens a new frame, END closes
//!   the dropped one). ESC then any other byte `b` decodes to `b ^ 0xFA`.
//! - Content longer than `max_len` is [`FrameError::TooLong`], reported as
//!   soon as the limit is passed; everything up to the next END is skipped (a
//!   START resyncs at once). The partial frame held by the decoder is
//!   therefore never more than `max_len` bytes.
//! - The reserved bytes `0xFB..=0xFD` are never sent raw by the encoder; if
//!   one arrives raw inside a frame the decoder keeps it as content (it is
//!   unambiguous, and rejecting it would buy nothing).
//! - `FF FE` is a frame with empty content; the layer above rejects it.
//! - At end of stream ([`Decoder::decode_eof`]) a pending outside run is
//!   reported, and a partial frame is dropped and reported as
//!   [`FrameError::Truncated`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Starts a frame.
pub const START: u8 = 0xFF;
/// Ends a frame.
pub const END: u8 = 0xFE;
/// Escapes the next byte (which is sent XOR `0xFA`).
pub const ESC: u8 = 0xFA;
/// Default maximum decoded content length (PROTOCOL 2.1).
pub const DEFAULT_MAX_FRAME: usize = 1024;

/// Something the decoder dropped. Each is one counted event; none of them
/// stops the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Bytes seen outside any frame, discarded (one item per run of such
    /// bytes; a run longer than the frame maximum is reported in pieces of
    /// `max_len` bytes).
    OutsideFrame { bytes: usize },
    /// 0xFF arrived inside a frame: the partial frame (`len` bytes decoded so
    /// far) is dropped, a new frame starts.
    Restarted { len: usize },
    /// ESC followed by 0xFE or 0xFF: frame dropped, resync on that byte (0xFF
    /// starts a new frame; 0xFE just ends the dropped one).
    BadEscape,
    /// Decoded content longer than the maximum: dropped, the rest up to the
    /// next END is skipped (a START also resyncs).
    TooLong { max: usize },
    /// The stream ended inside a frame: the partial frame (`len` bytes
    /// decoded so far) is dropped. Only produced by `decode_eof`.
    Truncated { len: usize },
}

impl FrameError {
    /// Snake-case label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::OutsideFrame { .. } => "outside_frame",
            FrameError::Restarted { .. } => "restarted",
            FrameError::BadEscape => "bad_escape",
            FrameError::TooLong { .. } => "too_long",
            FrameError::Truncated { .. } => "truncated",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::OutsideFrame { bytes } => {
                write!(f, "{bytes} byte(s) outside any frame discarded")
            }
            FrameError::Restarted { len } => {
                write!(
                    f,
                    "frame start inside a frame: partial frame of {len} byte(s) dropped"
                )
            }
            FrameError::BadEscape => write!(
                f,
                "escape byte followed by a frame delimiter: frame dropped"
            ),
            FrameError::TooLong { max } => write!(f, "frame longer than {max} bytes dropped"),
            FrameError::Truncated { len } => {
                write!(
                    f,
                    "stream ended inside a frame: partial frame of {len} byte(s) dropped"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// What the decoder yields: a frame's decoded content, or a counted error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameItem {
    Frame(Bytes),
    Error(FrameError),
}

/// Where the decoder is between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames; `outside` counts the current run of discarded bytes.
    Outside,
    /// Inside a frame, content so far in `buf`.
    InFrame,
    /// Inside a frame, the previous byte was ESC.
    Escaped,
    /// The frame passed `max_len`; skipping to the next END or START.
    Skipping,
}

/// The 0xFF/0xFE/0xFA codec. Decoder state persists across `decode` calls,
/// so bytes may arrive in any chunks.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_len: usize,
    state: State,
    /// Decoded content of the current frame (never more than `max_len`).
    buf: BytesMut,
    /// Length of the current run of bytes outside any frame.
    outside: usize,
}

impl FrameCodec {
    /// A codec whose decoder drops frames with more than `max_len` bytes of
    /// content. (The encoder does not enforce it: the peer's limit is the
    /// peer's business.) A `max_len` of 0 is taken as 1.
    pub fn new(max_len: usize) -> Self {
        let max_len = max_len.max(1);
        FrameCodec {
            max_len,
            state: State::Outside,
            buf: BytesMut::new(),
            outside: 0,
        }
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Report the pending run of bytes outside any frame now, if there is
    /// one, instead of waiting for the next START (e.g. when the line has
    /// gone quiet). Items stay consistent: the run is counted once.
    pub fn take_outside(&mut self) -> Option<FrameError> {
        if self.outside == 0 {
            None
        } else {
            let bytes = std::mem::take(&mut self.outside);
            Some(FrameError::OutsideFrame { bytes })
        }
    }

    /// Whether the decoder is between frames (nothing partial held).
    pub fn is_idle(&self) -> bool {
        self.state == State::Outside && self.outside == 0
    }

    fn start_frame(&mut self) {
        self.buf.clear();
        // Room for a whole frame up front. Frames are split off this buffer,
        // so one allocation serves several short frames in a row.
        if self.buf.capacity() < self.max_len {
            self.buf.reserve(self.max_len.max(4096));
        }
        self.state = State::InFrame;
    }

    /// Push one decoded content byte; `Some(TooLong)` if that passes the max.
    fn push(&mut self, b: u8) -> Option<FrameItem> {
        if self.buf.len() >= self.max_len {
            self.buf.clear();
            self.state = State::Skipping;
            return Some(FrameItem::Error(FrameError::TooLong { max: self.max_len }));
        }
        self.buf.put_u8(b);
        self.state = State::InFrame;
        None
    }

    /// Run the state machine over `src` until one item is complete. Returns
    /// the number of bytes consumed and the item, if any. All of `src` is
    /// consumed when no item completes.
    fn step(&mut self, src: &[u8]) -> (usize, Option<FrameItem>) {
        let mut i = 0;
        while i < src.len() {
            match self.state {
                State::Outside => {
                    // Count the run of garbage up to the next START.
                    let room = self.max_len - self.outside;
                    let rest = &src[i..];
                    let limit = rest.len().min(room);
                    match rest[..limit].iter().position(|&b| b == START) {
                        Some(p) => {
                            self.outside += p;
                            i += p + 1;
                            self.start_frame();
                            if let Some(e) = self.take_outside() {
                                return (i, Some(FrameItem::Error(e)));
                            }
                        }
                        None => {
                            self.outside += limit;
                            i += limit;
                            if self.outside >= self.max_len {
                                let e = self.take_outside();
                                return (i, e.map(FrameItem::Error));
                            }
                        }
                    }
                }
                State::InFrame => {
                    // Copy the run of plain content bytes in one go.
                    let rest = &src[i..];
                    let run = rest.iter().position(|&b| b >= ESC).unwrap_or(rest.len());
                    let room = self.max_len - self.buf.len();
                    if run > room {
                        i += room + 1;
                        self.buf.clear();
                        self.state = State::Skipping;
                        return (
                            i,
                            Some(FrameItem::Error(FrameError::TooLong { max: self.max_len })),
                        );
                    }
                    self.buf.extend_from_slice(&rest[..run]);
                    i += run;
                    if i == src.len() {
                        break;
                    }
                    let b = src[i];
                    i += 1;
                    match b {
                        END => {
                            self.state = State::Outside;
                            let content = self.buf.split().freeze();
                            return (i, Some(FrameItem::Frame(content)));
                        }
                        START => {
                            let len = self.buf.len();
                            self.start_frame();
                            return (i, Some(FrameItem::Error(FrameError::Restarted { len })));
                        }
                        ESC => self.state = State::Escaped,
                        // Reserved 0xFB..=0xFD sent raw: unambiguous, kept.
                        other => {
                            if let Some(item) = self.push(other) {
                                return (i, Some(item));
                            }
                        }
                    }
                }
                State::Escaped => {
                    let b = src[i];
                    i += 1;
                    match b {
                        START => {
                            self.start_frame();
                            return (i, Some(FrameItem::Error(FrameError::BadEscape)));
                        }
                        END => {
                            self.buf.clear();
                            self.state = State::Outside;
                            return (i, Some(FrameItem::Error(FrameError::BadEscape)));
                        }
                        other => {
                            if let Some(item) = self.push(other ^ ESC) {
                                return (i, Some(item));
                            }
                        }
                    }
                }
                State::Skipping => {
                    let rest = &src[i..];
                    match rest.iter().position(|&b| b == END || b == START) {
                        Some(p) => {
                            i += p + 1;
                            if rest[p] == START {
                                self.start_frame();
                            } else {
                                self.state = State::Outside;
                            }
                        }
                        None => i = src.len(),
                    }
                }
            }
        }
        (i, None)
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = FrameItem;
    type Error = std::io::Error;

    /// Never fails: bad input comes out as `FrameItem::Error`. Consumes
    /// every byte it looks at, so `src` is empty whenever it returns
    /// `Ok(None)`.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<FrameItem>, std::io::Error> {
        let (used, item) = self.step(src);
        src.advance(used);
        Ok(item)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<FrameItem>, std::io::Error> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if let Some(e) = self.take_outside() {
            return Ok(Some(FrameItem::Error(e)));
        }
        let state = std::mem::replace(&mut self.state, State::Outside);
        match state {
            State::InFrame | State::Escaped => {
                let len = self.buf.len();
                self.buf.clear();
                Ok(Some(FrameItem::Error(FrameError::Truncated { len })))
            }
            State::Outside | State::Skipping => Ok(None),
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_frame(item, dst);
        Ok(())
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_frame(&item, dst);
        Ok(())
    }
}

impl Encoder<Vec<u8>> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Vec<u8>, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_frame(&item, dst);
        Ok(())
    }
}

/// Append one frame: START, escaped content, END.
pub fn encode_frame(content: &[u8], dst: &mut BytesMut) {
    let escapes = content.iter().filter(|&&b| b >= ESC).count();
    dst.reserve(content.len() + escapes + 2);
    dst.put_u8(START);
    let mut rest = content;
    while let Some(p) = rest.iter().position(|&b| b >= ESC) {
        dst.extend_from_slice(&rest[..p]);
        dst.put_u8(ESC);
        dst.put_u8(rest[p] ^ ESC);
        rest = &rest[p + 1..];
    }
    dst.extend_from_slice(rest);
    dst.put_u8(END);
}

/// One frame as a fresh vector.
pub fn encode_to_vec(content: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::with_capacity(content.len() + 2);
    encode_frame(content, &mut dst);
    dst.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(b: &[u8]) -> FrameItem {
        FrameItem::Frame(Bytes::copy_from_slice(b))
    }

    fn err(e: FrameError) -> FrameItem {
        FrameItem::Error(e)
    }

    /// Decode everything, all at once, including end of stream.
    fn decode_all(codec: &mut FrameCodec, input: &[u8]) -> Vec<FrameItem> {
        decode_chunked(codec, input, &[input.len()])
    }

    fn decode(input: &[u8]) -> Vec<FrameItem> {
        decode_all(&mut FrameCodec::default(), input)
    }

    /// Decode `input` delivered in the given chunk sizes (cycled).
    fn decode_chunked(codec: &mut FrameCodec, input: &[u8], sizes: &[usize]) -> Vec<FrameItem> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        while pos < input.len() {
            let n = sizes[k % sizes.len()].max(1).min(input.len() - pos);
            k += 1;
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                out.push(item);
            }
            assert!(buf.is_empty(), "decoder returned None with bytes left");
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            out.push(item);
        }
        out
    }

    // --- encoder -----------------------------------------------------------

    #[test]
    fn encode_plain() {
        assert_eq!(encode_to_vec(b"ab"), vec![0xFF, b'a', b'b', 0xFE]);
    }

    #[test]
    fn encode_escapes_each_special_byte() {
        assert_eq!(encode_to_vec(&[0xFF]), vec![0xFF, 0xFA, 0x05, 0xFE]);
        assert_eq!(encode_to_vec(&[0xFE]), vec![0xFF, 0xFA, 0x04, 0xFE]);
        assert_eq!(encode_to_vec(&[0xFA]), vec![0xFF, 0xFA, 0x00, 0xFE]);
        assert_eq!(encode_to_vec(&[0xFB]), vec![0xFF, 0xFA, 0x01, 0xFE]);
        assert_eq!(encode_to_vec(&[0xFC]), vec![0xFF, 0xFA, 0x06, 0xFE]);
        assert_eq!(encode_to_vec(&[0xFD]), vec![0xFF, 0xFA, 0x07, 0xFE]);
        assert_eq!(encode_to_vec(&[0xF9]), vec![0xFF, 0xF9, 0xFE]);
        assert_eq!(
            encode_to_vec(&[1, 0xFF, 2, 0xFA, 0xFE]),
            vec![0xFF, 1, 0xFA, 0x05, 2, 0xFA, 0x00, 0xFA, 0x04, 0xFE]
        );
    }

    #[test]
    fn encode_empty() {
        assert_eq!(encode_to_vec(&[]), vec![0xFF, 0xFE]);
    }

    #[test]
    fn encoder_impls_agree() {
        let content = [0u8, 0xFF, 7, 0xFA];
        let want = encode_to_vec(&content);
        let mut c = FrameCodec::default();
        let mut a = BytesMut::new();
        c.encode(&content[..], &mut a).unwrap();
        c.encode(Bytes::copy_from_slice(&content), &mut a).unwrap();
        c.encode(content.to_vec(), &mut a).unwrap();
        assert_eq!(a.to_vec(), [want.clone(), want.clone(), want].concat());
    }

    // --- decoder: good frames ------------------------------------------------

    #[test]
    fn decode_plain_frame() {
        assert_eq!(decode(&[0xFF, 1, 2, 3, 0xFE]), vec![frame(&[1, 2, 3])]);
    }

    #[test]
    fn decode_each_escape() {
        assert_eq!(decode(&[0xFF, 0xFA, 0x05, 0xFE]), vec![frame(&[0xFF])]);
        assert_eq!(decode(&[0xFF, 0xFA, 0x04, 0xFE]), vec![frame(&[0xFE])]);
        assert_eq!(decode(&[0xFF, 0xFA, 0x00, 0xFE]), vec![frame(&[0xFA])]);
        assert_eq!(decode(&[0xFF, 0xFA, 0x01, 0xFE]), vec![frame(&[0xFB])]);
        // Any other escaped byte is XORed too.
        assert_eq!(
            decode(&[0xFF, 0xFA, 0x41, 0xFE]),
            vec![frame(&[0x41 ^ 0xFA])]
        );
        assert_eq!(decode(&[0xFF, 0xFA, 0xFA, 0xFE]), vec![frame(&[0x00])]);
    }

    #[test]
    fn decode_reserved_raw_bytes_are_content() {
        assert_eq!(
            decode(&[0xFF, 0xFB, 0xFC, 0xFD, 0xFE]),
            vec![frame(&[0xFB, 0xFC, 0xFD])]
        );
    }

    #[test]
    fn decode_empty_frame() {
        assert_eq!(decode(&[0xFF, 0xFE]), vec![frame(&[])]);
    }

    #[test]
    fn decode_back_to_back() {
        assert_eq!(
            decode(&[0xFF, 1, 0xFE, 0xFF, 2, 0xFE, 0xFF, 0xFE]),
            vec![frame(&[1]), frame(&[2]), frame(&[])]
        );
    }

    #[test]
    fn decode_returns_none_for_partial_and_keeps_state() {
        let mut c = FrameCodec::default();
        assert!(c.is_idle());
        let mut buf = BytesMut::from(&[0xFF, 1, 0xFA][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        // Half a frame is held: not idle.
        assert!(!c.is_idle());
        buf.extend_from_slice(&[0x05, 2, 0xFE]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(frame(&[1, 0xFF, 2])));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(c.is_idle());
    }

    // --- decoder: errors ---------------------------------------------------

    #[test]
    fn garbage_before_and_between_frames() {
        assert_eq!(
            decode(&[1, 2, 3, 0xFF, 9, 0xFE, 0xFE, 0xFA, 7, 0xFF, 8, 0xFE]),
            vec![
                err(FrameError::OutsideFrame { bytes: 3 }),
                frame(&[9]),
                err(FrameError::OutsideFrame { bytes: 3 }),
                frame(&[8]),
            ]
        );
    }

    #[test]
    fn trailing_garbage_reported_at_eof() {
        assert_eq!(
            decode(&[0xFF, 9, 0xFE, 1, 2]),
            vec![frame(&[9]), err(FrameError::OutsideFrame { bytes: 2 })]
        );
    }

    #[test]
    fn take_outside_reports_pending_run_once() {
        let mut c = FrameCodec::default();
        let mut buf = BytesMut::from(&[1, 2, 3][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        // A pending run outside any frame is state too, until reported.
        assert!(!c.is_idle());
        assert_eq!(
            c.take_outside(),
            Some(FrameError::OutsideFrame { bytes: 3 })
        );
        assert_eq!(c.take_outside(), None);
        assert!(c.is_idle());
        buf.extend_from_slice(&[4, 0xFF, 5, 0xFE]);
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(err(FrameError::OutsideFrame { bytes: 1 }))
        );
        assert_eq!(c.decode(&mut buf).unwrap(), Some(frame(&[5])));
    }

    #[test]
    fn long_garbage_run_reported_in_max_len_pieces() {
        let mut c = FrameCodec::new(4);
        let input = [0u8; 10];
        let mut buf = BytesMut::from(&input[..]);
        // Reported without waiting for a START, and nothing is buffered.
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(err(FrameError::OutsideFrame { bytes: 4 }))
        );
        assert_eq!(buf.len(), 6);
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(err(FrameError::OutsideFrame { bytes: 4 }))
        );
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert_eq!(
            c.decode_eof(&mut buf).unwrap(),
            Some(err(FrameError::OutsideFrame { bytes: 2 }))
        );
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn start_inside_frame_restarts() {
        assert_eq!(
            decode(&[0xFF, 1, 2, 0xFF, 3, 0xFE]),
            vec![err(FrameError::Restarted { len: 2 }), frame(&[3])]
        );
        // Right after the START: an empty partial frame.
        assert_eq!(
            decode(&[0xFF, 0xFF, 3, 0xFE]),
            vec![err(FrameError::Restarted { len: 0 }), frame(&[3])]
        );
    }

    #[test]
    fn bad_escape_then_start_resyncs_on_new_frame() {
        assert_eq!(
            decode(&[0xFF, 1, 0xFA, 0xFF, 2, 0xFE]),
            vec![err(FrameError::BadEscape), frame(&[2])]
        );
    }

    #[test]
    fn bad_escape_then_end_closes_dropped_frame() {
        // The 0xFE ends the dropped frame: what follows is outside a frame.
        assert_eq!(
            decode(&[0xFF, 1, 0xFA, 0xFE, 5, 0xFF, 2, 0xFE]),
            vec![
                err(FrameError::BadEscape),
                err(FrameError::OutsideFrame { bytes: 1 }),
                frame(&[2])
            ]
        );
        assert_eq!(
            decode(&[0xFF, 0xFA, 0xFE, 0xFF, 2, 0xFE]),
            vec![err(FrameError::BadEscape), frame(&[2])]
        );
    }

    #[test]
    fn too_long_then_good_frame() {
        let mut c = FrameCodec::new(3);
        assert_eq!(
            decode_all(&mut c, &[0xFF, 1, 2, 3, 4, 5, 6, 0xFE, 0xFF, 7, 8, 9, 0xFE]),
            vec![err(FrameError::TooLong { max: 3 }), frame(&[7, 8, 9])]
        );
    }

    #[test]
    fn too_long_counts_decoded_bytes_not_wire_bytes() {
        // Three escaped bytes are six wire bytes but three content bytes.
        let mut c = FrameCodec::new(3);
        assert_eq!(
            decode_all(&mut c, &[0xFF, 0xFA, 0x05, 0xFA, 0x04, 0xFA, 0x00, 0xFE]),
            vec![frame(&[0xFF, 0xFE, 0xFA])]
        );
        let mut c = FrameCodec::new(3);
        assert_eq!(
            decode_all(&mut c, &[0xFF, 1, 2, 3, 0xFA, 0x05, 0xFE, 0xFF, 0xFE]),
            vec![err(FrameError::TooLong { max: 3 }), frame(&[])]
        );
    }

    #[test]
    fn too_long_skip_resyncs_on_start() {
        let mut c = FrameCodec::new(2);
        // The skipped tail has a START: that opens the next frame directly.
        assert_eq!(
            decode_all(&mut c, &[0xFF, 1, 2, 3, 4, 0xFF, 5, 0xFE]),
            vec![err(FrameError::TooLong { max: 2 }), frame(&[5])]
        );
        // Bytes skipped after TooLong are not counted again as outside.
        let mut c = FrameCodec::new(2);
        assert_eq!(
            decode_all(&mut c, &[0xFF, 1, 2, 3, 4, 0xFA, 0xFA, 0xFE, 0xFF, 5, 0xFE]),
            vec![err(FrameError::TooLong { max: 2 }), frame(&[5])]
        );
    }

    #[test]
    fn too_long_is_reported_before_the_end_arrives() {
        let mut c = FrameCodec::new(2);
        let mut buf = BytesMut::from(&[0xFF, 1, 2, 3][..]);
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(err(FrameError::TooLong { max: 2 }))
        );
        assert!(buf.is_empty());
        // A huge tail is consumed without being held.
        buf.extend_from_slice(&[0u8; 10_000]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        buf.extend_from_slice(&[0xFE, 0xFF, 9, 0xFE]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(frame(&[9])));
    }

    #[test]
    fn frame_of_exactly_max_len_passes() {
        let mut c = FrameCodec::new(4);
        assert_eq!(c.max_len(), 4);
        // A limit of 0 would drop every frame but the empty one: it is 1.
        assert_eq!(FrameCodec::new(0).max_len(), 1);
        assert_eq!(
            decode_all(&mut c, &[0xFF, 1, 2, 3, 4, 0xFE]),
            vec![frame(&[1, 2, 3, 4])]
        );
        let content = vec![0xABu8; DEFAULT_MAX_FRAME];
        assert_eq!(decode(&encode_to_vec(&content)), vec![frame(&content)]);
        let content = vec![0xABu8; DEFAULT_MAX_FRAME + 1];
        assert_eq!(
            decode(&encode_to_vec(&content)),
            vec![err(FrameError::TooLong {
                max: DEFAULT_MAX_FRAME
            })]
        );
    }

    #[test]
    fn eof_inside_frame_is_truncated() {
        assert_eq!(
            decode(&[0xFF, 1, 2]),
            vec![err(FrameError::Truncated { len: 2 })]
        );
        assert_eq!(
            decode(&[0xFF, 1, 0xFA]),
            vec![err(FrameError::Truncated { len: 1 })]
        );
        assert_eq!(decode(&[0xFF]), vec![err(FrameError::Truncated { len: 0 })]);
        // Inside a skipped too-long frame: already reported.
        let mut c = FrameCodec::new(1);
        assert_eq!(
            decode_all(&mut c, &[0xFF, 1, 2, 3]),
            vec![err(FrameError::TooLong { max: 1 })]
        );
        // And the codec is reusable afterwards.
        assert_eq!(decode_all(&mut c, &[0xFF, 4, 0xFE]), vec![frame(&[4])]);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            FrameError::OutsideFrame { bytes: 1 }.kind(),
            "outside_frame"
        );
        assert_eq!(FrameError::Restarted { len: 1 }.kind(), "restarted");
        assert_eq!(FrameError::BadEscape.kind(), "bad_escape");
        assert_eq!(FrameError::TooLong { max: 1 }.kind(), "too_long");
        assert_eq!(FrameError::Truncated { len: 1 }.kind(), "truncated");
    }

    // --- chunked arrival ---------------------------------------------------

    /// A stream with every kind of trouble between good frames.
    fn messy_stream() -> (Vec<u8>, Vec<FrameItem>) {
        let mut s = Vec::new();
        let mut want = Vec::new();
        s.extend_from_slice(&[0x00, 0x13, 0xFE]);
        want.push(err(FrameError::OutsideFrame { bytes: 3 }));
        s.extend(encode_to_vec(&[1, 0xFF, 0xFE, 0xFA, 2]));
        want.push(frame(&[1, 0xFF, 0xFE, 0xFA, 2]));
        s.extend_from_slice(&[0xFF, 5, 6]);
        want.push(err(FrameError::Restarted { len: 2 }));
        s.extend(encode_to_vec(&[7]));
        want.push(frame(&[7]));
        s.extend_from_slice(&[0xFF, 8, 0xFA, 0xFE]);
        want.push(err(FrameError::BadEscape));
        s.extend_from_slice(&[0xFF, 8, 0xFA]);
        want.push(err(FrameError::BadEscape));
        s.extend(encode_to_vec(&[9, 10]));
        want.push(frame(&[9, 10]));
        s.extend(encode_to_vec(&[0x55; 40]));
        want.push(err(FrameError::TooLong { max: 32 }));
        s.extend(encode_to_vec(&[]));
        want.push(frame(&[]));
        s.extend_from_slice(&[0x77; 70]);
        want.push(err(FrameError::OutsideFrame { bytes: 32 }));
        want.push(err(FrameError::OutsideFrame { bytes: 32 }));
        want.push(err(FrameError::OutsideFrame { bytes: 6 }));
        s.extend(encode_to_vec(&[0xFA; 32]));
        want.push(frame(&[0xFA; 32]));
        s.extend_from_slice(&[0xFF, 1, 2]);
        want.push(err(FrameError::Truncated { len: 2 }));
        (s, want)
    }

    #[test]
    fn messy_stream_all_at_once() {
        let (s, want) = messy_stream();
        assert_eq!(decode_all(&mut FrameCodec::new(32), &s), want);
    }

    #[test]
    fn messy_stream_one_byte_at_a_time() {
        let (s, want) = messy_stream();
        assert_eq!(decode_chunked(&mut FrameCodec::new(32), &s, &[1]), want);
    }

    #[test]
    fn messy_stream_fixed_chunk_sizes() {
        let (s, want) = messy_stream();
        for n in 2..=17 {
            assert_eq!(
                decode_chunked(&mut FrameCodec::new(32), &s, &[n]),
                want,
                "chunk {n}"
            );
        }
    }

    proptest! {
        #[test]
        fn messy_stream_random_chunks(sizes in prop::collection::vec(1usize..40, 1..30)) {
            let (s, want) = messy_stream();
            prop_assert_eq!(decode_chunked(&mut FrameCodec::new(32), &s, &sizes), want);
        }

        #[test]
        fn round_trip(
            contents in prop::collection::vec(
                prop::collection::vec(any::<u8>(), 0..=64usize), 0..20),
            sizes in prop::collection::vec(1usize..100, 1..20),
        ) {
            let mut codec = FrameCodec::new(64);
            let mut wire = BytesMut::new();
            for c in &contents {
                codec.encode(&c[..], &mut wire).unwrap();
            }
            let want: Vec<FrameItem> = contents.iter().map(|c| frame(c)).collect();
            prop_assert_eq!(decode_all(&mut FrameCodec::new(64), &wire), want.clone());
            prop_assert_eq!(decode_chunked(&mut FrameCodec::new(64), &wire, &sizes), want);
        }

        #[test]
        fn round_trip_default_max(
            contents in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..=DEFAULT_MAX_FRAME),
                    // Frames of exactly the maximum, dense with special bytes.
                    prop::collection::vec(0xF8u8..=0xFF, DEFAULT_MAX_FRAME..=DEFAULT_MAX_FRAME),
                ],
                0..6),
            sizes in prop::collection::vec(1usize..700, 1..10),
        ) {
            let mut wire = BytesMut::new();
            for c in &contents {
                encode_frame(c, &mut wire);
            }
            let want: Vec<FrameItem> = contents.iter().map(|c| frame(c)).collect();
            prop_assert_eq!(decode_all(&mut FrameCodec::default(), &wire), want.clone());
            prop_assert_eq!(decode_chunked(&mut FrameCodec::default(), &wire, &sizes), want);
        }

        /// Whatever arrives, the decoder consumes it, never holds more than
        /// max_len bytes, and chunking never changes the items.
        #[test]
        fn arbitrary_bytes_chunk_invariant(
            input in prop::collection::vec(
                prop_oneof![Just(0xFFu8), Just(0xFEu8), Just(0xFAu8), any::<u8>()], 0..400),
            sizes in prop::collection::vec(1usize..50, 1..20),
        ) {
            let whole = decode_all(&mut FrameCodec::new(16), &input);
            let mut c = FrameCodec::new(16);
            let chunked = decode_chunked(&mut c, &input, &sizes);
            prop_assert_eq!(&whole, &chunked);
            prop_assert!(c.buf.len() <= 16);
            prop_assert!(c.is_idle());
            for item in &whole {
                if let FrameItem::Frame(f) = item {
                    prop_assert!(f.len() <= 16);
                }
            }
        }
    }
}
