-- Version 15: a user's search terms found by user. Replacing them (an account made, a display
-- name changed) deleted by a column the primary key (term, user) does not lead with: a scan of
-- every user's terms each time, which made 100,000 accounts take hours instead of a minute.
CREATE INDEX IF NOT EXISTS user_search_terms_by_user ON user_search_terms (user);
