//! Support's web page at `/admin`, rendered by the binary itself (no build step, no script).
//!
//! Sign-in is with the admin token; the session is a cookie (`HttpOnly`, `SameSite=Strict`, and
//! `Secure` whenever the request came over HTTPS) holding a random id, its expiry and an HMAC over
//! both. Every form carries a
//! CSRF token derived from the session (an HMAC of its id), checked on every POST: a request
//! without a valid session is refused (401), one with a wrong CSRF token too (403).

use super::AppState;
use crate::alipay::form;
use crate::domain::lifecycle::OrderEvent;
use crate::service::blocking;
use crate::store::messages::MessageState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::hmac;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;

const COOKIE: &str = "isv_session";
const SESSION_HOURS: i64 = 12;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(overview))
        .route("/admin/login", web::get().to(login_page))
        .route("/admin/login", web::post().to(login))
        .route("/admin/logout", web::post().to(logout))
        .route("/admin/orders/{id}", web::get().to(order_page))
        .route("/admin/orders/{id}/terminate", web::post().to(terminate))
        .route("/admin/orders/{id}/reconcile", web::post().to(reconcile))
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
}

fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let cookie = req.cookie(COOKIE)?;
    let mut parts = cookie.value().splitn(3, '.');
    let (id, expiry, given) = (parts.next()?, parts.next()?, parts.next()?);
    let expected = mac(state, &format!("{id}.{expiry}"));
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes())
        .ok()?;
    let expiry: i64 = expiry.parse().ok()?;
    if state.services.clock.now().timestamp() > expiry {
        return None;
    }
    Some(Session {
        id: id.to_string(),
        csrf: mac(state, &format!("csrf:{id}")),
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
            r#"<nav><a href="/admin">Overview</a> <a href="/admin/authorizations">Authorizations</a> <a href="/admin/messages">Messages</a> <a href="/admin/deliveries">Deliveries</a>
<form method="post" action="/admin/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button>Sign out</button></form></nav>"#,
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
fn checked_post(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Session, BTreeMap<String, String>), HttpResponse> {
    let Some(session) = session(req, state) else {
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
    if session(&req, &state).is_some() {
        return see_other("/admin");
    }
    login_form(StatusCode::OK, None)
}

fn login_form(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let error = error
        .map(|e| format!(r#"<p class="error">{}</p>"#, html_escape(e)))
        .unwrap_or_default();
    page(
        status,
        "Sign in",
        None,
        &format!(
            r#"{error}<form method="post" action="/admin/login"><label>Admin token <input type="password" name="token" id="token" autocomplete="off" required></label> <button id="sign-in">Sign in</button></form>"#
        ),
    )
}

async fn login(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let fields = form_fields(&body).unwrap_or_default();
    let given = fields.get("token").map(String::as_str).unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        given.as_bytes(),
        state.admin_token.expose_secret().as_bytes(),
    )
    .is_err()
    {
        tracing::warn!("admin web sign-in refused");
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    let id: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let expiry = state.services.clock.now().timestamp() + SESSION_HOURS * 3600;
    let value = format!("{id}.{expiry}.{}", mac(&state, &format!("{id}.{expiry}")));
    let cookie = actix_web::cookie::Cookie::build(COOKIE, value)
        .path("/admin")
        .http_only(true)
        // `Secure` whenever the sign-in came over HTTPS, directly or through a TLS-terminating
        // proxy (`X-Forwarded-Proto` / `Forwarded`): production. Over plain HTTP (a laptop)
        // browsers would not keep a `Secure` cookie at all.
        .secure(req.connection_info().scheme() == "https")
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin"))
        .cookie(cookie)
        .finish()
}

async fn logout(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    if let Err(refusal) = checked_post(&req, &state, &body) {
        return refusal;
    }
    let mut gone = actix_web::cookie::Cookie::build(COOKIE, "")
        .path("/admin")
        .finish();
    gone.make_removal();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/login"))
        .cookie(gone)
        .finish()
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

async fn overview(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state) else {
        return see_other("/admin/login");
    };
    let services = state.services.clone();
    let Ok(Ok(overview)) = blocking(move || services.overview()).await else {
        return unavailable("Overview", &session);
    };
    let counts: String = overview
        .counts
        .iter()
        .map(|(s, n)| format!("<tr><td>{}</td><td>{n}</td></tr>", html_escape(s)))
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
            r#"<h2>Orders by state</h2><table><tr><th>state</th><th>orders</th></tr>{counts}</table>
<h2>Deadlines at risk</h2><p>Implementation (30 days, then refunded) and confirmation deadlines, soonest first.</p>
<table id="at-risk"><tr><th>order</th><th>state</th><th>deadline</th><th>due</th></tr>{risk}</table>"#
        ),
    )
}

async fn order_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(session) = session(&req, &state) else {
        return see_other("/admin/login");
    };
    order_response(&state, &session, &path.into_inner(), StatusCode::OK, None).await
}

async fn order_response(
    state: &AppState,
    session: &Session,
    id: &str,
    status: StatusCode,
    error: Option<&str>,
) -> HttpResponse {
    let (services, lookup) = (state.services.clone(), id.to_string());
    let found = blocking(move || {
        Ok::<_, crate::service::views::ViewError>((
            services.order(&lookup)?,
            services.messages_about(&lookup)?,
            services.calls_about(&lookup)?,
        ))
    })
    .await;
    let (order, messages, calls) = match found {
        Ok(Ok((Some(order), messages, calls))) => (order, messages, calls),
        Ok(Ok((None, _, _))) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such order",
                Some(session),
                &format!("<p>No order {}.</p>", html_escape(id)),
            );
        }
        _ => {
            return unavailable("Order", session);
        }
    };
    let o = serde_json::to_value(&order).unwrap_or_default();
    let text = |v: &serde_json::Value| html_escape(v.as_str().unwrap_or("—"));
    let history: String = o["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    format!(
                        "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
                        text(&e["at"]),
                        text(&e["from_status"]),
                        text(&e["to_status"]),
                        text(&e["actor"]),
                        text(&e["cause"]),
                        text(&e["reason"]),
                        if e["inferred"] == true { "inferred" } else { "" }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let deadlines: String = o["deadlines"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|d| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        text(&d["kind"]),
                        text(&d["due_at"]),
                        text(&d["state"])
                    )
                })
                .collect()
        })
        .unwrap_or_default();
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
    let calls: String = calls
        .iter()
        .map(|(at, method, result)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(*at),
                html_escape(method),
                html_escape(result)
            )
        })
        .collect();
    let service = match o["service"].as_object() {
        Some(s) => format!(
            "<span id=\"service-status\">{}</span> {}",
            html_escape(s.get("status").and_then(|v| v.as_str()).unwrap_or("")),
            s.get("termination_cause")
                .and_then(|v| v.as_str())
                .map(|c| format!("({})", html_escape(c)))
                .unwrap_or_default()
        ),
        None => "—".into(),
    };
    let error = error
        .map(|e| format!(r#"<p class="error">{}</p>"#, html_escape(e)))
        .unwrap_or_default();
    let action = |what: &str| format!("/admin/orders/{}/{what}", seg(id));
    page(
        status,
        &format!("Order {id}"),
        Some(session),
        &format!(
            r#"{error}<table><tr><th>status</th><td id="status">{status_}</td></tr><tr><th>cancel reason</th><td>{reason}</td></tr>
<tr><th>mini program</th><td>{app}</td></tr><tr><th>service</th><td>{service}</td></tr><tr><th>last Alipay reading</th><td>{reading}</td></tr></table>
<form method="post" action="{reconcile}" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button id="reconcile">Reconcile now</button></form>
<h2>Terminate the service</h2>
<form method="post" action="{terminate}" id="terminate-form"><input type="hidden" name="csrf" value="{csrf}">
<label>Reason <input name="reason" id="reason" required size="60"></label>
<label><input type="checkbox" name="confirm" value="yes" id="confirm" required> I understand this ends the merchant's service</label>
<button id="terminate">Terminate</button></form>
<h2>Deadlines</h2><table><tr><th>kind</th><th>due</th><th>state</th></tr>{deadlines}</table>
<h2>Timeline</h2><table id="timeline"><tr><th>at</th><th>move</th><th>actor</th><th>cause</th><th>reason</th><th></th></tr>{history}</table>
<h2>Alipay calls</h2><table id="calls"><tr><th>at</th><th>method</th><th>result</th></tr>{calls}</table>
<h2>Gateway messages (secrets masked)</h2><table><tr><th>received</th><th>kind</th><th>state</th><th>parameters</th></tr>{raw}</table>"#,
            status_ = text(&o["status"]),
            reason = text(&o["cancel_reason"]),
            app = text(&o["mini_app_id"]),
            reading = text(&o["alipay_reading"]),
            reconcile = action("reconcile"),
            terminate = action("terminate"),
            csrf = session.csrf,
        ),
    )
}

async fn terminate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (session, fields) = match checked_post(&req, &state, &body) {
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
            Some("A reason and the confirmation are required."),
        )
        .await;
    }
    let event = OrderEvent::SupportTerminates {
        actor: format!("web:{}", &session.id[..8]),
        reason,
    };
    match state.services.order_event_now(&id, event).await {
        Ok(_) => see_other(&format!("/admin/orders/{}", seg(&id))),
        Err(e) => {
            order_response(
                &state,
                &session,
                &id,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&e.to_string()),
            )
            .await
        }
    }
}

