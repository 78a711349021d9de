//! Support's web page at `/admin`, rendered by the binary itself (no build step, no script).
//!
//! Sign-in is by name and password of a support account (`users add`); repeated failures answer
//! 429 for a while (per name and per address). The session is a cookie (`HttpOnly`,
//! `SameSite=Strict`, and `Secure` whenever the request came over HTTPS) holding a random id that
//! the server keeps (as a hash) until sign-out, `users disable` or expiry. Every action is
//! recorded as `web:NAME`. Every form carries a CSRF token derived from the session (an HMAC of
//! its id), checked on every POST: a request without a valid session is refused (401), one with
//! a wrong CSRF token too (403).

use super::AppState;
use crate::alipay::form;
use crate::domain::lifecycle::OrderEvent;
use crate::domain::{MiniAppId, OrderId};
use crate::store::messages::MessageState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::hmac;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;

const COOKIE: &str = "isv_session";
/// Alipay calls shown per page on the order page.
const CALLS_PER_PAGE: i64 = 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(overview))
        .route("/admin/orders", web::get().to(orders_page))
        .route("/admin/login", web::get().to(login_page))
        .route("/admin/login", web::post().to(login))
        .route("/admin/logout", web::post().to(logout))
        .route("/admin/orders/{id}", web::get().to(order_page))
        .route("/admin/orders/{id}/terminate", web::post().to(terminate))
        .route("/admin/orders/{id}/reconcile", web::post().to(reconcile))
        .route("/admin/services/{mini_app_id}", web::get().to(service_page))
        .route("/admin/authorizations", web::get().to(authorizations_page))
        .route("/admin/messages", web::get().to(messages_page))
        .route(
            "/admin/messages/{app_id}/{notify_id}/replay",
            web::post().to(replay),
        )
        .route("/admin/deliveries", web::get().to(deliveries_page))
        .route(
            "/admin/deliveries/{tiny_app_id}/{out_biz_no}/resend",
            web::post().to(resend),
        );
}

fn key(state: &AppState) -> hmac::Key {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("isv-admin-web:{}", state.admin_token.expose_secret()).as_bytes(),
    );
    hmac::Key::new(hmac::HMAC_SHA256, digest.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(state: &AppState, text: &str) -> String {
    hex(hmac::sign(&key(state), text.as_bytes()).as_ref())
}

/// A signed-in support session.
struct Session {
    id: String,
    csrf: String,
    /// The operator's name, recorded with every action as `web:NAME`.
    operator: String,
}

/// The request's session, when the server still holds it (not signed out, not expired, the
/// operator not disabled).
async fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let id = req.cookie(COOKIE)?.value().to_string();
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let operator = state.services.session_operator(&id).await.ok()??;
    Some(Session {
        csrf: mac(state, &format!("csrf:{id}")),
        id,
        operator,
    })
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment, percent-encoded for a link or form action.
fn seg(text: &str) -> String {
    let mut out = String::new();
    form::encode_component(text.as_bytes(), &mut out);
    out.replace('+', "%20")
}

fn page(status: StatusCode, title: &str, session: Option<&Session>, body: &str) -> HttpResponse {
    let nav = match session {
        Some(s) => format!(
            r#"<nav><a href="/admin">Overview</a> <a href="/admin/orders">Orders</a> <a href="/admin/authorizations">Authorizations</a> <a href="/admin/messages">Messages</a> <a href="/admin/deliveries">Deliveries</a>
<span id="operator">{}</span> <form method="post" action="/admin/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button id="sign-out">Sign out</button></form></nav>"#,
            html_escape(&s.operator),
            s.csrf
        ),
        None => String::new(),
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-store"))
        .body(format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} · isv-lifecycle</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}}table{{border-collapse:collapse;width:100%;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}
nav a{{margin-right:1rem}}.inline{{display:inline}}.error{{color:#a00}}pre{{white-space:pre-wrap;word-break:break-all;font-size:.8rem}}</style></head>
<body>{nav}<h1>{title}</h1>{body}</body></html>"#,
            title = html_escape(title)
        ))
}

fn unavailable(title: &str, session: &Session) -> HttpResponse {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        title,
        Some(session),
        "<p class=\"error\">The database does not answer.</p>",
    )
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn refused(status: StatusCode, message: &str) -> HttpResponse {
    page(
        status,
        "Refused",
        None,
        &format!(
            r#"<p class="error">{}</p><p><a href="/admin/login">Sign in</a></p>"#,
            html_escape(message)
        ),
    )
}

fn form_fields(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let pairs = form::decode(body).ok()?;
    pairs
        .iter()
        .map(|(k, v)| {
            Some((
                String::from_utf8(k.to_vec()).ok()?,
                String::from_utf8(v.to_vec()).ok()?,
            ))
        })
        .collect()
}

/// A POST's session and form, or the refusal: no session → 401, wrong CSRF token → 403.
async fn checked_post(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Session, BTreeMap<String, String>), HttpResponse> {
    let Some(session) = session(req, state).await else {
        return Err(refused(StatusCode::UNAUTHORIZED, "Sign in first."));
    };
    let fields = form_fields(body).unwrap_or_default();
    let given = fields.get("csrf").map(String::as_str).unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), session.csrf.as_bytes())
        .is_err()
    {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "The form is stale or forged (CSRF token). Reload the page and try again.",
        ));
    }
    Ok((session, fields))
}

