//! Tracing set-up, once per process. Secrets never reach it: every type that holds one prints
//! `[redacted]` from Debug.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}
