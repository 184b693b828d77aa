//! The whole switch, driven through its real interfaces: real WebSocket
//! clients, real HTTP, real processes. Each test names the PROTOCOL.md
//! section it checks.

mod common;

mod channel_suite;
mod client_socket;
mod cluster;
mod harness;
mod hostile_edge;
mod hostile_mesh;
mod hostile_router;
mod http_api;
mod launch;
mod mephisto_complaints;
pub mod mesh;
mod metrics;
mod monitor;
mod mqtt;
mod restart;
mod router;
mod shortcut;
mod upgrade;
mod uplink;