async fn login_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if session(&req, &state).await.is_some() {
        return see_other("/admin");
    }
    login_form(StatusCode::OK, None)
}

fn login_form(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let error = error
        .map(|e| {
            format!(
                r#"<p class="error" id="sign-in-error">{}</p>"#,
                html_escape(e)
            )
        })
        .unwrap_or_default();
    page(
        status,
        "Sign in",
        None,
        &format!(
            r#"{error}<form method="post" action="/admin/login"><label>Name <input name="name" id="name" autocomplete="username" required></label>
<label>Password <input type="password" name="password" id="password" autocomplete="current-password" required></label> <button id="sign-in">Sign in</button></form>"#
        ),
    )
}

async fn login(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    use super::throttle::Verdict;
    let fields = form_fields(&body).unwrap_or_default();
    let name = fields
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    let password = fields.get("password").cloned().unwrap_or_default();
    // The peer itself: a forwarded-for header is the client's to write.
    let address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let now = state.services.clock.now();
    if let Verdict::Throttled {
        retry_after_seconds,
    } = state.sign_in_throttle.check(&name, &address, now)
    {
        let mut refusal = login_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins. Wait a while and try again."),
        );
        if let Ok(value) = header::HeaderValue::from_str(&retry_after_seconds.to_string()) {
            refusal.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return refusal;
    }
    let signed_in = match state.services.sign_in(&name, &password).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "admin web sign-in failed");
            return login_form(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The database does not answer."),
            );
        }
    };
    let Some(new) = signed_in else {
        if state.sign_in_throttle.failed(&name, &address, now) {
            tracing::warn!(name = %name, address = %address, "admin web sign-in throttled after repeated failures");
        } else {
            tracing::debug!(name = %name, "admin web sign-in refused");
        }
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("That name and password do not match an enabled account."),
        );
    };
    state.sign_in_throttle.succeeded(&name);
    tracing::info!(operator = %name, "admin web sign-in");
    let cookie = actix_web::cookie::Cookie::build(COOKIE, new.id)
        .path("/admin")
        .http_only(true)
        // `Secure` whenever the sign-in came over HTTPS, directly or through a TLS-terminating
        // proxy (`X-Forwarded-Proto` / `Forwarded`): production. Over plain HTTP (a laptop)
        // browsers would not keep a `Secure` cookie at all.
        .secure(req.connection_info().scheme() == "https")
        .same_site(actix_web::cookie::SameSite::Strict)
        // Relative, so the browser's clock does not matter; the server enforces the expiry.
        .max_age(actix_web::cookie::time::Duration::seconds(
            (new.expires_at - state.services.clock.now()).num_seconds(),
        ))
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin"))
        .cookie(cookie)
        .finish()
}

async fn logout(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let session = match checked_post(&req, &state, &body).await {
        Ok((session, _)) => session,
        Err(refusal) => return refusal,
    };
    if state.services.sign_out(&session.id).await.is_err() {
        return unavailable("Sign out", &session);
    }
    tracing::info!(operator = %session.operator, "admin web sign-out");
    let mut gone = actix_web::cookie::Cookie::build(COOKIE, "")
        .path("/admin")
        .finish();
    gone.make_removal();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/login"))
        .cookie(gone)
        .finish()
}

