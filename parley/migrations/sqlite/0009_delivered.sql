-- Version 9: each member's delivered cursor (the `received` request).
ALTER TABLE members ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
