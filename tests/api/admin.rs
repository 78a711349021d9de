use crate::both_backends;
use crate::common::Db;
use crate::helpers::TestApp;

async fn admin_api_guards_and_errors(app: TestApp) {
    let url = format!("{}/admin/api/messages", app.address);
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401);
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = serde_json::from_str(&wrong.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "unauthorized");

    let (status, body) = app.admin_get("/admin/api/orders/NOPE").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = app.admin_get("/admin/api/authorizations/NOPE").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = app.admin_get("/admin/api/messages?limit=0").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field"))
    );
    let (status, body) = app.admin_get("/admin/api/orders?status=lost").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field"))
    );

    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.http
                .get(format!("{}{path}", app.address))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    app.stop().await;
}
both_backends!(admin_api_guards_and_errors, admin_api_guards_and_errors);
