//! The Alipay wire protocol: keys, sign content, RSA2, gateway-message verification and parsing,
//! OpenAPI request signing and response verification, and the HTTP client. No database, no actix;
//! time is passed in.

pub mod aes;
pub mod api;
pub mod cert;
pub mod cert_mode;
pub mod client;
pub mod form;
pub mod keys;
pub mod message;
pub mod notify;
pub mod request;
pub mod response;
pub mod sign;
pub mod time;

pub use aes::{AesError, AesKey};
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use notify::{Rejection, SignVariant, VerifiedMessage};
