use super::*;
use crate::domain::lifecycle::test_support::{days, hours, t0};

// ---- authorization ---------------------------------------------------------------------------

#[test]
fn newest_authorization_wins_and_older_is_ignored() {
    let ms = t0().timestamp_millis();
    let first =
        handle_authorization(None, AuthorizationEvent::Granted { auth_time_ms: ms }, t0()).unwrap();
    assert_eq!(first.state.status, AuthorizationStatus::Active);
    assert_eq!(first.effects, vec![Effect::StoreToken { auth_time_ms: ms }]);

    let newer = handle_authorization(
        Some(&first.state),
        AuthorizationEvent::Granted {
            auth_time_ms: ms + 1000,
        },
        t0() + hours(1),
    )
    .unwrap();
    assert_eq!(newer.state.auth_time_ms, Some(ms + 1000));
    assert_eq!(
        newer.effects,
        vec![Effect::StoreToken {
            auth_time_ms: ms + 1000
        }]
    );
    let old = newer.superseded.unwrap();
    assert_eq!(
        (old.status, old.auth_time_ms),
        (AuthorizationStatus::Superseded, Some(ms))
    );

    for stale in [ms, ms + 1000] {
        let tr = handle_authorization(
            Some(&newer.state),
            AuthorizationEvent::Granted {
                auth_time_ms: stale,
            },
            t0() + hours(2),
        )
        .unwrap();
        assert_eq!(tr.state, newer.state);
        assert!(tr.effects.is_empty() && tr.ignored.is_some() && tr.superseded.is_none());
    }
}

#[test]
fn authorization_cancelled_erases_the_token_and_is_final() {
    let ms = t0().timestamp_millis();
    let active = handle_authorization(None, AuthorizationEvent::Granted { auth_time_ms: ms }, t0())
        .unwrap()
        .state;
    let cancel_at = t0() + days(1);
    let tr = handle_authorization(
        Some(&active),
        AuthorizationEvent::Cancelled { at: cancel_at },
        cancel_at + hours(1),
    )
    .unwrap();
    assert_eq!(tr.state.status, AuthorizationStatus::Cancelled);
    assert_eq!(tr.state.since, cancel_at);
    assert!(tr.effects.contains(&Effect::EraseToken));

    let again = handle_authorization(
        Some(&tr.state),
        AuthorizationEvent::Cancelled {
            at: cancel_at + hours(1),
        },
        cancel_at + hours(2),
    )
    .unwrap();
    assert!(again.ignored.is_some() && again.effects.is_empty());
    // A grant from before the cancellation (a late or replayed notification) stays dead.
    let replay = handle_authorization(
        Some(&tr.state),
        AuthorizationEvent::Granted {
            auth_time_ms: ms + 5000,
        },
        cancel_at + hours(2),
    )
    .unwrap();
    assert_eq!(replay.state, tr.state);
    assert!(replay.ignored.is_some() && replay.effects.is_empty());
    // The merchant authorizing again afterwards (re-order) is a new grant.
    let regrant_ms = (cancel_at + days(1)).timestamp_millis();
    let regrant = handle_authorization(
        Some(&tr.state),
        AuthorizationEvent::Granted {
            auth_time_ms: regrant_ms,
        },
        cancel_at + days(1),
    )
    .unwrap();
    assert_eq!(regrant.state.status, AuthorizationStatus::Active);
    assert!(regrant.superseded.is_none());
}

#[test]
fn cancellation_before_the_grant_arrives_keeps_the_grant_out() {
    let cancel_at = t0() + days(1);
    let tr = handle_authorization(
        None,
        AuthorizationEvent::Cancelled { at: cancel_at },
        cancel_at,
    )
    .unwrap();
    assert_eq!(
        (tr.state.status, tr.state.auth_time_ms),
        (AuthorizationStatus::Cancelled, None)
    );
    let late = handle_authorization(
        Some(&tr.state),
        AuthorizationEvent::Granted {
            auth_time_ms: t0().timestamp_millis(),
        },
        cancel_at + hours(1),
    )
    .unwrap();
    assert_eq!(late.state, tr.state);
    assert!(late.ignored.is_some());
}
