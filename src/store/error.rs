//! The one error the store gives the layers above: what went wrong, in terms a use case can act on
//! (retry later, tell the caller it raced, say "no such thing", or stop and alert: the data is bad).

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer (pool timeout, lost connection,
    /// SQLite busy): worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A concurrent writer got there first (unique key, serialization failure, guarded update).
    #[error("changed concurrently: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored value does not read (an unknown state string, a broken row): never defaulted.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Worth trying again later, as opposed to a fact about the data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Conflict(_) => true,
            StoreError::NotFound(_) | StoreError::Corrupt(_) => false,
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound("no such row".into()),
            // Diesel wraps our `UnknownValue` ("Error deserializing field 'status'"): keep the
            // whole chain, which names the column and the value.
            DieselError::DeserializationError(e) => {
                let mut message = e.to_string();
                let mut source = e.source();
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                StoreError::Corrupt(message)
            }
            DieselError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => {
                    StoreError::Conflict(info.message().to_string())
                }
                DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation => StoreError::Corrupt(info.message().into()),
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation
                | DatabaseErrorKind::Unknown => StoreError::Unavailable(info.message().into()),
                // The enum is non-exhaustive: a kind added by a later diesel is reported as is.
                _ => StoreError::Unavailable(info.message().into()),
            },
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(format!("no database connection: {e}"))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Unavailable(format!("database task did not finish: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
