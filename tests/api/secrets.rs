//! No token in clear: not in the database file, its WAL, nor any API response.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn tokens_never_in_clear(app: TestApp) {
    for v in common::vectors("notifications.jsonl") {
        assert_eq!(
            app.post_notify(v["body"].as_str().unwrap()).await.1,
            "success"
        );
    }
    app.run_pending_jobs().await;

    let mut exposed = String::new();
    for path in [
        "/admin/api/messages?limit=1000",
        "/admin/api/authorizations/2021004199990002",
        "/admin/api/orders?limit=500",
        "/metrics",
    ] {
        exposed.push_str(&app.admin_get_text(path).await);
    }
    if let Some(path) = &app.db.sqlite_path {
        // Everything SQLite has written: the database file and its write-ahead log.
        for file in [path.clone(), path.with_extension("db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            exposed.push_str(&String::from_utf8_lossy(&bytes));
        }
        assert!(
            std::fs::metadata(path.with_extension("db-wal")).is_ok(),
            "the WAL should exist and was checked"
        );
    } else {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let mut pooled = app.services.pool.get().unwrap();
        let conn: &mut isv_lifecycle::store::AnyConnection = &mut pooled;
        isv_lifecycle::db_run!(conn: {
            for table in ["gateway_messages", "authorizations", "orders", "order_history", "deadlines"] {
                let rows: Vec<Row> = diesel::sql_query(format!("SELECT x::text AS t FROM {table} x")).load(conn).unwrap();
                for r in rows {
                    exposed.push_str(&r.t);
                }
            }
        });
    }
    assert!(exposed.len() > 1000, "nothing was read");
    for secret in common::VECTOR_SECRETS {
        assert!(!exposed.contains(secret), "token {secret} found in clear");
        assert!(
            !exposed.contains(&hex(secret)),
            "token {secret} found hex-encoded"
        );
    }
    app.stop().await;
}
both_backends!(tokens_never_in_clear, tokens_never_in_clear);

/// A verified message whose `biz_content` is not valid JSON cannot be searched for secrets, so
/// masking fails closed: what is stored in clear (and shown to support) holds a placeholder,
/// never the token.
async fn malformed_biz_content_is_stored_without_its_token(app: TestApp) {
    const TOKEN: &str = "202406BBmalformedTokenXXXXXXXXXXXXXXX77";
    let params: Vec<(String, String)> = [
        ("notify_id", "n-malformed"),
        ("app_id", common::APP_ID),
        ("msg_method", "alipay.open.auth.appauth.cancelled"),
        ("utc_timestamp", "1718000007919"),
        ("charset", "UTF-8"),
        ("version", "1.1"),
        // Cut short: not JSON.
        (
            "biz_content",
            r#"{"auth_app_id":"2021004199990002","app_auth_token":"202406BBmalformedTokenXXXXXXXXXXXXXXX77""#,
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let body =
        isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key());
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
    let listed = app.admin_get_text("/admin/api/messages?limit=1000").await;
    assert!(listed.contains("n-malformed"), "{listed}");
    assert!(!listed.contains(TOKEN), "{listed}");
    // Nor in the stored row's clear columns.
    let mut conn = app.services.pool.get().unwrap();
    let rows = isv_lifecycle::store::messages::identities(&mut conn).unwrap();
    assert!(
        rows.iter()
            .any(|(_, n, state)| n == "n-malformed" && state == "failed")
    );
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        params: String,
    }
    let conn: &mut isv_lifecycle::store::AnyConnection = &mut conn;
    let stored: Vec<Row> = isv_lifecycle::db_run!(conn: {
        diesel::sql_query("SELECT params FROM gateway_messages WHERE notify_id = 'n-malformed'")
            .load(conn)
            .unwrap()
    });
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].params.contains(TOKEN), "{}", stored[0].params);
    assert!(
        stored[0].params.contains("not valid JSON"),
        "{}",
        stored[0].params
    );
    app.stop().await;
}
both_backends!(
    malformed_biz_content_is_stored_without_its_token,
    malformed_biz_content_is_stored_without_its_token
);
