//! The OpenAPI 2.0 HTTP client: a thin reqwest shell around the pure pieces. Each attempt signs a
//! fresh request (`request::build`, so the `timestamp` is current), POSTs it, verifies the
//! response signature over the raw bytes (`response::check`) before anything is parsed, then reads
//! the common result (`code`, `msg`, `sub_code`, `sub_msg`).
//!
//! Secrets: the merchant's `app_auth_token` travels in the URL query, so reqwest errors are
//! stripped of their URL before they become messages, and `sub_msg` (which may echo the sign
//! content, token included) is masked before it is stored or logged.

use super::aes::AesKey;
use super::api::{self, BizRequest};
use super::cert_mode::CertMode;
use super::form;
use super::keys::{PrivateKey, PublicKey};
use super::message;
use super::request::{self, RequestParts};
use super::response::{self, CheckedResponse, ResponseError};
use crate::clock::SharedClock;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub const PRODUCTION_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";
pub const SANDBOX_GATEWAY: &str = "https://openapi-sandbox.dl.alipaydev.com/gateway.do";

/// `code` of a successful call.
pub const CODE_SUCCESS: &str = "10000";
/// `code` for "service unavailable": the outcome is unknown, Alipay says to retry later.
pub const CODE_UNAVAILABLE: &str = "20000";
/// `code` for "insufficient authorisation" (bad, expired or cancelled `app_auth_token`, ...).
pub const CODE_AUTH: &str = "20001";

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// Alipay's answers are a few KB; anything far bigger is not a gateway response.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub gateway_url: String,
    pub app_id: String,
    /// Whole-request timeout, per attempt.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts in all, the first included (0 is read as 1).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl ClientSettings {
    /// Production-like defaults for everything but the gateway and the app id.
    pub fn new(gateway_url: impl Into<String>, app_id: impl Into<String>) -> Self {
        Self {
            gateway_url: gateway_url.into(),
            app_id: app_id.into(),
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlipayError {
    /// Connect, timeout or other I/O failure (message stripped of the URL, which holds the token).
    #[error("transport error: {0}")]
    Transport(String),
    #[error("gateway answered HTTP {status}")]
    Http { status: u16 },
    /// The response failed signature verification or could not be located in the body.
    #[error("response rejected: {0}")]
    Response(#[from] ResponseError),
    /// Alipay answered with a `code` other than 10000. `msg`/`sub_msg` are masked of secrets.
    #[error("alipay error {code} {msg}{}", fmt_sub(sub_code, sub_msg))]
    Api {
        code: String,
        msg: String,
        sub_code: Option<String>,
        sub_msg: Option<String>,
    },
    /// A verified response we could not read, or a request we refused to send.
    #[error("decode error: {0}")]
    Decode(String),
}

fn fmt_sub(sub_code: &Option<String>, sub_msg: &Option<String>) -> String {
    match (sub_code, sub_msg) {
        (None, None) => String::new(),
        (code, msg) => format!(
            " ({}: {})",
            code.as_deref().unwrap_or("-"),
            msg.as_deref().unwrap_or("-")
        ),
    }
}

impl AlipayError {
    /// Alipay's result code, for `Api` errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            AlipayError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn sub_code(&self) -> Option<&str> {
        match self {
            AlipayError::Api { sub_code, .. } => sub_code.as_deref(),
            _ => None,
        }
    }

    /// Worth another attempt: transport failures, HTTP 5xx, Alipay's `20000`, and an answer we
    /// could not trust (unsigned, not verifying, or not a gateway response at all: a proxy page,
    /// a forgery, a corruption in transit). Its content is never read, so it can only be retried.
    /// Anything else (business errors, 4xx, a verified answer we cannot read) would fail the same
    /// way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            AlipayError::Transport(_) => true,
            AlipayError::Http { status } => *status >= 500,
            AlipayError::Api { code, .. } => code == CODE_UNAVAILABLE,
            // A certificate refused as not chaining to our root would be refused again.
            AlipayError::Response(ResponseError::UntrustedCertificate { .. }) => false,
            AlipayError::Response(
                ResponseError::Malformed(_)
                | ResponseError::MissingResponse(_)
                | ResponseError::Unsigned
                | ResponseError::BadSignature,
            ) => true,
            AlipayError::Decode(_) => false,
        }
    }

    /// The merchant's token is no good (`20001`, or an `aop.invalid-app-auth-token*` sub code):
    /// the merchant must re-authorise, or the token must be refreshed.
    pub fn is_invalid_app_auth_token(&self) -> bool {
        match self {
            AlipayError::Api { code, sub_code, .. } => {
                code == CODE_AUTH
                    || sub_code
                        .as_deref()
                        .is_some_and(|s| s.starts_with("aop.invalid-app-auth-token"))
            }
            _ => false,
        }
    }

    fn transport(err: reqwest::Error) -> Self {
        // The URL carries `app_auth_token`: never let it into a message.
        let err = err.without_url();
        let kind = if err.is_connect() {
            "connect"
        } else if err.is_timeout() {
            "timeout"
        } else if err.is_body() || err.is_decode() {
            "body"
        } else {
            "request"
        };
        let mut text = format!("{kind}: {err}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        AlipayError::Transport(text)
    }
}

/// A file part of a multipart upload. Sent, never signed.
#[derive(Clone)]
pub struct FilePart {
    /// Form field name, e.g. `app_logo` or `first_screen_shot`.
    pub name: String,
    pub filename: String,
    pub bytes: Vec<u8>,
    /// MIME type, e.g. `image/png`.
    pub mime: String,
}

impl fmt::Debug for FilePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePart")
            .field("name", &self.name)
            .field("filename", &self.filename)
            .field("mime", &self.mime)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A successful (code 10000), signature-verified response.
#[derive(Clone)]
pub struct ApiResponse {
    method: String,
    msg: String,
    /// Raw JSON text of the `<method>_response` value, exactly as verified.
    content: Vec<u8>,
}

impl ApiResponse {
    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// The verified raw JSON of the response value. It may hold tokens: do not log it.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// Reads the business fields.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, AlipayError> {
        serde_json::from_slice(&self.content).map_err(|e| decode_error(&self.method, &e))
    }
}

