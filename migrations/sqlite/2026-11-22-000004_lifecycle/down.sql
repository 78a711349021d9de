DROP TABLE support_tasks;
DROP TABLE services;
ALTER TABLE orders DROP COLUMN refund;
ALTER TABLE orders DROP COLUMN audit_passed_at;
ALTER TABLE orders DROP COLUMN paid;
