use super::*;
use crate::domain::lifecycle::test_support::{days, hours, t0};
use chrono::Duration;

// ---- authorization ---------------------------------------------------------------------------

#[test]
fn newest_authorization_wins_and_older_is_ignored() {
    let ms = t0().timestamp_millis();
    let first = handle_authorization(
        None,
        &[],
        AuthorizationEvent::Granted {
            auth_time_ms: ms,
            token: None,
        },
        t0(),
    )
    .unwrap();
    assert_eq!(first.state.status, AuthorizationStatus::Active);
    assert_eq!(first.effects, vec![Effect::StoreToken { auth_time_ms: ms }]);

    let newer = handle_authorization(
        Some(&first.state),
        &[],
        AuthorizationEvent::Granted {
            auth_time_ms: ms + 1000,
            token: None,
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
            &[],
            AuthorizationEvent::Granted {
                auth_time_ms: stale,
                token: None,
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
    let active = handle_authorization(
        None,
        &[],
        AuthorizationEvent::Granted {
            auth_time_ms: ms,
            token: None,
        },
        t0(),
    )
    .unwrap()
    .state;
    let cancel_at = t0() + days(1);
    let tr = handle_authorization(
        Some(&active),
        &[],
        AuthorizationEvent::Cancelled {
            at: cancel_at,
            token: None,
        },
        cancel_at + hours(1),
    )
    .unwrap();
    assert_eq!(tr.state.status, AuthorizationStatus::Cancelled);
    assert_eq!(tr.state.since, cancel_at);
    assert!(tr.effects.contains(&Effect::EraseToken));

    let again = handle_authorization(
        Some(&tr.state),
        &[],
        AuthorizationEvent::Cancelled {
            at: cancel_at + hours(1),
            token: None,
        },
        cancel_at + hours(2),
    )
    .unwrap();
    assert!(again.ignored.is_some() && again.effects.is_empty());
    // A grant from before the cancellation (a late or replayed notification) stays dead.
    let remembered = [Cancellation {
        at: cancel_at,
        token: None,
    }];
    let replay = handle_authorization(
        Some(&tr.state),
        &remembered,
        AuthorizationEvent::Granted {
            auth_time_ms: ms + 5000,
            token: None,
        },
        cancel_at + hours(2),
    )
    .unwrap();
    // Recorded as the newest grant we know, still cancelled, its token not kept.
    assert_eq!(
        replay.state,
        AuthorizationState {
            auth_time_ms: Some(ms + 5000),
            ..tr.state.clone()
        }
    );
    assert!(replay.effects.is_empty());
    // The merchant authorizing again afterwards (re-order) is a new grant.
    let regrant_ms = (cancel_at + days(1)).timestamp_millis();
    let regrant = handle_authorization(
        Some(&tr.state),
        &remembered,
        AuthorizationEvent::Granted {
            auth_time_ms: regrant_ms,
            token: None,
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
        &[],
        AuthorizationEvent::Cancelled {
            at: cancel_at,
            token: None,
        },
        cancel_at,
    )
    .unwrap();
    assert_eq!(
        (tr.state.status, tr.state.auth_time_ms),
        (AuthorizationStatus::Cancelled, None)
    );
    let remembered = [Cancellation {
        at: cancel_at,
        token: None,
    }];
    let late = handle_authorization(
        Some(&tr.state),
        &remembered,
        AuthorizationEvent::Granted {
            auth_time_ms: t0().timestamp_millis(),
            token: None,
        },
        cancel_at + hours(1),
    )
    .unwrap();
    assert_eq!(
        (late.state.status, late.state.since),
        (AuthorizationStatus::Cancelled, cancel_at)
    );
    assert!(late.effects.is_empty(), "{late:?}");
}

// ---- issue 12: authorizations out of order --------------------------------------------------

fn grant(
    current: Option<&AuthorizationState>,
    remembered: &[Cancellation],
    ms: i64,
    token: &str,
) -> AuthorizationTransition {
    handle_authorization(
        current,
        remembered,
        AuthorizationEvent::Granted {
            auth_time_ms: ms,
            token: Some(token.into()),
        },
        t0() + days(2),
    )
    .unwrap()
}

fn cancel(
    current: Option<&AuthorizationState>,
    remembered: &[Cancellation],
    at: DateTime<Utc>,
    token: Option<&str>,
) -> AuthorizationTransition {
    handle_authorization(
        current,
        remembered,
        AuthorizationEvent::Cancelled {
            at,
            token: token.map(str::to_string),
        },
        t0() + days(3),
    )
    .unwrap()
}

#[test]
fn a_late_cancellation_naming_the_older_grants_token_leaves_the_newer_grant_active() {
    let (t1, t2) = (t0(), t0() + hours(1));
    let g1 = grant(None, &[], t1.timestamp_millis(), "fp1");
    let g2 = grant(Some(&g1.state), &[], t2.timestamp_millis(), "fp2");
    let late = cancel(Some(&g2.state), &[], t2 + hours(1), Some("fp1"));
    assert!(
        late.ignored.is_some() && late.effects.is_empty(),
        "{late:?}"
    );
    assert_eq!(late.state.status, AuthorizationStatus::Active);
    // The same cancellation naming grant 2's token ends it, whatever its own time.
    let named = cancel(Some(&g2.state), &[], t1, Some("fp2"));
    assert_eq!(named.state.status, AuthorizationStatus::Cancelled);
    assert!(named.effects.contains(&Effect::EraseToken));
}

#[test]
fn a_late_cancellation_older_than_the_newer_grant_leaves_it_active() {
    let (t1, t2) = (t0(), t0() + hours(1));
    let g1 = grant(None, &[], t1.timestamp_millis(), "fp1");
    let g2 = grant(Some(&g1.state), &[], t2.timestamp_millis(), "fp2");
    let late = cancel(Some(&g2.state), &[], t1 + Duration::minutes(30), None);
    assert!(
        late.ignored.is_some() && late.effects.is_empty(),
        "{late:?}"
    );
    // Not older than grant 2: it ends it.
    let current = cancel(Some(&g2.state), &[], t2, None);
    assert_eq!(current.state.status, AuthorizationStatus::Cancelled);
}

#[test]
fn a_cancellation_before_its_grant_keeps_the_late_grant_cancelled() {
    let t1 = t0();
    // Naming the token.
    let early = Cancellation {
        at: t1 - hours(1),
        token: Some("fp1".into()),
    };
    let first = cancel(None, &[], early.at, early.token.as_deref());
    assert_eq!(first.state.status, AuthorizationStatus::Cancelled);
    let late = grant(
        None,
        std::slice::from_ref(&early),
        t1.timestamp_millis(),
        "fp1",
    );
    assert_eq!(
        late.state.status,
        AuthorizationStatus::Cancelled,
        "{late:?}"
    );
    assert_eq!(late.state.auth_time_ms, Some(t1.timestamp_millis()));
    assert!(
        !late
            .effects
            .iter()
            .any(|e| matches!(e, Effect::StoreToken { .. }))
    );
    assert!(late.effects.contains(&Effect::TerminateService {
        cause: TerminationCause::AuthorizationCancelled
    }));
    // Without a token: every grant not newer than the cancellation.
    let untokened = Cancellation {
        at: t1 + hours(1),
        token: None,
    };
    let late = grant(
        None,
        std::slice::from_ref(&untokened),
        t1.timestamp_millis(),
        "fp9",
    );
    assert_eq!(late.state.status, AuthorizationStatus::Cancelled);
    // A grant after it is the merchant authorizing again.
    let again = grant(
        Some(&late.state),
        std::slice::from_ref(&untokened),
        (t1 + hours(2)).timestamp_millis(),
        "fp10",
    );
    assert_eq!(again.state.status, AuthorizationStatus::Active);
}

#[test]
fn a_grant_covered_by_a_cancellation_while_an_older_grant_is_active_supersedes_then_stays_cancelled()
 {
    let (t1, t2) = (t0(), t0() + hours(1));
    let g1 = grant(None, &[], t1.timestamp_millis(), "fp1");
    let early = Cancellation {
        at: t1,
        token: Some("fp2".into()),
    };
    let late = grant(
        Some(&g1.state),
        std::slice::from_ref(&early),
        t2.timestamp_millis(),
        "fp2",
    );
    assert_eq!(late.state.status, AuthorizationStatus::Cancelled);
    assert_eq!(
        late.superseded.map(|s| s.status),
        Some(AuthorizationStatus::Superseded)
    );
}

/// The order-independence property for authorizations: whatever order grants and cancellations
/// arrive in (each cancellation remembered as it comes, as the service does), with duplicates,
/// the app ends in the same state.
#[test]
fn any_permutation_of_grants_and_cancellations_ends_in_the_same_state() {
    let (t1, t2, t3) = (t0(), t0() + hours(1), t0() + hours(3));
    let g = |t: DateTime<Utc>, token: &str| AuthorizationEvent::Granted {
        auth_time_ms: t.timestamp_millis(),
        token: Some(token.into()),
    };
    let c = |at: DateTime<Utc>, token: Option<&str>| AuthorizationEvent::Cancelled {
        at,
        token: token.map(str::to_string),
    };
    let scenarios: Vec<Vec<AuthorizationEvent>> = vec![
        // Issue 12: a late cancellation naming grant 1's token.
        vec![g(t1, "fp1"), g(t2, "fp2"), c(t2 + hours(1), Some("fp1"))],
        // A late cancellation older than grant 2.
        vec![
            g(t1, "fp1"),
            g(t2, "fp2"),
            c(t1 + Duration::minutes(30), None),
        ],
        // A cancellation after both, without a token: both end.
        vec![g(t1, "fp1"), g(t2, "fp2"), c(t2 + hours(1), None)],
        // Cancelled, then authorized again.
        vec![g(t1, "fp1"), c(t2, Some("fp1")), g(t3, "fp3")],
        vec![g(t1, "fp1"), c(t2, None), g(t3, "fp3"), c(t3, Some("fp3"))],
        // With a repeat of each event.
        vec![
            g(t1, "fp1"),
            g(t1, "fp1"),
            c(t2, None),
            c(t2, None),
            g(t3, "fp3"),
        ],
    ];
    for events in scenarios {
        let mut outcomes = std::collections::BTreeSet::new();
        for perm in permutations(events.len()) {
            let mut state: Option<AuthorizationState> = None;
            let mut remembered: Vec<Cancellation> = Vec::new();
            for &i in &perm {
                let event = events[i].clone();
                if let AuthorizationEvent::Cancelled { at, token } = &event {
                    remembered.push(Cancellation {
                        at: *at,
                        token: token.clone(),
                    });
                }
                let t = handle_authorization(state.as_ref(), &remembered, event, t3 + hours(1))
                    .unwrap();
                if t.ignored.is_none() {
                    state = Some(t.state);
                }
            }
            let settled = state.map(|s| (s.status, s.auth_time_ms, s.token));
            outcomes.insert(format!("{settled:?}"));
        }
        assert_eq!(outcomes.len(), 1, "{events:?}: {outcomes:?}");
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out
}
