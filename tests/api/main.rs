//! The service through its real HTTP endpoints, on SQLite and on PostgreSQL.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod admin;
mod apply;
mod browser;
mod certs;
mod deadlines;
mod gateway;
mod lifecycle;
mod merchant_orders;
mod metrics;
mod pipeline;
mod secrets;
mod support;
