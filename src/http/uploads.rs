//! Uploaded files: stored under fresh unique names, described the way
//! Mephisto expects (`data.files`, `data.filesByFields`), and served back by
//! `/download_file/{name}`: only names this switch stored, nothing else.
//!
//! The stored names are remembered in `DATA_DIR/uploads.index` so a
//! restarted switch still serves what it stored; a name not in the index
//! is 404 even if such a file exists (the upload dir may be `/tmp`).

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;

pub struct UploadStore {
    dir: PathBuf,
    index_path: PathBuf,
    /// Written by upload handlers, read by downloads: HTTP-side state, not
    /// actor state, and only touched once per file.
    names: Mutex<HashSet<String>>,
}

/// Keeps letters, digits, `.`, `-`, `_` of a client's file name.
pub fn clean_name(original: &str) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // `download_file` refuses any name holding `..` (a path step), so a
    // run of dots would make a stored file impossible to fetch: every dot
    // after the first of a run becomes `_`.
    let cleaned = cleaned.trim_start_matches('.').replace("..", "._");
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned.chars().take(100).collect()
    }
}

/// Whether `name` may name a stored file at all (`/download_file`): no path
/// separator, NUL or `..` path step. Every name `fresh_name` makes is one.
pub fn servable_name(name: &str) -> bool {
    !name.contains(['/', '\\', '\0']) && !name.contains("..")
}

impl UploadStore {
    pub fn open(dir: PathBuf, data_dir: &std::path::Path) -> std::io::Result<UploadStore> {
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(data_dir)?;
        let index_path = data_dir.join("uploads.index");
        let names = std::fs::read_to_string(&index_path)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        Ok(UploadStore {
            dir,
            index_path,
            names: Mutex::new(names),
        })
    }

    /// A fresh unique stored name for a client's file name.
    pub fn fresh_name(original: &str) -> String {
        format!("{}-{}", uuid::Uuid::new_v4().simple(), clean_name(original))
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Records a stored file so it may be downloaded.
    pub fn remember(&self, name: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.index_path)?;
        writeln!(f, "{name}")?;
        if let Ok(mut names) = self.names.lock() {
            names.insert(name.to_string());
        }
        Ok(())
    }

    pub fn knows(&self, name: &str) -> bool {
        self.names.lock().map(|n| n.contains(name)).unwrap_or(false)
    }
}

/// The description of one stored file (the fields multer gives, which the
/// reference router sent and Mephisto reads `filename` from).
pub fn describe(
    field: &str,
    original: &str,
    mimetype: &str,
    stored: &str,
    dir: &std::path::Path,
    size: u64,
) -> Value {
    json!({
        "fieldname": field,
        "originalname": original,
        "encoding": "7bit",
        "mimetype": mimetype,
        "destination": dir.to_string_lossy(),
        "filename": stored,
        "path": dir.join(stored).to_string_lossy(),
        "size": size,
    })
}

pub async fn download_file(
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if !servable_name(&name) || !state.uploads.knows(&name) {
        log::info!("download_file: refused {name:?} (not a file this switch stored)");
        return Err(ApiError::NotFound);
    }
    let path = state.uploads.path_of(&name);
    let bytes = web::block(move || std::fs::read(path))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|_| ApiError::NotFound)?;
    let mime = mime_guess::from_path(&name).first_or_octet_stream();
    Ok(HttpResponse::Ok()
        .content_type(mime.essence_str().to_string())
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_name_strips_paths_and_odd_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\x\\my file.png"), "my_file.png");
        assert_eq!(clean_name(".hidden"), "hidden");
        assert_eq!(clean_name(""), "file");
        assert_eq!(clean_name("a..b.txt"), "a._b.txt");
        assert_eq!(clean_name("x.....y"), "x._._.y");
    }

    #[test]
    fn fresh_names_are_unique_and_safe() {
        let a = UploadStore::fresh_name("a b.txt");
        let b = UploadStore::fresh_name("a b.txt");
        assert_ne!(a, b);
        assert!(a.ends_with("-a_b.txt"));
        assert!(!a.contains('/'));
    }
}
