//! The agent HTTP API of PROTOCOL 1.4: each endpoint turns a request into a
//! packet for the backend (through `BackendLink`'s ordered outbox) and, for
//! `/request_agent` and `/submit_onboarding`, waits for the matching
//! `agent_details`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use switchyard_actors::agent::{CancelRequest, RegisterRequest, ToBackend};
use switchyard_actors::network::RemoveAgent;
use switchyard_actors::now_secs;
use switchyard_actors::wire::{Packet, PacketType, MEPHISTO};
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use super::uploads::{describe, UploadStore};
use super::AppState;

/// A request body as fields, whatever its encoding (JSON, urlencoded form
/// or multipart form), plus the files a multipart form carried.
pub struct Form {
    pub fields: Map<String, Value>,
    pub files: Vec<Value>,
}

fn too_large(state: &AppState, what: &str) -> ApiError {
    let limit = state.config.max_upload_bytes;
    state.metrics.malformed("body_too_large");
    log::warn!("HTTP body over the limit of {limit} bytes ({what})");
    ApiError::TooLarge { limit }
}

fn bad_body(state: &AppState, msg: String) -> ApiError {
    state.metrics.malformed("bad_http_body");
    log::warn!("HTTP: {msg}");
    ApiError::BadRequest(msg)
}

async fn read_form(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
) -> Result<Form, ApiError> {
    let limit = state.config.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(state, "declared length"));
    }
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        return read_multipart(req, payload, state).await;
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| bad_body(state, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(state, "body"));
        }
        body.extend_from_slice(&chunk);
    }
    let fields = if ctype.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| bad_body(state, format!("invalid form body: {e}")))?;
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad_body(state, "the body must be a JSON object".into())),
            Err(e) => return Err(bad_body(state, format!("invalid JSON body: {e}"))),
        }
    };
    Ok(Form {
        fields,
        files: Vec::new(),
    })
}

