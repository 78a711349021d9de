-- Sealed bytes (AES-GCM ciphertext) do not compress: store them out of line without trying,
-- instead of letting pglz spend CPU on every large gateway message.
ALTER TABLE gateway_messages ALTER COLUMN raw_body SET STORAGE EXTERNAL;
ALTER TABLE authorizations ALTER COLUMN app_auth_token SET STORAGE EXTERNAL;
ALTER TABLE authorizations ALTER COLUMN app_refresh_token SET STORAGE EXTERNAL;
