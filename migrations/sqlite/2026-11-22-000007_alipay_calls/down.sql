DROP TABLE alipay_calls;
