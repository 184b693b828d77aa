//! The pure wire layer: bytes and text in, typed values out, and back.
//!
//! Nothing here knows about actix, sockets, files or the clock: every
//! function takes what it needs (a timestamp, a limit) as an argument, so
//! each codec is tested with literals and without a runtime.

pub mod packet;

pub use packet::{Packet, PacketError, PacketType, MEPHISTO};
