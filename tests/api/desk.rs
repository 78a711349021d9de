//! The support desk: finding orders among many (search keys, keyset pagination), named
//! operators (sign-in by name and password, sessions held by the server, throttling), and the
//! actor recorded for web and API actions.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::Duration;
use isv_lifecycle::store::orders::{self, NewOrder};
use serde_json::Value;
use std::collections::HashSet;

/// `count` orders written straight to the store: ids `D0000`..; every four share one
/// `created_at` (ties the cursor must break by id); statuses alternate; every tenth has a
/// merchant name; order `i` belongs to merchant PID `merchant(i)`.
pub fn fill(app: &TestApp, count: usize, merchant: impl Fn(usize) -> String) {
    let mut conn = app.services.pool.get().unwrap();
    let base = crate::helpers::start_time().naive_utc();
    diesel::Connection::transaction::<_, diesel::result::Error, _>(&mut *conn, |conn| {
        for i in 0..count {
            let at = base + Duration::seconds((i / 4) as i64);
            let status = if i % 3 == 0 {
                "implementing"
            } else {
                "completed"
            };
            let order = NewOrder {
                commodity_order_id: format!("D{i:04}"),
                status: isv_lifecycle::domain::OrderStatus::parse(status).expect("an order status"),
                cancel_reason: None,
                merchant_pid: Some(merchant(i)),
                mini_app_id: Some(format!("2021{:012}", i)),
                item_code: Some("TS0001".into()),
                title: Some("模板服务".into()),
                total_price: Some("9.90".into()),
                merchant_name: (i % 10 == 0).then(|| format!("杭州测试{i:04}有限公司")),
                isv_app_id: None,
                ordered_at: at,
                status_since: at,
                created_at: at,
                updated_at: at,
            };
            assert!(orders::insert_if_absent(conn, &order)?);
        }
        Ok(())
    })
    .unwrap();
}

fn fifty_merchants(i: usize) -> String {
    format!("2088{:012}", i % 50)
}

/// Every order id the list yields, following `next_cursor` from `first` (a path with query).
async fn follow(app: &TestApp, first: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut path = first.to_string();
    loop {
        let (status, page) = app.admin_get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        pages += 1;
        for o in page["orders"].as_array().unwrap() {
            ids.push(o["commodity_order_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                let sep = if first.contains('?') { '&' } else { '?' };
                path = format!("{first}{sep}cursor={cursor}");
            }
            None => return (ids, pages),
        }
    }
}

async fn pagination_sees_every_order_once(app: TestApp) {
    fill(&app, 1000, fifty_merchants);
    let (ids, pages) = follow(&app, "/admin/api/orders?limit=37").await;
    assert_eq!(pages, 28, "1000 orders in pages of 37");
    assert_eq!(ids.len(), 1000);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        1000,
        "no order twice"
    );
    // Newest first, ties by id descending: exactly the reverse of the ids' order here.
    let mut expected: Vec<String> = (0..1000).map(|i| format!("D{i:04}")).collect();
    expected.reverse();
    assert_eq!(ids, expected);

    // With a filter: every implementing order once, and only those.
    let (ids, _) = follow(&app, "/admin/api/orders?status=implementing&limit=50").await;
    assert_eq!(ids.len(), 334);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 334);
    assert!(
        ids.iter()
            .all(|id| id[1..].parse::<usize>().unwrap() % 3 == 0)
    );

    // A merchant PID with 20 orders, in pages of 7.
    let (ids, pages) = follow(&app, "/admin/api/orders?q=2088000000000007&limit=7").await;
    assert_eq!((ids.len(), pages), (20, 3));
    assert!(
        ids.iter()
            .all(|id| id[1..].parse::<usize>().unwrap() % 50 == 7)
    );

    // The default page is 100; more than 500, or a cursor we did not give, is refused.
    let (_, page) = app.admin_get("/admin/api/orders").await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 100);
    for (path, field) in [
        ("/admin/api/orders?limit=501", "limit"),
        ("/admin/api/orders?limit=0", "limit"),
        ("/admin/api/orders?cursor=not-a-cursor", "cursor"),
        ("/admin/api/orders?status=lost", "status"),
    ] {
        let (status, err) = app.admin_get(path).await;
        assert_eq!(
            (status, err["error"].as_str(), err["field"].as_str()),
            (400, Some("invalid_field"), Some(field)),
            "{path}: {err}"
        );
    }
}
both_backends!(pagination, pagination_sees_every_order_once);

