//! The rules, as plain functions of state, event and time. No I/O.

pub mod ids;
pub mod lifecycle;
pub mod merchant_order;
pub mod order;

pub use ids::{MiniAppId, OrderId};
pub use order::{CancelReason, DeadlineKind, OrderStatus};
