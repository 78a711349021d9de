DROP TABLE deadlines;
DROP TABLE order_history;
DROP TABLE orders;
DROP TABLE authorizations;
DROP TABLE gateway_messages;
