//! Typed text columns. Every state that crosses the seam between `service` and `store` is an enum
//! in the row structs, written as its text form and read back strictly: a value the enum does not
//! know is a deserialization error that names the column (`StoreError::Corrupt`), never a default.
//!
//! The domain's enums know nothing of diesel (ARCHITECTURE.md), so the diesel traits are
//! implemented here by `text_column!`, which also lists every variant in an exhaustive match: a
//! variant added later without a text form fails to compile here.

use crate::domain::lifecycle::{
    AuthorizationStatus, DeadlineState, PaidAtSource, PeriodState, Refund, ServiceStatus, Task,
};
use crate::domain::{CancelReason, OrderStatus};

/// A value stored as text in one column.
pub trait TextColumn: Sized + Copy + 'static {
    /// Where it is stored, for the error message (`table.column`).
    const COLUMN: &'static str;
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    fn stored(self) -> &'static str;

    /// The value stored as `text`; an unknown text is an error naming the column.
    fn from_stored(text: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.stored() == text)
            .ok_or_else(|| UnknownValue {
                column: Self::COLUMN,
                value: text.to_string(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column}: unknown value {value:?}")]
pub struct UnknownValue {
    pub column: &'static str,
    pub value: String,
}

/// `text_column!(Type, "table.column", as_str_fn, [Type::A, Type::B])`.
#[macro_export]
macro_rules! text_column {
    ($ty:ty, $column:literal, $as_str:expr, [$($variant:path),+ $(,)?]) => {
        impl $crate::store::columns::TextColumn for $ty {
            const COLUMN: &'static str = $column;
            const ALL: &'static [Self] = &[$($variant),+];
            fn stored(self) -> &'static str {
                // Exhaustive on purpose: a new variant must be listed above.
                match self {
                    $($variant => {}),+
                }
                ($as_str)(self)
            }
        }

        impl<__DB> diesel::serialize::ToSql<diesel::sql_types::Text, __DB> for $ty
        where
            __DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, __DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, __DB>,
            ) -> diesel::serialize::Result {
                let text: &'static str = $crate::store::columns::TextColumn::stored(*self);
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, __DB>>::to_sql(text, out)
            }
        }

        impl<__DB> diesel::deserialize::FromSql<diesel::sql_types::Text, __DB> for $ty
        where
            __DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, __DB>,
        {
            fn from_sql(bytes: __DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    __DB,
                >>::from_sql(bytes)?;
                <$ty as $crate::store::columns::TextColumn>::from_stored(&text)
                    .map_err(|e| e.into())
            }
        }

        impl<__DB, __ST> diesel::deserialize::Queryable<__ST, __DB> for $ty
        where
            __DB: diesel::backend::Backend,
            __ST: diesel::sql_types::SingleValue,
            Self: diesel::deserialize::FromSql<__ST, __DB>,
        {
            type Row = Self;
            fn build(row: Self) -> diesel::deserialize::Result<Self> {
                Ok(row)
            }
        }

        impl diesel::expression::AsExpression<diesel::sql_types::Text> for $ty {
            type Expression =
                diesel::internal::derives::as_expression::Bound<diesel::sql_types::Text, Self>;
            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl diesel::expression::AsExpression<diesel::sql_types::Nullable<diesel::sql_types::Text>>
            for $ty
        {
            type Expression = diesel::internal::derives::as_expression::Bound<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
                Self,
            >;
            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl<'__e> diesel::expression::AsExpression<diesel::sql_types::Text> for &'__e $ty {
            type Expression =
                diesel::internal::derives::as_expression::Bound<diesel::sql_types::Text, Self>;
            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl<'__e>
            diesel::expression::AsExpression<diesel::sql_types::Nullable<diesel::sql_types::Text>>
            for &'__e $ty
        {
            type Expression = diesel::internal::derives::as_expression::Bound<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
                Self,
            >;
            fn as_expression(self) -> Self::Expression {
                diesel::internal::derives::as_expression::Bound::new(self)
            }
        }

        impl<__DB> diesel::serialize::ToSql<diesel::sql_types::Nullable<diesel::sql_types::Text>, __DB>
            for $ty
        where
            __DB: diesel::backend::Backend,
            Self: diesel::serialize::ToSql<diesel::sql_types::Text, __DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, __DB>,
            ) -> diesel::serialize::Result {
                <Self as diesel::serialize::ToSql<diesel::sql_types::Text, __DB>>::to_sql(self, out)
            }
        }
    };
}

text_column!(
    OrderStatus,
    "orders.status",
    OrderStatus::as_str,
    [
        OrderStatus::AwaitingPayment,
        OrderStatus::Implementing,
        OrderStatus::AwaitingConfirmation,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
    ]
);
text_column!(
    CancelReason,
    "orders.cancel_reason",
    CancelReason::as_str,
    [
        CancelReason::UnpaidTimeout,
        CancelReason::ImplementationTimeout,
        CancelReason::MerchantRefund,
        CancelReason::IsvCancelled,
    ]
);
text_column!(
    PaidAtSource,
    "orders.paid_at_source",
    PaidAtSource::as_str,
    [
        PaidAtSource::ServiceEffectDate,
        PaidAtSource::OrderTime,
        PaidAtSource::Reading,
        PaidAtSource::PaymentSeen,
        PaidAtSource::MerchantConfirmed,
    ]
);
text_column!(
    Refund,
    "orders.refund",
    Refund::as_str,
    [Refund::Automatic, Refund::Offline]
);
text_column!(
    DeadlineState,
    "deadlines.state",
    DeadlineState::as_str,
    [
        DeadlineState::Pending,
        DeadlineState::Fired,
        DeadlineState::Cancelled
    ]
);
text_column!(
    AuthorizationStatus,
    "authorizations.status",
    AuthorizationStatus::as_str,
    [
        AuthorizationStatus::Active,
        AuthorizationStatus::Superseded,
        AuthorizationStatus::Cancelled,
    ]
);
text_column!(
    ServiceStatus,
    "services.status",
    ServiceStatus::as_str,
    [
        ServiceStatus::Provisioning,
        ServiceStatus::Live,
        ServiceStatus::Terminated,
        ServiceStatus::Expired,
    ]
);
text_column!(
    PeriodState,
    "service_periods.state",
    PeriodState::as_str,
    [
        PeriodState::Active,
        PeriodState::Ended,
        PeriodState::Refunded,
        PeriodState::Cancelled,
    ]
);
text_column!(
    Task,
    "support_tasks.kind",
    Task::as_str,
    [Task::MerchantMustCancelAuthorization]
);
