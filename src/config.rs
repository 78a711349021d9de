//! Settings: `config/default.toml` (or `--config FILE`), then `ISV__SECTION__KEY` environment
//! variables, validated before anything starts. A bad setting stops the start with one line that
//! names the setting, where its value came from and what is wrong with it.

use crate::alipay::{PrivateKey, PublicKey, keys};
use crate::store::DbTarget;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Zero set-up: missing keys and secrets are generated under `app.data_dir` (sandbox mode).
    Local,
    /// Every key and secret must be configured; nothing is generated.
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub app: AppSettings,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub alipay: AlipaySettings,
    pub security: SecuritySettings,
    pub admin: TokenSettings,
    pub api: TokenSettings,
    pub scheduler: SchedulerSettings,
    pub inbox: InboxSettings,
    pub log: LogSettings,
    pub alerts: AlertSettings,
    pub templates: TemplateSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub queues: QueueSettings,
}

/// The work queues' batch sizes and retry limits (the inbox's are under `inbox`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    /// Deadlines, warnings and queued queries claimed by one scheduler pass.
    pub deadline_batch: i64,
    /// Template build steps claimed by one pipeline pass.
    pub build_batch: i64,
    /// Merchant orders claimed by one delivery pass.
    pub delivery_batch: i64,
    /// Failed attempts in a row before a build step is given up (`failed`, support alerted).
    pub build_max_attempts: i32,
    /// Failed attempts before a merchant-order sync is given up (`failed`).
    pub delivery_max_attempts: i32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            deadline_batch: 500,
            build_batch: 50,
            delivery_batch: 100,
            build_max_attempts: 40,
            delivery_max_attempts: 12,
        }
    }
}

/// How long stored gateway messages are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// Applied messages older than this many days are purged; quarantined, failed, parked and
    /// unapplied ones are kept whatever their age. 0 keeps everything.
    pub messages_days: u32,
    /// Cron expression (with seconds) of the purge; empty disables it.
    pub cron: String,
    /// Rows deleted per statement.
    pub batch: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            messages_days: 90,
            cron: "0 17 3 * * *".into(),
            batch: 1000,
        }
    }
}

/// Which template builds the merchant's mini program, per marketplace `item_code`.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateSettings {
    /// The template mini program's APPID for item codes without their own entry; empty: none.
    pub default_template_id: String,
    /// Empty: the latest version of the template on shelf.
    pub default_template_version: String,
    /// Let Alipay put an approved version online itself.
    pub auto_online: bool,
    /// Seconds between `build.query` polls.
    pub build_poll_seconds: i64,
    /// After `audit.apply`, seconds to wait for the audit message before asking
    /// `alipay.open.mini.version.detail.query`, and then between asks.
    #[serde(default = "default_audit_poll_seconds")]
    pub audit_poll_seconds: i64,
    /// `item_code` → `{ template_id, template_version }`.
    #[serde(default)]
    pub items: std::collections::HashMap<String, crate::service::pipeline::TemplateRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AlertSettings {
    /// Where alerts are POSTed as JSON (`kind`, `subject`, `message`); empty = log only.
    pub webhook_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppSettings {
    pub environment: Environment,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    /// Largest gateway body accepted; real messages reach 60 KB.
    pub max_body_bytes: usize,
    /// actix worker threads; 0 = one per core.
    pub workers: usize,
    /// When set (`host:port`), `/admin`, `/admin/api/*` and `/metrics` are served only there
    /// and no longer on `listen`.
    #[serde(default)]
    pub admin_listen: String,
    /// How long any request body may take to arrive, in milliseconds; a slower one is cut off.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
}

fn default_body_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: u32,
    /// PostgreSQL only (ignored for SQLite): libpq's `sslmode` for every connection (added to the
    /// URL). Empty = unset: the URL decides, and libpq's default `prefer` neither requires TLS nor
    /// checks the server, so the production profile wants it stated (`verify-full`, or `disable`
    /// on a private network).
    #[serde(default)]
    pub sslmode: String,
    /// PostgreSQL only: the CA certificate file that `verify-ca`/`verify-full` check the
    /// server's certificate against (libpq's `sslrootcert`). Empty = unset.
    #[serde(default)]
    pub sslrootcert: String,
}

