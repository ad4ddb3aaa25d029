-- Version 7: profiles (display name, avatar, status line, discoverability) and the directory's
-- search terms (parley/profiles.py search_terms), filled here with the usernames of existing users.
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN avatar TEXT;
ALTER TABLE users ADD COLUMN status_text TEXT;
ALTER TABLE users ADD COLUMN discoverable INTEGER NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS user_search_terms (
    term TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (term, user)) WITHOUT ROWID;
INSERT OR IGNORE INTO user_search_terms (term, user) SELECT lower(username), id FROM users;
