//! `isv-lifecycle sim`: a local, stateful Alipay (what stripe-mock is to Stripe, with state).
//!
//! One actix server holds
//! - the OpenAPI endpoint `POST /gateway.do` (`openapi`): verifies our request signatures with our
//!   app public key and answers from the state, signed with the platform private key;
//! - the control API under `/sim/` (`control`): create, pay, refund and confirm orders, cancel
//!   authorizations, reject the next audit, move the sim clock, read the state and the calls log;
//! - a gateway-message sender (`sender`) that POSTs signed messages to our `/alipay/gateway`, with
//!   Alipay's retry schedule.
//!
//! Faults (`SimFaults`) are injected into OpenAPI answers only, and never change state.
//! The protocol code is the crate's own (`crate::alipay`): the sim is only as right as it.

mod control;
mod multipart;
mod openapi;
mod sender;
pub mod state;

pub use state::{NewOrder, SimError, Stage};

use crate::alipay::keys::{PrivateKey, PublicKey};
use crate::clock::{Clock as _, ManualClock, SystemClock};
use actix_web::{App, HttpServer, web};
use chrono::{DateTime, Utc};
use rand::SeedableRng as _;
use state::{CallRecord, MessageRecord, Outgoing, SimState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Shares of OpenAPI calls that fail, each in its own way (drawn in this order from one seeded
/// random number per call). A faulted call did nothing to the state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimFaults {
    /// HTTP 502, empty-ish body.
    pub share_5xx: f64,
    /// No answer for `timeout_ms`, then a signed `20000` (the call was not carried out).
    pub share_timeout: f64,
    /// A signed `40005` (call limit exceeded).
    pub share_rate_limited: f64,
    /// A success-looking answer whose signature does not verify.
    pub share_bad_signature: f64,
    pub timeout_ms: u64,
    pub seed: u64,
}

impl Default for SimFaults {
    fn default() -> Self {
        Self {
            share_5xx: 0.0,
            share_timeout: 0.0,
            share_rate_limited: 0.0,
            share_bad_signature: 0.0,
            timeout_ms: 20_000,
            seed: 0,
        }
    }
}

/// A fault picked for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Http5xx,
    Timeout,
    RateLimited,
    BadSignature,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Http5xx => "fault_5xx",
            Fault::Timeout => "fault_timeout",
            Fault::RateLimited => "fault_rate_limited",
            Fault::BadSignature => "fault_bad_signature",
        }
    }
}

pub struct SimConfig {
    /// `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// Our app id: requests must name it, messages carry it.
    pub app_id: String,
    /// Verifies our requests.
    pub app_public_key: PublicKey,
    /// Signs answers and messages as Alipay.
    pub platform_key: Arc<PrivateKey>,
    /// Where gateway messages go (our `POST /alipay/gateway`); `None`: recorded, not sent.
    pub gateway_url: Option<String>,
    /// Multiplies Alipay's retry schedule (1.0 = real minutes and hours).
    pub retry_scale: f64,
    pub faults: SimFaults,
    /// The sim clock's start (default: the real now).
    pub start: Option<DateTime<Utc>>,
    /// Further ISV apps (app id, public key): requests naming one are verified with its key.
    pub other_apps: Vec<(String, PublicKey)>,
}

impl SimConfig {
    pub fn new(
        app_id: impl Into<String>,
        app_public_key: PublicKey,
        platform_key: Arc<PrivateKey>,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_id: app_id.into(),
            app_public_key,
            platform_key,
            gateway_url: None,
            retry_scale: 1.0,
            faults: SimFaults::default(),
            start: None,
            other_apps: Vec::new(),
        }
    }
}

/// What the handlers share.
pub(crate) struct Inner {
    app_id: String,
    app_public_key: PublicKey,
    other_apps: std::collections::BTreeMap<String, PublicKey>,
    platform_key: Arc<PrivateKey>,
    gateway_url: Option<String>,
    retry_scale: f64,
    faults: SimFaults,
    fault_rng: Mutex<rand::rngs::StdRng>,
    clock: ManualClock,
    state: Mutex<SimState>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    http: reqwest::Client,
}

impl Inner {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The public key of ISV app `app_id`, when it is one of ours.
    fn app_key(&self, app_id: &str) -> Option<&PublicKey> {
        if app_id == self.app_id {
            return Some(&self.app_public_key);
        }
        self.other_apps.get(app_id)
    }

