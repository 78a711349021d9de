pub mod alipay;
pub mod clock;
