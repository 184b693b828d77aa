//! Joining NATS (`CLUSTER.md` section 2): the connection, the check that
//! JetStream is on, and the streams and buckets every switch of a cluster
//! shares, made by whichever switch comes first (creating an object that
//! exists with the same settings is a no-op in JetStream).
//!
//! A server that cannot be reached at start, or one without JetStream, is
//! an error that stops the switch with one line: a cluster member that
//! cannot store anything would lose what its agents send. After the start
//! the client reconnects by itself (no limit), and the `Cluster` actor is
//! told of every loss and return.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, ConnectOptions, Event};

use super::config::ClusterConfig;
use super::names::Names;

/// What a switch holds of the cluster's shared objects.
#[derive(Clone)]
pub struct Link {
    pub client: Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub mailboxes: stream::Stream,
    pub backend: stream::Stream,
    pub agents: kv::Store,
    pub cluster: kv::Store,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "NATS at {url} has no JetStream (start nats-server with -js): cluster mode stores every packet in it"
    )]
    NoJetStream { url: String },
    #[error("NATS at {url}: {what}: {reason}")]
    Setup {
        url: String,
        what: String,
        reason: String,
    },
}

/// Messages in one agent's mailbox at most (`CLUSTER.md`): past it the
/// oldest is dropped, counted and reported, as PROTOCOL 1.3 asks.
pub const MAILBOX_LIMIT: i64 = 10_000;
/// Backend-bound packets waiting in the stream at most, oldest dropped.
pub const BACKEND_LIMIT: i64 = 100_000;
/// Longest a packet waits in a mailbox (an agent gone for good).
const MAILBOX_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// How long JetStream remembers message ids: a retry within it is stored
/// once. Longer than any reconnect the publish window waits through.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What the connection tells the `Cluster` actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up,
    Down,
    /// The client dropped messages for a subscriber that fell behind
    /// (live copies among them): readers must look in the streams.
    Lagged,
}

/// Connects and makes sure every shared object exists. `events` is told
/// of the connection's changes.
pub async fn connect(
    config: &ClusterConfig,
    node: &str,
    events: impl Fn(LinkEvent) + Send + Sync + 'static,
) -> Result<Link, LinkError> {
    let servers = config.servers().map_err(LinkError::Config)?;
    let names = Names::new(&config.prefix).map_err(|e| LinkError::Config(e.to_string()))?;
    let url = servers.join(",");
    let addrs: Vec<async_nats::ServerAddr> = servers
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| LinkError::Config(format!("--cluster {url}: {e}")))?;
    let events = std::sync::Arc::new(events);
    let client = ConnectOptions::new()
        .name(format!("switchyard {node}"))
        // A dead server is noticed within a few seconds, not the
        // default minute (CLUSTER.md "Timers").
        .ping_interval(Duration::from_secs(2))
        .connection_timeout(Duration::from_secs(3))
        // Back within a second or two of the server (the default backoff
        // grows to 4 s): cross-switch packets wait meanwhile.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(100).min(2_000))
        })
        .request_timeout(Some(Duration::from_secs(5)))
        .event_callback(move |event| {
            let events = std::sync::Arc::clone(&events);
            async move {
                match event {
                    Event::Connected => {
                        log::info!("cluster: connected to NATS");
                        events(LinkEvent::Up);
                    }
                    Event::Disconnected => {
                        log::warn!("cluster: lost NATS; reconnecting");
                        events(LinkEvent::Down);
                    }
                    Event::SlowConsumer(sid) => {
                        log::warn!("cluster: subscription {sid} fell behind; messages dropped");
                        events(LinkEvent::Lagged);
                    }
                    other => log::warn!("cluster: NATS {other}"),
                }
            }
        })
        .connect(addrs)
        .await
        .map_err(|e| LinkError::Connect {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let js = jetstream::new(client.clone());
    // Asked by hand, not with the client's `query_account`: the account
    // answer of nats-server 2.9 does not parse in this client, and every
    // server answers this request when JetStream is on.
    match client.request("$JS.API.INFO", bytes::Bytes::new()).await {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(LinkError::NoJetStream { url });
        }
        Err(e) => {
            return Err(LinkError::Setup {
                url,
                what: "JetStream".into(),
                reason: e.to_string(),
            })
        }
        Ok(answer) => {
            let v: serde_json::Value =
                serde_json::from_slice(&answer.payload).unwrap_or(serde_json::Value::Null);
            if let Some(error) = v.get("error") {
                return Err(match error.get("code").and_then(|c| c.as_u64()) {
                    Some(503) => LinkError::NoJetStream { url },
                    _ => LinkError::Setup {
                        url,
                        what: "JetStream".into(),
                        reason: error.to_string(),
                    },
                });
            }
        }
    }
    let storage = match config.storage.as_str() {
        "memory" => stream::StorageType::Memory,
        _ => stream::StorageType::File,
    };
    let setup = |what: &str, e: &dyn std::fmt::Display| LinkError::Setup {
        url: url.clone(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    let mailboxes = js
        .get_or_create_stream(stream::Config {
            name: names.mailbox_stream(),
            subjects: vec![names.mailboxes()],
            max_messages_per_subject: MAILBOX_LIMIT,
            discard: stream::DiscardPolicy::New,
            discard_new_per_subject: true,
            max_age: MAILBOX_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            storage,
            num_replicas: config.replicas,
            allow_direct: true,
            republish: Some(stream::Republish {
                source: names.mailboxes(),
                destination: names.live_republish(),
                headers_only: false,
            }),
            ..Default::default()
        })
        .await
        .map_err(|e| setup("the mailbox stream", &e))?;
    let backend = js
        .get_or_create_stream(stream::Config {
            name: names.backend_stream(),
            subjects: vec![names.backend()],
            max_messages: BACKEND_LIMIT,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: DUPLICATE_WINDOW,
            storage,
            num_replicas: config.replicas,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| setup("the backend stream", &e))?;
    let agents = bucket(&js, &names.agents_bucket(), config.replicas, storage)
        .await
        .map_err(|e| setup("the agents bucket", &e))?;
    let cluster = bucket(&js, &names.cluster_bucket(), config.replicas, storage)
        .await
        .map_err(|e| setup("the cluster bucket", &e))?;
    Ok(Link {
        client,
        js,
        names,
        mailboxes,
        backend,
        agents,
        cluster,
    })
}

/// A KV bucket, made if missing. Its stream is made here with the settings
/// a KV bucket has (`KV_<name>`, `$KV.<name>.>`, one value per key, roll-ups
/// allowed, deletes denied, direct get): the client's own `create_key_value`
/// asks for the account first, which nats-server 2.9 answers in a form it
/// does not parse.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    storage: stream::StorageType,
) -> Result<kv::Store, async_nats::Error> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        // A record is small; a peer writing a large one is refused by
        // NATS, not read by every switch.
        max_message_size: 4096,
        storage,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await?;
    Ok(js.get_key_value(name).await?)
}