/// The page's one time format: UTC to the second, with Beijing time (Alipay's) beside it.
fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    let beijing = t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"));
    let local = if beijing.date_naive() == t.date_naive() {
        beijing.format("%H:%M:%S")
    } else {
        beijing.format("%Y-%m-%d %H:%M:%S")
    };
    format!(
        r#"<time datetime="{}">{} UTC</time> <small>({local} Beijing)</small>"#,
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.format("%Y-%m-%d %H:%M:%S")
    )
}

fn opt_text(v: Option<&str>) -> String {
    html_escape(v.unwrap_or("—"))
}

/// Page sizes the order list offers.
const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];

/// The search form, shown above every order list.
fn search_form(q: &str, status: &str, at_risk: bool, limit: i64) -> String {
    use crate::domain::OrderStatus;
    let options: String = std::iter::once(("", "any status"))
        .chain(
            [
                OrderStatus::AwaitingPayment,
                OrderStatus::Implementing,
                OrderStatus::AwaitingConfirmation,
                OrderStatus::Completed,
                OrderStatus::Cancelled,
            ]
            .iter()
            .map(|s| (s.as_str(), s.as_str())),
        )
        .map(|(value, label)| {
            format!(
                r#"<option value="{value}"{}>{label}</option>"#,
                if value == status { " selected" } else { "" }
            )
        })
        .collect();
    let sizes: String = PAGE_SIZES
        .iter()
        .map(|n| {
            format!(
                r#"<option value="{n}"{}>{n}</option>"#,
                if *n == limit { " selected" } else { "" }
            )
        })
        .collect();
    format!(
        r#"<form method="get" action="/admin/orders" id="search-form"><label>Order id, merchant PID, mini program or merchant name <input name="q" id="q" size="36" value="{}"></label>
<select name="status" id="status-filter">{options}</select>
<label><input type="checkbox" name="at_risk" value="true" id="at-risk-filter"{}> at risk only</label>
<label>per page <select name="limit" id="page-size">{sizes}</select></label>
<button id="search">Search</button></form>"#,
        html_escape(q),
        if at_risk { " checked" } else { "" }
    )
}

