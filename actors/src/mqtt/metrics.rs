//! The MQTT bridge's metrics, registered into the switch's registry only
//! when `--mqtt` is given: a switch without it shows none of them.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub mod names {
    pub const CONNECTED: &str = "switchyard_mqtt_connected";
    pub const PUBLISHED: &str = "switchyard_mqtt_published_total";
    pub const DROPPED: &str = "switchyard_mqtt_dropped_total";
    pub const BUFFERED: &str = "switchyard_mqtt_buffered";
    pub const BUFFERED_BYTES: &str = "switchyard_mqtt_buffered_bytes";
    pub const RECONNECTS: &str = "switchyard_mqtt_reconnects_total";
    pub const COMMANDS: &str = "switchyard_mqtt_commands_total";
    pub const COMMANDS_REFUSED: &str = "switchyard_mqtt_commands_refused_total";
    pub const SKIPPED: &str = "switchyard_mqtt_skipped_total";
}

/// Label values of `switchyard_mqtt_dropped_total{reason}`.
pub mod drop_reason {
    /// The buffer held its bound of items or bytes: the oldest went.
    pub const BUFFER_FULL: &str = "buffer_full";
    /// Answers to commands held their share of the buffer.
    pub const ANSWERS_FULL: &str = "answers_full";
}

#[derive(Clone)]
pub struct MqttMetrics {
    pub connected: IntGauge,
    /// Messages the broker has: written at QoS 0, acknowledged at QoS 1.
    pub published: IntCounter,
    pub dropped: IntCounterVec,
    pub buffered: IntGauge,
    pub buffered_bytes: IntGauge,
    pub reconnects: IntCounter,
    /// Commands the mesh was asked to run, by outcome (`ok`, `failed`).
    pub commands: IntCounterVec,
    /// Commands refused before the mesh saw them, by reason.
    pub commands_refused: IntCounterVec,
    /// Events not bridged, by reason.
    pub skipped: IntCounterVec,
}

impl MqttMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<MqttMetrics> {
        use crate::metrics::registered as reg;
        let gauge = |n: &str, h: &str| reg(r, IntGauge::new(n, h)?);
        let counter = |n: &str, h: &str| reg(r, IntCounter::new(n, h)?);
        let counter_vec =
            |n: &str, h: &str, l: &[&str]| reg(r, IntCounterVec::new(Opts::new(n, h), l)?);
        let m = MqttMetrics {
            connected: gauge(
                names::CONNECTED,
                "1 while the MQTT bridge is connected to its broker",
            )?,
            published: counter(
                names::PUBLISHED,
                "Messages the broker has taken (written at QoS 0, acknowledged at QoS 1)",
            )?,
            dropped: counter_vec(
                names::DROPPED,
                "Messages for the broker dropped from the bridge's bounded buffer, by reason",
                &["reason"],
            )?,
            buffered: gauge(
                names::BUFFERED,
                "Messages waiting for the broker or not yet acknowledged by it",
            )?,
            buffered_bytes: gauge(
                names::BUFFERED_BYTES,
                "Bytes (topic and payload) of the messages waiting for the broker",
            )?,
            reconnects: counter(
                names::RECONNECTS,
                "Connection attempts to the broker after the first",
            )?,
            commands: counter_vec(
                names::COMMANDS,
                "Commands from MQTT the mesh was asked to run, by outcome",
                &["outcome"],
            )?,
            commands_refused: counter_vec(
                names::COMMANDS_REFUSED,
                "Commands from MQTT refused before reaching the mesh, by reason",
                &["reason"],
            )?,
            skipped: counter_vec(
                names::SKIPPED,
                "Mesh events not bridged to MQTT, by reason",
                &["reason"],
            )?,
        };
        for r in [drop_reason::BUFFER_FULL, drop_reason::ANSWERS_FULL] {
            m.dropped.with_label_values(&[r]).inc_by(0);
        }
        for r in super::commands::REASONS {
            m.commands_refused.with_label_values(&[r]).inc_by(0);
        }
        for o in ["ok", "failed"] {
            m.commands.with_label_values(&[o]).inc_by(0);
        }
        Ok(m)
    }
}
