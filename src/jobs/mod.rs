//! Background work. Each job only calls a service; the rules live below.

pub mod apply_inbox;
pub mod deadlines;
pub mod deliver_merchant_orders;
pub mod pipeline;
pub mod retention;
