//! isv-lifecycle: an Alipay ISV's application gateway and service-marketplace lifecycle.
//! Layers, inner to outer: `domain` (rules), `alipay` (wire protocol), `store` (diesel),
//! `service` (use cases), and the shells `http`, `jobs`, `cli`. See ARCHITECTURE.md.

pub mod alipay;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod seal;
pub mod service;
pub mod sim;
pub mod startup;
pub mod store;
pub mod telemetry;
