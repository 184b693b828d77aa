//! The pure wire layer: bytes and text in, typed values out, and back.
//!
//! Nothing here knows about actix, sockets, files or the clock: every
//! function takes what it needs (a timestamp, a limit) as an argument, so
//! each codec is tested with literals and without a runtime.

pub mod client_api;
pub mod data_types;
pub mod frame;
pub mod mesh;
pub mod packet;
pub mod uplink;

pub use data_types::{DataTypeError, DataTypeSpec, DataTypes, Decoded, FieldSpec, IntKind};
pub use frame::{FrameCodec, FrameError, FrameItem, DEFAULT_MAX_FRAME};
pub use mesh::{Command, DataEntry, MeshError, NodeAddr, RootMessage, MAX_MESSAGE};
pub use packet::{Packet, PacketError, PacketType, MEPHISTO};