async fn overview(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    let Ok(overview) = state.services.overview().await else {
        return unavailable("Overview", &session);
    };
    let counts: String = overview
        .counts
        .iter()
        .map(|(s, n)| {
            format!(
                r#"<tr><td><a href="/admin/orders?status={}">{}</a></td><td><a href="/admin/orders?status={}">{n}</a></td></tr>"#,
                seg(s),
                html_escape(s),
                seg(s)
            )
        })
        .collect();
    let risk: String = overview
        .at_risk
        .iter()
        .map(|(id, kind, due, status)| {
            format!(
                r#"<tr class="at-risk"><td><a href="/admin/orders/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                seg(id),
                html_escape(id),
                html_escape(status),
                html_escape(kind),
                when(*due)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Overview",
        Some(&session),
        &format!(
            r#"{search}<h2>Orders by state</h2><table id="counts"><tr><th>state</th><th>orders</th></tr>{counts}</table>
<h2>Deadlines at risk</h2><p>Implementation (30 days, then refunded) and confirmation deadlines, soonest first. <a href="/admin/orders?at_risk=true">All orders at risk</a></p>
<table id="at-risk"><tr><th>order</th><th>state</th><th>deadline</th><th>due</th></tr>{risk}</table>"#,
            search = search_form("", "", false, PAGE_SIZES[1])
        ),
    )
}

#[derive(serde::Deserialize)]
struct OrderListQuery {
    q: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
    at_risk: Option<String>,
}

/// `/admin/orders`: search and page through orders, newest first.
async fn orders_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OrderListQuery>,
) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    let f = query.into_inner();
    let q = f.q.clone().unwrap_or_default();
    let status = f.status.clone().unwrap_or_default();
    let at_risk = f.at_risk.as_deref() == Some("true");
    let limit = f.limit.unwrap_or(PAGE_SIZES[1]);
    let form = search_form(&q, &status, at_risk, limit);
    let (search, after, limit) =
        match super::admin::order_query(f.status, f.q, Some(limit), f.cursor.as_deref(), at_risk) {
            Ok(checked) => checked,
            Err((_, message)) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Orders",
                    Some(&session),
                    &format!(r#"{form}<p class="error">{}</p>"#, html_escape(&message)),
                );
            }
        };
    let Ok(found) = state
        .services
        .order_page(&search, after.as_ref(), limit)
        .await
    else {
        return unavailable("Orders", &session);
    };
    let rows: String = found
        .orders
        .iter()
        .map(|o| {
            format!(
                r#"<tr class="order"><td><a href="/admin/orders/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                seg(&o.commodity_order_id),
                html_escape(&o.commodity_order_id),
                html_escape(&o.status),
                opt_text(o.merchant_pid.as_deref()),
                opt_text(o.merchant_name.as_deref()),
                opt_text(o.mini_app_id.as_deref()),
                opt_text(o.total_price.as_deref()),
                when(o.ordered_at)
            )
        })
        .collect();
    let next = match &found.next_cursor {
        Some(cursor) => {
            let mut link = format!("/admin/orders?cursor={}&limit={limit}", seg(cursor));
            for (key, value) in [("q", q.as_str()), ("status", status.as_str())] {
                if !value.is_empty() {
                    link.push_str(&format!("&{key}={}", seg(value)));
                }
            }
            if at_risk {
                link.push_str("&at_risk=true");
            }
            format!(
                r#"<p><a id="next-page" href="{}">Next page</a></p>"#,
                html_escape(&link)
            )
        }
        None => r#"<p id="last-page">No more orders.</p>"#.into(),
    };
    page(
        StatusCode::OK,
        "Orders",
        Some(&session),
        &format!(
            r#"{form}<table id="orders"><tr><th>order</th><th>status</th><th>merchant PID</th><th>merchant</th><th>mini program</th><th>price</th><th>ordered</th></tr>{rows}</table>{next}"#
        ),
    )
}

#[derive(serde::Deserialize)]
struct OrderPageQuery {
    /// Alipay calls older than this call id (the next page of calls).
    calls_before: Option<i64>,
}

async fn order_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
    query: web::Query<OrderPageQuery>,
) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    let view = OrderPageView {
        calls_before: query.calls_before,
        ..OrderPageView::default()
    };
    order_response(&state, &session, &path.into_inner(), StatusCode::OK, view).await
}

/// What the order page shows beside the order: an error, the outcome of an action, which page
/// of Alipay calls.
#[derive(Default)]
struct OrderPageView<'a> {
    error: Option<&'a str>,
    calls_before: Option<i64>,
}

/// A history row's "move": a status change, or what happened while the status stayed.
fn history_move(h: &crate::service::views::HistoryView) -> String {
    match h.from_status.as_deref() {
        Some(from) if from == h.to_status => {
            let (what, detail) = h.cause.split_once(':').unwrap_or((h.cause.as_str(), ""));
            let what = match what {
                "service_terminated" => "service terminated",
                "service_live" => "service live",
                "build" => "build step",
                other => other,
            };
            if detail.is_empty() {
                html_escape(what)
            } else {
                format!("{} <b>{}</b>", html_escape(what), html_escape(detail))
            }
        }
        Some(from) => format!("{} → {}", html_escape(from), html_escape(&h.to_status)),
        None => format!("→ {}", html_escape(&h.to_status)),
    }
}

