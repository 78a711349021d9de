//! What every request goes through before and after its route, in one place rather than in each
//! handler: the listener split (`server.admin_listen`), a deadline and a size limit on the body,
//! and JSON error bodies under `/admin/api` and `/api` for the failures actix answers itself
//! (unknown path, wrong method, a query string or body its extractors refuse).

use super::AppState;
use super::error::json_error;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpMessage as _, HttpResponse, web};
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::task::{Context, Poll};

const BODY_OK: u8 = 0;
const BODY_LATE: u8 = 1;
const BODY_TOO_LARGE: u8 = 2;

/// Served only on the admin listener when there is one.
fn admin_only(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/") || path == "/metrics"
}

/// Answered on both listeners (probes).
fn probe(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// Where failures are answered as JSON `{"error", "message"}`.
fn json_api(path: &str) -> bool {
    ["/admin/api", "/api"].iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// A request body that fails once its deadline passes or once it grows past the limit, and
/// says which happened, so the answer can be 408 or 413 whatever the handler made of the error.
struct GuardedBody {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: usize,
    seen: usize,
    outcome: Arc<AtomicU8>,
    finished: bool,
}

impl GuardedBody {
    fn fail(
        &mut self,
        outcome: u8,
        error: PayloadError,
    ) -> Poll<Option<Result<web::Bytes, PayloadError>>> {
        self.outcome.store(outcome, Relaxed);
        self.finished = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for GuardedBody {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.deadline.is_elapsed() {
            return self.fail(BODY_LATE, late());
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len();
                if self.seen > self.limit {
                    return self.fail(BODY_TOO_LARGE, PayloadError::Overflow);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => self.fail(BODY_LATE, late()),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn late() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request body not received in time",
    ))
}

enum Step<F> {
    Answer(ServiceResponse),
    Call(F),
}

/// For `App::wrap_fn`.
pub fn wrap<S>(
    mut req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse, actix_web::Error>> + use<S>
where
    S: actix_web::dev::Service<
            ServiceRequest,
            Response = ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let path = req.path().to_string();
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let outcome = Arc::new(AtomicU8::new(BODY_OK));
    let misplaced = state
        .as_ref()
        .and_then(|s| s.admin_addr)
        .is_some_and(|admin| {
            let on_admin = req.app_config().local_addr() == admin;
            !probe(&path) && on_admin != admin_only(&path)
        });
    let step = if misplaced {
        let answer = json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path} on this listener"),
        );
        Step::Answer(req.into_response(answer))
    } else {
        if let Some(state) = &state {
            let guarded = GuardedBody {
                inner: req.take_payload(),
                deadline: Box::pin(tokio::time::sleep(state.body_timeout)),
                limit: state.max_body_bytes,
                seen: 0,
                outcome: outcome.clone(),
                finished: false,
            };
            let boxed: Pin<Box<dyn Stream<Item = Result<web::Bytes, PayloadError>>>> =
                Box::pin(guarded);
            req.set_payload(Payload::from(boxed));
        }
        Step::Call(srv.call(req))
    };
    async move {
        let response = match step {
            Step::Answer(response) => return Ok(response),
            Step::Call(call) => call.await?,
        };
        let gateway = path == "/alipay/gateway";
        let replacement = match outcome.load(Relaxed) {
            BODY_LATE => Some((
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time".to_string(),
            )),
            BODY_TOO_LARGE => Some((
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body is larger than {} bytes",
                    state.as_ref().map(|s| s.max_body_bytes).unwrap_or(0)
                ),
            )),
            _ => None,
        };
        if let Some((status, code, message)) = replacement {
            let mut answer = if gateway {
                // The gateway's contract: a bare `fail` for anything it did not store.
                HttpResponse::build(status)
                    .content_type("text/plain; charset=utf-8")
                    .body("fail")
            } else {
                json_error(status, code, message)
            };
            // What is left of the body is never read: the connection cannot be reused.
            answer
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            let (req, _) = response.into_parts();
            return Ok(ServiceResponse::new(req, answer));
        }
        Ok(json_failures(response, &method, &path))
    }
}

/// Under `/admin/api` and `/api`, a failure that is not JSON already (actix's own 404, 405 and
/// extractor errors) becomes `{"error", "message"}`.
fn json_failures(response: ServiceResponse, method: &str, path: &str) -> ServiceResponse {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_api(path) || status.as_u16() < 400 || is_json {
        return response;
    }
    let error = response.response().error().map(|e| e.to_string());
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", format!("no route for {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
        StatusCode::BAD_REQUEST => (
            "bad_request",
            error.unwrap_or_else(|| "the request could not be read".into()),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            error.unwrap_or_else(|| "the request body is too large".into()),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            error.unwrap_or_else(|| "unsupported content type".into()),
        ),
        other if other.is_server_error() => (
            "internal",
            error.unwrap_or_else(|| other.canonical_reason().unwrap_or("error").into()),
        ),
        other => (
            "request_refused",
            error.unwrap_or_else(|| other.canonical_reason().unwrap_or("error").into()),
        ),
    };
    let allow = response
        .headers()
        .get(actix_web::http::header::ALLOW)
        .cloned();
    // actix's plain-text body (or none) is dropped.
    let (req, _) = response.into_parts();
    let mut answer = json_error(status, code, message);
    if let Some(allow) = allow {
        answer
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, allow);
    }
    ServiceResponse::new(req, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_paths_are_whose() {
        assert!(admin_only("/admin"));
        assert!(admin_only("/admin/api/orders"));
        assert!(admin_only("/metrics"));
        assert!(!admin_only("/administrator"));
        assert!(!admin_only("/api/merchant-orders/sync"));
        assert!(json_api("/api/merchant-orders/sync"));
        assert!(json_api("/admin/api"));
        assert!(json_api("/admin/api/nope"));
        assert!(!json_api("/apiary"));
        assert!(!json_api("/admin/orders/1"));
    }
}
