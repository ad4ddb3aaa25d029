-- Version 11: a message's edit count (edits per message are capped) and the account's "who may add
-- me" choice (NULL: the default); the invitations table is created by schema.sql.
ALTER TABLE messages ADD COLUMN edits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN who_may_add TEXT;