async fn read_multipart(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Form, ApiError> {
    let limit = state.config.max_upload_bytes;
    let mut total = 0usize;
    let mut form = Form {
        fields: Map::new(),
        files: Vec::new(),
    };
    let mut stored: Vec<String> = Vec::new();
    let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
    let result: Result<(), ApiError> = async {
        while let Some(field) = multipart.next().await {
            let mut field =
                field.map_err(|e| bad_body(state, format!("invalid multipart body: {e}")))?;
            let name = field.name().unwrap_or("").to_string();
            let filename = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(str::to_string);
            match filename {
                Some(original) => {
                    let mimetype = field
                        .content_type()
                        .map(|m| m.essence_str().to_string())
                        .unwrap_or_else(|| "application/octet-stream".into());
                    let stored_name = UploadStore::fresh_name(&original);
                    let path = state.uploads.path_of(&stored_name);
                    stored.push(stored_name.clone());
                    let mut file = tokio::fs::File::create(&path)
                        .await
                        .map_err(|e| ApiError::Internal(format!("storing an upload: {e}")))?;
                    let mut size = 0u64;
                    while let Some(chunk) = field.next().await {
                        let chunk = chunk
                            .map_err(|e| bad_body(state, format!("invalid multipart body: {e}")))?;
                        total += chunk.len();
                        if total > limit {
                            return Err(too_large(state, "multipart"));
                        }
                        size += chunk.len() as u64;
                        file.write_all(&chunk)
                            .await
                            .map_err(|e| ApiError::Internal(format!("storing an upload: {e}")))?;
                    }
                    file.flush()
                        .await
                        .map_err(|e| ApiError::Internal(format!("storing an upload: {e}")))?;
                    form.files.push(describe(
                        &name,
                        &original,
                        &mimetype,
                        &stored_name,
                        state.uploads.dir(),
                        size,
                    ));
                }
                None => {
                    let mut buf = Vec::new();
                    while let Some(chunk) = field.next().await {
                        let chunk = chunk
                            .map_err(|e| bad_body(state, format!("invalid multipart body: {e}")))?;
                        total += chunk.len();
                        if total > limit {
                            return Err(too_large(state, "multipart"));
                        }
                        buf.extend_from_slice(&chunk);
                    }
                    let text = String::from_utf8(buf)
                        .map_err(|_| bad_body(state, format!("form field {name} is not UTF-8")))?;
                    form.fields.insert(name, Value::String(text));
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            for name in &stored {
                state
                    .uploads
                    .remember(name)
                    .map_err(|e| ApiError::Internal(format!("recording an upload: {e}")))?;
                state.metrics.uploaded_files.inc();
            }
            Ok(form)
        }
        Err(e) => {
            // Nothing half-stored stays behind a refused request.
            for name in &stored {
                let _ = std::fs::remove_file(state.uploads.path_of(name));
            }
            Err(e)
        }
    }
}

fn agent_id_of(
    state: &AppState,
    fields: &Map<String, Value>,
    key: &str,
) -> Result<String, ApiError> {
    match fields.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(bad_body(state, format!("missing `{key}`"))),
    }
}

fn client_timestamp(fields: &Map<String, Value>) -> Value {
    match fields.get("client_timestamp") {
        // A form sends it as text.
        Some(Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

fn outgoing(
    packet_type: PacketType,
    subject: &str,
    data: Value,
    fields: &Map<String, Value>,
) -> Packet {
    Packet::new(packet_type, subject, data)
        .with("client_timestamp", client_timestamp(fields))
        .with("router_incoming_timestamp", json!(now_secs()))
}

/// Cancels a pending request when the handler ends without an answer
/// (timeout, or the HTTP client went away and the future was dropped).
struct PendingGuard<'a> {
    state: &'a AppState,
    request_id: String,
    answered: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.state.router.backend.do_send(CancelRequest {
                request_id: self.request_id.clone(),
            });
        }
    }
}

/// Sends `packet` and waits for the `agent_details` carrying `request_id`.
async fn ask_backend(
    state: &AppState,
    request_id: String,
    packet: Packet,
) -> Result<HttpResponse, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut guard = PendingGuard {
        state,
        request_id: request_id.clone(),
        answered: false,
    };
    state.router.backend.do_send(RegisterRequest {
        request_id,
        packet,
        reply: tx,
    });
    let timeout = state.config.backend.request_timeout();
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(details)) => {
            guard.answered = true;
            Ok(HttpResponse::Ok().json(details.into_value()))
        }
        _ => {
            log::warn!(
                "request {}: no agent_details within {:?}",
                guard.request_id,
                timeout
            );
            Err(ApiError::Timeout {
                secs: timeout.as_secs_f64(),
            })
        }
    }
}

pub async fn request_agent(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(&req, payload, &state).await?;
    let provider_data = form
        .fields
        .get("provider_data")
        .cloned()
        .ok_or_else(|| bad_body(&state, "missing `provider_data`".into()))?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let packet = outgoing(
        PacketType::RegisterAgent,
        &request_id,
        json!({ "provider_data": provider_data, "request_id": request_id }),
        &form.fields,
    );
    ask_backend(&state, request_id, packet).await
}

pub async fn submit_onboarding(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(&req, payload, &state).await?;
    let mut provider_data = match form.fields.get("provider_data") {
        Some(Value::Object(m)) => m.clone(),
        _ => return Err(bad_body(&state, "missing `provider_data` object".into())),
    };
    let agent_id = agent_id_of(&state, &provider_data, "USED_AGENT_ID")?;
    provider_data.remove("USED_AGENT_ID");
    provider_data
        .entry("onboarding_data")
        .or_insert_with(|| json!({}));
    let request_id = uuid::Uuid::new_v4().to_string();
    provider_data.insert("request_id".into(), json!(request_id));
    let packet = outgoing(
        PacketType::SubmitOnboarding,
        &agent_id,
        Value::Object(provider_data),
        &form.fields,
    );
    let answer = ask_backend(&state, request_id, packet);
    // The reference clears the agent as soon as the submit is sent.
    state.router.network.do_send(RemoveAgent { agent_id });
    answer.await
}

