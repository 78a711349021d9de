ALTER TABLE gateway_messages DROP COLUMN claimed_until;
