-- The retention purge finds applied messages by age without scanning the others.
CREATE INDEX gateway_messages_applied ON gateway_messages (received_at, id) WHERE state = 'applied';
