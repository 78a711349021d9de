use super::AppState;
use actix_web::{HttpResponse, web};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.services.database_ready().await {
        true => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        false => HttpResponse::ServiceUnavailable().json(
            serde_json::json!({ "error": "not_ready", "message": "the database does not answer" }),
        ),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.services.metrics_text().await)
}
