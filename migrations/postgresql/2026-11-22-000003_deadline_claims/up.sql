-- Deadlines are claimed by the scheduler tick of one replica at a time: a claim is a lease.
ALTER TABLE deadlines ADD COLUMN claimed_until TIMESTAMP;
ALTER TABLE deadlines ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
