//! The template build pipeline job: starts builds and runs due steps every `poll`.

use crate::service::Services;
use std::time::Duration;

pub async fn run(services: Services, poll: Duration) {
    loop {
        match services.run_pipeline(50).await {
            Ok(pass) if pass.steps >= 50 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "build pipeline pass failed; retrying"),
        }
        tokio::time::sleep(poll).await;
    }
}