async fn reconcile(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (session, _) = match checked_post(&req, &state, &body) {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let id = path.into_inner();
    match state.services.reconcile_order(&id).await {
        Ok(_) => see_other(&format!("/admin/orders/{}", seg(&id))),
        Err(e) => {
            order_response(
                &state,
                &session,
                &id,
                StatusCode::BAD_GATEWAY,
                Some(&e.to_string()),
            )
            .await
        }
    }
}

async fn authorizations_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state) else {
        return see_other("/admin/login");
    };
    let services = state.services.clone();
    let Ok(Ok(list)) = blocking(move || services.authorization_list()).await else {
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
                a.auth_time,
                html_escape(a.attention.as_deref().unwrap_or(""))
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Authorizations",
        Some(&session),
        &format!(
            "<table><tr><th>mini program</th><th>merchant</th><th>status</th><th>auth time (UTC)</th><th>attention</th></tr>{rows}</table>"
        ),
    )
}

async fn messages_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state) else {
        return see_other("/admin/login");
    };
    let services = state.services.clone();
    let found = blocking(move || {
        Ok::<_, crate::service::support::SupportError>((
            services.messages_in_state(Some(MessageState::Quarantined), 200)?,
            services.messages_in_state(Some(MessageState::Failed), 200)?,
        ))
    })
    .await;
    let Ok(Ok((quarantined, failed))) = found else {
        return unavailable("Messages", &session);
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
        StatusCode::OK,
        "Messages",
        Some(&session),
        &format!(
            "<h2>Quarantined</h2><table>{head}{}</table><h2>Failed</h2><table>{head}{}</table>",
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
    if let Err(refusal) = checked_post(&req, &state, &body) {
        return refusal;
    }
    let (app_id, notify_id) = path.into_inner();
    let app_id = if app_id == "-" { String::new() } else { app_id };
    let services = state.services.clone();
    let _ = blocking(move || services.replay_message(&app_id, &notify_id)).await;
    see_other("/admin/messages")
}

async fn deliveries_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(session) = session(&req, &state) else {
        return see_other("/admin/login");
    };
    let services = state.services.clone();
    let Ok(Ok(list)) = blocking(move || services.failed_deliveries()).await else {
        return unavailable("Deliveries", &session);
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
        StatusCode::OK,
        "Failed merchant-order deliveries",
        Some(&session),
        &format!(
            "<table><tr><th>mini program</th><th>order</th><th>status</th><th>sub_code</th><th>error</th><th></th></tr>{rows}</table>"
        ),
    )
}

async fn resend(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(refusal) = checked_post(&req, &state, &body) {
        return refusal;
    }
    let (tiny, out) = path.into_inner();
    let services = state.services.clone();
    let _ = blocking(move || services.resend_merchant_order(&tiny, &out)).await;
    see_other("/admin/deliveries")
}