pub async fn submit_task(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(&req, payload, &state).await?;
    let agent_id = agent_id_of(&state, &form.fields, "USED_AGENT_ID")?;
    let mut data = match form.fields.get("final_string_data") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| bad_body(&state, format!("invalid `final_string_data`: {e}")))?,
        Some(other) => other.clone(),
        None => form
            .fields
            .get("final_data")
            .cloned()
            .unwrap_or(Value::Null),
    };
    if !form.files.is_empty() {
        let mut by_field: Map<String, Value> = Map::new();
        for f in &form.files {
            let field = f["fieldname"].as_str().unwrap_or("").to_string();
            if let Value::Array(list) = by_field.entry(field).or_insert_with(|| json!([])) {
                list.push(f.clone());
            }
        }
        if !data.is_object() {
            // Files need somewhere to go; keep any non-object data beside them.
            data = if data.is_null() {
                json!({})
            } else {
                json!({ "final_data": data })
            };
        }
        if let Value::Object(m) = &mut data {
            m.insert("files".into(), Value::Array(form.files.clone()));
            m.insert("filesByFields".into(), Value::Object(by_field));
        }
    }
    let packet = outgoing(PacketType::SubmitUnit, &agent_id, data, &form.fields);
    state.router.backend.do_send(ToBackend(packet));
    state.router.network.do_send(RemoveAgent { agent_id });
    Ok(HttpResponse::Ok().json(json!({ "status": "Submitted!" })))
}

pub async fn submit_metadata(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(&req, payload, &state).await?;
    let agent_id = agent_id_of(&state, &form.fields, "USED_AGENT_ID")?;
    let metadata = match form.fields.get("metadata") {
        // A form carries JSON as text.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let packet = outgoing(
        PacketType::SubmitMetadata,
        &agent_id,
        metadata,
        &form.fields,
    );
    state.router.backend.do_send(ToBackend(packet));
    Ok(HttpResponse::Ok().json(json!({ "status": "Submitted metadata" })))
}

pub async fn log_error(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(&req, payload, &state).await?;
    let agent_id = agent_id_of(&state, &form.fields, "USED_AGENT_ID")?;
    let error_data = form
        .fields
        .get("error_data")
        .cloned()
        .unwrap_or(Value::Null);
    let packet = outgoing(PacketType::LogError, &agent_id, error_data, &form.fields);
    state.router.backend.do_send(ToBackend(packet));
    Ok(HttpResponse::Ok().json(json!({ "status": "Error log sent!" })))
}

#[derive(serde::Deserialize)]
pub struct VersionQuery {
    mephisto_task_version: Option<String>,
}

pub async fn task_config(
    query: web::Query<VersionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let expected = &state.config.expected_task_version;
    let got = query.mephisto_task_version.as_deref();
    if got != Some(expected.as_str()) {
        let got = got.unwrap_or("(none)");
        log::warn!("frontend reports mephisto-task {got}, expected {expected}");
        let text = format!(
            "Package `mephisto-task` version mismatch. Expected version {expected} but frontend is \
             currently using {got}. This may cause unexpected errors, be sure to update your \
             `mephisto-task` dependency with `npm install mephisto-task@{expected} --save`."
        );
        let packet = Packet::new(
            PacketType::LogError,
            MEPHISTO,
            json!({ "error_type": "version-mismatch", "text": text }),
        );
        state.router.backend.do_send(ToBackend(packet));
    }
    super::static_files::serve(&state, "task_config.json").await
}

pub async fn is_alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "Alive!" }))
}

pub async fn get_timestamp() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "timestamp": switchyard_actors::now_ms() }))
}