async fn order_response(
    state: &AppState,
    session: &Session,
    id: &OrderId,
    status: StatusCode,
    view: OrderPageView<'_>,
) -> HttpResponse {
    let services = &state.services;
    let found = async {
        let order = services.order(id).await?;
        // The service's periods and expiry, shown beside the order.
        let service = match order.as_ref().and_then(|o| o.mini_app_id.as_deref()) {
            Some(app) => services.service(&MiniAppId::from(app)).await?,
            None => None,
        };
        Ok::<_, crate::service::views::ViewError>((
            order,
            services.messages_about(id).await?,
            // One more than shown tells whether an older page exists.
            services
                .calls_about(id, view.calls_before, CALLS_PER_PAGE + 1)
                .await?,
            service,
        ))
    }
    .await;
    let (order, messages, mut calls, service_view) = match found {
        Ok((Some(order), messages, calls, service)) => (order, messages, calls, service),
        Ok((None, _, _, _)) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such order",
                Some(session),
                &format!("<p>No order {}.</p>", html_escape(id.as_str())),
            );
        }
        _ => {
            return unavailable("Order", session);
        }
    };
    let history: String = order
        .history
        .iter()
        .flatten()
        .map(|h| {
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"actor\">{}</td><td>{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
                when(h.at),
                history_move(h),
                html_escape(&h.actor),
                html_escape(&h.cause),
                opt_text(h.reason.as_deref()),
                if h.inferred { "inferred" } else { "" }
            )
        })
        .collect();
    let deadlines: String = order
        .deadlines
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&d.kind),
                when(d.due_at),
                html_escape(&d.state)
            )
        })
        .collect();
    let raw: String = messages
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                when(m.received_at),
                html_escape(&m.kind),
                html_escape(&m.state),
                html_escape(&m.params)
            )
        })
        .collect();
    let older = calls.len() as i64 > CALLS_PER_PAGE;
    calls.truncate(CALLS_PER_PAGE as usize);
    let calls_pager = match (older, calls.last()) {
        (true, Some(last)) => format!(
            r#"<p><a id="older-calls" href="/admin/orders/{}?calls_before={}">Older calls</a></p>"#,
            seg(id.as_str()),
            last.id
        ),
        _ => String::new(),
    };
    let calls_pager = if view.calls_before.is_some() {
        format!(
            r#"{calls_pager}<p><a href="/admin/orders/{}">Newest calls</a></p>"#,
            seg(id.as_str())
        )
    } else {
        calls_pager
    };
    let calls: String = calls
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(c.at),
                html_escape(&c.method),
                html_escape(&c.result)
            )
        })
        .collect();
    let service = match &order.service {
        Some(s) => format!(
            "<span id=\"service-status\">{}</span> {}{}",
            html_escape(&s.status),
            s.termination_cause
                .as_deref()
                .map(|c| format!("({})", html_escape(c)))
                .unwrap_or_default(),
            s.terminated_by
                .as_deref()
                .map(|by| format!(" by <span id=\"terminated-by\">{}</span>", html_escape(by)))
                .unwrap_or_default()
        ),
        None => "—".into(),
    };
    let build = match &order.build {
        Some(b) => format!(
            "{} <b>{}</b>{}",
            html_escape(&b.app_version),
            html_escape(&b.step),
            b.last_error
                .as_deref()
                .map(|e| format!(" <span class=\"error\">{}</span>", html_escape(e)))
                .unwrap_or_default()
        ),
        None => "—".into(),
    };
    let (expires, periods) = match &service_view {
        Some(s) => (
            s.expires_at.map_or("—".to_string(), when),
            s.periods
                .iter()
                .map(|p| {
                    format!(
                        r#"<tr><td><a href="/admin/orders/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                        seg(&p.commodity_order_id),
                        html_escape(&p.commodity_order_id),
                        when(p.starts_at),
                        p.ends_at.map_or("no end known".to_string(), when),
                        html_escape(&p.state)
                    )
                })
                .collect::<String>(),
        ),
        None => ("—".to_string(), String::new()),
    };
    let tasks = if order.open_tasks.is_empty() {
        "none".to_string()
    } else {
        order
            .open_tasks
            .iter()
            .map(|t| html_escape(t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let error = view
        .error
        .map(|e| format!(r#"<p class="error">{}</p>"#, html_escape(e)))
        .unwrap_or_default();
    let reading = match (&order.alipay_reading, order.reconciled_at) {
        (Some(r), Some(at)) => format!("{} at {}", html_escape(r), when(at)),
        (Some(r), None) => html_escape(r),
        (None, _) => "—".into(),
    };
    let item = match (&order.title, &order.item_code) {
        (Some(t), Some(c)) => format!("{} ({})", html_escape(t), html_escape(c)),
        (t, c) => opt_text(t.as_deref().or(c.as_deref())),
    };
    let action = |what: &str| format!("/admin/orders/{}/{what}", seg(id.as_str()));
    page(
        status,
        &format!("Order {id}"),
        Some(session),
        &format!(
            r#"{error}<table id="order"><tr><th>status</th><td id="status">{status_}</td></tr><tr><th>since</th><td>{since}</td></tr><tr><th>cancel reason</th><td>{reason}</td></tr>
<tr><th>merchant PID</th><td id="merchant-pid">{pid}</td></tr><tr><th>merchant</th><td id="merchant-name">{merchant}</td></tr>
<tr><th>item</th><td id="item">{item}</td></tr><tr><th>price</th><td id="price">{price}</td></tr><tr><th>ordered</th><td>{ordered}</td></tr><tr><th>paid</th><td id="paid-at">{paid}</td></tr>
<tr><th>mini program</th><td>{app}</td></tr><tr><th>service</th><td>{service}</td></tr><tr><th>build</th><td id="build">{build}</td></tr>
<tr><th>open tasks</th><td id="open-tasks">{tasks}</td></tr><tr><th>refund</th><td id="refund">{refund}</td></tr><tr><th>last Alipay reading</th><td>{reading}</td></tr></table>
<form method="post" action="{reconcile}" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button id="reconcile">Reconcile now</button></form>
<h2>Terminate the service</h2>
<form method="post" action="{terminate}" id="terminate-form"><input type="hidden" name="csrf" value="{csrf}">
<label>Reason <input name="reason" id="reason" required size="60"></label>
<label><input type="checkbox" name="confirm" value="yes" id="confirm" required> I understand this ends the merchant's service</label>
<button id="terminate">Terminate</button></form>
<h2>Service periods</h2><p>Expires: <span id="service-expires">{expires}</span></p><table id="service-periods"><tr><th>order</th><th>starts</th><th>ends</th><th>state</th></tr>{periods}</table>
<h2>Deadlines</h2><table><tr><th>kind</th><th>due</th><th>state</th></tr>{deadlines}</table>
<h2>Timeline</h2><table id="timeline"><tr><th>at</th><th>what</th><th>actor</th><th>cause</th><th>reason</th><th></th></tr>{history}</table>
<h2>Alipay calls, newest first</h2><table id="calls"><tr><th>at</th><th>method</th><th>result</th></tr>{calls}</table>{calls_pager}
<h2>Gateway messages (secrets masked)</h2><table><tr><th>received</th><th>kind</th><th>state</th><th>parameters</th></tr>{raw}</table>"#,
            status_ = html_escape(&order.status),
            since = when(order.status_since),
            reason = opt_text(order.cancel_reason.as_deref()),
            pid = opt_text(order.merchant_pid.as_deref()),
            merchant = opt_text(order.merchant_name.as_deref()),
            price = opt_text(order.total_price.as_deref()),
            ordered = when(order.ordered_at),
            // When the 30-day clock started, and from what we know it.
            paid = match (order.paid_at, order.paid_at_source.as_deref()) {
                (Some(at), source) => format!("{} ({})", when(at), opt_text(source)),
                (None, _) => opt_text(None),
            },
            // The order page links to its service (periods, expiry, build).
            app = match order.mini_app_id.as_deref() {
                Some(app) => format!(
                    r#"<a id="service-link" href="/admin/services/{}">{}</a>"#,
                    seg(app),
                    html_escape(app)
                ),
                None => "—".into(),
            },
            refund = opt_text(order.refund.as_deref()),
            reconcile = action("reconcile"),
            terminate = action("terminate"),
            csrf = session.csrf,
        ),
    )
}

async fn terminate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
    body: web::Bytes,
) -> HttpResponse {
    let (session, fields) = match checked_post(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let id = path.into_inner();
    let reason = fields
        .get("reason")
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    if reason.is_empty() || fields.get("confirm").map(String::as_str) != Some("yes") {
        return order_response(
            &state,
            &session,
            &id,
            StatusCode::UNPROCESSABLE_ENTITY,
            OrderPageView {
                error: Some("A reason and the confirmation are required."),
                ..OrderPageView::default()
            },
        )
        .await;
    }
    let event = OrderEvent::SupportTerminates {
        actor: format!("web:{}", session.operator),
        reason,
    };
    match state.services.order_event_now(&id, event).await {
        Ok(_) => see_other(&format!("/admin/orders/{}", seg(id.as_str()))),
        Err(e) => {
            order_response(
                &state,
                &session,
                &id,
                StatusCode::UNPROCESSABLE_ENTITY,
                OrderPageView {
                    error: Some(&e.to_string()),
                    ..OrderPageView::default()
                },
            )
            .await
        }
    }
}

async fn reconcile(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
    body: web::Bytes,
) -> HttpResponse {
    let (session, _) = match checked_post(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let id = path.into_inner();
    match state.services.reconcile_order(&id).await {
        Ok(_) => see_other(&format!("/admin/orders/{}", seg(id.as_str()))),
        Err(e) => {
            order_response(
                &state,
                &session,
                &id,
                StatusCode::BAD_GATEWAY,
                OrderPageView {
                    error: Some(&e.to_string()),
                    ..OrderPageView::default()
                },
            )
            .await
        }
    }
}

/// A mini program's service: its status, its periods (one per paid order, each linking to its
/// order), when it expires, and its newest build.
async fn service_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<MiniAppId>,
) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    let id = path.into_inner();
    let service = match state.services.service(&id).await {
        Ok(Some(service)) => service,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such service",
                Some(&session),
                &format!(
                    "<p>No service for mini program {}.</p>",
                    html_escape(id.as_str())
                ),
            );
        }
        _ => return unavailable("Service", &session),
    };
    let periods: String = service
        .periods
        .iter()
        .map(|p| {
            format!(
                r#"<tr><td><a href="/admin/orders/{}">{}</a></td><td>{}</td><td>{}</td><td class="period-state">{}</td></tr>"#,
                seg(&p.commodity_order_id),
                html_escape(&p.commodity_order_id),
                when(p.starts_at),
                p.ends_at.map_or("no end known".to_string(), when),
                html_escape(&p.state)
            )
        })
        .collect();
    let build = match &service.build {
        Some(b) => format!(
            "{} <b>{}</b>",
            html_escape(&b.app_version),
            html_escape(&b.step)
        ),
        None => "—".into(),
    };
    page(
        StatusCode::OK,
        &format!("Service {id}"),
        Some(&session),
        &format!(
            r#"<table id="service"><tr><th>status</th><td id="service-status">{status}</td></tr><tr><th>termination cause</th><td>{cause}</td></tr>
<tr><th>expires</th><td id="expires-at">{expires}</td></tr><tr><th>build</th><td id="build">{build}</td></tr><tr><th>open tasks</th><td>{tasks}</td></tr></table>
<h2>Periods</h2><table id="periods"><tr><th>order</th><th>starts</th><th>ends</th><th>state</th></tr>{periods}</table>"#,
            status = html_escape(&service.status),
            cause = opt_text(service.termination_cause.as_deref()),
            expires = service.expires_at.map_or("—".to_string(), when),
            tasks = if service.open_tasks.is_empty() {
                "none".to_string()
            } else {
                html_escape(&service.open_tasks.join(", "))
            },
        ),
    )
}

async fn authorizations_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    let Ok(list) = state.services.authorization_list().await else {
        return unavailable("Authorizations", &session);
    };
    let rows: String = list
        .iter()
        .map(|a| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&a.auth_app_id),
                html_escape(a.user_id.as_deref().unwrap_or("—")),
                html_escape(a.status.as_str()),
                when(crate::store::from_db_time(a.auth_time)),
                html_escape(a.attention.as_deref().unwrap_or(""))
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Authorizations",
        Some(&session),
        &format!(
            "<table><tr><th>mini program</th><th>merchant</th><th>status</th><th>auth time</th><th>attention</th></tr>{rows}</table>"
        ),
    )
}

