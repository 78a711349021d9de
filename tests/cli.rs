//! The binary's start-up checks: a bad setting stops the start with one line naming the setting,
//! where its value came from, and what is wrong.

mod common;

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isv-lifecycle"));
    cmd.args(args)
        .current_dir(dir.path())
        .env("ISV__APP__DATA_DIR", dir.path().join("data"))
        .env(
            "ISV__DATABASE__URL",
            format!("sqlite://{}", dir.path().join("t.db").display()),
        )
        .env("ISV__SERVER__LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    drop(dir);
    out
}

fn config() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml").to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_key_file_names_the_setting_and_its_source() {
    let platform = common::vector_key_path("alipay_platform_public_spki.pem")
        .display()
        .to_string();
    let out = run(
        &["migrate", "--config", &config()],
        &[
            ("ISV__ALIPAY__APP_PRIVATE_KEY_FILE", "/nonexistent/key.pem"),
            ("ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE", &platform),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "setting alipay.app_private_key_file (from environment variable ISV__ALIPAY__APP_PRIVATE_KEY_FILE): file /nonexistent/key.pem does not exist"
        ),
        "{err}"
    );
}

#[test]
fn our_own_public_key_in_place_of_alipays_is_refused() {
    let ours = common::vector_key_path("isv_app_private_pkcs8.pem")
        .display()
        .to_string();
    let ours_public = common::vector_key_path("isv_app_public_spki.b64")
        .display()
        .to_string();
    let out = run(
        &["migrate", "--config", &config()],
        &[
            ("ISV__ALIPAY__APP_PRIVATE_KEY_FILE", &ours),
            ("ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE", &ours_public),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("setting alipay.alipay_public_key_file"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("is our own app public key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_key_that_does_not_parse_is_refused() {
    let garbage = common::vector_key_path("../README.md")
        .display()
        .to_string();
    let platform = common::vector_key_path("alipay_platform_public_spki.pem")
        .display()
        .to_string();
    let out = run(
        &["migrate", "--config", &config()],
        &[
            ("ISV__ALIPAY__APP_PRIVATE_KEY_FILE", &garbage),
            ("ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE", &platform),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an RSA private key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn production_refuses_to_start_without_real_keys() {
    let production = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/production.example.toml"
    );
    let out = run(&["migrate", "--config", production], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("setting alipay.app_private_key_file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn production_requires_an_https_gateway() {
    let production = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/production.example.toml"
    );
    let out = run(
        &["migrate", "--config", production],
        &[(
            "ISV__ALIPAY__GATEWAY_URL",
            "http://openapi.alipay.com/gateway.do",
        )],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "setting alipay.gateway_url (from environment variable ISV__ALIPAY__GATEWAY_URL)"
        ) && err.contains("is not https"),
        "{err}"
    );
}

#[test]
fn bad_values_are_named() {
    for (var, value, setting) in [
        ("ISV__SERVER__LISTEN", "nowhere", "server.listen"),
        ("ISV__DATABASE__URL", "mysql://x", "database.url"),
        (
            "ISV__SECURITY__ENCRYPTION_KEY",
            "c2hvcnQ=",
            "security.encryption_key",
        ),
        ("ISV__ALIPAY__APP_ID", "not-digits", "alipay.app_id"),
    ] {
        let out = run(&["migrate", "--config", &config()], &[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "setting {setting} (from environment variable {var})"
            )),
            "{var}: {err}"
        );
    }
}

/// A further ISV app configured only through the environment: `ISV__ALIPAY__APPS__SECOND__*`
/// reaches `alipay.apps.second.*`; a bad value names that setting and its variable.
#[test]
fn a_second_app_is_configured_through_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pair = isv_lifecycle::alipay::keys::generate().unwrap();
    let private = dir.path().join("second.pem");
    std::fs::write(&private, &pair.private_pkcs8_pem).unwrap();
    let private = private.display().to_string();
    let platform = common::vector_key_path("alipay_platform_public_spki.pem")
        .display()
        .to_string();
    let second = |app_id: &'static str| {
        [
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", app_id),
            (
                "ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE",
                private.as_str(),
            ),
            (
                "ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE",
                platform.as_str(),
            ),
        ]
    };
    let out = run(
        &["migrate", "--config", &config()],
        &second("2021004100000002"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = run(&["migrate", "--config", &config()], &second("2021x"));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "setting alipay.apps.second.app_id (from environment variable ISV__ALIPAY__APPS__SECOND__APP_ID): \"2021x\" is not an Alipay app id"
        ),
        "{err}"
    );
}

#[test]
fn sandbox_mode_generates_keys_and_migrates() {
    let out = run(&["migrate", "--config", &config()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("migrations applied: {migrations}"))
    );
}

#[test]
fn keys_generate_writes_a_matching_pair_and_never_overwrites() {
    use isv_lifecycle::alipay::{PrivateKey, PublicKey};
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("keys");
    // No settings or database: run from an empty directory with no config file.
    let generate = || {
        Command::new(env!("CARGO_BIN_EXE_isv-lifecycle"))
            .args(["keys", "generate", "--out"])
            .arg(&out_dir)
            .current_dir(dir.path())
            .env("ISV__DATABASE__URL", "mysql://not-used")
            .output()
            .unwrap()
    };
    let out = generate();
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    let pkcs8 = PrivateKey::parse(&read("app_private_key.pem")).unwrap();
    assert!(read("app_private_key.pem").contains("-----BEGIN PRIVATE KEY-----"));
    assert!(read("app_private_key_pkcs1.pem").contains("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(!read("app_private_key.b64").contains("-----"));
    assert!(!read("app_public_key.b64").contains("-----"));
    let pkcs1 = PrivateKey::parse(&read("app_private_key_pkcs1.pem")).unwrap();
    let bare = PrivateKey::parse(&read("app_private_key.b64")).unwrap();
    let public_pem = PublicKey::parse(&read("app_public_key.pem")).unwrap();
    let public_b64 = PublicKey::parse(&read("app_public_key.b64")).unwrap();
    assert!(public_pem.same_key_as(&public_b64));
    for private in [&pkcs8, &pkcs1, &bare] {
        assert!(private.public_key().same_key_as(&public_pem));
        let signature = private.sign_base64(b"app_id=2021004100000001&method=x");
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap();
        assert!(public_b64.verify(b"app_id=2021004100000001&method=x", &raw));
        assert!(!public_b64.verify(b"something else", &raw));
    }
    let mode = |name: &str| {
        std::fs::metadata(out_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("app_private_key.pem"), 0o600);
    assert_eq!(mode("app_private_key_pkcs1.pem"), 0o600);
    assert_eq!(mode("app_private_key.b64"), 0o600);
    // It prints the public key and the paths, never the private key.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(read("app_public_key.b64").trim()),
        "{stdout}"
    );
    assert!(stdout.contains("app_private_key.pem"), "{stdout}");
    assert!(!stdout.contains(read("app_private_key.b64").trim()));
    assert!(!stdout.contains("PRIVATE KEY-----"));

    let before = read("app_private_key.pem");
    let again = generate();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(read("app_private_key.pem"), before, "the key is untouched");
}

/// Runs the binary in `dir` with the database `dir/t.db` and the data directory `dir/data`.
fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isv-lifecycle"));
    cmd.args(args)
        .current_dir(dir)
        .env("ISV__APP__DATA_DIR", dir.join("data"))
        .env(
            "ISV__DATABASE__URL",
            format!("sqlite://{}", dir.join("t.db").display()),
        )
        .env("ISV__SERVER__LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn support_commands_on_a_missing_database_fail_and_create_nothing() {
    for args in [
        &["orders", "list"][..],
        &["orders", "show", "ORDER-1"],
        &["terminate", "ORDER-1", "--reason", "test"],
        &["messages", "replay", "-", "N1"],
        &["reconcile"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut all = args.to_vec();
        all.extend([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"),
        ]);
        let out = run_in(dir.path(), &all, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("setting database.url"), "{args:?}: {err}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

#[test]
fn a_database_in_a_missing_directory_is_refused_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nonexistent/dir/x.db").display()
    );
    let out = run_in(
        dir.path(),
        &["migrate", "--config", &config()],
        &[("ISV__DATABASE__URL", &url)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!dir.path().join("nonexistent").exists());
}

#[test]
fn support_commands_after_migrate_with_exit_codes() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let out = run_in(dir.path(), &["migrate", "--config", &config], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The database holds merchants' contact data: only the service's user may read it.
    for name in ["t.db", "t.db-wal", "t.db-shm"] {
        if let Ok(meta) = std::fs::metadata(dir.path().join(name)) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
    }
    assert!(dir.path().join("t.db").exists());

    let out = run_in(dir.path(), &["orders", "list", "--config", &config], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    for column in [
        "ORDER",
        "STATUS",
        "CANCEL REASON",
        "MINI PROGRAM",
        "ORDERED AT",
    ] {
        assert!(lines[0].contains(column), "{stdout}");
    }
    let code = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config.as_str()]);
        let out = run_in(dir.path(), &all, &[]);
        (out.status.code(), stderr(&out))
    };
    let (status, err) = code(&["orders", "list", "--status", "lost"]);
    assert_eq!(status, Some(2), "{err}");
    let (status, err) = code(&["orders", "show", "NOPE"]);
    assert_eq!(status, Some(3), "{err}");
    assert!(err.contains("no order \"NOPE\""), "{err}");
    let (status, err) = code(&["messages", "replay", "-", "NOPE"]);
    assert_eq!(status, Some(3), "{err}");
    assert!(err.contains("no message"), "{err}");
    let (status, err) = code(&["terminate", "NOPE", "--reason", "test"]);
    assert_eq!(status, Some(3), "{err}");
    let (status, err) = code(&["orders", "frobnicate"]);
    assert_eq!(status, Some(2), "usage: {err}");
}

#[test]
fn a_database_that_was_never_migrated_is_not_migrated_by_support_commands() {
    let dir = tempfile::tempdir().unwrap();
    // An empty SQLite file (as a failed first start could leave).
    std::fs::write(dir.path().join("t.db"), b"").unwrap();
    let out = run_in(dir.path(), &["migrate", "--config", &config()], &[]);
    assert!(
        out.status.success(),
        "keys and secrets made once: {}",
        stderr(&out)
    );
    std::fs::remove_file(dir.path().join("t.db")).unwrap();
    let _ = std::fs::remove_file(dir.path().join("t.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("t.db-shm"));
    std::fs::write(dir.path().join("t.db"), b"").unwrap();
    let out = run_in(dir.path(), &["orders", "list", "--config", &config()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never been migrated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::metadata(dir.path().join("t.db")).unwrap().len(), 0);
}

/// A one-request-at-a-time HTTP server: 200 on `/healthz`, 500 elsewhere.
fn fake_health_server() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status = if head.starts_with("GET /healthz ") {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .as_bytes(),
            );
        }
    });
    port
}

#[test]
fn healthcheck_asks_healthz() {
    let port = fake_health_server();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let out = run_in(dir.path(), &["healthcheck", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run_in(
        dir.path(),
        &["healthcheck", "--url", &format!("{url}/broken")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Without --url: the configured listener (0.0.0.0 is asked on the loopback address).
    let listen = format!("0.0.0.0:{port}");
    let out = run_in(
        dir.path(),
        &["healthcheck", "--config", &config()],
        &[("ISV__SERVER__LISTEN", &listen)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = run_in(
        dir.path(),
        &[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{closed_port}"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    // It never touches the database or the data directory.
    assert!(!dir.path().join("t.db").exists() && !dir.path().join("data").exists());
}

#[test]
fn log_lines_have_no_colours_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // stderr is a pipe here: the migration's log line must be plain text.
    let out = run_in(
        dir.path(),
        &["migrate", "--config", &config()],
        &[("RUST_LOG", "info")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("database migrations applied"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in redirected logs: {err:?}"
    );
}

#[test]
fn a_termination_the_rules_refuse_exits_4() {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let out = run_in(dir.path(), &["migrate", "--config", &config], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An order, written as the service stores one.
    let mut conn =
        diesel::SqliteConnection::establish(&dir.path().join("t.db").display().to_string())
            .unwrap();
    conn.batch_execute(
        "INSERT INTO orders (commodity_order_id, status, cancel_reason, ordered_at, status_since, \
         created_at, updated_at) VALUES ('ORDER-1', 'implementing', NULL, \
         '2024-06-01 00:00:00', '2024-06-02 00:00:00', '2024-06-01 00:00:00', '2024-06-02 00:00:00')",
    )
    .unwrap();
    drop(conn);
    // A termination needs a reason: the rules refuse a blank one.
    let out = run_in(
        dir.path(),
        &["terminate", "ORDER-1", "--reason", " ", "--config", &config],
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("ORDER-1"), "{}", stderr(&out));
    let out = run_in(
        dir.path(),
        &["orders", "show", "ORDER-1", "--config", &config],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        shown["service"].is_null(),
        "nothing was terminated: {shown}"
    );
    assert_eq!(
        shown["history"].as_array().map(Vec::len),
        Some(0),
        "{shown}"
    );
}

#[test]
fn keys_cert_sn_prints_the_official_sdk_sns() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/certs/");
    for (file, root, expected) in [
        (
            "appCertPublicKey_2021001161683774.crt",
            false,
            "866efef280dec9137a87d047ac446315",
        ),
        (
            "alipayCertPublicKey_RSA2.crt",
            false,
            "7513daaaa48aa3ba2e4018d84402479c",
        ),
        (
            "alipayRootCert.crt",
            true,
            "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6",
        ),
    ] {
        let path = format!("{dir}{file}");
        let mut args = vec!["keys", "cert-sn", path.as_str()];
        if root {
            args.push("--root");
        }
        let out = run(&args, &[]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().last(), Some(expected), "{file}");
    }
    let out = run(&["keys", "cert-sn", "/nonexistent.crt"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent.crt"),
        "{}",
        stderr(&out)
    );
}
