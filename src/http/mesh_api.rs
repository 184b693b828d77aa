//! The mesh over HTTP: nodes, their latest values and history, and sending
//! to them (PROTOCOL 2; addresses as `0x0001` or decimal).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use switchyard_actors::network::node_cache::NodeKey;
use switchyard_actors::network::{GetHistory, GetNode, GetNodes};
use switchyard_actors::node_send::{NodeSend, Target};
use switchyard_actors::uart::CommandError;
use switchyard_actors::wire::mesh::{parse_node_addr, NodeAddr, MAX_MESSAGE};

use super::error::ApiError;
use super::AppState;

/// `0x0001`, `0X1` or `1`.
pub fn parse_addr(s: &str) -> Result<NodeAddr, ApiError> {
    parse_node_addr(s)
        .ok_or_else(|| ApiError::bad(format!("bad node address {:?} (use 0x0001 or 1)", s.trim())))
}

pub fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::UnknownNode(_) => ApiError::Unknown(e.to_string()),
        CommandError::LinkDown | CommandError::NoMesh | CommandError::Busy => {
            ApiError::Unavailable(e.to_string())
        }
        CommandError::TooLong(_) => ApiError::BadRequest(e.to_string()),
        CommandError::Root(_) => ApiError::Upstream(e.to_string()),
        CommandError::Timeout(_) => ApiError::UpstreamTimeout(e.to_string()),
    }
}

pub async fn nodes(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let nodes = state
        .router
        .network
        .send(GetNodes)
        .await
        .map_err(ApiError::mailbox)?;
    Ok(HttpResponse::Ok().json(nodes))
}

pub async fn node(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let addr = parse_addr(&path)?;
    match state
        .router
        .network
        .send(GetNode(NodeKey::local(addr)))
        .await
        .map_err(ApiError::mailbox)?
    {
        Some(v) => Ok(HttpResponse::Ok().json(v)),
        None => Err(ApiError::Unknown(format!("node 0x{addr:04x} unknown"))),
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(rename = "type")]
    data_type: Option<String>,
    limit: Option<usize>,
}

pub async fn history(
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history_of(NodeKey::local(parse_addr(&path)?), query, state).await
}

/// The history of a node behind a gateway (central switch).
pub async fn gateway_history(
    path: web::Path<(String, String)>,
    query: web::Query<HistoryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history_of(gateway_key(&path)?, query, state).await
}

async fn history_of(
    key: NodeKey,
    query: web::Query<HistoryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let addr = key.addr;
    let data_type = query
        .data_type
        .clone()
        .ok_or_else(|| ApiError::bad("missing `type` (e.g. ?type=TMP)"))?;
    let limit = query.limit.unwrap_or(100);
    let samples = state
        .router
        .network
        .send(GetHistory {
            key: key.clone(),
            data_type: data_type.clone(),
            limit,
        })
        .await
        .map_err(ApiError::mailbox)?
        .ok_or_else(|| ApiError::Unknown(format!("node 0x{addr:04x} unknown")))?;
    Ok(HttpResponse::Ok().json(json!({
        "gateway": key.gateway,
        "address": format!("0x{addr:04x}"),
        "type": data_type,
        "samples": samples,
    })))
}

#[derive(Deserialize)]
pub struct SendBody {
    text: String,
    #[serde(default)]
    tracked: bool,
}

fn message_bytes(text: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = text.as_bytes().to_vec();
    if bytes.len() > MAX_MESSAGE {
        return Err(ApiError::bad(format!(
            "message too long ({} bytes, at most {MAX_MESSAGE})",
            bytes.len()
        )));
    }
    Ok(bytes)
}

pub async fn send(
    path: web::Path<String>,
    body: web::Json<SendBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let addr = parse_addr(&path)?;
    let key = NodeKey {
        gateway: None,
        addr,
    };
    let name = send_text(&state, Target::Node(key), &body.text, body.tracked).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "command": name})))
}

/// Text to a node or to every node, by the one path the MQTT bridge takes
/// too (`network::send`); answers the root command's name.
async fn send_text(
    state: &AppState,
    target: Target,
    text: &str,
    tracked: bool,
) -> Result<&'static str, ApiError> {
    let send = NodeSend {
        target,
        message: message_bytes(text)?,
        tracked,
    };
    let name = send.name();
    send.run(&state.router.network, &state.gateways)
        .await
        .map_err(command_error)?;
    Ok(name)
}

#[derive(Deserialize)]
pub struct BroadcastBody {
    text: String,
}

pub async fn broadcast(
    body: web::Json<BroadcastBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = send_text(&state, Target::Broadcast(None), &body.text, false).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "command": name})))
}

fn gateway_key(path: &(String, String)) -> Result<NodeKey, ApiError> {
    Ok(NodeKey {
        gateway: Some(path.0.clone()),
        addr: parse_addr(&path.1)?,
    })
}

/// A node behind a gateway (central switch).
pub async fn gateway_node(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = gateway_key(&path)?;
    match state
        .router
        .network
        .send(GetNode(key.clone()))
        .await
        .map_err(ApiError::mailbox)?
    {
        Some(v) => Ok(HttpResponse::Ok().json(v)),
        None => Err(ApiError::Unknown(format!(
            "node 0x{:04x} of gateway {} unknown",
            key.addr, path.0
        ))),
    }
}

/// Sends to a node through its gateway.
pub async fn gateway_send(
    path: web::Path<(String, String)>,
    body: web::Json<SendBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = gateway_key(&path)?;
    let addr = key.addr;
    send_text(&state, Target::Node(key), &body.text, body.tracked).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"status": "ok", "gateway": path.0, "address": format!("0x{addr:04x}")})))
}

#[cfg(test)]
mod tests {
    use super::{message_bytes, parse_addr};

    #[test]
    fn addresses_in_hex_or_decimal() {
        assert_eq!(parse_addr("0x0001").unwrap(), 1);
        assert_eq!(parse_addr("0X1a").unwrap(), 26);
        assert_eq!(parse_addr("300").unwrap(), 300);
        assert!(parse_addr("0x10000").is_err());
        assert!(parse_addr("node").is_err());
        assert!(parse_addr("-1").is_err());
    }

    /// PROTOCOL 2.3: a message goes to the root as its bytes, and one
    /// longer than 255 bytes is refused.
    #[test]
    fn a_message_is_its_bytes_up_to_255() {
        assert_eq!(message_bytes("hi").unwrap(), b"hi".to_vec());
        assert_eq!(message_bytes(&"x".repeat(255)).unwrap().len(), 255);
        assert!(message_bytes(&"x".repeat(256)).is_err());
    }
}