    /// The state, with every deadline that passed by the sim's now applied.
    fn lock(&self) -> MutexGuard<'_, SimState> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.settle(self.now());
        state
    }

    /// Queues messages (recorded as pending) for the sender.
    fn send(&self, state: &mut SimState, messages: Vec<Outgoing>) {
        let now = self.now();
        for message in messages {
            state.messages.push(MessageRecord {
                notify_id: message.notify_id.clone(),
                kind: message.kind.clone(),
                app_id: message
                    .params
                    .iter()
                    .find(|(k, _)| k == "app_id")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                created_at: now,
                attempts: 0,
                delivery: "pending".into(),
                last_answer: None,
            });
            // The receiver lives as long as the runtime; if it is gone, nothing can be sent.
            let _ = self.outbox.send(message);
        }
    }

    fn record_delivery(
        &self,
        notify_id: &str,
        attempts: u32,
        delivery: &str,
        answer: Option<String>,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = state.messages.iter_mut().find(|m| m.notify_id == notify_id) {
            m.attempts = attempts;
            m.delivery = delivery.to_string();
            if answer.is_some() {
                m.last_answer = answer;
            }
        }
    }

    fn pick_fault(&self) -> Option<Fault> {
        let f = &self.faults;
        if f.share_5xx + f.share_timeout + f.share_rate_limited + f.share_bad_signature <= 0.0 {
            return None;
        }
        let x: f64 =
            rand::Rng::r#gen(&mut *self.fault_rng.lock().unwrap_or_else(|p| p.into_inner()));
        let mut edge = 0.0;
        for (share, fault) in [
            (f.share_5xx, Fault::Http5xx),
            (f.share_timeout, Fault::Timeout),
            (f.share_rate_limited, Fault::RateLimited),
            (f.share_bad_signature, Fault::BadSignature),
        ] {
            edge += share;
            if x < edge {
                return Some(fault);
            }
        }
        None
    }
}

