//! `isv-lifecycle users add/list/disable`: support accounts from the shell. The password comes
//! from standard input and is stored as an Argon2id hash; a missing database is an error that
//! creates nothing.

mod common;

use std::process::{Output, Stdio};
use tokio::io::AsyncWriteExt as _;

async fn users(args: &[&str], db_url: &str, dir: &std::path::Path, stdin: &str) -> Output {
    let mut all = vec!["users"];
    all.extend_from_slice(args);
    let mut cmd = common::command(&all, db_url, &dir.join("data"), 0, "warn");
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn support_accounts_are_added_listed_and_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("isv.db");
    let url = format!("sqlite://{}", db.display());

    // No database yet: refused, naming the setting, and nothing is created.
    let out = users(&["list"], &url, dir.path(), "").await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "bad settings: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("database.url"),
        "{}",
        text(&out.stderr)
    );
    assert!(!db.exists(), "the database was created");

    let migrated = common::command(&["migrate"], &url, &dir.path().join("data"), 0, "warn")
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));

    let out = users(
        &["add", "ann", "--password-stdin"],
        &url,
        dir.path(),
        "a long password\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Taken, too short, or without --password-stdin: refused.
    let out = users(
        &["add", "ann", "--password-stdin"],
        &url,
        dir.path(),
        "another long one\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "refused: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
    let out = users(
        &["add", "bob", "--password-stdin"],
        &url,
        dir.path(),
        "short\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "usage: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("at least 12"),
        "{}",
        text(&out.stderr)
    );
    let out = users(&["add", "bob"], &url, dir.path(), "a long password\n").await;
    assert_eq!(out.status.code(), Some(2), "usage: {}", text(&out.stderr));
    let out = users(
        &["add", "bad name", "--password-stdin"],
        &url,
        dir.path(),
        "a long password\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "usage: {}", text(&out.stderr));
    let out = users(&["disable", "nobody"], &url, dir.path(), "").await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "not found: {}",
        text(&out.stderr)
    );

    let out = users(&["list"], &url, dir.path(), "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0], ["NAME", "CREATED", "DISABLED", "SESSIONS"]);
    assert_eq!(
        (rows[1][0], rows[1][2], rows[1][3]),
        ("ann", "-", "0"),
        "{listed}"
    );

    // Stored as an Argon2id hash, never as given.
    let pool = isv_lifecycle::store::connect_pool(
        &isv_lifecycle::store::DbTarget::parse(&url).unwrap(),
        1,
    )
    .unwrap();
    let stored = isv_lifecycle::store::operators::find(&mut pool.get().unwrap(), "ann")
        .unwrap()
        .unwrap();
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "{}",
        stored.password_hash
    );
    assert!(!stored.password_hash.contains("a long password"));

    let out = users(&["disable", "ann"], &url, dir.path(), "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = users(&["list"], &url, dir.path(), "").await;
    let listed = text(&out.stdout);
    let ann: Vec<&str> = listed.lines().nth(1).unwrap().split('\t').collect();
    assert_ne!(ann[2], "-", "disabled: {listed}");
    let out = users(&["disable", "nobody"], &url, dir.path(), "").await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no operator named \"nobody\""),
        "{}",
        text(&out.stderr)
    );
}