impl fmt::Debug for ApiResponse {
    // The content may carry tokens (token.app): show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("method", &self.method)
            .field("msg", &self.msg)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// serde_json's messages quote the offending value, which could be a token: keep the shape only.
fn decode_error(method: &str, err: &serde_json::Error) -> AlipayError {
    AlipayError::Decode(format!(
        "{method} response: {}",
        redact_quoted(&err.to_string())
    ))
}

fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    for c in text.chars() {
        if c == '"' {
            if in_quotes {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    out
}

/// The typed calls the service layer makes, as a trait so it can hold `Arc<dyn AlipayApi>` and
/// tests can substitute a fake. Calls acting for a merchant take the merchant's token per call.
pub trait AlipayApi: Send + Sync {
    /// `alipay.open.servicemarket.order.query`, as the ISV app.
    fn servicemarket_order_query<'a>(
        &'a self,
        req: &'a api::OrderQueryRequest,
    ) -> BoxFuture<'a, Result<api::OrderQueryResponse, AlipayError>>;

    /// `alipay.open.auth.token.app`, as the ISV app.
    fn auth_token_app<'a>(
        &'a self,
        req: &'a api::TokenAppRequest,
    ) -> BoxFuture<'a, Result<api::TokenAppResponse, AlipayError>>;

    /// `alipay.open.mini.version.upload`, for a merchant.
    fn mini_version_upload<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionUploadRequest,
    ) -> BoxFuture<'a, Result<api::VersionUploadResponse, AlipayError>>;