/// libpq's `sslmode` values, weakest first.
pub const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl DatabaseSettings {
    /// The database to open: `url`, with `sslmode` and `sslrootcert` added for PostgreSQL.
    /// `Err((setting, problem))` for a value that cannot be used.
    pub fn target(&self, production: bool) -> Result<DbTarget, (&'static str, String)> {
        let target = DbTarget::parse(&self.url).map_err(|p| ("database.url", p))?;
        let stated = |value: &String| Some(value.clone()).filter(|v| !v.is_empty());
        let (sslmode, sslrootcert) = (stated(&self.sslmode), stated(&self.sslrootcert));
        let url = match &target {
            // A settings file written for PostgreSQL may be pointed at an SQLite file (a test, a
            // support copy): there is no connection to protect.
            DbTarget::Sqlite(_) => return Ok(target),
            DbTarget::Postgres(url) => url,
        };
        let mut parsed = reqwest::Url::parse(url)
            .map_err(|e| ("database.url", format!("not a PostgreSQL URL: {e}")))?;
        let in_url = |key: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let (url_mode, url_rootcert) = (in_url("sslmode"), in_url("sslrootcert"));
        if let Some(mode) = &sslmode {
            if !SSL_MODES.contains(&mode.as_str()) {
                return Err((
                    "database.sslmode",
                    format!("{mode:?} is not one of {}", SSL_MODES.join(", ")),
                ));
            }
            if url_mode.as_ref().is_some_and(|m| m != mode) {
                return Err((
                    "database.sslmode",
                    format!(
                        "{mode:?} contradicts sslmode={} in database.url; state it once",
                        url_mode.unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(file) = &sslrootcert {
            if url_rootcert.is_some() {
                return Err((
                    "database.sslrootcert",
                    "database.url already names an sslrootcert; state it once".into(),
                ));
            }
            if !std::path::Path::new(file).is_file() {
                return Err((
                    "database.sslrootcert",
                    format!("{file} is not a readable file"),
                ));
            }
        }
        if production && sslmode.is_none() && url_mode.is_none() {
            return Err((
                "database.sslmode",
                "the production profile needs it stated: verify-full checks the server's \
                 certificate (with sslrootcert); disable only on a private network"
                    .into(),
            ));
        }
        let added: Vec<(&str, &String)> = [
            ("sslmode", sslmode.as_ref().filter(|_| url_mode.is_none())),
            ("sslrootcert", sslrootcert.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
        if added.is_empty() {
            // The URL exactly as given.
            return Ok(target);
        }
        parsed.query_pairs_mut().extend_pairs(added);
        Ok(DbTarget::Postgres(parsed.into()))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AlipaySettings {
    pub app_id: String,
    pub gateway_url: String,
    pub app_private_key_file: String,
    pub alipay_public_key_file: String,
    pub timeout_seconds: u64,
    pub max_attempts: u32,
    /// First retry delay of an OpenAPI call; doubles per attempt, with jitter, capped at 5 s.
    pub retry_backoff_ms: u64,
    /// The production profile requires `https` for `gateway_url`; only a local stack talking
    /// to the simulator over a private network (docker compose) sets this.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// The app's content-encryption key (base64, from Alipay's console); empty: none. Decrypts
    /// `encrypt_type=AES` messages and encrypted responses.
    #[serde(default = "empty_secret")]
    pub aes_key: SecretString,
    /// Public-key certificate mode (公钥证书模式): our app certificate, Alipay's public-key
    /// certificate and Alipay's root bundle (PEM files). All three or none; when set,
    /// `alipay_public_key_file` is not needed.
    #[serde(default)]
    pub app_cert_file: String,
    #[serde(default)]
    pub alipay_cert_file: String,
    #[serde(default)]
    pub alipay_root_cert_file: String,
    /// Further third-party apps of this ISV served beside this (primary) one, by name:
    /// `alipay.apps.<name>.app_id` etc. Each has its own keys or certificates and AES key; the
    /// gateway, timeouts and retries are the primary app's.
    #[serde(default)]
    pub apps: std::collections::BTreeMap<String, IsvAppSettings>,
}

/// One further app of `alipay.apps.<name>`: the primary app's key settings, for that app. In
/// sandbox mode an app given no keys gets a generated key pair.
#[derive(Debug, Clone, Deserialize)]
pub struct IsvAppSettings {
    pub app_id: String,
    #[serde(default)]
    pub app_private_key_file: String,
    #[serde(default)]
    pub alipay_public_key_file: String,
    #[serde(default = "empty_secret")]
    pub aes_key: SecretString,
    #[serde(default)]
    pub app_cert_file: String,
    #[serde(default)]
    pub alipay_cert_file: String,
    #[serde(default)]
    pub alipay_root_cert_file: String,
}

impl IsvAppSettings {
    /// An app with no keys set (sandbox mode generates them).
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_private_key_file: String::new(),
            alipay_public_key_file: String::new(),
            aes_key: empty_secret(),
            app_cert_file: String::new(),
            alipay_cert_file: String::new(),
            alipay_root_cert_file: String::new(),
        }
    }
}

fn default_service_expiry_warning_days() -> u32 {
    7
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecuritySettings {
    pub encryption_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenSettings {
    pub token: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerSettings {
    pub tick_seconds: u64,
    pub deadline_grace_seconds: u64,
    /// Warnings before the 30-day implementation deadline, in days after implementation began.
    pub warning_days: Vec<u32>,
    /// Days before the end of a service's last period that support is warned
    /// (`service_expiry_warning`), so that a renewal can be suggested.
    #[serde(default = "default_service_expiry_warning_days")]
    pub service_expiry_warning_days: u32,
    /// Due rows fired at once by one tick (each waits on an `order.query` round trip).
    pub concurrency: usize,
    /// Cron expression (with seconds) of the reconciliation of every open order; empty disables.
    pub reconcile_cron: String,
    /// Most `order.query` calls per second that reconciliation makes.
    pub reconcile_rate_per_second: u32,
    /// Cron expression (with seconds) of the check of every active authorization's token with
    /// `alipay.open.auth.token.app.query`; empty disables.
    #[serde(default = "default_authorization_check_cron")]
    pub authorization_check_cron: String,
}

fn default_audit_poll_seconds() -> i64 {
    3600
}

fn default_authorization_check_cron() -> String {
    "0 40 4 * * *".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct InboxSettings {
    /// Most messages committed in one transaction by one writer.
    pub batch_size: usize,
    /// Writer threads committing gateway messages (SQLite has one writer whatever this says).
    pub writers: usize,
    /// Most messages applied per worker pass.
    pub apply_batch: i64,
    /// How often the apply worker looks for due retries when nothing wakes it.
    pub apply_poll_ms: u64,
    /// Attempts before a message that keeps failing is set aside as `failed` for support.
    pub max_apply_attempts: i32,
    /// Apply workers side by side on PostgreSQL, each claiming its own leased batches (SQLite:
    /// always one, its single writer). Default 2, as in config/default.toml.
    #[serde(default = "two_workers")]
    pub apply_workers: usize,
}

fn two_workers() -> usize {
    2
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `isv_lifecycle=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

/// A setting that stops the start, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {name} (from {origin}): {problem}")]
pub struct SettingError {
    pub name: String,
    pub origin: String,
    pub problem: String,
}

pub const ENV_PREFIX: &str = "ISV";

/// The environment variable that overrides a setting (`alipay.app_id` → `ISV__ALIPAY__APP_ID`).
pub fn env_name(setting: &str) -> String {
    format!(
        "{ENV_PREFIX}__{}",
        setting.replace('.', "__").to_ascii_uppercase()
    )
}

impl Settings {
    pub fn load(file: &Path) -> Result<Self, SettingError> {
        Self::load_with_env(file, None)
    }

    /// `load`, with the environment given as a map (tests) instead of read from the process.
    pub fn load_with_env(
        file: &Path,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, SettingError> {
        if !file.exists() {
            return Err(SettingError {
                name: "--config".into(),
                origin: "command line".into(),
                problem: format!("file {} does not exist", file.display()),
            });
        }
        let built = config::Config::builder()
            .add_source(config::File::from(file))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    // No `try_parsing`: it turns `000123` into the number 123 before serde sees
                    // the field, so a token or key of digits would lose its leading zeros. Numeric
                    // settings still parse: `config` converts a string when the field is a number.
                    .source(env),
            )
            .build()
            .and_then(|c| c.try_deserialize::<Settings>());
        built.map_err(|e| {
            let text = e.to_string();
            // config names the key in its message; point at the variable too.
            SettingError {
                name: "settings".into(),
                origin: file.display().to_string(),
                problem: text,
            }
        })
    }
}

/// Where a setting's value came from, for error messages.
pub fn source_of(setting: &str, file: &Path) -> String {
    let var = env_name(setting);
    if std::env::var_os(&var).is_some() {
        format!("environment variable {var}")
    } else {
        file.display().to_string()
    }
}

/// Everything `serve` needs that had to be read, parsed or generated from the settings.
pub struct Prepared {
    pub settings: Arc<Settings>,
    pub listen: SocketAddr,
    /// `server.admin_listen`: the internal listener for `/admin`, `/admin/api/*` and `/metrics`.
    pub admin_listen: Option<SocketAddr>,
    /// The settings file these came from (error messages name it).
    pub config_file: PathBuf,
    pub database: DbTarget,
    pub app_key: Arc<PrivateKey>,
    pub alipay_key: Arc<PublicKey>,
    /// `alipay.aes_key`, when set.
    pub aes_key: Option<Arc<crate::alipay::AesKey>>,
    /// Certificate mode, when the three certificate files are set.
    pub cert_mode: Option<Arc<crate::alipay::cert_mode::CertMode>>,
    pub encryption_key: Vec<u8>,
    pub admin_token: SecretString,
    pub api_token: SecretString,
    /// Set when keys were generated locally: messages from the real Alipay will not verify.
    pub sandbox: Option<SandboxFiles>,
    /// `alipay.apps.*`: the further apps, in name order.
    pub apps: Vec<PreparedApp>,
}

/// One further app (`alipay.apps.<name>`), read and checked.
pub struct PreparedApp {
    pub name: String,
    pub app_id: String,
    pub app_key: Arc<PrivateKey>,
    pub alipay_key: Arc<PublicKey>,
    pub aes_key: Option<Arc<crate::alipay::AesKey>>,
    pub cert_mode: Option<Arc<crate::alipay::cert_mode::CertMode>>,
}

#[derive(Debug, Clone)]
pub struct SandboxFiles {
    pub dir: PathBuf,
    /// The simulator signs as "Alipay" with this key; its public half is our `alipay_public_key`.
    pub platform_private_key: PathBuf,
    pub admin_token_file: PathBuf,
    pub api_token_file: PathBuf,
}

/// Whether preparing the settings may create things (sandbox keys and secrets, the data
/// directory): `serve`, `migrate` and the simulator may; support commands may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Allowed,
    Forbidden,
}

impl Prepared {
    pub fn from_settings(settings: Settings, file: &Path) -> Result<Self, SettingError> {
        Self::prepare(settings, file, Creation::Allowed)
    }

    /// Like `from_settings`, but nothing is generated or created: missing sandbox keys or
    /// secrets are an error naming `app.data_dir`.
    pub fn existing(settings: Settings, file: &Path) -> Result<Self, SettingError> {
        Self::prepare(settings, file, Creation::Forbidden)
    }

    pub fn prepare(
        settings: Settings,
        file: &Path,
        creation: Creation,
    ) -> Result<Self, SettingError> {
        let err = |name: &str, problem: String| SettingError {
            name: name.into(),
            origin: source_of(name, file),
            problem,
        };
        let local = settings.app.environment == Environment::Local;

        let listen: SocketAddr = settings.server.listen.parse().map_err(|_| {
            err(
                "server.listen",
                format!("{:?} is not host:port", settings.server.listen),
            )
        })?;
        let admin_listen = match settings.server.admin_listen.trim() {
            "" => None,
            text => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    err("server.admin_listen", format!("{text:?} is not host:port"))
                })?;
                if addr == listen && addr.port() != 0 {
                    return Err(err(
                        "server.admin_listen",
                        "must differ from server.listen".into(),
                    ));
                }
                Some(addr)
            }
        };
        if settings.server.body_timeout_ms == 0 {
            return Err(err("server.body_timeout_ms", "must be at least 1".into()));
        }
        if settings.retention.batch <= 0 {
            return Err(err("retention.batch", "must be at least 1".into()));
        }
        if !(1..=64).contains(&settings.inbox.apply_workers) {
            return Err(err(
                "inbox.apply_workers",
                "must be between 1 and 64".into(),
            ));
        }
        let queues = &settings.queues;
        for (name, value) in [
            ("queues.deadline_batch", queues.deadline_batch),
            ("queues.build_batch", queues.build_batch),
            ("queues.delivery_batch", queues.delivery_batch),
            (
                "queues.build_max_attempts",
                queues.build_max_attempts.into(),
            ),
            (
                "queues.delivery_max_attempts",
                queues.delivery_max_attempts.into(),
            ),
        ] {
            if value <= 0 {
                return Err(err(name, "must be at least 1".into()));
            }
        }
        if settings.server.max_body_bytes < 256 * 1024 {
            return Err(err(
                "server.max_body_bytes",
                "must be at least 262144 (real messages reach 60 KB)".into(),
            ));
        }
        let database = settings
            .database
            .target(settings.app.environment != Environment::Local)
            .map_err(|(name, problem)| err(name, problem))?;
        // Support commands look at what a deployment has: a database that is not there is the
        // first thing to say (before any missing sandbox key), and nothing is created for it.
        if creation == Creation::Forbidden
            && let DbTarget::Sqlite(path) = &database
            && !Path::new(path).is_file()
        {
            return Err(err(
                "database.url",
                format!(
                    "SQLite file {path} does not exist (support commands never create a database; \
                     is this the deployment's settings file and directory?)"
                ),
            ));
        }
        if settings.database.pool_size == 0 {
            return Err(err("database.pool_size", "must be at least 1".into()));
        }
        if settings.alipay.app_id.trim().is_empty()
            || !settings.alipay.app_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err(
                "alipay.app_id",
                format!(
                    "{:?} is not an Alipay app id (digits)",
                    settings.alipay.app_id
                ),
            ));
        }
        if reqwest::Url::parse(&settings.alipay.gateway_url)
            .map(|u| !u.scheme().starts_with("http"))
            .unwrap_or(true)
        {
            return Err(err(
                "alipay.gateway_url",
                format!("{:?} is not an http(s) URL", settings.alipay.gateway_url),
            ));
        }
        if !local
            && !settings.alipay.allow_plain_http
            && reqwest::Url::parse(&settings.alipay.gateway_url)
                .map(|u| u.scheme() != "https")
                .unwrap_or(true)
        {
            return Err(err(
                "alipay.gateway_url",
                format!(
                    "{:?} is not https; the production profile sends tokens and signed requests only over TLS",
                    settings.alipay.gateway_url
                ),
            ));
        }
        if settings.alipay.max_attempts == 0 || settings.alipay.timeout_seconds == 0 {
            return Err(err(
                "alipay.max_attempts",
                "max_attempts and timeout_seconds must be positive".into(),
            ));
        }
        if settings.scheduler.tick_seconds == 0 {
            return Err(err("scheduler.tick_seconds", "must be at least 1".into()));
        }
        if settings.inbox.batch_size == 0
            || settings.inbox.writers == 0
            || settings.inbox.apply_batch <= 0
        {
            return Err(err(
                "inbox.batch_size",
                "batch_size, writers and apply_batch must be positive".into(),
            ));
        }
        if let Err(problem) = crate::service::alerts::Alerter::new(&settings.alerts.webhook_url) {
            return Err(err("alerts.webhook_url", problem.to_string()));
        }
        if !matches!(settings.log.format.as_str(), "text" | "json") {
            return Err(err(
                "log.format",
                format!("{:?} is neither text nor json", settings.log.format),
            ));
        }

        let keys_missing = settings.alipay.app_private_key_file.trim().is_empty()
            && settings.alipay.alipay_public_key_file.trim().is_empty()
            && settings.alipay.app_cert_file.trim().is_empty();
        let sandbox = if keys_missing && local {
            let made = match creation {
                Creation::Allowed => ensure_sandbox(&settings.app.data_dir),
                Creation::Forbidden => existing_sandbox(&settings.app.data_dir),
            };
            Some(made.map_err(|p| err("app.data_dir", p.0))?)
        } else {
            None
        };

        // Certificate mode: all three files, or none.
        let cert_files = {
            let a = &settings.alipay;
            let files = [
                ("alipay.app_cert_file", a.app_cert_file.trim().to_string()),
                (
                    "alipay.alipay_cert_file",
                    a.alipay_cert_file.trim().to_string(),
                ),
                (
                    "alipay.alipay_root_cert_file",
                    a.alipay_root_cert_file.trim().to_string(),
                ),
            ];
            match files.iter().filter(|(_, p)| p.is_empty()).count() {
                3 => None,
                0 => Some(files),
                _ => {
                    let missing = files
                        .iter()
                        .find(|(_, p)| p.is_empty())
                        .expect("one is empty");
                    return Err(err(
                        missing.0,
                        "certificate mode needs all three of app_cert_file, alipay_cert_file and alipay_root_cert_file".into(),
                    ));
                }
            }
        };
        let mut cert_mode = None;
        let (app_key, alipay_key) = match &sandbox {
            Some(files) => {
                let app = read_file(&files.dir.join("app_private_key.pem"))
                    .map_err(|p| err("app.data_dir", p.0))?;
                let platform = read_file(&files.dir.join("alipay_public_key.pem"))
                    .map_err(|p| err("app.data_dir", p.0))?;
                (
                    PrivateKey::parse(&app)
                        .map_err(|e| err("app.data_dir", format!("sandbox app key: {e}")))?,
                    PublicKey::parse(&platform)
                        .map_err(|e| err("app.data_dir", format!("sandbox Alipay key: {e}")))?,
                )
            }
            None if cert_files.is_some() => {
                let app_path =
                    required(&settings.alipay.app_private_key_file).ok_or_else(|| {
                        err(
                            "alipay.app_private_key_file",
                            "is required (our app private key: PEM or bare base64)".into(),
                        )
                    })?;
                let app_text = read_file(Path::new(app_path))
                    .map_err(|p| err("alipay.app_private_key_file", p.0))?;
                let app_key = PrivateKey::parse(&app_text)
                    .map_err(|e| err("alipay.app_private_key_file", format!("{app_path}: {e}")))?;
                let [app_cert, alipay_cert, root] = cert_files
                    .as_ref()
                    .expect("matched on is_some")
                    .clone()
                    .map(|(name, path)| {
                        std::fs::read(&path)
                            .map_err(|e| err(name, format!("cannot read {path}: {e}")))
                    });
                let mode = crate::alipay::cert_mode::CertMode::new(
                    &app_cert?,
                    &alipay_cert?,
                    &root?,
                    &app_key.public_key(),
                )
                .map_err(|e| {
                    use crate::alipay::cert_mode::CertModeError as E;
                    let name = match &e {
                        E::File { file, .. } => match *file {
                            "app_cert_file" => "alipay.app_cert_file",
                            "alipay_cert_file" => "alipay.alipay_cert_file",
                            _ => "alipay.alipay_root_cert_file",
                        },
                        E::AppKeyMismatch => "alipay.app_cert_file",
                    };
                    err(name, e.to_string())
                })?;
                let alipay_key = mode
                    .known_key(None)
                    .expect("the configured Alipay certificate is held");
                cert_mode = Some(Arc::new(mode));
                (app_key, alipay_key)
            }
            None => {
                let app_path =
                    required(&settings.alipay.app_private_key_file).ok_or_else(|| {
                        err(
                            "alipay.app_private_key_file",
                            "is required (our app private key: PEM or bare base64)".into(),
                        )
                    })?;
                let alipay_path =
                    required(&settings.alipay.alipay_public_key_file).ok_or_else(|| {
                        err(
                            "alipay.alipay_public_key_file",
                            "is required (Alipay's public key: PEM or bare base64)".into(),
                        )
                    })?;
                let app_text = read_file(Path::new(app_path))
                    .map_err(|p| err("alipay.app_private_key_file", p.0))?;
                let alipay_text = read_file(Path::new(alipay_path))
                    .map_err(|p| err("alipay.alipay_public_key_file", p.0))?;
                (
                    PrivateKey::parse(&app_text).map_err(|e| {
                        err("alipay.app_private_key_file", format!("{app_path}: {e}"))
                    })?,
                    PublicKey::parse(&alipay_text).map_err(|e| {
                        err(
                            "alipay.alipay_public_key_file",
                            format!("{alipay_path}: {e}"),
                        )
                    })?,
                )
            }
        };
        // The most common integration mistake: pasting our own app public key where Alipay's goes.
        if alipay_key.same_key_as(&app_key.public_key()) {
            return Err(err(
                "alipay.alipay_public_key_file",
                "is our own app public key; it must be Alipay's public key (支付宝公钥) from the console".into(),
            ));
        }

        let secret_or_sandbox = |name: &str,
                                 value: &SecretString,
                                 file: Option<PathBuf>|
         -> Result<SecretString, SettingError> {
            if !value.expose_secret().trim().is_empty() {
                return Ok(value.clone());
            }
            match file {
                Some(path) if local => read_file(&path)
                    .map(|s| SecretString::from(s.trim().to_string()))
                    .map_err(|p| err(name, p.0)),
                _ => Err(err(name, "is required".into())),
            }
        };
        let sandbox_file = |name: &str| {
            sandbox
                .as_ref()
                .map(|s| s.dir.join(name))
                .or_else(|| local.then(|| sandbox_dir(&settings.app.data_dir).join(name)))
        };
        let need_local_secrets = local
            && [
                &settings.security.encryption_key,
                &settings.admin.token,
                &settings.api.token,
            ]
            .iter()
            .any(|s| s.expose_secret().trim().is_empty());
        if need_local_secrets && sandbox.is_none() && creation == Creation::Allowed {
            ensure_sandbox_secrets(&sandbox_dir(&settings.app.data_dir))
                .map_err(|p| err("app.data_dir", p.0))?;
        }
        let encryption = secret_or_sandbox(
            "security.encryption_key",
            &settings.security.encryption_key,
            sandbox_file("encryption.key"),
        )?;
        let encryption_key = STANDARD
            .decode(encryption.expose_secret().trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                err(
                    "security.encryption_key",
                    "must be the base64 of exactly 32 bytes".into(),
                )
            })?;
        let admin_token = secret_or_sandbox(
            "admin.token",
            &settings.admin.token,
            sandbox_file("admin.token"),
        )?;
        let api_token =
            secret_or_sandbox("api.token", &settings.api.token, sandbox_file("api.token"))?;
        for (name, token) in [("admin.token", &admin_token), ("api.token", &api_token)] {
            if token.expose_secret().len() < 16 {
                return Err(err(name, "must be at least 16 characters".into()));
            }
        }

        let aes_key = match required(settings.alipay.aes_key.expose_secret()) {
            None => None,
            Some(text) => Some(Arc::new(crate::alipay::AesKey::parse(text).map_err(
                |e| {
                    err(
                        "alipay.aes_key",
                        format!("{e} (the console's AES key, base64)"),
                    )
                },
            )?)),
        };
        let mut apps = Vec::new();
        for (name, app) in &settings.alipay.apps {
            // Sandbox mode: an app given no keys gets its own generated key pair, and the
            // simulated Alipay's key.
            let sandboxed = match &sandbox {
                Some(files) if valid_app_name(name) && app_keys_missing(app) => Some(
                    sandbox_app(name, app, files, creation)
                        .map_err(|p| err(&format!("alipay.apps.{name}"), p.0))?,
                ),
                _ => None,
            };
            let prepared = prepare_app(name, sandboxed.as_ref().unwrap_or(app), &err)?;
            let taken = std::iter::once(settings.alipay.app_id.as_str())
                .chain(apps.iter().map(|a: &PreparedApp| a.app_id.as_str()))
                .any(|id| id == prepared.app_id);
            if taken {
                return Err(err(
                    &format!("alipay.apps.{name}.app_id"),
                    format!(
                        "{:?} is already served (by alipay.app_id or another alipay.apps entry)",
                        prepared.app_id
                    ),
                ));
            }
            apps.push(prepared);
        }
        Ok(Prepared {
            apps,
            config_file: file.to_path_buf(),
            listen,
            admin_listen,
            database,
            app_key: Arc::new(app_key),
            alipay_key: Arc::new(alipay_key),
            aes_key,
            cert_mode,
            encryption_key,
            admin_token,
            api_token,
            sandbox,
            settings: Arc::new(settings),
        })
    }

    pub fn apply_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.alipay.timeout_seconds)
    }
}

/// Reads and checks one `alipay.apps.<name>` entry: an app id of digits, our private key, and
/// Alipay's public key or the three certificate files; an optional AES key.
fn prepare_app(
    name: &str,
    app: &IsvAppSettings,
    err: &dyn Fn(&str, String) -> SettingError,
) -> Result<PreparedApp, SettingError> {
    let key = |k: &str| format!("alipay.apps.{name}.{k}");
    if !valid_app_name(name) {
        return Err(err(
            &format!("alipay.apps.{name}"),
            "an app's name is lower-case letters, digits and _".into(),
        ));
    }
    if app.app_id.trim().is_empty() || !app.app_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(
            &key("app_id"),
            format!("{:?} is not an Alipay app id (digits)", app.app_id),
        ));
    }
    let app_path = required(&app.app_private_key_file).ok_or_else(|| {
        err(
            &key("app_private_key_file"),
            "is required (this app's private key: PEM or bare base64)".into(),
        )
    })?;
    let app_text =
        read_file(Path::new(app_path)).map_err(|p| err(&key("app_private_key_file"), p.0))?;
    let app_key = PrivateKey::parse(&app_text)
        .map_err(|e| err(&key("app_private_key_file"), format!("{app_path}: {e}")))?;
    let certs = [
        ("app_cert_file", app.app_cert_file.trim()),
        ("alipay_cert_file", app.alipay_cert_file.trim()),
        ("alipay_root_cert_file", app.alipay_root_cert_file.trim()),
    ];
    let (alipay_key, cert_mode) = match certs.iter().filter(|(_, p)| p.is_empty()).count() {
        3 => {
            let path = required(&app.alipay_public_key_file).ok_or_else(|| {
                err(
                    &key("alipay_public_key_file"),
                    "is required (Alipay's public key for this app, or the three certificate files)"
                        .into(),
                )
            })?;
            let text =
                read_file(Path::new(path)).map_err(|p| err(&key("alipay_public_key_file"), p.0))?;
            let alipay_key = PublicKey::parse(&text)
                .map_err(|e| err(&key("alipay_public_key_file"), format!("{path}: {e}")))?;
            (alipay_key, None)
        }
        0 => {
            let [app_cert, alipay_cert, root] = certs.map(|(k, path)| {
                std::fs::read(path).map_err(|e| err(&key(k), format!("cannot read {path}: {e}")))
            });
            let mode = crate::alipay::cert_mode::CertMode::new(
                &app_cert?,
                &alipay_cert?,
                &root?,
                &app_key.public_key(),
            )
            .map_err(|e| {
                use crate::alipay::cert_mode::CertModeError as E;
                let file = match &e {
                    E::File { file, .. } => *file,
                    E::AppKeyMismatch => "app_cert_file",
                };
                err(&key(file), e.to_string())
            })?;
            let alipay_key = mode
                .known_key(None)
                .expect("the configured Alipay certificate is held");
            (alipay_key, Some(Arc::new(mode)))
        }
        _ => {
            let missing = certs
                .iter()
                .find(|(_, p)| p.is_empty())
                .expect("one is empty");
            return Err(err(
                &key(missing.0),
                "certificate mode needs all three of app_cert_file, alipay_cert_file and alipay_root_cert_file".into(),
            ));
        }
    };
    if alipay_key.same_key_as(&app_key.public_key()) {
        return Err(err(
            &key("alipay_public_key_file"),
            "is this app's own public key; it must be Alipay's public key (支付宝公钥)".into(),
        ));
    }
    let aes_key = match required(app.aes_key.expose_secret()) {
        None => None,
        Some(text) => Some(Arc::new(crate::alipay::AesKey::parse(text).map_err(
            |e| {
                err(
                    &key("aes_key"),
                    format!("{e} (the console's AES key, base64)"),
                )
            },
        )?)),
    };
    Ok(PreparedApp {
        name: name.to_string(),
        app_id: app.app_id.clone(),
        app_key: Arc::new(app_key),
        alipay_key: Arc::new(alipay_key),
        aes_key,
        cert_mode,
    })
}

fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn app_keys_missing(app: &IsvAppSettings) -> bool {
    [
        &app.app_private_key_file,
        &app.alipay_public_key_file,
        &app.app_cert_file,
        &app.alipay_cert_file,
        &app.alipay_root_cert_file,
    ]
    .iter()
    .all(|f| f.trim().is_empty())
}

/// Sandbox mode for a further app: its own key pair, generated once under `data_dir/keys` as
/// `app_<name>_private_key.pem` (public half beside it), and the simulated Alipay's public key.
fn sandbox_app(
    name: &str,
    app: &IsvAppSettings,
    files: &SandboxFiles,
    creation: Creation,
) -> Result<IsvAppSettings, FileProblem> {
    let private = files.dir.join(format!("app_{name}_private_key.pem"));
    if !private.exists() && creation == Creation::Allowed {
        let pair = keys::generate().map_err(|e| FileProblem(format!("key generation: {e}")))?;
        write_private(&private, &pair.private_pkcs8_pem)?;
        let public = files.dir.join(format!("app_{name}_public_key.pem"));
        let _ = std::fs::remove_file(&public);
        write_private(&public, &pair.public_spki_pem)?;
    }
    Ok(IsvAppSettings {
        app_private_key_file: private.display().to_string(),
        alipay_public_key_file: files
            .dir
            .join("alipay_public_key.pem")
            .display()
            .to_string(),
        ..app.clone()
    })
}

fn required(value: &str) -> Option<&str> {
    let v = value.trim();
    (!v.is_empty()).then_some(v)
}

/// Why a settings file or a sandbox file could not be read or written (one line, for the setting
/// that names it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FileProblem(String);

fn problem(message: String) -> FileProblem {
    FileProblem(message)
}

fn read_file(path: &Path) -> Result<String, FileProblem> {
    if !path.exists() {
        return Err(FileProblem(format!(
            "file {} does not exist",
            path.display()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))
}

pub fn sandbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

fn write_private(path: &Path, contents: &str) -> Result<(), FileProblem> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| problem(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| problem(format!("cannot write {}: {e}", path.display())))
}

fn random_text(bytes: usize) -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("system random source");
    STANDARD.encode(buf)
}

fn ensure_sandbox_secrets(dir: &Path) -> Result<(), FileProblem> {
    std::fs::create_dir_all(dir)
        .map_err(|e| problem(format!("cannot create {}: {e}", dir.display())))?;
    for (name, len) in [
        ("encryption.key", 32),
        ("admin.token", 24),
        ("api.token", 24),
    ] {
        let path = dir.join(name);
        if !path.exists() {
            let value = if name == "encryption.key" {
                random_text(len)
            } else {
                random_text(len).replace(['+', '/', '='], "x")
            };
            write_private(&path, &value)?;
        }
    }
    Ok(())
}

/// Sandbox mode without creating anything: the files `ensure_sandbox` made on an earlier start.
fn existing_sandbox(data_dir: &Path) -> Result<SandboxFiles, FileProblem> {
    let dir = sandbox_dir(data_dir);
    for name in ["app_private_key.pem", "alipay_public_key.pem"] {
        if !dir.join(name).exists() {
            return Err(FileProblem(format!(
                "no sandbox keys in {} (support commands never generate keys: configure the \
                 Alipay keys, or start `isv-lifecycle serve` or `migrate` once)",
                dir.display()
            )));
        }
    }
    Ok(SandboxFiles {
        platform_private_key: dir.join("alipay_platform_private_key.pem"),
        admin_token_file: dir.join("admin.token"),
        api_token_file: dir.join("api.token"),
        dir,
    })
}

/// Sandbox mode: our app key pair and a stand-in "Alipay platform" key pair (used by the
/// simulator), generated once under `data_dir/keys` and reused on later starts.
fn ensure_sandbox(data_dir: &Path) -> Result<SandboxFiles, FileProblem> {
    let dir = sandbox_dir(data_dir);
    ensure_sandbox_secrets(&dir)?;
    for (private, public) in [
        ("app_private_key.pem", "app_public_key.pem"),
        ("alipay_platform_private_key.pem", "alipay_public_key.pem"),
    ] {
        if !dir.join(private).exists() {
            let pair = keys::generate().map_err(|e| FileProblem(format!("key generation: {e}")))?;
            write_private(&dir.join(private), &pair.private_pkcs8_pem)?;
            let _ = std::fs::remove_file(dir.join(public));
            write_private(&dir.join(public), &pair.public_spki_pem)?;
            if private == "app_private_key.pem" {
                let _ = std::fs::remove_file(dir.join("app_public_key.b64"));
                write_private(&dir.join("app_public_key.b64"), &pair.public_base64)?;
            }
        }
    }
    Ok(SandboxFiles {
        platform_private_key: dir.join("alipay_platform_private_key.pem"),
        admin_token_file: dir.join("admin.token"),
        api_token_file: dir.join("api.token"),
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_digits_keep_their_leading_zeros() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"));
        let env: std::collections::HashMap<String, String> = [
            ("ISV__ADMIN__TOKEN", "0001234567890123456789"),
            ("ISV__API__TOKEN", "00000000000000000042"),
            ("ISV__ALIPAY__APP_ID", "0021000000000001"),
            ("ISV__SCHEDULER__TICK_SECONDS", "7"),
            ("ISV__TEMPLATES__AUTO_ONLINE", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Settings::load_with_env(file, Some(env)).unwrap();
        assert_eq!(s.admin.token.expose_secret(), "0001234567890123456789");
        assert_eq!(s.api.token.expose_secret(), "00000000000000000042");
        assert_eq!(s.alipay.app_id, "0021000000000001");
        // Numbers and booleans still parse from the environment's strings.
        assert_eq!(s.scheduler.tick_seconds, 7);
        assert!(s.templates.auto_online);
        assert_eq!(s.retention.messages_days, 90, "the default");
    }

    #[test]
    fn database_tls_is_added_to_the_postgres_url_and_stated_in_production() {
        let db = |url: &str, sslmode: &str, sslrootcert: &str| DatabaseSettings {
            url: url.into(),
            pool_size: 1,
            sslmode: sslmode.into(),
            sslrootcert: sslrootcert.into(),
        };
        let url = |target: DbTarget| match target {
            DbTarget::Postgres(url) => url,
            DbTarget::Sqlite(path) => panic!("sqlite {path}"),
        };
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca_path = ca.path().display().to_string();
        let full = db("postgres://isv:pw@db.internal/isv", "verify-full", &ca_path)
            .target(true)
            .unwrap();
        assert_eq!(
            url(full),
            format!(
                "postgres://isv:pw@db.internal/isv?sslmode=verify-full&sslrootcert={}",
                ca_path.replace('/', "%2F")
            )
        );
        // Stated in the URL instead: kept as it is.
        let in_url = db("postgres://db/isv?sslmode=disable", "", "").target(true);
        assert_eq!(url(in_url.unwrap()), "postgres://db/isv?sslmode=disable");
        // Not stated at all: fine locally (libpq's default), refused in production.
        assert_eq!(
            url(db("postgres://db/isv", "", "").target(false).unwrap()),
            "postgres://db/isv"
        );
        let refused = |d: DatabaseSettings, production: bool| d.target(production).unwrap_err();
        let (name, why) = refused(db("postgres://db/isv", "", ""), true);
        assert_eq!(name, "database.sslmode");
        assert!(why.contains("verify-full"), "{why}");
        let (name, why) = refused(db("postgres://db/isv", "verify-everything", ""), false);
        assert_eq!(name, "database.sslmode");
        assert!(why.contains("verify-everything"), "{why}");
        let (name, why) = refused(
            db("postgres://db/isv?sslmode=require", "disable", ""),
            false,
        );
        assert_eq!(name, "database.sslmode");
        assert!(why.contains("contradicts"), "{why}");
        let (name, _) = refused(
            db("postgres://db/isv", "verify-full", "/no/such/ca.pem"),
            false,
        );
        assert_eq!(name, "database.sslrootcert");
        // SQLite has no connection to protect: the TLS settings do not apply to it.
        assert_eq!(
            db("sqlite://x.db", "verify-full", "/no/such/ca.pem").target(true),
            Ok(DbTarget::Sqlite("x.db".into()))
        );
    }

    fn vector_key(name: &str) -> String {
        format!(
            "{}/../shared/vectors/keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    /// Settings for `prepare` from default.toml: a data dir of its own, the vectors' keys.
    fn settings_with(env: &[(&str, &str)]) -> (Settings, tempfile::TempDir) {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"));
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let db = format!("sqlite://{data}/test.db");
        let app_key = vector_key("isv_app_private_pkcs8.pem");
        let alipay_key = vector_key("alipay_platform_public_spki.pem");
        let mut vars: Vec<(&str, &str)> = vec![
            ("ISV__APP__DATA_DIR", &data),
            ("ISV__DATABASE__URL", &db),
            ("ISV__ALIPAY__APP_ID", "2021000000000001"),
            ("ISV__ALIPAY__APP_PRIVATE_KEY_FILE", &app_key),
            ("ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE", &alipay_key),
        ];
        vars.extend_from_slice(env);
        let env = vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (Settings::load_with_env(file, Some(env)).unwrap(), dir)
    }

    /// A second app's key pair on disk: (private key file, its public key file).
    fn second_app_keys(dir: &Path) -> (String, String) {
        let pair = keys::generate().unwrap();
        let private = dir.join("second_private.pem");
        let public = dir.join("second_public.pem");
        std::fs::write(&private, &pair.private_pkcs8_pem).unwrap();
        std::fs::write(&public, &pair.public_spki_pem).unwrap();
        (private.display().to_string(), public.display().to_string())
    }

    #[test]
    fn a_second_app_comes_from_the_environment() {
        let keys_dir = tempfile::tempdir().unwrap();
        let (private, _) = second_app_keys(keys_dir.path());
        let alipay_key = vector_key("alipay_platform_public_spki.pem");
        let (settings, _dir) = settings_with(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            (
                "ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE",
                &alipay_key,
            ),
            (
                "ISV__ALIPAY__APPS__SECOND__AES_KEY",
                "aa4BtZ4tspm2wnXLb1ThQA==",
            ),
        ]);
        let second = &settings.alipay.apps["second"];
        assert_eq!(second.app_id, "2021000000000002");
        let prepared = Prepared::from_settings(settings, Path::new("test.toml")).unwrap();
        assert_eq!(prepared.apps.len(), 1);
        let app = &prepared.apps[0];
        assert_eq!(
            (app.name.as_str(), app.app_id.as_str()),
            ("second", "2021000000000002")
        );
        assert!(app.aes_key.is_some());
        assert!(app.cert_mode.is_none());
        assert!(
            !app.app_key
                .public_key()
                .same_key_as(&prepared.app_key.public_key())
        );
    }

    #[test]
    fn queue_sizes_and_apply_workers_out_of_range_are_refused_naming_the_setting() {
        let (settings, _dir) = settings_with(&[]);
        assert_eq!(settings.inbox.apply_workers, 2, "the default");
        assert_eq!(settings.queues.build_max_attempts, 40, "the default");
        for (var, name, value) in [
            ("ISV__INBOX__APPLY_WORKERS", "inbox.apply_workers", "0"),
            ("ISV__INBOX__APPLY_WORKERS", "inbox.apply_workers", "65"),
            ("ISV__QUEUES__DEADLINE_BATCH", "queues.deadline_batch", "0"),
            (
                "ISV__QUEUES__BUILD_MAX_ATTEMPTS",
                "queues.build_max_attempts",
                "0",
            ),
        ] {
            let (settings, _dir) = settings_with(&[(var, value)]);
            let e = Prepared::from_settings(settings, Path::new("test.toml"))
                .err()
                .expect("refused");
            assert_eq!(e.name, name, "{e}");
        }
        let (settings, _dir) = settings_with(&[("ISV__INBOX__APPLY_WORKERS", "4")]);
        assert_eq!(settings.inbox.apply_workers, 4);
    }

    #[test]
    fn a_bad_second_app_stops_the_start_naming_its_setting() {
        let keys_dir = tempfile::tempdir().unwrap();
        let (private, public) = second_app_keys(keys_dir.path());
        let alipay_key = vector_key("alipay_platform_public_spki.pem");
        let refused = |env: &[(&str, &str)]| {
            let (settings, _dir) = settings_with(env);
            Prepared::from_settings(settings, Path::new("test.toml"))
                .err()
                .expect("refused")
        };
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "twenty-one"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            (
                "ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE",
                &alipay_key,
            ),
        ]);
        assert_eq!(e.name, "alipay.apps.second.app_id", "{e}");
        let e = refused(&[("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002")]);
        assert_eq!(e.name, "alipay.apps.second.app_private_key_file", "{e}");
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
        ]);
        assert_eq!(e.name, "alipay.apps.second.alipay_public_key_file", "{e}");
        // Its own public key where Alipay's goes.
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            ("ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE", &public),
        ]);
        assert_eq!(e.name, "alipay.apps.second.alipay_public_key_file", "{e}");
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            (
                "ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE",
                &alipay_key,
            ),
            ("ISV__ALIPAY__APPS__SECOND__AES_KEY", "not base64!"),
        ]);
        assert_eq!(e.name, "alipay.apps.second.aes_key", "{e}");
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            ("ISV__ALIPAY__APPS__SECOND__APP_CERT_FILE", &public),
        ]);
        assert_eq!(e.name, "alipay.apps.second.alipay_cert_file", "{e}");
        // The primary app's id again: refused.
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000001"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            (
                "ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE",
                &alipay_key,
            ),
        ]);
        assert_eq!(e.name, "alipay.apps.second.app_id", "{e}");
        assert!(e.problem.contains("already served"), "{e}");
        // Two further apps with one id.
        let e = refused(&[
            ("ISV__ALIPAY__APPS__SECOND__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__SECOND__APP_PRIVATE_KEY_FILE", &private),
            (
                "ISV__ALIPAY__APPS__SECOND__ALIPAY_PUBLIC_KEY_FILE",
                &alipay_key,
            ),
            ("ISV__ALIPAY__APPS__THIRD__APP_ID", "2021000000000002"),
            ("ISV__ALIPAY__APPS__THIRD__APP_PRIVATE_KEY_FILE", &private),
            (
                "ISV__ALIPAY__APPS__THIRD__ALIPAY_PUBLIC_KEY_FILE",
                &alipay_key,
            ),
        ]);
        assert_eq!(e.name, "alipay.apps.third.app_id", "{e}");
    }

    #[test]
    fn env_names_follow_the_interface() {
        assert_eq!(env_name("database.url"), "ISV__DATABASE__URL");
        assert_eq!(
            env_name("alipay.app_private_key_file"),
            "ISV__ALIPAY__APP_PRIVATE_KEY_FILE"
        );
    }
}
