-- Version 7: a message's edit count (edits per message are capped).
ALTER TABLE messages ADD COLUMN edits INTEGER NOT NULL DEFAULT 0;