/// A handle on a running sim's state, for tests and the demo (in-process; tokens are reachable
/// here and nowhere else).
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl SimHandle {
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    /// Creates an order; sends the authorization (when asked) and order messages.
    pub fn create_order(&self, req: NewOrder) -> Result<serde_json::Value, SimError> {
        let app_id = req
            .app_id
            .clone()
            .unwrap_or_else(|| self.inner.app_id.clone());
        if self.inner.app_key(&app_id).is_none() {
            return Err(SimError::new(
                "40002",
                "isv.invalid-app-id",
                format!("app {app_id} is not one of the simulated ISV's apps"),
            ));
        }
        let mut state = self.inner.lock();
        let (order, messages) = state.create_order(req, self.inner.now(), &app_id)?;
        let notify_ids: Vec<String> = messages.iter().map(|m| m.notify_id.clone()).collect();
        self.inner.send(&mut state, messages);
        let mut summary = order.summary();
        summary["notify_ids"] = notify_ids.into();
        Ok(summary)
    }

    pub fn pay(&self, commodity_order_id: &str) -> Result<serde_json::Value, SimError> {
        Ok(self
            .inner
            .lock()
            .pay(commodity_order_id, self.inner.now())?
            .summary())
    }

    pub fn refund(&self, commodity_order_id: &str) -> Result<serde_json::Value, SimError> {
        Ok(self
            .inner
            .lock()
            .refund(commodity_order_id, self.inner.now())?
            .summary())
    }

    pub fn confirm(&self, commodity_order_id: &str) -> Result<serde_json::Value, SimError> {
        Ok(self
            .inner
            .lock()
            .confirm(commodity_order_id, self.inner.now())?
            .summary())
    }

    /// The merchant cancels our authorization; sends `alipay.open.auth.appauth.cancelled`.
    pub fn cancel_authorization(&self, auth_app_id: &str) -> Result<serde_json::Value, SimError> {
        let mut state = self.inner.lock();
        let (summary, message) = state.cancel_authorization(auth_app_id, self.inner.now())?;
        self.inner.send(&mut state, vec![message]);
        Ok(summary)
    }

    /// The next audit of `mini_app_id` is rejected with `reason`.
    pub fn reject_next_audit(&self, mini_app_id: &str, reason: impl Into<String>) {
        self.inner
            .lock()
            .reject_next_audit
            .insert(mini_app_id.to_string(), reason.into());
    }

    /// The merchant's authorization ends and the `appauth.cancelled` message is lost (never
    /// sent): only `auth.token.app.query` says so (`invalid`).
    pub fn invalidate_authorization(
        &self,
        auth_app_id: &str,
    ) -> Result<serde_json::Value, SimError> {
        self.inner.lock().invalidate_authorization(auth_app_id)
    }

    /// From now on the audit messages of `mini_app_id` are lost (`lose` false: sent again).
    pub fn lose_audit_messages(&self, mini_app_id: &str, lose: bool) {
        let mut state = self.inner.lock();
        if lose {
            state.lose_audit_messages.insert(mini_app_id.to_string());
        } else {
            state.lose_audit_messages.remove(mini_app_id);
        }
    }

    /// Versions the mini program already has on Alipay (`version.list.query` reports them).
    pub fn seed_versions(&self, mini_app_id: &str, app_versions: &[String]) -> serde_json::Value {
        let now = self.inner.now();
        self.inner
            .lock()
            .seed_versions(mini_app_id, app_versions, now)
    }

    /// A single-use `app_auth_code` for `alipay.open.auth.token.app`.
    pub fn issue_auth_code(&self, auth_app_id: &str) -> Result<String, SimError> {
        self.inner.lock().issue_auth_code(auth_app_id)
    }

    /// The merchant's current token, if the authorization is active (in-process only).
    pub fn app_auth_token(&self, auth_app_id: &str) -> Option<String> {
        self.inner
            .lock()
            .authorizations
            .get(auth_app_id)
            .filter(|a| a.status == state::AuthStatus::Active)
            .map(|a| a.app_auth_token.clone())
    }

    /// Moves the sim clock; deadlines that pass apply at their own instants.
    pub fn advance(&self, by: chrono::Duration) -> DateTime<Utc> {
        self.inner.clock.advance(by);
        drop(self.inner.lock());
        self.inner.now()
    }

    /// Everything but tokens, as `GET /sim/state` shows it.
    pub fn snapshot(&self) -> serde_json::Value {
        self.inner.lock().snapshot(self.inner.now())
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.inner.lock().calls.clone()
    }

    pub fn messages(&self) -> Vec<MessageRecord> {
        self.inner.lock().messages.clone()
    }

    /// The order's (status, item order_status) as `order.query` would answer now.
    pub fn order_status(&self, commodity_order_id: &str) -> Option<(&'static str, &'static str)> {
        self.inner
            .lock()
            .orders
            .get(commodity_order_id)
            .map(|o| o.stage.wire())
    }

    /// Waits until every message made so far has been delivered or given up on (or `timeout`).
    /// True when all were delivered.
    pub async fn wait_for_deliveries(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.iter().all(|m| m.delivery != "pending") {
                return messages.iter().all(|m| m.delivery == "delivered");
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct Simulator;

/// A started sim. Dropping it leaves the server running until the runtime ends; call `stop`.
pub struct RunningSim {
    /// The OpenAPI endpoint: `http://host:port/gateway.do`.
    pub url: String,
    /// The control API's base: `http://host:port/sim`.
    pub control_url: String,
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub state: SimHandle,
    server: actix_web::dev::ServerHandle,
}

impl RunningSim {
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

impl Simulator {
    /// Binds, starts serving on the current tokio runtime and returns at once.
    pub async fn start(config: SimConfig) -> std::io::Result<RunningSim> {
        let (running, server) = Self::bind(config)?;
        tokio::spawn(server);
        Ok(running)
    }

    /// Binds and returns the server future without spawning it (the CLI awaits it).
    pub fn bind(config: SimConfig) -> std::io::Result<(RunningSim, actix_web::dev::Server)> {
        let clock = ManualClock::new(config.start.unwrap_or_else(|| SystemClock.now()));
        let (tx, rx) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            app_id: config.app_id,
            app_public_key: config.app_public_key,
            other_apps: config.other_apps.into_iter().collect(),
            platform_key: config.platform_key,
            gateway_url: config.gateway_url,
            retry_scale: config.retry_scale,
            faults: config.faults,
            fault_rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(config.faults.seed)),
            clock: clock.clone(),
            state: Mutex::new(SimState::default()),
            outbox: tx,
            http,
        });
        sender::spawn(inner.clone(), rx);
        let listener = std::net::TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .route("/gateway.do", web::post().to(openapi::gateway))
                .configure(control::routes)
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let running = RunningSim {
            url: format!("http://{addr}/gateway.do"),
            control_url: format!("http://{addr}/sim"),
            addr,
            clock,
            state: SimHandle { inner },
            server: server.handle(),
        };
        Ok((running, server))
    }
}
