//! A request id per request: taken from `X-Request-Id` when the caller sends a sane one, else
//! made up; it names the request's tracing span (so every log line of the request carries it)
//! and is echoed in the response. The span records method and path, never the query string or
//! headers (where credentials travel).
//!
//! Each request ends with one access-log line (target `isv_lifecycle::access`: method, path,
//! status, latency in seconds, request id) and one observation in the HTTP latency histogram.

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use tracing::Instrument as _;

pub const HEADER: &str = "x-request-id";

fn sane(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn new_id() -> String {
    (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// For `App::wrap_fn`.
pub fn wrap<S>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse, actix_web::Error>> + use<S>
where
    S: actix_web::dev::Service<
            ServiceRequest,
            Response = ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .unwrap_or_else(new_id);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_string();
    let metrics = req
        .app_data::<actix_web::web::Data<super::AppState>>()
        .map(|s| s.services.metrics.clone());
    let call = srv.call(req);
    async move {
        let result = call.instrument(span).await;
        let elapsed = started.elapsed();
        let (status, route) = match &result {
            Ok(response) => (
                response.status().as_u16(),
                response
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into()),
            ),
            Err(error) => (
                error.as_response_error().status_code().as_u16(),
                "unmatched".into(),
            ),
        };
        tracing::info!(
            target: "isv_lifecycle::access",
            request_id = %id,
            method = %method,
            path = %path,
            status,
            latency_seconds = elapsed.as_secs_f64(),
            "request"
        );
        if let Some(metrics) = metrics {
            metrics.http_request(&method, &route, status, elapsed);
        }
        let mut response = result?;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(HEADER), value);
        }
        Ok(response)
    }
}
