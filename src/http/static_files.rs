//! Static files: the static dir when one is given, else the built-in
//! `index.html` and `task_config.json`. Paths with `..`, backslashes or
//! hidden segments are refused.

use std::path::{Path, PathBuf};

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;

const BUILTIN_INDEX: &str = include_str!("../assets/index.html");
const BUILTIN_TASK_CONFIG: &str = include_str!("../assets/task_config.json");

/// A request path made safe to join under a directory, or None.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." || seg.contains('\\') || seg.starts_with('.') || seg.contains('\0') {
            return None;
        }
        out.push(seg);
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn content_type(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_string()
}

async fn read_file(path: PathBuf) -> Option<Vec<u8>> {
    web::block(move || {
        if path.is_file() {
            std::fs::read(&path).ok()
        } else {
            None
        }
    })
    .await
    .ok()
    .flatten()
}

/// A file from the static dir, or a built-in one.
pub async fn serve(state: &AppState, rel: &str) -> Result<HttpResponse, ApiError> {
    let rel_path = safe_relative(rel).ok_or(ApiError::NotFound)?;
    if let Some(dir) = &state.static_dir {
        let full = dir.join(&rel_path);
        if let Some(bytes) = read_file(full.clone()).await {
            return Ok(HttpResponse::Ok()
                .content_type(content_type(&full))
                .body(bytes));
        }
        return Err(ApiError::NotFound);
    }
    match rel {
        "index.html" => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(BUILTIN_INDEX)),
        "task_config.json" => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(BUILTIN_TASK_CONFIG)),
        _ => Err(ApiError::NotFound),
    }
}

pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    match serve(&state, "index.html").await {
        Ok(r) => r,
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

pub async fn file(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let path = req.match_info().query("path");
    serve(&state, path).await
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn refuses_escapes() {
        assert_eq!(safe_relative("a/b.js").unwrap().to_str(), Some("a/b.js"));
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("a/../../x").is_none());
        assert!(safe_relative("a\\..\\x").is_none());
        assert!(safe_relative(".env").is_none());
        assert!(safe_relative("").is_none());
    }
}
