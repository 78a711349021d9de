-- PostgreSQL only (column storage without compression); SQLite never compresses a column.
SELECT 1;
