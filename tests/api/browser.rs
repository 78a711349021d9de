//! Support's web page driven in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! over the WebDriver protocol): sign in, find the at-risk order, terminate it with a reason and
//! see it terminated with the reason in its timeline. Requests without the session cookie, or
//! with a wrong CSRF token, are refused.

use crate::common::{self, Db};
use crate::helpers::TestApp;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is installed (.ci/run installs Debian's chromium and chromium-driver)");
        let port = common::free_port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{driver_url}/status"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                     format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let created = post(&http, &format!("{driver_url}/session"), &capabilities).await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Browser {
            http,
            base: format!("{driver_url}/session/{session}"),
            _driver: child,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        post(
            &self.http,
            &format!("{}/url", self.base),
            &json!({"url": url}),
        )
        .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = post(
            &self.http,
            &format!("{}/element", self.base),
            &json!({"using": "css selector", "value": css}),
        )
        .await;
        found["value"][ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{element}/value", self.base),
            &json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{element}/click", self.base),
            &json!({}),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        get(&self.http, &format!("{}/element/{element}/text", self.base)).await["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The element's text once it contains `needle` (a form post navigates asynchronously).
    async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = post(
                &self.http,
                &format!("{}/element", self.base),
                &json!({"using": "css selector", "value": css}),
            )
            .await;
            if let Some(element) = found["value"][ELEMENT].as_str() {
                let text = get(&self.http, &format!("{}/element/{element}/text", self.base)).await
                    ["value"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if text.contains(needle) || Instant::now() > deadline {
                    return text;
                }
            } else if Instant::now() > deadline {
                return String::new();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn url(&self) -> String {
        get(&self.http, &format!("{}/url", self.base)).await["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let shot = get(&self.http, &format!("{}/screenshot", self.base)).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["value"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    serde_json::from_str(&http.get(url).send().await.unwrap().text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_terminates_an_at_risk_order_in_the_browser() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let key = common::platform_private_key();
    assert_eq!(
        app.post_notify(common::order_notification(&key, "W1", "n-w1", "0.00"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;

    let browser = Browser::start().await;
    // By host name, as support would open it (Chromium keeps no cookie for this page over a
    // bare IP address here).
    let site = app.address.replace("127.0.0.1", "localhost");
    browser.goto(&format!("{site}/admin")).await;
    assert!(
        browser.url().await.ends_with("/admin/login"),
        "not signed in: sent to the sign-in page"
    );
    browser.type_into("#token", common::ADMIN_TOKEN).await;
    browser.click("#sign-in").await;

    let at_risk = browser.wait_for_text("#at-risk", "W1").await;
    assert!(
        browser.url().await.ends_with("/admin"),
        "{}",
        browser.url().await
    );
    assert!(
        at_risk.contains("W1") && at_risk.contains("implementation"),
        "{at_risk}"
    );
    browser.click("#at-risk a[href='/admin/orders/W1']").await;
    assert_eq!(
        browser.wait_for_text("#status", "implementing").await,
        "implementing"
    );
    // "Reconcile now" asks Alipay; the call and its result code show on the page.
    browser.click("#reconcile").await;
    let calls = browser.wait_for_text("#calls", "10000").await;
    assert!(
        calls.contains("alipay.open.servicemarket.order.query") && calls.contains("10000"),
        "{calls}"
    );
    browser
        .type_into("#reason", "Merchant closed the shop; agreed by phone")
        .await;
    browser.click("#confirm").await;
    browser.click("#terminate").await;
    assert!(
        browser.url().await.ends_with("/admin/orders/W1"),
        "{}",
        browser.url().await
    );
    assert_eq!(
        browser.wait_for_text("#service-status", "terminated").await,
        "terminated"
    );
    let timeline = browser.text("#timeline").await;
    assert!(
        timeline.contains("Merchant closed the shop; agreed by phone"),
        "{timeline}"
    );
    assert!(
        timeline.contains("service_terminated:support"),
        "{timeline}"
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-order-terminated.png");
    browser.screenshot(&shot).await;
    eprintln!("screenshot: {}", shot.display());

    // Outside the browser: no session → 401; a session with a wrong CSRF token → 403.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let reconcile = format!("{}/admin/orders/W1/reconcile", app.address);
    let no_cookie = client
        .post(&reconcile)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), 401);
    let signed_in = client
        .post(format!("{}/admin/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", common::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        signed_in.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    // Behind a TLS-terminating proxy the cookie is `Secure`.
    let over_tls = client
        .post(format!("{}/admin/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("token={}", common::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert!(
        over_tls.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    let forged = client
        .post(&reconcile)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let wrong_token = client
        .post(format!("{}/admin/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    app.stop().await;
}
