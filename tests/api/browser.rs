//! Support's web page driven in headless Chromium (Debian's `chromium` and `chromium-driver`)
//! through a WebDriver client (`fantoccini`): sign in as a named operator, find a merchant's
//! orders by PID among 1,000, page through them, terminate one with a reason and see the
//! operator's name in its timeline, sign out, and find the old cookie refused. Every browser
//! step is named, and a failure names the step. Requests without the session cookie, or with a
//! wrong CSRF token, are refused.

use crate::common::{self, Db};
use crate::helpers::TestApp;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a step may wait for the page (a form post navigates asynchronously).
const STEP_WAIT: Duration = Duration::from_secs(10);

struct Browser {
    client: Client,
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
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                     format!("--user-data-dir={}", profile.path().display())]
        }});
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The driver listens shortly after it starts.
        let client = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("step `start the browser`: {e}"),
            }
        };
        Browser {
            client,
            _driver: child,
            _profile: profile,
        }
    }

    async fn goto(&self, step: &str, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("step `{step}`: opening {url}: {e}"));
    }

    async fn url(&self, step: &str) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("step `{step}`: reading the URL: {e}"))
            .to_string()
    }

    /// The element, once the page has it.
    async fn find(&self, step: &str, css: &str) -> Element {
        self.client
            .wait()
            .at_most(STEP_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("step `{step}`: no element {css}: {e}"))
    }

    async fn type_into(&self, step: &str, css: &str, text: &str) {
        self.find(step, css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("step `{step}`: typing into {css}: {e}"));
    }

    async fn click(&self, step: &str, css: &str) {
        self.find(step, css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("step `{step}`: clicking {css}: {e}"));
    }

    async fn select(&self, step: &str, css: &str, value: &str) {
        self.find(step, css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("step `{step}`: choosing {value} in {css}: {e}"));
    }

    /// The element's text once it contains `needle`; the step fails with what it saw instead.
    async fn wait_for_text(&self, step: &str, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + STEP_WAIT;
        let mut seen = String::new();
        while Instant::now() < deadline {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                // The page may navigate between finding and reading: read again next round.
                if let Ok(text) = element.text().await {
                    if text.contains(needle) {
                        return text;
                    }
                    seen = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "step `{step}`: {css} never showed {needle:?} (at {}); last seen:\n{seen}",
            self.url(step).await
        );
    }

    /// The number of elements matching `css` once it is `count`.
    async fn wait_for_count(&self, step: &str, css: &str, count: usize) {
        let deadline = Instant::now() + STEP_WAIT;
        let mut seen = 0;
        while Instant::now() < deadline {
            if let Ok(found) = self.client.find_all(Locator::Css(css)).await {
                seen = found.len();
                if seen == count {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("step `{step}`: {seen} elements {css}, not {count}");
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("step `screenshot`: {e}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

const OPERATOR: &str = "hana";
const PASSWORD: &str = "a long enough password";
const MERCHANT: &str = "2088102177846880";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_finds_and_terminates_an_order_in_the_browser() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.services.add_operator(OPERATOR, PASSWORD).await.unwrap();
    // 1,000 orders; every 25th is this merchant's (40), plus W1 from a real order notice: 41 in
    // three pages of 20, newest first; W1 ties with D0000 as the oldest and sorts before it.
    crate::desk::fill(&app, 1000, |i| {
        if i % 25 == 0 {
            MERCHANT.to_string()
        } else {
            format!("2088{:012}", i)
        }
    });
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
    let step = "open the page signed out";
    browser.goto(step, &format!("{site}/admin")).await;
    assert!(
        browser.url(step).await.ends_with("/admin/login"),
        "step `{step}`: not sent to the sign-in page"
    );

    let step = "sign in by name and password";
    browser.type_into(step, "#name", OPERATOR).await;
    browser.type_into(step, "#password", PASSWORD).await;
    browser.click(step, "#sign-in").await;
    browser.wait_for_text(step, "#operator", OPERATOR).await;
    let cookie = browser
        .client
        .get_named_cookie("isv_session")
        .await
        .unwrap_or_else(|e| panic!("step `{step}`: no session cookie: {e}"))
        .value()
        .to_string();

    let step = "search the merchant PID, 20 a page";
    browser.type_into(step, "#q", MERCHANT).await;
    browser.select(step, "#page-size", "20").await;
    browser.click(step, "#search").await;
    browser.wait_for_count(step, "#orders tr.order", 20).await;
    let first = browser.wait_for_text(step, "#orders", MERCHANT).await;
    assert!(
        !first.contains("W1"),
        "step `{step}`: W1 is oldest\n{first}"
    );

    let step = "page through to the last page";
    browser.click(step, "#next-page").await;
    browser.wait_for_text(step, "#orders", "D0375").await;
    browser.wait_for_count(step, "#orders tr.order", 20).await;
    browser.wait_for_text(step, "#orders", "W1").await;
    browser.click(step, "#next-page").await;
    browser.wait_for_text(step, "#orders", "D0000").await;
    browser.wait_for_count(step, "#orders tr.order", 1).await;
    browser.find(step, "#last-page").await;

    let step = "back to the page with W1";
    browser
        .client
        .back()
        .await
        .unwrap_or_else(|e| panic!("step `{step}`: {e}"));
    browser.wait_for_text(step, "#orders", "W1").await;

    let step = "open the order";
    browser
        .click(step, "#orders a[href='/admin/orders/W1']")
        .await;
    assert_eq!(
        browser.wait_for_text(step, "#status", "implementing").await,
        "implementing"
    );
    browser.wait_for_text(step, "#merchant-pid", MERCHANT).await;

    let step = "reconcile now";
    browser.click(step, "#reconcile").await;
    let calls = browser.wait_for_text(step, "#calls", "10000").await;
    assert!(
        calls.contains("alipay.open.servicemarket.order.query"),
        "step `{step}`: {calls}"
    );

    let step = "terminate with a reason";
    browser
        .type_into(step, "#reason", "Merchant closed the shop; agreed by phone")
        .await;
    browser.click(step, "#confirm").await;
    browser.click(step, "#terminate").await;
    assert_eq!(
        browser
            .wait_for_text(step, "#service-status", "terminated")
            .await,
        "terminated"
    );
    assert!(browser.url(step).await.ends_with("/admin/orders/W1"));

    let step = "the timeline names the operator";
    let timeline = browser
        .wait_for_text(
            step,
            "#timeline",
            "Merchant closed the shop; agreed by phone",
        )
        .await;
    assert!(
        timeline.contains(&format!("web:{OPERATOR}")),
        "step `{step}`: {timeline}"
    );
    assert!(
        timeline.contains("service_terminated:support"),
        "step `{step}`: {timeline}"
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-order-terminated.png");
    browser.screenshot(&shot).await;
    eprintln!("screenshot: {}", shot.display());

    let step = "sign out";
    browser.click(step, "#sign-out").await;
    browser.find(step, "#sign-in").await;
    assert!(browser.url(step).await.ends_with("/admin/login"));
    let _ = browser.client.close().await;

    // The old cookie, replayed outside the browser, is refused: the server ended the session.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let old = client
        .get(format!("{}/admin/orders/W1", app.address))
        .header("cookie", format!("isv_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 303, "the old cookie is refused");
    assert_eq!(old.headers()["location"], "/admin/login");

    // Outside the browser: no session → 401; a session with a wrong CSRF token → 403.
    let reconcile = format!("{}/admin/orders/W1/reconcile", app.address);
    let no_cookie = client
        .post(&reconcile)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), 401);
    let sign_in = |proto: &'static str| {
        client
            .post(format!("{}/admin/login", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-proto", proto)
            .body(format!("name={OPERATOR}&password=a+long+enough+password"))
            .send()
    };
    let signed_in = sign_in("http").await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    // Behind a TLS-terminating proxy the cookie is `Secure`.
    let over_tls = sign_in("https").await.unwrap();
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
    app.stop().await;
}
