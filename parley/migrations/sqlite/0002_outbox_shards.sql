-- Version 2: the outbox is sharded by log partition; the one relay checkpoint becomes shard 0's.
ALTER TABLE outbox ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
UPDATE relay SET name = 'outbox:0' WHERE name = 'outbox';
