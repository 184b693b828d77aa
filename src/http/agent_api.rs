//! The agent HTTP API of PROTOCOL 1.4: each endpoint turns a request into a
//! packet for the backend (through `BackendLink`'s ordered outbox) and, for
//! `/request_agent` and `/submit_onboarding`, waits for the matching
//! `agent_details`.
//!
//! Bodies are kept as text: a JSON body is split into its top-level fields,
//! each the exact JSON text it came as, and the packet's `data` is written
//! from those texts (PROTOCOL 1.5: a body costs its bytes, not a tree of
//! values several times their size). JSON and urlencoded bodies have a
//! small limit of their own (`max_json_body_bytes`); multipart uploads keep
//! `max_upload_bytes`.
//!
//! Multipart submits (`/submit_task`, and `/submit_metadata` as the Mephisto
//! 1.5 line's worker-opinion form sends it) always describe their files in
//! `data.files` / `data.filesByFields`, empty when none came: the 1.5 line's
//! backend reads both keys without checking.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchyard_actors::agent::{CancelRequest, RegisterRequest, ToBackend};
use switchyard_actors::clock::now_secs;
use switchyard_actors::directory::RemoveAgent;
use switchyard_actors::log_limit::{held_note, LogLimit};
use switchyard_actors::wire::{Packet, PacketType, MEPHISTO};
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use super::uploads::{describe, UploadStore};
use super::AppState;

/// A request body as fields, whatever its encoding (JSON, urlencoded form
/// or multipart form), each the JSON text of its value (a form's text
/// fields are JSON strings), plus the files a multipart form carried.
pub struct Form {
    pub fields: BTreeMap<String, Box<RawValue>>,
    pub files: Vec<Value>,
    /// The body was multipart: its packet describes files (PROTOCOL 1.4,
    /// multipart rules), even when none came.
    pub multipart: bool,
}

impl Form {
    fn raw(&self, key: &str) -> Option<&RawValue> {
        self.fields.get(key).map(|r| &**r)
    }
}

fn as_string(raw: &RawValue) -> Option<String> {
    if raw.get().starts_with('"') {
        serde_json::from_str(raw.get()).ok()
    } else {
        None
    }
}

/// JSON text of a string.
fn raw_string(s: &str) -> Box<RawValue> {
    // A string always serialises to valid JSON.
    RawValue::from_string(serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()))
        .unwrap_or_else(|_| raw_null())
}

fn raw_null() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_default()
}

fn raw_of(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| raw_null())
}

/// `{"k": <raw>, ...}` from texts already JSON, in the order given.
fn raw_object<'a>(entries: impl IntoIterator<Item = (&'a str, &'a RawValue)>) -> Box<RawValue> {
    let mut text = String::from("{");
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into()));
        text.push(':');
        text.push_str(v.get());
    }
    text.push('}');
    // Keys are serialised strings and values JSON texts: an object.
    RawValue::from_string(text).unwrap_or_else(|_| raw_null())
}

fn too_large(state: &AppState, what: &str) -> ApiError {
    too_large_at(state, what, state.config.max_upload_bytes)
}

