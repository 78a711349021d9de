//! Tracing set-up, once per process. Secrets never reach it: every type that holds one prints
//! `[redacted]` from Debug.
//!
//! Log lines go to stderr, without ANSI colours unless stderr is a terminal. While a command
//! shows a progress bar (`reconcile`), each line is written with the bar suspended, so the bar is
//! redrawn below it instead of being broken up.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The progress bar on screen, if any. A process has one terminal, so one slot.
static PROGRESS: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// While the returned guard lives, log lines suspend `bar` around themselves.
pub fn with_progress_bar(bar: &indicatif::ProgressBar) -> ProgressGuard {
    if let Ok(mut slot) = PROGRESS.lock() {
        *slot = Some(bar.clone());
    }
    ProgressGuard(())
}

pub struct ProgressGuard(());

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Ok(mut slot) = PROGRESS.lock() {
            *slot = None;
        }
    }
}

/// One log line, buffered and written to stderr in one piece when dropped.
pub struct LineWriter(Vec<u8>);

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let bar = PROGRESS.lock().ok().and_then(|slot| slot.clone());
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

struct StderrLines;

impl<'a> fmt::MakeWriter<'a> for StderrLines {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::with_capacity(256))
    }
}

pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::stderr().is_terminal();
    let result = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(StderrLines),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_ansi(ansi).with_writer(StderrLines))
            .try_init()
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}
