-- Version 14: a group's or channel's topic (conv.update), null when it has none.
ALTER TABLE convs ADD COLUMN topic TEXT;