fn too_large_at(state: &AppState, what: &str, limit: usize) -> ApiError {
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
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        if declared.is_some_and(|n| n > state.config.max_upload_bytes) {
            return Err(too_large(state, "declared length"));
        }
        return read_multipart(req, payload, state).await;
    }
    let limit = state.config.max_json_body_bytes;
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large_at(state, "declared length", limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| bad_body(state, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large_at(state, "body", limit));
        }
        body.extend_from_slice(&chunk);
    }
    let fields = if ctype.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| bad_body(state, format!("invalid form body: {e}")))?;
        pairs
            .into_iter()
            .map(|(k, v)| (k, raw_string(&v)))
            .collect()
    } else {
        let text = std::str::from_utf8(&body)
            .map_err(|_| bad_body(state, "the body is not UTF-8".into()))?;
        match serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(text) {
            Ok(m) => m,
            Err(e) if e.is_data() => {
                return Err(bad_body(state, "the body must be a JSON object".into()))
            }
            Err(e) => return Err(bad_body(state, format!("invalid JSON body: {e}"))),
        }
    };
    Ok(Form {
        fields,
        files: Vec::new(),
        multipart: false,
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
        fields: BTreeMap::new(),
        files: Vec::new(),
        multipart: true,
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
                // An empty file input still sends a part, with an empty
                // filename; the reference's upload library skips it, and
                // so does this: its bytes count, nothing is stored.
                Some(original) if original.is_empty() => {
                    while let Some(chunk) = field.next().await {
                        let chunk = chunk
                            .map_err(|e| bad_body(state, format!("invalid multipart body: {e}")))?;
                        total += chunk.len();
                        if total > limit {
                            return Err(too_large(state, "multipart"));
                        }
                    }
                    log::debug!("multipart: skipped a file part of {name:?} with no filename");
                }
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
                    form.fields.insert(name, raw_string(&text));
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

/// The opening of the handlers that speak for one agent (`/submit_task`,
/// `/submit_metadata`, `/log_error`): the request's body, read within its
/// bounds, and the agent id it names in `USED_AGENT_ID`.
async fn agent_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(Form, String), ApiError> {
    let form = read_form(req, payload, state).await?;
    let agent_id = agent_id_of(state, form.raw("USED_AGENT_ID"), "USED_AGENT_ID")?;
    Ok((form, agent_id))
}

fn agent_id_of(state: &AppState, raw: Option<&RawValue>, key: &str) -> Result<String, ApiError> {
    let id = raw.and_then(|r| {
        let t = r.get();
        if t.starts_with('"') {
            as_string(r).filter(|s| !s.is_empty())
        } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            // A number, as its text.
            Some(t.to_string())
        } else {
            None
        }
    });
    let id = id.ok_or_else(|| bad_body(state, format!("missing `{key}`")))?;
    let max = state.config.session.max_agent_id_bytes;
    if id.len() > max {
        return Err(bad_body(
            state,
            format!("`{key}` of {} bytes is over the limit of {max}", id.len()),
        ));
    }
    Ok(id)
}

fn client_timestamp(form: &Form) -> Value {
    match form.raw("client_timestamp") {
        // A form sends it as text.
        Some(r) => match as_string(r) {
            Some(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::String(s)),
            // A number is small: a value is fine. Anything else too
            // large for a timestamp is kept as null.
            None if r.get().len() <= 64 => serde_json::from_str(r.get()).unwrap_or(Value::Null),
            None => Value::Null,
        },
        None => Value::Null,
    }
}

/// `client_timestamp` as it came (a multipart form's text stays text, as
/// the reference router forwards it for `/submit_metadata`); a value whose
/// JSON text is longer than any timestamp is kept as null.
fn client_timestamp_as_sent(form: &Form) -> Value {
    form.raw("client_timestamp")
        .filter(|r| r.get().len() <= 64)
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(Value::Null)
}

/// A packet for the backend whose `data` is `data`, kept as text.
fn outgoing(packet_type: PacketType, subject: &str, data: Box<RawValue>, form: &Form) -> Packet {
    outgoing_at(packet_type, subject, data, client_timestamp(form))
}

fn outgoing_at(
    packet_type: PacketType,
    subject: &str,
    data: Box<RawValue>,
    client_timestamp: Value,
) -> Packet {
    let mut p = Packet::new(packet_type, subject, Value::Null);
    p.set_raw_data(data);
    p.with("client_timestamp", client_timestamp)
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
        // The backend link let the request go unanswered: the switch is
        // stopping.
        Ok(Err(_)) => Err(ApiError::Unavailable(
            "the switch is shutting down; try again shortly".into(),
        )),
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
        .raw("provider_data")
        .ok_or_else(|| bad_body(&state, "missing `provider_data`".into()))?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let id_raw = raw_string(&request_id);
    let data = raw_object([("provider_data", provider_data), ("request_id", &*id_raw)]);
    let packet = outgoing(PacketType::RegisterAgent, &request_id, data, &form);
    ask_backend(&state, request_id, packet).await
}

pub async fn submit_onboarding(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = read_form(&req, payload, &state).await?;
    let mut provider_data = form
        .raw("provider_data")
        .and_then(|r| serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(r.get()).ok())
        .ok_or_else(|| bad_body(&state, "missing `provider_data` object".into()))?;
    let agent_id = agent_id_of(
        &state,
        provider_data.get("USED_AGENT_ID").map(|r| &**r),
        "USED_AGENT_ID",
    )?;
    provider_data.remove("USED_AGENT_ID");
    provider_data
        .entry("onboarding_data".into())
        .or_insert_with(|| raw_of(&json!({})));
    let request_id = uuid::Uuid::new_v4().to_string();
    provider_data.insert("request_id".into(), raw_string(&request_id));
    let data = raw_object(provider_data.iter().map(|(k, v)| (k.as_str(), &**v)));
    let packet = outgoing(PacketType::SubmitOnboarding, &agent_id, data, &form);
    let answer = ask_backend(&state, request_id, packet);
    // The reference clears the agent as soon as the submit is sent.
    state.router.directory.do_send(RemoveAgent { agent_id });
    answer.await
}

/// The files grouped by form field, each description without its
/// `fieldname` (the field is the key), as the reference router groups them.
fn files_by_fields(files: &[Value]) -> serde_json::Map<String, Value> {
    let mut by_field: serde_json::Map<String, Value> = serde_json::Map::new();
    for f in files {
        let field = f["fieldname"].as_str().unwrap_or("").to_string();
        let mut entry = f.clone();
        if let Value::Object(m) = &mut entry {
            m.remove("fieldname");
        }
        if let Value::Array(list) = by_field.entry(field).or_insert_with(|| json!([])) {
            list.push(entry);
        }
    }
    by_field
}

/// `data` with the uploaded files described in `files` and
/// `filesByFields` (PROTOCOL 1.4, multipart rules): both keys always, empty
/// when no file came, because the 1.5 line's backend reads both without
/// checking. Data that is not an object is kept under `key` beside them.
fn with_files(data: &RawValue, files: &[Value], key: &str) -> Box<RawValue> {
    let by_field = files_by_fields(files);
    let files_raw = raw_of(&Value::Array(files.to_vec()));
    let by_raw = raw_of(&Value::Object(by_field));
    let t = data.get().trim();
    if t.starts_with('{') {
        // Splice the two keys in before the closing brace (a repeated key
        // is read as its last value, as a JSON object map does).
        let body = t[1..t.len() - 1].trim();
        let mut text = String::with_capacity(t.len() + files_raw.get().len() + 64);
        text.push('{');
        text.push_str(body);
        if !body.is_empty() {
            text.push(',');
        }
        text.push_str("\"files\":");
        text.push_str(files_raw.get());
        text.push_str(",\"filesByFields\":");
        text.push_str(by_raw.get());
        text.push('}');
        return RawValue::from_string(text).unwrap_or_else(|_| raw_null());
    }
    // Files need somewhere to go; keep any non-object data beside them.
    if t == "null" {
        raw_object([("files", &*files_raw), ("filesByFields", &*by_raw)])
    } else {
        raw_object([
            (key, data),
            ("files", &*files_raw),
            ("filesByFields", &*by_raw),
        ])
    }
}

pub async fn submit_task(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (form, agent_id) = agent_form(&req, payload, &state).await?;
    let mut data = match form.raw("final_string_data") {
        Some(r) => match as_string(r) {
            Some(s) => RawValue::from_string(s)
                .map_err(|e| bad_body(&state, format!("invalid `final_string_data`: {e}")))?,
            None => r.to_owned(),
        },
        None => form
            .raw("final_data")
            .map(|r| r.to_owned())
            .unwrap_or_else(raw_null),
    };
    if form.multipart {
        data = with_files(&data, &form.files, "final_data");
    }
    let packet = outgoing(PacketType::SubmitUnit, &agent_id, data, &form);
    state.router.backend.do_send(ToBackend(packet));
    state.router.directory.do_send(RemoveAgent { agent_id });
    Ok(HttpResponse::Ok().json(json!({ "status": "Submitted!" })))
}

pub async fn submit_metadata(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (form, agent_id) = agent_form(&req, payload, &state).await?;
    let mut metadata = match form.raw("metadata") {
        // A form carries JSON as text; text that is not JSON stays a string.
        Some(r) => match as_string(r) {
            Some(s) => RawValue::from_string(s).unwrap_or_else(|_| r.to_owned()),
            None => r.to_owned(),
        },
        None => raw_null(),
    };
    if form.multipart {
        // The 1.5 line's worker-opinion form: its attachments are read
        // from `data.files` / `data.filesByFields`.
        metadata = with_files(&metadata, &form.files, "metadata");
    }
    let packet = outgoing_at(
        PacketType::SubmitMetadata,
        &agent_id,
        metadata,
        client_timestamp_as_sent(&form),
    );
    state.router.backend.do_send(ToBackend(packet));
    Ok(HttpResponse::Ok().json(json!({ "status": "Submitted metadata" })))
}

pub async fn log_error(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (form, agent_id) = agent_form(&req, payload, &state).await?;
    let error_data = form
        .raw("error_data")
        .map(|r| r.to_owned())
        .unwrap_or_else(raw_null);
    let packet = outgoing(PacketType::LogError, &agent_id, error_data, &form);
    state.router.backend.do_send(ToBackend(packet));
    Ok(HttpResponse::Ok().json(json!({ "status": "Error log sent!" })))
}

/// Rate limit of the version-mismatch log line.
static VERSION_LOG: std::sync::Mutex<Option<LogLimit>> = std::sync::Mutex::new(None);

/// Longest reported version quoted back (the query is the peer's).
const MAX_VERSION_CHARS: usize = 64;

/// The `version-mismatch` text when the frontend's reported version is
/// none of `expected` (PROTOCOL 1.4 `/task_config.json`), else None.
pub fn version_mismatch(expected: &[String], got: Option<&str>) -> Option<String> {
    if got.is_some_and(|g| expected.iter().any(|e| e == g)) {
        return None;
    }
    let got: String = match got {
        Some(g) => g.chars().take(MAX_VERSION_CHARS).collect(),
        None => "(none)".into(),
    };
    let list = expected.join(" or ");
    let first = expected.first().map(String::as_str).unwrap_or("2.0.4");
    Some(format!(
        "Package `mephisto-task` version mismatch. Expected version {list} but frontend is \
         currently using {got}. This may cause unexpected errors, be sure to update your \
         `mephisto-task` dependency with `npm install mephisto-task@{first} --save` (or \
         `mephisto-core` to a listed version)."
    ))
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
    if let Some(text) = version_mismatch(expected, query.mephisto_task_version.as_deref()) {
        // Any page load can trigger this: one line a second at most.
        if let Ok(mut limit) = VERSION_LOG.lock() {
            let limit = limit.get_or_insert_with(LogLimit::per_second);
            if let Some(held) = limit.admit(std::time::Instant::now()) {
                log::warn!("{text}{}", held_note(held));
            }
        }
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
    HttpResponse::Ok().json(json!({ "timestamp": switchyard_actors::clock::now_ms() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Vec<String> {
        vec!["2.0.4".into(), "1.5.1".into()]
    }

    #[test]
    fn both_frontends_match_and_others_do_not() {
        assert_eq!(version_mismatch(&versions(), Some("2.0.4")), None);
        assert_eq!(version_mismatch(&versions(), Some("1.5.1")), None);
        let text = version_mismatch(&versions(), Some("1.0.0")).unwrap();
        assert!(
            text.contains("1.0.0") && text.contains("2.0.4 or 1.5.1"),
            "{text}"
        );
        assert!(version_mismatch(&versions(), None)
            .unwrap()
            .contains("(none)"));
        let long = "9".repeat(10_000);
        assert!(version_mismatch(&versions(), Some(&long)).unwrap().len() < 600);
    }

    #[test]
    fn files_by_fields_groups_without_fieldname() {
        let files = vec![
            json!({"fieldname": "a", "filename": "1"}),
            json!({"fieldname": "b", "filename": "2"}),
            json!({"fieldname": "a", "filename": "3"}),
        ];
        assert_eq!(
            Value::Object(files_by_fields(&files)),
            json!({"a": [{"filename": "1"}, {"filename": "3"}], "b": [{"filename": "2"}]})
        );
    }

    #[test]
    fn with_files_always_adds_both_keys() {
        let data = RawValue::from_string(r#"{"x": 1}"#.into()).unwrap();
        let out: Value = serde_json::from_str(with_files(&data, &[], "m").get()).unwrap();
        assert_eq!(out, json!({"x": 1, "files": [], "filesByFields": {}}));
        let empty = RawValue::from_string("{}".into()).unwrap();
        let out: Value = serde_json::from_str(with_files(&empty, &[], "m").get()).unwrap();
        assert_eq!(out, json!({"files": [], "filesByFields": {}}));
        let text = RawValue::from_string(r#""plain""#.into()).unwrap();
        let out: Value = serde_json::from_str(with_files(&text, &[], "m").get()).unwrap();
        assert_eq!(out, json!({"m": "plain", "files": [], "filesByFields": {}}));
    }
}
