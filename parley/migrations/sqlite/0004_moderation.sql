-- Version 4: conversation settings (and the sanctions and blocks tables, created by schema.sql).
ALTER TABLE convs ADD COLUMN slow_mode_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE convs ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE convs ADD COLUMN permissions BLOB;
ALTER TABLE convs ADD COLUMN pinned BLOB;
