-- Certificate mode: Alipay public-key certificates downloaded (alipay.open.app.alipaycert.download)
-- and accepted (they chain to the configured root), shared by every replica. Keyed by SN.
CREATE TABLE alipay_certs (
    sn TEXT PRIMARY KEY,
    pem TEXT NOT NULL,
    not_after TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
