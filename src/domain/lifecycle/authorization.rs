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
    /// A fingerprint of the grant's token (the token itself is only stored sealed); `None` when
    /// unknown (a grant stored before fingerprints were kept).
    pub token: Option<String>,
}

/// An `alipay.open.auth.appauth.cancelled`, as remembered: its own time and, when it names one,
/// the fingerprint of the token it cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub at: DateTime<Utc>,
    pub token: Option<String>,
}

impl Cancellation {
    /// Whether this cancellation ends the grant of `auth_time_ms` with token `token`: the grant
    /// whose token it names, or, naming none, every grant not newer than its own time. A grant
    /// whose token we do not know is judged by the time.
    pub fn covers(&self, auth_time_ms: i64, token: Option<&str>) -> bool {
        match (self.token.as_deref(), token) {
            (Some(named), Some(token)) => named == token,
            (Some(_), None) | (None, _) => auth_time_ms <= self.at.timestamp_millis(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationEvent {
    /// An authorization notification; `token` is its token's fingerprint.
    Granted {
        auth_time_ms: i64,
        token: Option<String>,
    },
    /// `alipay.open.auth.appauth.cancelled`, with its own time and the fingerprint of the token
    /// it names, if any.
    Cancelled {
        at: DateTime<Utc>,
        token: Option<String>,
    },
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

/// `active → superseded | cancelled` (LIFECYCLE.md "Readings we trust"):
///
/// - The newest `auth_time` wins; an older or repeated grant is ignored.
/// - A cancellation ends the grant whose token it names, or, naming none, every grant not newer
///   than its own time ([`Cancellation::covers`]). One that covers neither the current grant nor
///   anything we hold changes nothing now.
/// - Every cancellation is remembered by the caller (`remembered`, the app's cancellations in any
///   order, including this one's predecessors): a grant that arrives after a cancellation that
///   covers it stays cancelled, whatever order the messages came in. A grant no cancellation
///   covers (the merchant authorizing again after cancelling, seed 6) is a new active grant.
pub fn handle_authorization(
    current: Option<&AuthorizationState>,
    remembered: &[Cancellation],
    event: AuthorizationEvent,
    now: DateTime<Utc>,
) -> Result<AuthorizationTransition, RuleError> {
    let unchanged = |current: &AuthorizationState, why: String| AuthorizationTransition {
        state: current.clone(),
        superseded: None,
        effects: Vec::new(),
        ignored: Some(why),
    };
    let ended = || {
        vec![
            Effect::EraseToken,
            Effect::TerminateService {
                cause: TerminationCause::AuthorizationCancelled,
            },
        ]
    };
    Ok(match event {
        AuthorizationEvent::Granted {
            auth_time_ms,
            token,
        } => {
            if let Some(cur) = current
                && cur.auth_time_ms.is_some_and(|t| auth_time_ms <= t)
            {
                return Ok(unchanged(
                    cur,
                    format!(
                        "grant of {auth_time_ms} is not newer than {:?}",
                        cur.auth_time_ms
                    ),
                ));
            }
            // The grant it replaces: an active one is superseded (re-authorizing makes the old
            // token stop working).
            let superseded = current
                .filter(|c| c.status == AuthorizationStatus::Active)
                .map(|c| AuthorizationState {
                    status: AuthorizationStatus::Superseded,
                    since: now,
                    ..c.clone()
                });
            match remembered
                .iter()
                .filter(|c| c.covers(auth_time_ms, token.as_deref()))
                .map(|c| c.at)
                .max()
            {
                // Its cancellation came first: the grant is recorded (the newest one we know,
                // whatever order they came in), and stays cancelled, its token never kept.
                Some(cancelled_at) => match current {
                    Some(cur) if cur.status == AuthorizationStatus::Cancelled => {
                        AuthorizationTransition {
                            state: AuthorizationState {
                                status: AuthorizationStatus::Cancelled,
                                auth_time_ms: Some(auth_time_ms),
                                since: cancelled_at.max(cur.since),
                                token,
                            },
                            superseded: None,
                            effects: Vec::new(),
                            ignored: None,
                        }
                    }
                    _ => AuthorizationTransition {
                        state: AuthorizationState {
                            status: AuthorizationStatus::Cancelled,
                            auth_time_ms: Some(auth_time_ms),
                            since: cancelled_at,
                            token,
                        },
                        superseded,
                        effects: ended(),
                        ignored: None,
                    },
                },
                None => AuthorizationTransition {
                    state: AuthorizationState {
                        status: AuthorizationStatus::Active,
                        auth_time_ms: Some(auth_time_ms),
                        since: now,
                        token,
                    },
                    superseded,
                    effects: vec![Effect::StoreToken { auth_time_ms }],
                    ignored: None,
                },
            }
        }
        AuthorizationEvent::Cancelled { at, token } => {
            let cancellation = Cancellation { at, token };
            match current {
                Some(cur) if cur.status == AuthorizationStatus::Cancelled => {
                    unchanged(cur, "authorization already cancelled".into())
                }
                Some(cur)
                    if !cur
                        .auth_time_ms
                        .is_none_or(|t| cancellation.covers(t, cur.token.as_deref())) =>
                {
                    unchanged(
                        cur,
                        if cancellation.token.is_some() {
                            "the cancellation names another grant's token".to_string()
                        } else {
                            format!(
                                "the cancellation at {at} is older than the current grant of {:?}",
                                cur.auth_time_ms
                            )
                        },
                    )
                }
                cur => AuthorizationTransition {
                    state: AuthorizationState {
                        status: AuthorizationStatus::Cancelled,
                        auth_time_ms: cur.and_then(|c| c.auth_time_ms),
                        since: at,
                        token: cur.and_then(|c| c.token.clone()),
                    },
                    superseded: None,
                    effects: ended(),
                    ignored: None,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests;
