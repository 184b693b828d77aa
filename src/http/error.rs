//! HTTP errors: every one answers JSON `{"error": "..."}` with its status
//! (PROTOCOL 1.4).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("request body over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the backend did not answer within {secs} s")]
    Timeout { secs: f64 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    UpstreamTimeout(String),
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// An actor could not be asked (it stopped): a 500 with the reason.
    pub fn mailbox<E: std::fmt::Display>(e: E) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unknown(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        // The rest of a body over the limit is not read: the connection
        // closes after the answer instead of draining it.
        if matches!(self, ApiError::TooLarge { .. }) {
            res.force_close();
        }
        res.json(serde_json::json!({ "error": self.to_string() }))
    }
}