fn listed(page: &Value) -> Vec<String> {
    page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["commodity_order_id"].as_str().unwrap().to_string())
        .collect()
}

async fn each_search_key_finds_its_orders(app: TestApp) {
    fill(&app, 200, fifty_merchants);
    // The merchant's name comes from the order notice (`name`).
    let params: Vec<(String, String)> = [
        ("notify_id", "n-named"),
        ("app_id", common::APP_ID),
        ("notify_type", "servicemarket_order_notify"),
        ("commodity_order_id", "NAMED1"),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088102177846880"),
        ("name", "Blue Lantern Tea House"),
        ("total_price", "0.00"),
        ("title", "小程序模板服务"),
        ("consumer_miniAppId", "2021004199990002"),
        ("item_code", "TS0001"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let body =
        isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key());
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;

    let search = async |q: &str| {
        let (status, page) = app
            .admin_get(&format!("/admin/api/orders?q={q}&limit=500"))
            .await;
        assert_eq!(status, 200, "{q}: {page}");
        listed(&page)
    };
    // Order id.
    assert_eq!(search("D0123").await, ["D0123"]);
    // Merchant PID: every order of that merchant.
    assert_eq!(search("2088102177846880").await, ["NAMED1"]);
    assert_eq!(search("2088000000000003").await.len(), 4);
    // Mini program id.
    assert_eq!(search("2021000000000042").await, ["D0042"]);
    assert_eq!(search("2021004199990002").await, ["NAMED1"]);
    // Merchant name, whole or its beginning (URL-encoded here), in any script.
    assert_eq!(search("Blue%20Lantern%20Tea%20House").await, ["NAMED1"]);
    assert_eq!(search("Blue%20Lan").await, ["NAMED1"]);
    assert_eq!(
        search("%E6%9D%AD%E5%B7%9E%E6%B5%8B%E8%AF%950120").await,
        ["D0120"]
    );
    assert_eq!(
        search("%E6%9D%AD%E5%B7%9E").await.len(),
        20,
        "杭州: the 20 named orders"
    );
    // Nothing else matches part of an id or the middle of a name.
    assert!(search("D012").await.is_empty());
    assert!(search("Lantern").await.is_empty());
    // `_` and `%` are letters here, not patterns.
    assert!(search("Blue_Lantern").await.is_empty());
    assert!(search("Blue%25").await.is_empty());
    // Search and status together.
    let (_, page) = app
        .admin_get("/admin/api/orders?q=2088000000000003&status=implementing")
        .await;
    let ids = listed(&page);
    assert!(!ids.is_empty() && ids.len() < 4, "{ids:?}");
    // The order JSON carries the merchant's name and the item.
    let (_, order) = app.admin_get("/admin/api/orders/NAMED1").await;
    assert_eq!(order["merchant_name"], "Blue Lantern Tea House");
    assert_eq!(order["title"], "小程序模板服务");
}
both_backends!(search_keys, each_search_key_finds_its_orders);

/// A client that keeps no cookies and follows no redirects: the test handles both.
fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    let body = format!("name={}&password={}", urlencode(name), urlencode(password));
    browserless()
        .post(format!("{}/admin/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn urlencode(text: &str) -> String {
    let mut out = String::new();
    isv_lifecycle::alipay::form::encode_component(text.as_bytes(), &mut out);
    out
}

fn session_cookie(response: &reqwest::Response) -> String {
    response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

async fn get_admin(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let response = browserless()
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

const PASSWORD: &str = "correct horse battery";

async fn repeated_failed_sign_ins_are_answered_429(app: TestApp) {
    app.services.add_operator("ann", PASSWORD).await.unwrap();
    for _ in 0..isv_lifecycle::http::throttle::PER_NAME {
        assert_eq!(sign_in(&app, "ann", "wrong password").await.status(), 401);
    }
    // Throttled: even the right password waits, and the answer says for how long.
    let refused = sign_in(&app, "ann", PASSWORD).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "900");
    // Once the window has passed, the right password signs in.
    app.clock.advance(Duration::minutes(15));
    assert_eq!(sign_in(&app, "ann", PASSWORD).await.status(), 303);

    // Per address: guesses over many names from one address are throttled too.
    app.services.add_operator("bob", PASSWORD).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..isv_lifecycle::http::throttle::PER_ADDRESS {
        statuses.push(
            sign_in(&app, &format!("guess{i}"), "x")
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(sign_in(&app, "bob", PASSWORD).await.status(), 429);
}
both_backends!(throttling, repeated_failed_sign_ins_are_answered_429);

async fn sessions_end_on_sign_out_and_disable(app: TestApp) {
    app.services.add_operator("carol", PASSWORD).await.unwrap();
    app.services.add_operator("dave", PASSWORD).await.unwrap();
    assert!(matches!(
        app.services.add_operator("carol", PASSWORD).await,
        Err(isv_lifecycle::service::operators::OperatorError::Exists(_))
    ));
    assert!(app.services.add_operator("eve", "short").await.is_err());
    assert!(
        app.services
            .add_operator("no spaces", PASSWORD)
            .await
            .is_err()
    );

    let signed_in = sign_in(&app, "carol", PASSWORD).await;
    assert_eq!(signed_in.status(), 303);
    let cookie = session_cookie(&signed_in);
    let (status, overview) = get_admin(&app, "/admin", &cookie).await;
    assert_eq!(status, 200);
    assert!(overview.contains(r#"<span id="operator">carol</span>"#));

    // Sign-out ends the session on the server: the same cookie is refused afterwards.
    let csrf = overview
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let out = browserless()
        .post(format!("{}/admin/logout", app.address))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(get_admin(&app, "/admin", &cookie).await.0, 303);
    let replayed = browserless()
        .post(format!("{}/admin/logout", app.address))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);

    // `users disable` ends every session of theirs, and no new one starts.
    let dave = session_cookie(&sign_in(&app, "dave", PASSWORD).await);
    assert_eq!(get_admin(&app, "/admin", &dave).await.0, 200);
    app.services.disable_operator("dave").await.unwrap();
    assert_eq!(get_admin(&app, "/admin", &dave).await.0, 303);
    assert_eq!(sign_in(&app, "dave", PASSWORD).await.status(), 401);
    let list = app.services.list_operators().await.unwrap();
    let summary: Vec<_> = list
        .iter()
        .map(|o| (o.name.as_str(), o.disabled_at.is_some(), o.live_sessions))
        .collect();
    assert_eq!(summary, [("carol", false, 0), ("dave", true, 0)]);

    // A session lasts 12 hours.
    let carol = session_cookie(&sign_in(&app, "carol", PASSWORD).await);
    app.clock.advance(Duration::hours(12));
    assert_eq!(get_admin(&app, "/admin", &carol).await.0, 303);
    // The old admin-token sign-in is gone: the token is for the API only.
    let by_token = browserless()
        .post(format!("{}/admin/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", common::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), 401);
}
both_backends!(sessions, sessions_end_on_sign_out_and_disable);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_page_shows_what_support_needs() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let key = common::platform_private_key();
    assert_eq!(
        app.post_notify(common::order_notification(&key, "P1", "n-p1", "9.90"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    // 25 reconciliations: the newest call shows first, the rest a page further.
    for _ in 0..25 {
        app.clock.advance(Duration::hours(1));
        let (status, _) = app.admin_post("/admin/api/orders/P1/reconcile", "").await;
        assert_eq!(status, 200);
    }
    // At risk: a pending implementation or confirmation deadline (P2 is free, so implementing;
    // P1 awaits payment). Orders without one are left out.
    assert_eq!(
        app.post_notify(common::order_notification(&key, "P2", "n-p2", "0.00"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    fill(&app, 10, fifty_merchants);
    let (_, page) = app.admin_get("/admin/api/orders?at_risk=true").await;
    assert_eq!(listed(&page), ["P2"], "{page}");
    let (_, page) = app.admin_get("/admin/api/orders").await;
    assert_eq!(listed(&page).len(), 12);
    let (_, page) = app
        .admin_get("/admin/api/orders?at_risk=true&status=completed")
        .await;
    assert!(listed(&page).is_empty(), "{page}");
    app.services.add_operator("frank", PASSWORD).await.unwrap();
    let cookie = session_cookie(&sign_in(&app, "frank", PASSWORD).await);
    let (status, html) = get_admin(&app, "/admin/orders/P1", &cookie).await;
    assert_eq!(status, 200);
    for needle in [
        r#"<td id="merchant-pid">2088102177846880</td>"#,
        r#"<td id="price">9.90</td>"#,
        r#"<td id="item">小程序模板服务 (TS0001)</td>"#,
        // One time format, Beijing beside UTC.
        "2024-06-10 05:01:00 UTC</time> <small>(13:01:00 Beijing)</small>",
        r#"id="older-calls""#,
    ] {
        assert!(html.contains(needle), "{needle} not in the page:\n{html}");
    }
    let calls = html.split(r#"<table id="calls">"#).nth(1).unwrap();
    let calls = calls.split("</table>").next().unwrap();
    assert_eq!(calls.matches("<tr><td>").count(), 20, "one page of calls");
    // The newest call (after 25 hours) is first.
    assert!(
        calls
            .split("<tr><td>")
            .nth(1)
            .unwrap()
            .contains("2024-06-11 06:30:00 UTC"),
        "{calls}"
    );
    let older = html
        .split(r#"<a id="older-calls" href=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, rest) = get_admin(&app, &older, &cookie).await;
    let rest = rest.split(r#"<table id="calls">"#).nth(1).unwrap();
    let rest = rest.split("</table>").next().unwrap();
    assert_eq!(rest.matches("<tr><td>").count(), 5, "{rest}");
    // The order's gateway message is linked, not searched for.
    assert!(html.contains("servicemarket_order_notify"), "{html}");

    // Terminated from the page: the history names the operator.
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let done = browserless()
        .post(format!("{}/admin/orders/P1/terminate", app.address))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&reason=closed&confirm=yes&actor=alipay"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let (_, order) = app.admin_get("/admin/api/orders/P1").await;
    let last = order["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("web:frank"), Some("closed")),
        "{order}"
    );
    // The orders list page finds it by merchant PID.
    let (status, list) = get_admin(&app, "/admin/orders?q=2088102177846880", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        list.contains(r#"<a href="/admin/orders/P1">P1</a>"#),
        "{list}"
    );
    app.stop().await;
}

/// A cancelled authorization ends the service with a row in the order's timeline; a replay from
/// the web page shows what it did.
async fn service_changes_and_replays_are_shown(app: TestApp) {
    let key = common::platform_private_key();
    assert_eq!(
        app.post_notify(common::order_notification(&key, "C1", "n-c1", "0.00"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    let cancelled = common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == "N001")
        .unwrap();
    assert_eq!(
        app.post_notify(cancelled["body"].as_str().unwrap()).await.1,
        "success"
    );
    app.run_pending_jobs().await;
    let (_, order) = app.admin_get("/admin/api/orders/C1").await;
    assert_eq!(order["service"]["status"], "terminated", "{order}");
    let last = order["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["actor"].as_str(),
            last["cause"].as_str(),
            last["from_status"] == last["to_status"]
        ),
        (
            Some("alipay"),
            Some("service_terminated:authorization_cancelled"),
            true
        ),
        "{order}"
    );

    // A message that cannot be applied fails; replayed from the page, the result is shown.
    let bad: Vec<(String, String)> = [
        ("notify_id", "n-bad"),
        // Addressed to our app: it fails in the apply (a replayable state), not quarantined.
        ("app_id", common::APP_ID),
        ("notify_type", "servicemarket_order_notify"),
        ("commodity_order_id", "BAD1"),
        ("order_time", "yesterday"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let bad = isv_lifecycle::alipay::notify::sign_message(&bad, &key);
    assert_eq!(app.post_notify(bad).await.1, "success");
    app.run_pending_jobs().await;
    app.services.add_operator("gina", PASSWORD).await.unwrap();
    let cookie = session_cookie(&sign_in(&app, "gina", PASSWORD).await);
    let (_, html) = get_admin(&app, "/admin/messages", &cookie).await;
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let replay = |csrf: String, cookie: String| {
        let url = format!(
            "{}/admin/messages/{}/n-bad/replay",
            app.address,
            common::APP_ID
        );
        async move {
            let response = browserless()
                .post(url)
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, html) = replay(csrf.clone(), cookie.clone()).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(
            r#"<p class="done" id="result">Message n-bad is queued again (now received).</p>"#
        ),
        "{html}"
    );
    // Again, while it waits in the queue: refused, and the page says why.
    let (status, html) = replay(csrf, cookie).await;
    assert_eq!(status, 409);
    assert!(
        html.contains(r#"<p class="error" id="result">Message n-bad was not replayed"#),
        "{html}"
    );
}
both_backends!(service_changes, service_changes_and_replays_are_shown);
