ALTER TABLE deadlines DROP COLUMN attempts;
ALTER TABLE deadlines DROP COLUMN claimed_until;
