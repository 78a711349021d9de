//! The authorization aggregate (key `auth_app_id`).

use chrono::{DateTime, Utc};

use super::{Effect, RuleError, TerminationCause};

// ---------------------------------------------------------------------------------------------
// Authorization (key auth_app_id)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthorizationStatus {
    Active,
    Superseded,
    Cancelled,
}

impl AuthorizationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Active => "active",
            AuthorizationStatus::Superseded => "superseded",
            AuthorizationStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AuthorizationStatus::Active,
            AuthorizationStatus::Superseded,
            AuthorizationStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The app's current grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationState {
    pub status: AuthorizationStatus,
    /// `auth_time` (epoch ms) of the grant; `None` when a cancellation arrived before any grant.
    pub auth_time_ms: Option<i64>,
    /// When the status began (the cancellation's own time for `cancelled`).
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationEvent {
    /// An authorization notification.
    Granted { auth_time_ms: i64 },
    /// `alipay.open.auth.appauth.cancelled`, with its own time.
    Cancelled { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationTransition {
    /// The app's current grant after the event.
    pub state: AuthorizationState,
    /// The grant that a newer one replaced, now `superseded`.
    pub superseded: Option<AuthorizationState>,
    pub effects: Vec<Effect>,
    pub ignored: Option<String>,
}

/// `active → superseded | cancelled`. The newest `auth_time` wins and an older or repeated grant
/// is ignored. A cancellation erases the token and ends that grant for good: a grant from before
/// the cancellation is ignored. A grant whose `auth_time` is after the cancellation is the
/// merchant authorizing again (a re-order, seed 6) and starts a new active grant.
pub fn handle_authorization(
    current: Option<&AuthorizationState>,
    event: AuthorizationEvent,
    now: DateTime<Utc>,
) -> Result<AuthorizationTransition, RuleError> {
    let unchanged = |current: &AuthorizationState, why: String| AuthorizationTransition {
        state: current.clone(),
        superseded: None,
        effects: Vec::new(),
        ignored: Some(why),
    };
    let grant =
        |auth_time_ms: i64, superseded: Option<AuthorizationState>| AuthorizationTransition {
            state: AuthorizationState {
                status: AuthorizationStatus::Active,
                auth_time_ms: Some(auth_time_ms),
                since: now,
            },
            superseded,
            effects: vec![Effect::StoreToken { auth_time_ms }],
            ignored: None,
        };
    Ok(match (current, event) {
        (None, AuthorizationEvent::Granted { auth_time_ms }) => grant(auth_time_ms, None),
        (Some(cur), AuthorizationEvent::Granted { auth_time_ms }) => match cur.status {
            AuthorizationStatus::Cancelled if auth_time_ms > cur.since.timestamp_millis() => {
                grant(auth_time_ms, None)
            }
            AuthorizationStatus::Cancelled => unchanged(
                cur,
                format!(
                    "grant of {auth_time_ms} predates the cancellation at {}",
                    cur.since
                ),
            ),
            AuthorizationStatus::Active | AuthorizationStatus::Superseded
                if cur.auth_time_ms.is_none_or(|t| auth_time_ms > t) =>
            {
                let superseded =
                    (cur.status == AuthorizationStatus::Active).then(|| AuthorizationState {
                        status: AuthorizationStatus::Superseded,
                        since: now,
                        ..cur.clone()
                    });
                grant(auth_time_ms, superseded)
            }
            _ => unchanged(
                cur,
                format!(
                    "grant of {auth_time_ms} is not newer than {:?}",
                    cur.auth_time_ms
                ),
            ),
        },
        (Some(cur), AuthorizationEvent::Cancelled { .. })
            if cur.status == AuthorizationStatus::Cancelled =>
        {
            unchanged(cur, "authorization already cancelled".into())
        }
        (cur, AuthorizationEvent::Cancelled { at }) => AuthorizationTransition {
            state: AuthorizationState {
                status: AuthorizationStatus::Cancelled,
                auth_time_ms: cur.and_then(|c| c.auth_time_ms),
                since: at,
            },
            superseded: None,
            effects: vec![
                Effect::EraseToken,
                Effect::TerminateService {
                    cause: TerminationCause::AuthorizationCancelled,
                },
            ],
            ignored: None,
        },
    })
}

#[cfg(test)]
mod tests;
