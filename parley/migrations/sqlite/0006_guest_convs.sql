-- Version 6: conversations that admit guests.
ALTER TABLE convs ADD COLUMN allow_guests INTEGER NOT NULL DEFAULT 0;
