//! `/metrics` (Prometheus text) and `/metrics/actors` (every live actor).

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn prometheus(
    state: web::Data<AppState>,
    edge: Option<web::Data<super::Edge>>,
) -> HttpResponse {
    if let Some(edge) = edge {
        state
            .metrics
            .message_budget_bytes
            .set(edge.budget.used() as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

pub async fn actors(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.metrics.actor_snapshot())
}
