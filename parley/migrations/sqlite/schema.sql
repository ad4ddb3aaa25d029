-- The SQLite schema of this build, whole (PRAGMA user_version = the highest NNNN_*.sql): a new
-- database is created from it; an older one runs the upgrade steps after its version first, and
-- this then creates the tables added since. Every statement is IF NOT EXISTS for that reason.
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL, role TEXT, status TEXT NOT NULL DEFAULT 'active',
    suspended_until INTEGER, suspend_reason TEXT, guest INTEGER NOT NULL DEFAULT 0,
    token_gen INTEGER NOT NULL DEFAULT 0, display_name TEXT, avatar TEXT, status_text TEXT,
    discoverable INTEGER NOT NULL DEFAULT 1, who_may_add TEXT);
-- The directory: one row per search term of a user (parley/profiles.py search_terms), so a
-- prefix is one range of the primary key.
CREATE TABLE IF NOT EXISTS user_search_terms (
    term TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (term, user)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_search_terms_by_user ON user_search_terms (user);
CREATE INDEX IF NOT EXISTS users_by_status ON users (status, username);
CREATE TABLE IF NOT EXISTS invites (
    code TEXT PRIMARY KEY, created_by TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER,
    used_by TEXT, used_at INTEGER);
CREATE TABLE IF NOT EXISTS instance_policy (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, reporter TEXT NOT NULL, kind TEXT NOT NULL,
    target_user TEXT NOT NULL, conv TEXT, seq INTEGER, reason TEXT NOT NULL, excerpt TEXT,
    status TEXT NOT NULL, claimed_by TEXT, claimed_at INTEGER, resolved_by TEXT, resolved_at INTEGER,
    resolution TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS reports_by_status ON reports (status, id);
CREATE TABLE IF NOT EXISTS convs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT, visibility TEXT NOT NULL,
    password_hash TEXT, history TEXT NOT NULL, owner TEXT NOT NULL, created_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0, slow_mode_s INTEGER NOT NULL DEFAULT 0,
    read_only INTEGER NOT NULL DEFAULT 0, permissions BLOB, pinned BLOB, allow_guests INTEGER NOT NULL DEFAULT 0,
    topic TEXT);
CREATE TABLE IF NOT EXISTS members (
    conv TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL, visible_from INTEGER NOT NULL,
    read_seq INTEGER NOT NULL, joined_at INTEGER NOT NULL, delivered_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv, user)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user, conv);
CREATE TABLE IF NOT EXISTS messages (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL, ts INTEGER NOT NULL,
    cmid TEXT NOT NULL, text TEXT, reply_to INTEGER, attachments BLOB, mentions BLOB,
    edited_at INTEGER, deleted INTEGER NOT NULL DEFAULT 0, edits INTEGER NOT NULL DEFAULT 0, call BLOB,
    PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency ON messages (conv, sender, cmid);
CREATE TABLE IF NOT EXISTS reactions (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, emoji TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (conv, seq, emoji, user)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB NOT NULL, shard INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_by_shard ON outbox (shard, id);
CREATE TABLE IF NOT EXISTS relay (name TEXT PRIMARY KEY, checkpoint INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, conv TEXT, reason TEXT, details BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target, id);
CREATE TABLE IF NOT EXISTS sanctions (
    conv TEXT NOT NULL, user TEXT NOT NULL, kind TEXT NOT NULL, until INTEGER NOT NULL, by TEXT NOT NULL,
    at INTEGER NOT NULL, reason TEXT,
    PRIMARY KEY (conv, user, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invitations (
    conv TEXT NOT NULL, user TEXT NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (conv, user)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS invitations_by_user ON invitations (user, conv);
CREATE TABLE IF NOT EXISTS blocks (
    blocker TEXT NOT NULL, blocked TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_blocked ON blocks (blocked, blocker);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY, conv TEXT NOT NULL, uploader TEXT NOT NULL, name TEXT NOT NULL,
    mime TEXT NOT NULL, size INTEGER NOT NULL, created_at INTEGER NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0, width INTEGER, height INTEGER, thumbs BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_families (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at INTEGER NOT NULL, last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, label TEXT NOT NULL, token_gen INTEGER NOT NULL, revoked_at INTEGER);
CREATE INDEX IF NOT EXISTS session_families_by_user ON session_families (user_id, created_at);
CREATE INDEX IF NOT EXISTS session_families_by_expiry ON session_families (expires_at);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY, family TEXT NOT NULL, user_id TEXT NOT NULL, expires_at INTEGER NOT NULL,
    used_at INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires_at);
CREATE TABLE IF NOT EXISTS revocations (
    id TEXT PRIMARY KEY, at INTEGER NOT NULL, user_id TEXT NOT NULL, family TEXT, token_gen INTEGER,
    reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS revocations_by_time ON revocations (at, id);
-- Calls (0012): every call by id, its state as chat_core stores it (msgpack); at most one live call
-- per conversation; `ringing_until` is the ring deadline of a call whose devices ring now.
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, conv TEXT NOT NULL, live INTEGER NOT NULL, ringing_until INTEGER,
    body BLOB NOT NULL) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS calls_live_by_conv ON calls (conv) WHERE live = 1;
CREATE INDEX IF NOT EXISTS calls_ringing ON calls (ringing_until) WHERE ringing_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS call_settings (
    conv TEXT PRIMARY KEY, enabled INTEGER NOT NULL, max_participants INTEGER,
    max_video_subscriptions INTEGER) WITHOUT ROWID;
-- Who takes part in a live call, across conversations: a callee found here is busy.
CREATE TABLE IF NOT EXISTS call_members (
    user TEXT NOT NULL, call TEXT NOT NULL, conv TEXT NOT NULL,
    PRIMARY KEY (user, call)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, family_id TEXT NOT NULL, platform TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL, locale TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user_id, created_at);
CREATE TABLE IF NOT EXISTS notify_settings (
    user_id TEXT NOT NULL, scope TEXT NOT NULL, level TEXT NOT NULL, mute_until INTEGER, previews INTEGER NOT NULL,
    PRIMARY KEY (user_id, scope)) WITHOUT ROWID;
