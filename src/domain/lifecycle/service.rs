//! The service aggregate (one mini program of one merchant, fed by orders).

use std::fmt;

use chrono::{DateTime, Utc};

use super::{Effect, RuleError, Task};

// ---------------------------------------------------------------------------------------------
// Service (one mini program of one merchant, fed by orders)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationCause {
    AuthorizationCancelled,
    OrderCancelled,
    Refunded,
    ImplementationTimeout,
    Support {
        actor: String,
        reason: String,
    },
    /// The ordered period ran out with no renewal.
    Expired,
}

impl TerminationCause {
    pub fn as_str(&self) -> &'static str {
        match self {
            TerminationCause::AuthorizationCancelled => "authorization_cancelled",
            TerminationCause::OrderCancelled => "order_cancelled",
            TerminationCause::Refunded => "refunded",
            TerminationCause::ImplementationTimeout => "implementation_timeout",
            TerminationCause::Support { .. } => "support",
            TerminationCause::Expired => "expired",
        }
    }
}

impl fmt::Display for TerminationCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceStatus {
    Provisioning,
    Live,
    Terminated,
    /// The last period ran out with no renewal (cause `expired`).
    Expired,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Provisioning => "provisioning",
            ServiceStatus::Live => "live",
            ServiceStatus::Terminated => "terminated",
            ServiceStatus::Expired => "expired",
        }
    }

    /// Ended, for whatever cause: no build runs for it until a re-order reopens it.
    pub fn has_ended(self) -> bool {
        match self {
            ServiceStatus::Provisioning | ServiceStatus::Live => false,
            ServiceStatus::Terminated | ServiceStatus::Expired => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub status: ServiceStatus,
    /// `Some` exactly when terminated or expired; the first cause stays.
    pub termination_cause: Option<TerminationCause>,
    pub since: DateTime<Utc>,
    pub open_tasks: Vec<Task>,
}

impl ServiceState {
    /// A new service, building from the template.
    pub fn provisioning(since: DateTime<Utc>) -> Self {
        ServiceState {
            status: ServiceStatus::Provisioning,
            termination_cause: None,
            since,
            open_tasks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEvent {
    /// The merchant's version is online.
    WentLive { at: DateTime<Utc> },
    /// Terminate, from [`Effect::TerminateService`]. `authorization_active`: whether the app's
    /// authorization is still active (the shell reads it from the authorization). With cause
    /// `AuthorizationCancelled` this is also how the authorization's end reaches a service that
    /// is already terminated: it closes the merchant's task.
    Terminate {
        cause: TerminationCause,
        authorization_active: bool,
    },
    /// A re-order (再次订购) after the service ended opened a new period: the service builds
    /// again (`provisioning`, then `live` once the new build is online).
    Reopen { at: DateTime<Utc> },
    /// Undo a termination with this cause: it came from an inference that Alipay has since
    /// contradicted ([`Effect::RestoreService`]). A service ended for any other cause stays
    /// ended.
    Restore { cause: TerminationCause },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTransition {
    pub state: ServiceState,
    pub effects: Vec<Effect>,
    pub ignored: Option<String>,
}

/// `provisioning → live → terminated(cause)` or `expired` (cause `expired`); termination is
/// idempotent (the first cause stays); a re-order reopens an ended service (`provisioning`).
pub fn handle_service(
    current: &ServiceState,
    event: ServiceEvent,
    now: DateTime<Utc>,
) -> Result<ServiceTransition, RuleError> {
    let unchanged = |why: String| ServiceTransition {
        state: current.clone(),
        effects: Vec::new(),
        ignored: Some(why),
    };
    Ok(match event {
        ServiceEvent::WentLive { at } if current.status == ServiceStatus::Provisioning => {
            ServiceTransition {
                state: ServiceState {
                    status: ServiceStatus::Live,
                    since: at,
                    ..current.clone()
                },
                effects: Vec::new(),
                ignored: None,
            }
        }
        ServiceEvent::WentLive { .. } => {
            unchanged(format!("service is already {}", current.status.as_str()))
        }
        ServiceEvent::Reopen { at } if current.status.has_ended() => ServiceTransition {
            state: ServiceState {
                status: ServiceStatus::Provisioning,
                termination_cause: None,
                since: at,
                open_tasks: current.open_tasks.clone(),
            },
            effects: Vec::new(),
            ignored: None,
        },
        ServiceEvent::Reopen { .. } => {
            unchanged(format!("service is {}, not ended", current.status.as_str()))
        }
        ServiceEvent::Terminate { cause, .. } if current.status.has_ended() => {
            let task = Task::MerchantMustCancelAuthorization;
            if cause == TerminationCause::AuthorizationCancelled
                && current.open_tasks.contains(&task)
            {
                let mut state = current.clone();
                state.open_tasks.retain(|t| *t != task);
                ServiceTransition {
                    state,
                    effects: vec![Effect::CloseTask(task)],
                    ignored: None,
                }
            } else {
                unchanged(format!(
                    "service already ended ({})",
                    current
                        .termination_cause
                        .as_ref()
                        .map_or("unknown", |c| c.as_str())
                ))
            }
        }
        ServiceEvent::Restore { cause }
            if current.status == ServiceStatus::Terminated
                && current.termination_cause.as_ref() == Some(&cause) =>
        {
            // Building again; the merchant no longer needs to cancel the authorization.
            let task = Task::MerchantMustCancelAuthorization;
            let effects = if current.open_tasks.contains(&task) {
                vec![Effect::CloseTask(task)]
            } else {
                Vec::new()
            };
            ServiceTransition {
                state: ServiceState {
                    open_tasks: current
                        .open_tasks
                        .iter()
                        .copied()
                        .filter(|t| *t != task)
                        .collect(),
                    ..ServiceState::provisioning(now)
                },
                effects,
                ignored: None,
            }
        }
        ServiceEvent::Restore { cause } => unchanged(format!(
            "service is {} ({}), not terminated by {}",
            current.status.as_str(),
            current
                .termination_cause
                .as_ref()
                .map_or("no cause", |c| c.as_str()),
            cause.as_str()
        )),
        ServiceEvent::Terminate {
            cause,
            authorization_active,
        } => {
            let mut effects = vec![Effect::StopProvisioning];
            let mut open_tasks = current.open_tasks.clone();
            // An authorization-cancelled termination has no authorization left to cancel.
            if authorization_active && cause != TerminationCause::AuthorizationCancelled {
                let task = Task::MerchantMustCancelAuthorization;
                open_tasks.push(task);
                effects.push(Effect::OpenTask(task));
            }
            let status = match cause {
                TerminationCause::Expired => ServiceStatus::Expired,
                TerminationCause::AuthorizationCancelled
                | TerminationCause::OrderCancelled
                | TerminationCause::Refunded
                | TerminationCause::ImplementationTimeout
                | TerminationCause::Support { .. } => ServiceStatus::Terminated,
            };
            ServiceTransition {
                state: ServiceState {
                    status,
                    termination_cause: Some(cause),
                    since: now,
                    open_tasks,
                },
                effects,
                ignored: None,
            }
        }
    })
}

#[cfg(test)]
mod tests;
