-- The inbox is claimed with a lease like every other queue (src/store/queue.rs): a replica that
-- claims a batch of messages applies them; if it dies, the lease runs out and another one does.
ALTER TABLE gateway_messages ADD COLUMN claimed_until TIMESTAMP;
