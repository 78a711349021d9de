ALTER TABLE orders DROP COLUMN service_expire_date;
ALTER TABLE orders DROP COLUMN service_effect_date;
ALTER TABLE orders DROP COLUMN period_day;
DROP INDEX service_periods_service;
DROP TABLE service_periods;