async fn messages_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    messages_response(&state, &session, StatusCode::OK, None).await
}

/// The outcome of an action, shown above a list: (succeeded, text).
fn notice(outcome: Option<(bool, String)>) -> String {
    match outcome {
        Some((true, text)) => format!(r#"<p class="done" id="result">{}</p>"#, html_escape(&text)),
        Some((false, text)) => {
            format!(r#"<p class="error" id="result">{}</p>"#, html_escape(&text))
        }
        None => String::new(),
    }
}

async fn messages_response(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    outcome: Option<(bool, String)>,
) -> HttpResponse {
    let services = &state.services;
    let found = async {
        Ok::<_, crate::service::support::SupportError>((
            services
                .messages_in_state(Some(MessageState::Quarantined), 200)
                .await?,
            services
                .messages_in_state(Some(MessageState::Failed), 200)
                .await?,
        ))
    }
    .await;
    let Ok((quarantined, failed)) = found else {
        return unavailable("Messages", session);
    };
    let rows = |list: &[crate::service::views::MessageView]| -> String {
        list.iter()
            .map(|m| {
                let app = if m.app_id.is_empty() { "-".to_string() } else { m.app_id.clone() };
                format!(
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/admin/messages/{}/{}/replay"><input type="hidden" name="csrf" value="{}"><button>Replay</button></form></td></tr>"#,
                    when(m.received_at),
                    html_escape(&m.notify_id),
                    html_escape(&m.kind),
                    html_escape(&m.state),
                    html_escape(m.last_error.as_deref().unwrap_or("")),
                    seg(&app),
                    seg(&m.notify_id),
                    session.csrf
                )
            })
            .collect()
    };
    let head = "<tr><th>received</th><th>notify_id</th><th>kind</th><th>state</th><th>why</th><th></th></tr>";
    page(
        status,
        "Messages",
        Some(session),
        &format!(
            "{}<h2>Quarantined</h2><table>{head}{}</table><h2>Failed</h2><table>{head}{}</table>",
            notice(outcome),
            rows(&quarantined),
            rows(&failed)
        ),
    )
}

async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let session = match checked_post(&req, &state, &body).await {
        Ok((session, _)) => session,
        Err(refusal) => return refusal,
    };
    let (app_id, notify_id) = path.into_inner();
    let app_id = if app_id == "-" { String::new() } else { app_id };
    let shown = notify_id.clone();
    let (status, outcome) = match state.services.replay_message(&app_id, &notify_id).await {
        Ok(view) => (
            StatusCode::OK,
            (
                true,
                format!("Message {shown} is queued again (now {}).", view.state),
            ),
        ),
        Err(e) => (
            StatusCode::CONFLICT,
            (false, format!("Message {shown} was not replayed: {e}")),
        ),
    };
    messages_response(&state, &session, status, Some(outcome)).await
}

async fn deliveries_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return see_other("/admin/login");
    };
    deliveries_response(&state, &session, StatusCode::OK, None).await
}

