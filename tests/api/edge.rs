//! What every route shares: a body deadline and size limit, JSON errors under `/admin/api` and
//! `/api`, and the admin listener (`server.admin_listen`).

use crate::common::{self, Db};
use crate::helpers::TestApp;
use isv_lifecycle::config::Settings;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Spawns with the settings adjusted, once per backend.
macro_rules! both_backends_with {
    ($name:ident, $adjust:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = TestApp::spawn_with(Db::Sqlite, $adjust).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if crate::common::skip_postgres() {
                    eprintln!("PostgreSQL skipped (ISV_TEST_SKIP_POSTGRES=1)");
                    return;
                }
                let app = TestApp::spawn_with(Db::Postgres, $adjust).await;
                ($body)(app).await;
            }
        }
    };
}

fn short_body_deadline(s: &mut Settings) {
    s.server.body_timeout_ms = 300;
}

/// Sends the head of a POST announcing 1,000 body bytes, then one byte every 100 ms; returns the
/// status line and body of the answer, which must come within 3 s (10x the deadline).
async fn trickle(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let host = address.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}Content-Length: 1000\r\n\r\n{{"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), read_all)
        .await
        .unwrap_or_else(|_| panic!("{path}: the trickled body was not cut off within 3 s"));
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn trickled_bodies_are_cut_off(app: TestApp) {
    for (path, token) in [
        ("/admin/login", None),
        (
            "/admin/api/orders/ORDER-1/terminate",
            Some(common::ADMIN_TOKEN),
        ),
        ("/api/merchant-orders/sync", Some(common::API_TOKEN)),
    ] {
        let (status, body) = trickle(&app.address, path, token).await;
        assert_eq!(status, 408, "{path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "body_timeout", "{path}");
    }
    // The gateway keeps its bare `fail`.
    let (status, body) = trickle(&app.address, "/alipay/gateway", None).await;
    assert_eq!((status, body.as_str()), (408, "fail"));
    // Nothing of the cut-off requests was applied.
    assert!(app.message_states().is_empty());
    let (status, _) = app.admin_get("/admin/api/orders/ORDER-1").await;
    assert_eq!(status, 404);
    app.stop().await;
}
both_backends_with!(
    trickled_bodies,
    short_body_deadline,
    trickled_bodies_are_cut_off
);

async fn failures_under_the_apis_are_json(app: TestApp) {
    let json_error = |status: u16, body: &serde_json::Value| {
        (
            status,
            body["error"].as_str().map(str::to_string),
            body["message"].is_string(),
        )
    };
    // Unknown paths.
    let (status, body) = app.admin_get("/admin/api/no-such-thing").await;
    assert_eq!(
        json_error(status, &body),
        (404, Some("not_found".into()), true),
        "{body}"
    );
    let (status, body) = app.api_get("/api/no-such-thing").await;
    assert_eq!(
        json_error(status, &body),
        (404, Some("not_found".into()), true),
        "{body}"
    );
    // A query string that does not parse.
    let (status, body) = app.admin_get("/admin/api/messages?limit=abc").await;
    assert_eq!(
        json_error(status, &body),
        (400, Some("bad_request".into()), true),
        "{body}"
    );
    // A wrong method.
    let response = app
        .http
        .delete(format!("{}/api/merchant-orders/sync", app.address))
        .bearer_auth(common::API_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(matches!(status, 404 | 405), "{status}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    // A body over server.max_body_bytes, on a route that is not the gateway.
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(300 * 1024));
    let (status, body) = app.api_post("/api/merchant-orders/sync", &big).await;
    assert_eq!(
        json_error(status, &body),
        (413, Some("body_too_large".into()), true),
        "{body}"
    );
    // Outside the APIs nothing changes: the page answers HTML or a redirect, not JSON.
    let response = app
        .http
        .get(format!("{}/no-such-page", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    app.stop().await;
}
crate::both_backends!(json_failures, failures_under_the_apis_are_json);

fn admin_listener(s: &mut Settings) {
    s.server.admin_listen = "127.0.0.1:0".into();
}

async fn the_admin_listener_alone_serves_admin_and_metrics(app: TestApp) {
    let admin = app.admin_address.clone().expect("an admin listener");
    let get = |base: String, path: &'static str| {
        let http = app.http.clone();
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(common::ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let public = app.address.clone();
    // Public: the gateway, /api and the probes; no /admin, no /metrics.
    assert_eq!(get(public.clone(), "/metrics").await, 404);
    assert_eq!(get(public.clone(), "/admin").await, 404);
    assert_eq!(get(public.clone(), "/admin/login").await, 404);
    assert_eq!(get(public.clone(), "/admin/api/messages").await, 404);
    assert_eq!(get(public.clone(), "/healthz").await, 200);
    assert_eq!(get(public.clone(), "/readyz").await, 200);
    let (status, _) = app
        .api_get("/api/merchant-orders/2021000000000101/NOPE")
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.post_notify("a=b").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "fail"),
        "the gateway answers on the public listener"
    );
    // Admin: /admin, /admin/api, /metrics and the probes; no gateway, no /api.
    assert_eq!(get(admin.clone(), "/metrics").await, 200);
    assert_eq!(get(admin.clone(), "/admin/api/messages").await, 200);
    assert_eq!(get(admin.clone(), "/admin/login").await, 200);
    assert_eq!(get(admin.clone(), "/healthz").await, 200);
    assert_eq!(
        get(admin.clone(), "/api/merchant-orders/2021000000000101/NOPE").await,
        404
    );
    let gateway = app
        .http
        .post(format!("{admin}/alipay/gateway"))
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(gateway.status(), 404);
    app.stop().await;
}
both_backends_with!(
    admin_listener_split,
    admin_listener,
    the_admin_listener_alone_serves_admin_and_metrics
);

async fn metrics_count_requests_in_seconds_and_the_process(app: TestApp) {
    for _ in 0..3 {
        app.http
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .unwrap();
    }
    let text = app.admin_get_text("/metrics").await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "isv_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\",status=\"200\"}",
            )
        })
        .unwrap_or_else(|| panic!("no HTTP histogram for /healthz:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(text.contains("isv_build_info{version=\""), "{text}");
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{name}{value}");
    }
    assert!(
        !text.contains("milliseconds"),
        "every duration is in seconds"
    );
    app.stop().await;
}
crate::both_backends!(
    http_and_process_metrics,
    metrics_count_requests_in_seconds_and_the_process
);
