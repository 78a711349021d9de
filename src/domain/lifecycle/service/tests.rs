use super::*;
use crate::domain::lifecycle::test_support::{days, t0};
use crate::domain::lifecycle::{
    AuthorizationEvent, AuthorizationStatus, DeadlineState, handle_authorization,
};

// ---- seed 7: termination by the ISV ----------------------------------------------------------

#[test]
fn seed_7_termination_with_active_authorization_opens_a_task_closed_by_appauth_cancelled() {
    let live = handle_service(
        &ServiceState::provisioning(t0()),
        ServiceEvent::WentLive { at: t0() + days(5) },
        t0() + days(5),
    )
    .unwrap()
    .state;
    assert_eq!(live.status, ServiceStatus::Live);

    let cause = TerminationCause::Support {
        actor: "alice".into(),
        reason: "agreed".into(),
    };
    let tr = handle_service(
        &live,
        ServiceEvent::Terminate {
            cause: cause.clone(),
            authorization_active: true,
        },
        t0() + days(20),
    )
    .unwrap();
    assert_eq!(tr.state.status, ServiceStatus::Terminated);
    assert_eq!(tr.state.termination_cause, Some(cause.clone()));
    assert_eq!(
        tr.effects,
        vec![
            Effect::StopProvisioning,
            Effect::OpenTask(Task::MerchantMustCancelAuthorization)
        ]
    );

    // The merchant cancels the authorization: token erased, task closed, cause unchanged.
    let grant = handle_authorization(
        None,
        &[],
        AuthorizationEvent::Granted {
            auth_time_ms: t0().timestamp_millis(),
            token: None,
        },
        t0(),
    )
    .unwrap()
    .state;
    let auth = handle_authorization(
        Some(&grant),
        &[],
        AuthorizationEvent::Cancelled {
            at: t0() + days(21),
            token: None,
        },
        t0() + days(21),
    )
    .unwrap();
    assert_eq!(auth.state.status, AuthorizationStatus::Cancelled);
    assert_eq!(
        auth.effects,
        vec![
            Effect::EraseToken,
            Effect::TerminateService {
                cause: TerminationCause::AuthorizationCancelled
            }
        ]
    );

    let closed = handle_service(
        &tr.state,
        ServiceEvent::Terminate {
            cause: TerminationCause::AuthorizationCancelled,
            authorization_active: false,
        },
        t0() + days(21),
    )
    .unwrap();
    assert_eq!(
        closed.effects,
        vec![Effect::CloseTask(Task::MerchantMustCancelAuthorization)]
    );
    assert!(closed.state.open_tasks.is_empty());
    assert_eq!(closed.state.termination_cause, Some(cause));
    // And again: nothing left to do.
    let again = handle_service(
        &closed.state,
        ServiceEvent::Terminate {
            cause: TerminationCause::AuthorizationCancelled,
            authorization_active: false,
        },
        t0() + days(22),
    )
    .unwrap();
    assert!(again.ignored.is_some() && again.effects.is_empty());
}

#[test]
fn seed_7_appauth_cancelled_terminates_a_live_service_without_a_task() {
    let live = ServiceState {
        status: ServiceStatus::Live,
        ..ServiceState::provisioning(t0())
    };
    let tr = handle_service(
        &live,
        ServiceEvent::Terminate {
            cause: TerminationCause::AuthorizationCancelled,
            authorization_active: true,
        },
        t0() + days(1),
    )
    .unwrap();
    assert_eq!(
        tr.state.termination_cause,
        Some(TerminationCause::AuthorizationCancelled)
    );
    assert_eq!(tr.effects, vec![Effect::StopProvisioning]);
}

#[test]
fn termination_is_idempotent_and_the_first_cause_stays() {
    let s = ServiceState::provisioning(t0());
    let first = handle_service(
        &s,
        ServiceEvent::Terminate {
            cause: TerminationCause::Refunded,
            authorization_active: false,
        },
        t0() + days(1),
    )
    .unwrap();
    assert_eq!(first.effects, vec![Effect::StopProvisioning]);
    for cause in [
        TerminationCause::Refunded,
        TerminationCause::Expired,
        TerminationCause::OrderCancelled,
    ] {
        let again = handle_service(
            &first.state,
            ServiceEvent::Terminate {
                cause,
                authorization_active: true,
            },
            t0() + days(2),
        )
        .unwrap();
        assert_eq!(again.state, first.state);
        assert!(again.effects.is_empty() && again.ignored.is_some());
    }
    let late = handle_service(
        &first.state,
        ServiceEvent::WentLive { at: t0() + days(3) },
        t0() + days(3),
    )
    .unwrap();
    assert_eq!(late.state, first.state);
    assert!(late.ignored.is_some());
}

#[test]
fn termination_causes_read_as_contract_strings() {
    let all = [
        (
            TerminationCause::AuthorizationCancelled,
            "authorization_cancelled",
        ),
        (TerminationCause::OrderCancelled, "order_cancelled"),
        (TerminationCause::Refunded, "refunded"),
        (
            TerminationCause::ImplementationTimeout,
            "implementation_timeout",
        ),
        (
            TerminationCause::Support {
                actor: "a".into(),
                reason: "r".into(),
            },
            "support",
        ),
        (TerminationCause::Expired, "expired"),
    ];
    for (cause, text) in all {
        assert_eq!(cause.as_str(), text);
        assert_eq!(cause.to_string(), text);
    }
    assert_eq!(ServiceStatus::Terminated.as_str(), "terminated");
    assert_eq!(
        DeadlineState::parse("pending"),
        Some(DeadlineState::Pending)
    );
    assert_eq!(
        AuthorizationStatus::parse("superseded"),
        Some(AuthorizationStatus::Superseded)
    );
}

// ---- issue 12: a termination by a wrong inference is undone ---------------------------------

#[test]
fn restore_undoes_only_a_termination_with_its_cause() {
    let terminated = handle_service(
        &ServiceState::provisioning(t0()),
        ServiceEvent::Terminate {
            cause: TerminationCause::ImplementationTimeout,
            authorization_active: true,
        },
        t0() + days(30),
    )
    .unwrap()
    .state;
    let restored = handle_service(
        &terminated,
        ServiceEvent::Restore {
            cause: TerminationCause::ImplementationTimeout,
        },
        t0() + days(31),
    )
    .unwrap();
    assert_eq!(
        (
            restored.state.status,
            restored.state.termination_cause.clone()
        ),
        (ServiceStatus::Provisioning, None)
    );
    // The merchant no longer needs to cancel the authorization.
    assert_eq!(
        restored.effects,
        vec![Effect::CloseTask(Task::MerchantMustCancelAuthorization)]
    );
    assert!(restored.state.open_tasks.is_empty());
    // Another cause stays: the service was ended for a reason the inference did not give.
    let other = handle_service(
        &terminated,
        ServiceEvent::Restore {
            cause: TerminationCause::Refunded,
        },
        t0() + days(31),
    )
    .unwrap();
    assert!(other.ignored.is_some() && other.effects.is_empty());
    assert_eq!(other.state, terminated);
    // A service that is not terminated is left alone.
    let live = handle_service(
        &restored.state,
        ServiceEvent::Restore {
            cause: TerminationCause::ImplementationTimeout,
        },
        t0() + days(32),
    )
    .unwrap();
    assert!(live.ignored.is_some());
}
