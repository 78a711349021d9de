DROP TABLE alipay_certs;