    /// `alipay.open.mini.version.build.query`, for a merchant.
    fn mini_version_build_query<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::BuildQueryRequest,
    ) -> BoxFuture<'a, Result<api::BuildQueryResponse, AlipayError>>;

    /// `alipay.open.mini.version.audit.apply` (multipart), for a merchant.
    fn mini_version_audit_apply<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::AuditApplyRequest,
    ) -> BoxFuture<'a, Result<api::AuditApplyResponse, AlipayError>>;

    /// `alipay.open.mini.version.online`, for a merchant.
    fn mini_version_online<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionOnlineRequest,
    ) -> BoxFuture<'a, Result<api::VersionOnlineResponse, AlipayError>>;

    /// `alipay.open.mini.version.list.query`, for a merchant.
    fn mini_version_list_query<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionListRequest,
    ) -> BoxFuture<'a, Result<api::VersionListResponse, AlipayError>>;

    /// `alipay.open.mini.version.detail.query`, for a merchant.
    fn mini_version_detail_query<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionDetailRequest,
    ) -> BoxFuture<'a, Result<api::VersionDetailResponse, AlipayError>>;

    /// `alipay.open.auth.token.app.query`, as the ISV app: the token asked about travels in
    /// `biz_content`, not as the call's own `app_auth_token`.
    fn auth_token_app_query<'a>(
        &'a self,
        req: &'a api::TokenQueryRequest,
    ) -> BoxFuture<'a, Result<api::TokenQueryResponse, AlipayError>>;

    /// Certificate mode: makes sure the Alipay certificate `sn` is held, downloading it
    /// (`alipay.open.app.alipaycert.download`) and accepting it only if it chains to our root.
    /// A gateway message naming an unknown SN asks for this. In key mode: a `Decode` error.
    fn alipay_cert_download<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<(), AlipayError>>;

    /// `alipay.merchant.order.sync`, for a merchant. `biz_content` must be a JSON object,
    /// already validated by the caller.
    fn merchant_order_sync<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        biz_content: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<api::MerchantOrderSyncResponse, AlipayError>>;
}

pub struct AlipayClient {
    http: reqwest::Client,
    settings: ClientSettings,
    app_key: Arc<PrivateKey>,
    alipay_key: Arc<PublicKey>,
    clock: SharedClock,
    /// Decrypts encrypted responses (the `*_response` value is a JSON string of ciphertext).
    aes_key: Option<Arc<AesKey>>,
    /// Certificate mode: requests carry both SNs, responses are verified by their SN.
    cert_mode: Option<Arc<CertMode>>,
}

impl fmt::Debug for AlipayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayClient")
            .field("settings", &self.settings)
            .field("alipay_key", &self.alipay_key)
            .finish_non_exhaustive()
    }
}

