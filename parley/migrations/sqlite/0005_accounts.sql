-- Version 5: account roles, status and suspension (and the invites, reports and instance_policy
-- tables, created by schema.sql).
ALTER TABLE users ADD COLUMN role TEXT;
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE users ADD COLUMN suspended_until INTEGER;
ALTER TABLE users ADD COLUMN suspend_reason TEXT;
ALTER TABLE users ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN token_gen INTEGER NOT NULL DEFAULT 0;
