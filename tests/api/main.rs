//! The service through its real HTTP endpoints, on SQLite and on PostgreSQL.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod admin;
mod apply;
mod browser;
mod certs;
mod checks;
mod deadlines;
mod desk;
mod edge;
mod gateway;
mod isv_apps;
mod lifecycle;
mod merchant_orders;
mod metrics;
mod openapi;
mod periods;
mod pipeline;
mod queues;
mod readings;
mod retention;
mod seam;
mod secrets;
mod support;
