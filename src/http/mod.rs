//! The HTTP shell: gateway, admin API, health and metrics. Handlers extract, call one service,
//! and map the result; no SQL, signing or clock reads here.

mod admin;
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
    pub max_body_bytes: usize,
    pub reject_log: gateway::LogLimiter,
    /// Failed web sign-ins per name and address.
    pub sign_in_throttle: throttle::SignInThrottle,
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and builds the server.
    pub fn build(state: AppState, listener: TcpListener, workers: usize) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let state = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
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
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
