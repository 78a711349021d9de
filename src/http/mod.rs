//! The HTTP shell: gateway, admin API, health and metrics. Handlers extract, call one service,
//! and map the result; no SQL, signing or clock reads here.

mod admin;
mod edge;
mod error;
mod gateway;

/// The gateway's limiter for log lines about refused or unstored messages.
pub fn gateway_log_limiter() -> gateway::LogLimiter {
    gateway::LogLimiter::new(20)
}
mod health;
mod merchant_orders;
mod openapi;
mod pages;
mod request_id;
pub mod throttle;

use crate::service::Services;
use actix_web::{App, HttpServer, dev::Server, web};
use secrecy::SecretString;
use std::net::TcpListener;

/// The OpenAPI document served at `/admin/api/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::document()
}

/// What the handlers share.
pub struct AppState {
    pub services: Services,
    pub admin_token: SecretString,
    pub api_token: SecretString,
    /// Largest request body on any route.
    pub max_body_bytes: usize,
    /// How long any request body may take to arrive (`server.body_timeout_ms`).
    pub body_timeout: std::time::Duration,
    /// The bound admin listener, when `server.admin_listen` is set: `/admin`, `/admin/api/*`
    /// and `/metrics` are answered only there, and nothing else but the probes is.
    pub admin_addr: Option<std::net::SocketAddr>,
    pub reject_log: gateway::LogLimiter,
    /// Failed web sign-ins per name and address.
    pub sign_in_throttle: throttle::SignInThrottle,
}

pub struct Application {
    port: u16,
    admin_port: Option<u16>,
    server: Server,
}

impl Application {
    /// Builds the server on a bound listener (port 0 picks a free one) and, when given, the
    /// admin listener; `state.admin_addr` is set from it.
    pub fn build(
        mut state: AppState,
        listener: TcpListener,
        admin: Option<TcpListener>,
        workers: usize,
    ) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        state.admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        let admin_port = state.admin_addr.map(|a| a.port());
        let state = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
                // Outermost last: the request id and access log see the edge's answers too.
                .wrap_fn(edge::wrap)
                .wrap_fn(request_id::wrap)
                .app_data(state.clone())
                .configure(gateway::routes)
                // Before the admin scope: `/admin/api` answers 404 for every path it does not know.
                .configure(openapi::routes)
                .configure(admin::routes)
                .configure(health::routes)
                .configure(merchant_orders::routes)
                .configure(pages::routes)
        })
        .listen(listener)?
        // Alipay's sender gives up after ~16 s; a slow client is cut off well before that.
        .client_request_timeout(std::time::Duration::from_secs(10))
        .shutdown_timeout(10);
        if let Some(admin) = admin {
            server = server.listen(admin)?;
        }
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            admin_port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port, when `server.admin_listen` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
