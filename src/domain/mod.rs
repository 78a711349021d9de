//! The rules, as plain functions of state, event and time. No I/O.

pub mod lifecycle;
pub mod merchant_order;
pub mod order;

pub use order::{CancelReason, DeadlineKind, OrderStatus};
