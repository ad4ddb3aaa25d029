-- Version 12: a message may be the record of a finished call (the calls tables are created by schema.sql).
ALTER TABLE messages ADD COLUMN call BLOB;