async fn deliveries_response(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    outcome: Option<(bool, String)>,
) -> HttpResponse {
    let Ok(list) = state.services.failed_deliveries().await else {
        return unavailable("Deliveries", session);
    };
    let rows: String = list
        .iter()
        .map(|d| {
            format!(
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method="post" action="/admin/deliveries/{}/{}/resend"><input type="hidden" name="csrf" value="{}"><button>Resend</button></form></td></tr>"#,
                html_escape(&d.tiny_app_id),
                html_escape(&d.out_biz_no),
                html_escape(&d.status),
                html_escape(d.sub_code.as_deref().unwrap_or("")),
                html_escape(d.last_error.as_deref().unwrap_or("")),
                seg(&d.tiny_app_id),
                seg(&d.out_biz_no),
                session.csrf
            )
        })
        .collect();
    page(
        status,
        "Failed merchant-order deliveries",
        Some(session),
        &format!(
            "{}<table><tr><th>mini program</th><th>order</th><th>status</th><th>sub_code</th><th>error</th><th></th></tr>{rows}</table>",
            notice(outcome)
        ),
    )
}

async fn resend(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let session = match checked_post(&req, &state, &body).await {
        Ok((session, _)) => session,
        Err(refusal) => return refusal,
    };
    let (tiny, out) = path.into_inner();
    let shown = format!("{tiny}/{out}");
    let (status, outcome) = match state.services.resend_merchant_order(&tiny, &out).await {
        Ok(view) => (
            StatusCode::OK,
            (
                true,
                format!(
                    "Order {shown} is queued for delivery (now {}).",
                    view.delivery
                ),
            ),
        ),
        Err(e) => (
            StatusCode::CONFLICT,
            (false, format!("Order {shown} was not resent: {e}")),
        ),
    };
    deliveries_response(&state, &session, status, Some(outcome)).await
}
