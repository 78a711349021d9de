//! The ids that tie orders, authorizations and services together, typed where they cross from the
//! shells into the use cases, so that an order id is never handed where a mini program's app id
//! is meant (both are strings of digits on the wire).

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id!(
    /// A marketplace order: Alipay's `commodity_order_id`.
    OrderId
);

id!(
    /// A merchant's mini program, by its app id: `consumer_miniAppId` in an order notice,
    /// `order_items[].mini_app_id` in `order.query`, `auth_app_id` in an authorization,
    /// `mini_app_id` in audit messages, `tiny_app_id` in merchant-order syncs.
    MiniAppId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_print_as_the_wire_text() {
        let order = OrderId::from("20240610000000001");
        assert_eq!(order.as_str(), "20240610000000001");
        assert_eq!(order.to_string(), "20240610000000001");
        assert_eq!(
            serde_json::to_string(&order).unwrap(),
            "\"20240610000000001\""
        );
        let app: MiniAppId = serde_json::from_str("\"2021004199990002\"").unwrap();
        assert_eq!(app, MiniAppId::new("2021004199990002"));
    }
}