impl AlipayClient {
    /// Fails when the gateway URL does not parse or the HTTP client cannot be built (both
    /// reported as `Transport`; neither happens after start-up).
    pub fn new(
        settings: ClientSettings,
        app_key: Arc<PrivateKey>,
        alipay_key: Arc<PublicKey>,
        clock: SharedClock,
    ) -> Result<Self, AlipayError> {
        let url = reqwest::Url::parse(&settings.gateway_url)
            .map_err(|e| AlipayError::Transport(format!("invalid gateway_url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AlipayError::Transport(format!(
                "gateway_url scheme {:?} is not http(s)",
                url.scheme()
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            // A redirected POST would be re-sent as something else, token and all: refuse.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlipayError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            settings,
            app_key,
            alipay_key,
            clock,
            aes_key: None,
            cert_mode: None,
        })
    }

    /// Public-key certificate mode (公钥证书模式).
    pub fn with_cert_mode(mut self, mode: Option<Arc<CertMode>>) -> Self {
        self.cert_mode = mode;
        self
    }

    /// The app's AES key, for encrypted responses.
    pub fn with_aes_key(mut self, key: Option<Arc<AesKey>>) -> Self {
        self.aes_key = key;
        self
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Signs and sends a form-encoded request, with retries; verifies the response.
    pub async fn execute(&self, parts: RequestParts<'_>) -> Result<ApiResponse, AlipayError> {
        self.run(parts, None).await
    }

    /// The multipart variant (upload APIs such as `alipay.open.mini.version.audit.apply`): the
    /// text fields (`parts.text_fields`) are signed and sent as text parts, the files are sent
    /// but not signed. Common parameters and `sign` stay in the URL query.
    pub async fn execute_multipart(
        &self,
        parts: RequestParts<'_>,
        files: &[FilePart],
    ) -> Result<ApiResponse, AlipayError> {
        self.run(parts, Some(files)).await
    }

    /// A `biz_content` call: serialises `req`, sends it (with the merchant's token when given),
    /// and reads the typed response.
    pub async fn call<R: BizRequest>(
        &self,
        app_auth_token: Option<&SecretString>,
        req: &R,
    ) -> Result<R::Response, AlipayError> {
        let biz = serde_json::to_string(req).map_err(|e| {
            AlipayError::Decode(format!("{}: cannot serialise biz_content: {e}", R::METHOD))
        })?;
        let parts = RequestParts {
            method: R::METHOD,
            biz_content: Some(biz),
            text_fields: Vec::new(),
            app_auth_token: token_param(R::METHOD, app_auth_token)?,
        };
        self.execute(parts).await?.parse()
    }

    async fn run(
        &self,
        parts: RequestParts<'_>,
        files: Option<&[FilePart]>,
    ) -> Result<ApiResponse, AlipayError> {
        let method = parts.method;
        let max_attempts = self.settings.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self.attempt(parts.clone(), files).await;
            // Method, attempt and result code only: Alipay's messages may carry merchant data.
            match &result {
                Ok(_) => tracing::debug!(method, attempt, code = CODE_SUCCESS, "alipay call"),
                Err(e @ AlipayError::Api { code, sub_code, .. }) => tracing::debug!(
                    method,
                    attempt,
                    code = code.as_str(),
                    sub_code = sub_code.as_deref().unwrap_or("-"),
                    retryable = e.is_retryable(),
                    "alipay call failed"
                ),
                // These carry no Alipay data (transport messages are stripped of the URL).
                Err(e) => {
                    tracing::debug!(method, attempt, error = %e, retryable = e.is_retryable(), "alipay call failed")
                }
            }
            match result {
                Err(e) if e.is_retryable() && attempt < max_attempts => {
                    tokio::time::sleep(self.retry_delay(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    /// Full jitter: uniform in [0, min(cap, base * 2^retry)].
    fn retry_delay(&self, retry: u32) -> Duration {
        crate::backoff::backoff(
            self.settings.backoff_base,
            self.settings.backoff_cap,
            retry,
            crate::backoff::Jitter::Full,
        )
    }

    async fn attempt(
        &self,
        parts: RequestParts<'_>,
        files: Option<&[FilePart]>,
    ) -> Result<ApiResponse, AlipayError> {
        let method = parts.method;
        let body = self.send(parts, files).await?;
        let located = response::locate(&body, method)?;
        let key = self.response_key(located.alipay_cert_sn.as_deref()).await?;
        let checked = response::verify_located(located, &key)?;
        let checked = decrypt_response(method, checked, self.aes_key.as_deref())?;
        interpret(method, checked)
    }

    /// Signs (afresh: the `timestamp` is current) and sends one request; the raw answer.
    async fn send(
        &self,
        parts: RequestParts<'_>,
        files: Option<&[FilePart]>,
    ) -> Result<Vec<u8>, AlipayError> {
        let signed = request::build_with(
            &self.settings.app_id,
            &self.app_key,
            parts,
            self.clock.now(),
            self.cert_mode.as_ref().map(|m| m.sns()),
        );
        let separator = if self.settings.gateway_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{}{}",
            self.settings.gateway_url,
            separator,
            form::encode(signed.query.iter().map(|(k, v)| (k, v)))
        );
        let builder = self.http.post(url);
        let builder = match files {
            None => builder
                .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
                .body(form::encode(signed.form.iter().map(|(k, v)| (k, v)))),
            Some(files) => builder.multipart(multipart_form(signed.form, files)?),
        };
        let response = builder.send().await.map_err(AlipayError::transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AlipayError::Http {
                status: status.as_u16(),
            });
        }
        read_body(response).await
    }

    /// The key that verifies a response: Alipay's public key, or in certificate mode the key of
    /// the certificate the response names (held, cached by a replica, or downloaded now and
    /// trusted only if it chains to our root).
    async fn response_key(&self, sn: Option<&str>) -> Result<PublicKey, AlipayError> {
        let Some(mode) = &self.cert_mode else {
            return Ok((*self.alipay_key).clone());
        };
        let now = self.clock.now();
        if let Some(key) = mode.key(sn, now).await {
            return Ok(key);
        }
        let sn = sn.unwrap_or(mode.default_sn()).to_string();
        tracing::info!(alipay_cert_sn = %sn, "unknown Alipay certificate: downloading it");
        let pem = self.download_cert(&sn).await?;
        mode.accept_download(&sn, &pem, now)
            .await
            .map_err(|reason| {
                AlipayError::Response(ResponseError::UntrustedCertificate {
                    sn,
                    reason: reason.0,
                })
            })
    }

    /// `alipay.open.app.alipaycert.download`: the certificate's PEM text. The answer's own
    /// signature is not what makes it trusted (it may be signed under the very certificate we
    /// are fetching): the certificate must chain to our root, which the caller checks.
    async fn download_cert(&self, sn: &str) -> Result<String, AlipayError> {
        #[derive(serde::Deserialize)]
        struct Download {
            #[serde(default, deserialize_with = "api::lenient::opt_string")]
            code: Option<String>,
            #[serde(default)]
            alipay_cert_content: Option<String>,
        }
        let parts = RequestParts {
            method: api::METHOD_CERT_DOWNLOAD,
            biz_content: Some(serde_json::json!({ "alipay_cert_sn": sn }).to_string()),
            text_fields: Vec::new(),
            app_auth_token: None,
        };
        let body = self.send(parts, None).await?;
        let located = response::locate(&body, api::METHOD_CERT_DOWNLOAD)?;
        let download: Download = serde_json::from_slice(located.content)
            .map_err(|e| decode_error(api::METHOD_CERT_DOWNLOAD, &e))?;
        let content = match (download.code.as_deref(), download.alipay_cert_content) {
            (Some(CODE_SUCCESS), Some(content)) if !content.is_empty() => content,
            (code, _) => {
                return Err(AlipayError::Response(ResponseError::UntrustedCertificate {
                    sn: sn.to_string(),
                    reason: format!(
                        "alipay.open.app.alipaycert.download gave no certificate (code {})",
                        code.unwrap_or("-")
                    ),
                }));
            }
        };
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                AlipayError::Response(ResponseError::UntrustedCertificate {
                    sn: sn.to_string(),
                    reason: "alipay_cert_content is not base64 of a PEM certificate".into(),
                })
            })?;
        Ok(pem)
    }
}

/// The token as a request parameter. An empty token would be dropped by the request builder
/// (no empty parameters are sent) and the call would silently go out as the ISV app: refuse.
fn token_param<'a>(
    method: &str,
    token: Option<&'a SecretString>,
) -> Result<Option<&'a str>, AlipayError> {
    match token.map(|t| t.expose_secret()) {
        Some("") => Err(AlipayError::Decode(format!(
            "{method}: refusing to send an empty app_auth_token"
        ))),
        other => Ok(other),
    }
}

fn multipart_form(
    text: Vec<(String, String)>,
    files: &[FilePart],
) -> Result<reqwest::multipart::Form, AlipayError> {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in text {
        form = form.text(name, value);
    }
    for file in files {
        let part = reqwest::multipart::Part::bytes(file.bytes.clone())
            .file_name(file.filename.clone())
            .mime_str(&file.mime)
            .map_err(|_| {
                AlipayError::Decode(format!(
                    "file part {:?}: invalid MIME type {:?}",
                    file.name, file.mime
                ))
            })?;
        form = form.part(file.name.clone(), part);
    }
    Ok(form)
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, AlipayError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(AlipayError::transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(AlipayError::Decode(format!(
                "response body over {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The common result fields. `code` may come as a number from odd gateways; read it leniently.
#[derive(serde::Deserialize)]
struct CommonResult {
    #[serde(default, deserialize_with = "api::lenient::opt_string")]
    code: Option<String>,
    #[serde(default, deserialize_with = "api::lenient::opt_string")]
    msg: Option<String>,
    #[serde(default, deserialize_with = "api::lenient::opt_string")]
    sub_code: Option<String>,
    #[serde(default, deserialize_with = "api::lenient::opt_string")]
    sub_msg: Option<String>,
}

/// An encrypted response carries its value as a JSON string of base64 ciphertext; the signature
/// (checked already) covers that string, quotes included. Decrypted only after verifying.
fn decrypt_response<'a>(
    method: &str,
    checked: CheckedResponse<'a>,
    key: Option<&AesKey>,
) -> Result<CheckedResponse<'a>, AlipayError> {
    if checked.content.first() != Some(&b'"') {
        return Ok(checked);
    }
    let ciphertext: String =
        serde_json::from_slice(&checked.content).map_err(|e| decode_error(method, &e))?;
    let key = key.ok_or_else(|| {
        AlipayError::Decode(format!(
            "{method}: the response is encrypted and no alipay.aes_key is configured"
        ))
    })?;
    let plain = key
        .decrypt_base64(&ciphertext)
        .map_err(|e| AlipayError::Decode(format!("{method}: encrypted response: {e}")))?;
    Ok(CheckedResponse {
        content: std::borrow::Cow::Owned(plain),
        ..checked
    })
}

/// Reads the common result of a checked (signed and verified) response: success only for a
/// `<method>_response` with code 10000.
fn interpret(method: &str, checked: CheckedResponse<'_>) -> Result<ApiResponse, AlipayError> {
    let common: CommonResult =
        serde_json::from_slice(&checked.content).map_err(|e| decode_error(method, &e))?;
    let code = common
        .code
        .ok_or_else(|| AlipayError::Decode(format!("{method} response has no code")))?;
    let msg = common.msg.map(|m| mask_secrets(&m)).unwrap_or_default();
    if code == CODE_SUCCESS {
        if checked.is_error_response {
            return Err(AlipayError::Decode(format!(
                "{method}: error_response with code 10000"
            )));
        }
        return Ok(ApiResponse {
            method: method.to_string(),
            msg,
            content: checked.content.into_owned(),
        });
    }
    let sub_msg = common.sub_msg.map(|m| mask_secrets(&m));
    if common.sub_code.as_deref() == Some("isv.invalid-signature") {
        // Alipay echoes the sign content it built: the best debugging aid there is (masked).
        tracing::warn!(
            method,
            sub_msg = sub_msg.as_deref().unwrap_or(""),
            "Alipay rejected our request signature"
        );
    }
    Err(AlipayError::Api {
        code,
        msg,
        sub_code: common.sub_code,
        sub_msg,
    })
}

/// Masks secret values in free text such as an echoed sign content: form style
/// (`app_auth_token=XXXX&...`, up to the next `&`, quote or whitespace) and JSON style
/// (`"refresh_token":"XXXX"`), for every name `message::is_secret_name` calls secret, plus `code`
/// (the single-use `app_auth_code` that `alipay.open.auth.token.app` exchanges).
pub fn mask_secrets(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' => {
                let start = ident_start(bytes, i);
                if start < i && is_secret_key(&text[start..i]) {
                    let end = bytes[i + 1..]
                        .iter()
                        .position(|b| {
                            matches!(b, b'&' | b'"' | b'\'' | b' ' | b'\t' | b'\r' | b'\n')
                        })
                        .map_or(bytes.len(), |p| i + 1 + p);
                    if end > i + 1 {
                        out.push_str(&text[copied..=i]);
                        out.push_str(message::MASK);
                        copied = end;
                    }
                    i = end;
                    continue;
                }
            }
            b'"' => {
                if let Some((key, value)) = json_string_member(bytes, i) {
                    if is_secret_key(&text[key.clone()]) && !value.is_empty() {
                        out.push_str(&text[copied..value.start]);
                        out.push_str(message::MASK);
                        copied = value.end;
                    }
                    i = value.end + 1;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_secret_key(key: &str) -> bool {
    key == "code" || message::is_secret_name(key)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_start(bytes: &[u8], end: usize) -> usize {
    let mut start = end;
    while start > 0 && is_ident(bytes[start - 1]) {
        start -= 1;
    }
    start
}

/// At a `"`: `"name" : "value"` gives the byte ranges of name and value (between the quotes).
/// Every boundary is an ASCII byte, so the ranges slice valid UTF-8.
fn json_string_member(
    bytes: &[u8],
    quote: usize,
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let name_start = quote + 1;
    let name_len = bytes[name_start..].iter().position(|b| !is_ident(*b))?;
    let name_end = name_start + name_len;
    if name_len == 0 || bytes.get(name_end) != Some(&b'"') {
        return None;
    }
    let mut i = name_end + 1;
    while matches!(bytes.get(i), Some(b' ')) {
        i += 1;
    }
    if bytes.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while matches!(bytes.get(i), Some(b' ')) {
        i += 1;
    }
    if bytes.get(i) != Some(&b'"') {
        return None;
    }
    let value_start = i + 1;
    let mut j = value_start;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => return Some((name_start..name_end, value_start..j)),
            _ => j += 1,
        }
    }
    None
}

impl AlipayApi for AlipayClient {
    fn alipay_cert_download<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<(), AlipayError>> {
        Box::pin(async move {
            if self.cert_mode.is_none() {
                return Err(AlipayError::Decode(
                    "alipay.open.app.alipaycert.download: not in certificate mode".into(),
                ));
            }
            self.response_key(Some(sn)).await.map(|_| ())
        })
    }

    fn servicemarket_order_query<'a>(
        &'a self,
        req: &'a api::OrderQueryRequest,
    ) -> BoxFuture<'a, Result<api::OrderQueryResponse, AlipayError>> {
        Box::pin(self.call(None, req))
    }

    fn auth_token_app<'a>(
        &'a self,
        req: &'a api::TokenAppRequest,
    ) -> BoxFuture<'a, Result<api::TokenAppResponse, AlipayError>> {
        Box::pin(self.call(None, req))
    }

    fn mini_version_upload<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionUploadRequest,
    ) -> BoxFuture<'a, Result<api::VersionUploadResponse, AlipayError>> {
        Box::pin(self.call(Some(app_auth_token), req))
    }

    fn mini_version_build_query<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::BuildQueryRequest,
    ) -> BoxFuture<'a, Result<api::BuildQueryResponse, AlipayError>> {
        Box::pin(self.call(Some(app_auth_token), req))
    }

    fn mini_version_audit_apply<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::AuditApplyRequest,
    ) -> BoxFuture<'a, Result<api::AuditApplyResponse, AlipayError>> {
        Box::pin(async move {
            let parts = RequestParts {
                method: api::METHOD_AUDIT_APPLY,
                biz_content: None,
                text_fields: req.text_fields(),
                app_auth_token: token_param(api::METHOD_AUDIT_APPLY, Some(app_auth_token))?,
            };
            self.execute_multipart(parts, &req.files).await?.parse()
        })
    }

    fn mini_version_online<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionOnlineRequest,
    ) -> BoxFuture<'a, Result<api::VersionOnlineResponse, AlipayError>> {
        Box::pin(self.call(Some(app_auth_token), req))
    }

    fn mini_version_list_query<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionListRequest,
    ) -> BoxFuture<'a, Result<api::VersionListResponse, AlipayError>> {
        Box::pin(self.call(Some(app_auth_token), req))
    }

    fn mini_version_detail_query<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        req: &'a api::VersionDetailRequest,
    ) -> BoxFuture<'a, Result<api::VersionDetailResponse, AlipayError>> {
        Box::pin(self.call(Some(app_auth_token), req))
    }

    fn auth_token_app_query<'a>(
        &'a self,
        req: &'a api::TokenQueryRequest,
    ) -> BoxFuture<'a, Result<api::TokenQueryResponse, AlipayError>> {
        Box::pin(self.call(None, req))
    }

    fn merchant_order_sync<'a>(
        &'a self,
        app_auth_token: &'a SecretString,
        biz_content: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<api::MerchantOrderSyncResponse, AlipayError>> {
        Box::pin(async move {
            if !biz_content.is_object() {
                return Err(AlipayError::Decode(format!(
                    "{}: biz_content must be a JSON object",
                    api::METHOD_MERCHANT_ORDER_SYNC
                )));
            }
            self.call(
                Some(app_auth_token),
                &api::MerchantOrderSyncRequest(biz_content),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: &str, sub_code: Option<&str>) -> AlipayError {
        AlipayError::Api {
            code: code.into(),
            msg: "m".into(),
            sub_code: sub_code.map(Into::into),
            sub_msg: None,
        }
    }

    #[test]
    fn retryable_and_token_classification() {
        assert!(AlipayError::Transport("x".into()).is_retryable());
        assert!(AlipayError::Http { status: 502 }.is_retryable());
        assert!(!AlipayError::Http { status: 404 }.is_retryable());
        assert!(api_error("20000", Some("isp.unknow-error")).is_retryable());
        assert!(!api_error("40004", Some("X")).is_retryable());
        // An answer we cannot trust is never read: retried, as a transient failure.
        assert!(AlipayError::Response(ResponseError::BadSignature).is_retryable());
        assert!(AlipayError::Response(ResponseError::Unsigned).is_retryable());
        assert!(!AlipayError::Decode("x".into()).is_retryable());

        assert!(
            api_error("20001", Some("aop.no-product-reg-by-partner")).is_invalid_app_auth_token()
        );
        assert!(
            api_error("40002", Some("aop.invalid-app-auth-token-no-api"))
                .is_invalid_app_auth_token()
        );
        assert!(!api_error("40004", Some("isv.invalid-app-auth")).is_invalid_app_auth_token());
        assert_eq!(api_error("40004", Some("S")).code(), Some("40004"));
        assert_eq!(api_error("40004", Some("S")).sub_code(), Some("S"));
        assert_eq!(AlipayError::Http { status: 500 }.code(), None);
    }

    #[test]
    fn masks_tokens_in_echoed_sign_content() {
        let echo = "验签字符串为：app_auth_token=202406BBabc&amp;app_id=1&amp;biz_content={\"grant_type\":\"refresh_token\",\"refresh_token\":\"R1\",\"code\":\"C1\"}&amp;charset=utf-8";
        let masked = mask_secrets(echo);
        assert!(
            !masked.contains("202406BBabc") && !masked.contains("R1") && !masked.contains("C1"),
            "{masked}"
        );
        assert!(
            masked.contains("app_auth_token=***&amp;app_id=1"),
            "{masked}"
        );
        assert!(
            masked.contains(r#""grant_type":"refresh_token""#),
            "{masked}"
        );
        assert!(masked.contains(r#""refresh_token":"***""#), "{masked}");
        assert!(masked.starts_with("验签字符串为："), "{masked}");
        // Nothing secret: unchanged.
        let plain = "app_id=1&method=a.b&x=\"y\"";
        assert_eq!(mask_secrets(plain), plain);
        assert_eq!(mask_secrets("app_auth_token="), "app_auth_token=");
        assert_eq!(mask_secrets("auth_token=T"), "auth_token=***");
    }

    #[test]
    fn decode_errors_do_not_quote_values() {
        let err = serde_json::from_str::<Vec<u8>>(r#""secret-token""#).unwrap_err();
        let AlipayError::Decode(text) = decode_error("m", &err) else {
            unreachable!()
        };
        assert!(!text.contains("secret-token"), "{text}");
    }

    #[test]
    fn empty_token_is_refused() {
        let empty = SecretString::from("");
        assert!(token_param("m", Some(&empty)).is_err());
        assert_eq!(token_param("m", None).unwrap(), None);
    }
}
