//! No secret in the logs: the whole demo lifecycle (gateway messages with tokens, OpenAPI calls
//! on the merchants' behalf, deliveries, terminations) logged at debug level, then searched for
//! every token, the private keys' material, the encryption key and the API tokens.

use isv_lifecycle::demo::Demo;
use isv_lifecycle::sim::SimFaults;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_debug_log_across_a_full_lifecycle() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .init();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let config = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"));
    let demo = Demo::start(config, data.clone(), SimFaults::default())
        .await
        .unwrap();
    let outcomes = demo.run_scenarios().await.unwrap();
    assert!(outcomes.iter().all(|o| o.as_expected()));

    let mut secrets: Vec<String> = Vec::new();
    for app in [
        "2021000000000101",
        "2021000000000102",
        "2021000000000103",
        "2021000000000104",
    ] {
        secrets.extend(demo.sim.state.app_auth_token(app));
    }
    assert!(secrets.len() >= 4, "tokens of the active authorizations");
    // Key material: every full base64 line of the generated private keys; and the sandbox secrets.
    for name in ["app_private_key.pem", "alipay_platform_private_key.pem"] {
        let pem = std::fs::read_to_string(data.join("keys").join(name)).unwrap();
        secrets.extend(
            pem.lines()
                .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
                .map(str::to_string),
        );
    }
    for name in ["encryption.key", "admin.token", "api.token"] {
        secrets.push(
            std::fs::read_to_string(data.join("keys").join(name))
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    demo.stop().await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("DEBUG"),
        "the lifecycle was logged at debug level"
    );
    assert!(
        log.lines().count() > 50,
        "{} log lines",
        log.lines().count()
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {}…",
            &secret[..8.min(secret.len())]
        );
    }
}
