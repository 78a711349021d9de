//! `messages replay`.

use super::with_services;
use crate::config::Prepared;

pub(super) fn messages_replay(
    prepared: Prepared,
    app_id: String,
    notify_id: String,
) -> anyhow::Result<()> {
    use crate::service::support::SupportError;
    let app_id = if app_id == "-" { String::new() } else { app_id };
    with_services(&prepared, async |services| {
        match services.replay_message(&app_id, &notify_id).await {
            Ok(view) => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                eprintln!(
                    "{notify_id}: back in the apply queue; the running service applies it on its next poll"
                );
                Ok(())
            }
            Err(SupportError::NotFound) => Err(super::not_found(format!(
                "no message with app_id {app_id:?} and notify_id {notify_id:?}"
            ))),
            Err(SupportError::Conflict(why)) => Err(super::refused(format!("{notify_id}: {why}"))),
            Err(e) => Err(anyhow::Error::from(e)),
        }
    })
}
