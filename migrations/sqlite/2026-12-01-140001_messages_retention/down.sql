DROP INDEX gateway_messages_applied;
