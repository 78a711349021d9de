//! Support staff accounts (`users add/list/disable`) and their web sessions. Passwords are kept
//! as Argon2id hashes; a session is a random id held by the browser and, as its SHA-256, here.

use super::Services;
use crate::store::{PooledConn, from_db_time, operators, to_db_time};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use std::sync::OnceLock;

/// How long a web session lasts.
pub const SESSION_HOURS: i64 = 12;
/// The shortest password `users add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("invalid name {0:?}: 1 to 64 letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("an operator named {0:?} exists already")]
    Exists(String),
    #[error("no operator named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl From<diesel::result::Error> for OperatorError {
    fn from(e: diesel::result::Error) -> Self {
        OperatorError::Store(e.into())
    }
}

/// An operator as `users list` shows them.
#[derive(Debug)]
pub struct OperatorSummary {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub live_sessions: i64,
}

/// A new session: the id goes to the browser (a cookie) and nowhere else.
pub struct NewSession {
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

/// Names are what the history shows (`web:NAME`): short and plain.
pub fn check_name(name: &str) -> Result<(), OperatorError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(OperatorError::InvalidName(name.to_string()))
    }
}

fn hash_password(password: &str) -> Result<String, OperatorError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| OperatorError::Hash(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password matches, verified against for unknown names so that a wrong name takes as
/// long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let random: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        hash_password(&random).unwrap_or_default()
    })
}

fn session_hash(id: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Services {
    fn operators_conn(&self) -> Result<PooledConn, OperatorError> {
        self.pool.get().map_err(|e| OperatorError::Store(e.into()))
    }

    /// `users add`: a new operator with an Argon2id hash of `password`.
    pub async fn add_operator(&self, name: &str, password: &str) -> Result<(), OperatorError> {
        let (name, password) = (name.to_owned(), password.to_owned());
        self.off_executor(move |s| {
            let (name, password) = (name.as_str(), password.as_str());
            check_name(name)?;
            if password.chars().count() < MIN_PASSWORD_CHARS {
                return Err(OperatorError::WeakPassword);
            }
            let hash = hash_password(password)?;
            let mut conn = s.operators_conn()?;
            if operators::insert(&mut conn, name, &hash, to_db_time(s.clock.now()))? {
                Ok(())
            } else {
                Err(OperatorError::Exists(name.to_string()))
            }
        })
        .await
    }

    pub async fn list_operators(&self) -> Result<Vec<OperatorSummary>, OperatorError> {
        self.off_executor(move |s| {
            let mut conn = s.operators_conn()?;
            Ok(operators::list(&mut conn, to_db_time(s.clock.now()))?
                .into_iter()
                .map(|(o, live_sessions)| OperatorSummary {
                    name: o.name,
                    created_at: from_db_time(o.created_at),
                    disabled_at: o.disabled_at.map(from_db_time),
                    live_sessions,
                })
                .collect())
        })
        .await
    }

    /// `users disable`: no more sign-ins, and every session of theirs ends now.
    pub async fn disable_operator(&self, name: &str) -> Result<(), OperatorError> {
        let name = name.to_owned();
        self.off_executor(move |s| {
            let name = name.as_str();
            let mut conn = s.operators_conn()?;
            if operators::disable(&mut conn, name, to_db_time(s.clock.now()))? {
                Ok(())
            } else {
                Err(OperatorError::NotFound(name.to_string()))
            }
        })
        .await
    }

    /// Checks a name and password; a new session when they match an enabled operator, `None`
    /// otherwise (which of the two was wrong is not told).
    pub async fn sign_in(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<NewSession>, OperatorError> {
        let (name, password) = (name.to_owned(), password.to_owned());
        self.off_executor(move |s| {
            let (name, password) = (name.as_str(), password.as_str());
            let mut conn = s.operators_conn()?;
            let found = match check_name(name) {
                Ok(()) => operators::find(&mut conn, name)?,
                Err(_) => None,
            };
            let matches = match &found {
                Some(op) => {
                    verify_password(password, &op.password_hash) && op.disabled_at.is_none()
                }
                None => {
                    verify_password(password, decoy_hash());
                    false
                }
            };
            if !matches {
                return Ok(None);
            }
            let id: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            let now = s.clock.now();
            let expires_at = now + Duration::hours(SESSION_HOURS);
            operators::insert_session(
                &mut conn,
                &session_hash(&id),
                name,
                to_db_time(now),
                to_db_time(expires_at),
            )?;
            Ok(Some(NewSession { id, expires_at }))
        })
        .await
    }

    /// The operator signed in with session `id`, while it lasts and they are enabled.
    pub async fn session_operator(&self, id: &str) -> Result<Option<String>, OperatorError> {
        let id = id.to_owned();
        self.off_executor(move |s| {
            let id = id.as_str();
            let mut conn = s.operators_conn()?;
            Ok(operators::session_operator(
                &mut conn,
                &session_hash(id),
                to_db_time(s.clock.now()),
            )?)
        })
        .await
    }

    /// Sign-out: the session ends on the server, whatever the browser keeps.
    pub async fn sign_out(&self, id: &str) -> Result<(), OperatorError> {
        let id = id.to_owned();
        self.off_executor(move |s| {
            let id = id.as_str();
            let mut conn = s.operators_conn()?;
            Ok(operators::delete_session(&mut conn, &session_hash(id))?)
        })
        .await
    }
}
