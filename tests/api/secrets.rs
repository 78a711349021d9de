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
