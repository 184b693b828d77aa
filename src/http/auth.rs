//! Tokens of PROTOCOL 1.5: the backend's (`--backend-token`), the
//! gateways' (`--gateway-token`) and the operators' (`--admin-token`), each
//! presented as `Authorization: Bearer T` or, for browsers and WebSockets
//! that cannot set headers, `?token=T`.
//!
//! The operators' surface (`/dashboard`, `/monitor`, `/api/*`,
//! `/metrics/actors`) lists agent ids and commands the mesh: with an admin
//! token it needs that token; with none it is served only on a loopback
//! listener, where only this host can reach it.

use std::net::SocketAddr;

use actix_http::RequestHead;
use actix_web::web;

/// The token presented with a request, from `Authorization: Bearer T` or
/// `?token=T`.
pub fn presented_token(req: &RequestHead) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    web::Query::<Vec<(String, String)>>::from_query(req.uri.query().unwrap_or_default())
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v))
}

/// Compares in time independent of where the strings differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether the request presents `expected` (always, when none is set).
pub fn token_ok(req: &RequestHead, expected: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(expected) => presented_token(req).is_some_and(|t| same_token(&t, expected)),
    }
}

/// Whether `path` is part of the operators' surface.
pub fn is_admin_path(path: &str) -> bool {
    path == "/dashboard"
        || path.starts_with("/dashboard/")
        || path == "/monitor"
        || path.starts_with("/api/")
        || path == "/metrics/actors"
}

/// The decision on a request to the operators' surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// The admin token was presented.
    Granted,
    /// No token is set and the listener is loopback: open, as before.
    Open,
    /// No token is set and the listener is reachable from other hosts.
    NoTokenOnPublicListener,
    /// A token is set and the request did not present it.
    BadToken,
}

impl AdminAccess {
    /// Decides for a listener bound to `listener`, the configured admin
    /// token `expected`, and the token the request `presented`.
    pub fn decide(listener: SocketAddr, expected: Option<&str>, presented: Option<&str>) -> Self {
        match expected {
            Some(expected) => match presented {
                Some(p) if same_token(p, expected) => AdminAccess::Granted,
                _ => AdminAccess::BadToken,
            },
            None if listener.ip().is_loopback() => AdminAccess::Open,
            None => AdminAccess::NoTokenOnPublicListener,
        }
    }

    pub fn allowed(self) -> bool {
        matches!(self, AdminAccess::Granted | AdminAccess::Open)
    }

    /// The label of `switchyard_admin_refused_total{reason}`.
    pub fn label(self) -> &'static str {
        match self {
            AdminAccess::Granted => "granted",
            AdminAccess::Open => "open",
            AdminAccess::NoTokenOnPublicListener => "no_admin_token",
            AdminAccess::BadToken => "bad_token",
        }
    }

    /// What the refused caller is told.
    pub fn reason(self) -> &'static str {
        match self {
            AdminAccess::NoTokenOnPublicListener => {
                "the operators' surface is not served on a non-loopback listener without an \
                 admin token: set --admin-token (then send Authorization: Bearer TOKEN or \
                 ?token=TOKEN) or bind --http to a loopback address"
            }
            AdminAccess::BadToken => {
                "admin token required: send Authorization: Bearer TOKEN or ?token=TOKEN"
            }
            AdminAccess::Granted | AdminAccess::Open => "",
        }
    }

    /// The HTTP status of a refusal: 401 for a missing or wrong token, 403
    /// where no token could be right.
    pub fn status(self) -> actix_web::http::StatusCode {
        match self {
            AdminAccess::BadToken => actix_web::http::StatusCode::UNAUTHORIZED,
            AdminAccess::NoTokenOnPublicListener => actix_web::http::StatusCode::FORBIDDEN,
            _ => actix_web::http::StatusCode::OK,
        }
    }
}

/// Decides for `req` under `config`.
pub fn admin_access(req: &RequestHead, config: &crate::config::Config) -> AdminAccess {
    let presented = presented_token(req);
    AdminAccess::decide(
        config.http,
        config.admin_token.as_deref(),
        presented.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_without_a_token_is_open_as_before() {
        for l in ["127.0.0.1:3000", "[::1]:3000", "127.0.0.2:0"] {
            assert_eq!(AdminAccess::decide(addr(l), None, None), AdminAccess::Open);
            assert!(AdminAccess::decide(addr(l), None, Some("x")).allowed());
        }
    }

    #[test]
    fn a_public_listener_without_a_token_refuses_with_403() {
        for l in ["0.0.0.0:3000", "[::]:3000", "10.1.2.3:80"] {
            let a = AdminAccess::decide(addr(l), None, Some("anything"));
            assert_eq!(a, AdminAccess::NoTokenOnPublicListener);
            assert!(!a.allowed());
            assert_eq!(a.status(), 403);
            assert!(a.reason().contains("--admin-token"));
        }
    }

    #[test]
    fn with_a_token_only_that_token_is_let_in() {
        for l in ["0.0.0.0:3000", "127.0.0.1:3000"] {
            let l = addr(l);
            assert_eq!(
                AdminAccess::decide(l, Some("s3cret"), Some("s3cret")),
                AdminAccess::Granted
            );
            for wrong in [
                None,
                Some(""),
                Some("s3cre"),
                Some("s3cret2"),
                Some("S3cret"),
            ] {
                let a = AdminAccess::decide(l, Some("s3cret"), wrong);
                assert_eq!(a, AdminAccess::BadToken, "{wrong:?}");
                assert_eq!(a.status(), 401);
            }
        }
    }

    /// PROTOCOL 1.5 "Trust and limits" (backend, admin and gateway tokens):
    /// a same-length guess whose byte differences cancel out under XOR is
    /// still refused.
    #[test]
    fn differences_that_cancel_out_do_not_pass_as_the_token() {
        // Two bytes each differ by 0x20: their differences XOR to zero.
        assert!(!same_token("s3cret", "S3Cret"));
        assert!(!same_token("ab", "ba"));
        assert!(same_token("s3cret", "s3cret"));
        assert_eq!(
            AdminAccess::decide(addr("0.0.0.0:1"), Some("s3cret"), Some("S3Cret")),
            AdminAccess::BadToken
        );
    }

    #[test]
    fn the_surface_is_matched_by_path() {
        for p in [
            "/dashboard",
            "/dashboard/",
            "/dashboard/dashboard.js",
            "/monitor",
            "/api/agents",
            "/api/nodes/0x0001/send",
            "/metrics/actors",
        ] {
            assert!(is_admin_path(p), "{p}");
        }
        for p in [
            "/",
            "/metrics",
            "/is_alive",
            "/request_agent",
            "/gateway",
            "/apix",
            "/monitorx",
        ] {
            assert!(!is_admin_path(p), "{p}");
        }
    }
}
