"""Every DML statement the Cassandra store prepares, by name: the store executes names from
this table only, so the checker (tests/unit/test_cql_checker.py) sees exactly what runs.

Conditional statements (LWT) run at LOCAL_SERIAL unless their `Stmt` names SERIAL; everything
else at LOCAL_QUORUM unless its `Stmt` names another consistency.
"""

from __future__ import annotations

from dataclasses import dataclass

_MSG_COLS = "conv_id, bucket, seq, sender, ts, cmid, text, reply_to, attachments, mentions, edited_at, deleted"
_AUDIT_COLS = "id, writer, at, actor, action, target, conv_id, reason, details"
_STATE_COLS = "id, role, status, suspended_until, suspend_reason, guest, token_gen, rev"
_INVITE_COLS = "code, created_by, created_at, expires_at, used_by, used_at"
_REPORT_COLS = "id, filed, status, claimed_by, claimed_at, resolved_by, resolved_at, resolution, note"
_SETTINGS_COLS = "conv_id, slow_mode_s, read_only, allow_guests, permissions, pinned"
_SANCTION_COLS = "conv_id, user_id, kind, until, issued_by, at, reason"
_FAMILY_COLS = "user_id, id, created_at, last_used_at, expires_at, label, token_gen, revoked_at"


@dataclass(frozen=True)
class Stmt:
    name: str
    cql: str
    #: A cassandra.ConsistencyLevel name.
    consistency: str = "LOCAL_QUORUM"
    #: The Paxos consistency of a conditional statement: LOCAL_SERIAL is linearizable within
    #: a datacenter, SERIAL across all of them (for what runs once per cluster, not per DC).
    serial: str = "LOCAL_SERIAL"

    @property
    def conditional(self) -> bool:
        return " IF " in f" {self.cql} "


def _stmts(*items: tuple[str, str] | tuple[str, str, str] | tuple[str, str, str, str]) -> dict[str, Stmt]:
    return {item[0]: Stmt(*item) for item in items}


STATEMENTS: dict[str, Stmt] = _stmts(
    # accounts
    ("user_claim_name", "INSERT INTO users_by_name (username, id, password_hash) VALUES (?, ?, ?) IF NOT EXISTS"),
    ("user_insert", "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)"),
    ("user_by_id", "SELECT id, created_at FROM users WHERE id = ?"),
    ("user_by_name", "SELECT id, password_hash FROM users_by_name WHERE username = ?"),
    ("user_release_name", "DELETE FROM users_by_name WHERE username = ? IF id = ?"),
    ("user_name_set_hash", "UPDATE users_by_name SET password_hash = ? WHERE username = ? IF id = ?"),
    ("user_get", "SELECT id, username, password_hash, created_at FROM users WHERE id = ?"),
    ("user_set_name", "UPDATE users SET username = ?, password_hash = ? WHERE id = ?"),
    # an account's mutable state: every write is an LWT (created IF NOT EXISTS, then compare-and-set
    # on rev), so no update is lost and LWT and plain writes never mix on a row
    ("state_init", f"INSERT INTO account_state ({_STATE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"),
    ("state_get", f"SELECT {_STATE_COLS} FROM account_state WHERE id = ?"),
    ("state_cas", "UPDATE account_state SET role = ?, status = ?, suspended_until = ?, suspend_reason = ?, "
                  "token_gen = ?, rev = ? WHERE id = ? IF rev = ?"),
    # username search: bucket = the name's first two characters
    ("name_index_put", "INSERT INTO accounts_by_name (bucket, username, id, status, role, guest) "
                       "VALUES (?, ?, ?, ?, ?, ?)"),
    ("name_index_drop", "DELETE FROM accounts_by_name WHERE bucket = ? AND username = ?"),
    ("name_index_range", "SELECT username, id, status, role, guest FROM accounts_by_name WHERE bucket = ? "
                         "AND username >= ? AND username < ? LIMIT ?"),
    ("name_bucket_put", "INSERT INTO account_name_buckets (shard, bucket) VALUES (?, ?)"),
    ("name_buckets", "SELECT bucket FROM account_name_buckets WHERE shard = ?"),
    # profiles: plain upserts of the whole row, by its owner only
    ("profile_get", "SELECT id, display_name, avatar, status_text, discoverable FROM profiles WHERE id = ?"),
    ("profile_put", "INSERT INTO profiles (id, display_name, avatar, status_text, discoverable) "
                    "VALUES (?, ?, ?, ?, ?)"),
    # the directory: bucket = the term's first two characters
    ("term_put", "INSERT INTO directory_terms (bucket, term, user_id) VALUES (?, ?, ?)"),
    ("term_drop", "DELETE FROM directory_terms WHERE bucket = ? AND term = ? AND user_id = ?"),
    ("term_range", "SELECT term, user_id FROM directory_terms WHERE bucket = ? AND term >= ? AND term < ? LIMIT ?"),
    # "who may add me" (0009): the user's own choice, plain writes
    ("privacy_put", "INSERT INTO account_privacy (id, who_may_add) VALUES (?, ?)"),
    ("privacy_get", "SELECT who_may_add FROM account_privacy WHERE id = ?"),
    # invites: single use, by LWT; created_by (never null) keeps a missing code from matching
    ("invite_create", f"INSERT INTO invites ({_INVITE_COLS}) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"),
    ("invite_get", f"SELECT {_INVITE_COLS} FROM invites WHERE code = ?"),
    ("invite_use", "UPDATE invites SET used_by = ?, used_at = ? WHERE code = ? IF used_by = null AND created_by = ?"),
    ("invite_list_put", "INSERT INTO invites_by_time (shard, created_at, code) VALUES (?, ?, ?)"),
    ("invites_listed", "SELECT created_at, code FROM invites_by_time WHERE shard = ?"),
    # named counters (report ids): compare-and-set only
    ("counter_get", "SELECT last_value FROM counters WHERE name = ?"),
    ("counter_init", "INSERT INTO counters (name, last_value) VALUES (?, ?) IF NOT EXISTS"),
    ("counter_cas", "UPDATE counters SET last_value = ? WHERE name = ? IF last_value = ?"),
    # reports: inserted, claimed and resolved by LWT only
    ("report_put", f"INSERT INTO reports (bucket, {_REPORT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                   "IF NOT EXISTS"),
    ("report_get", f"SELECT {_REPORT_COLS} FROM reports WHERE bucket = ? AND id = ?"),
    ("reports_page", f"SELECT {_REPORT_COLS} FROM reports WHERE bucket = ? AND id < ? LIMIT ?"),
    ("report_claim_open", "UPDATE reports SET status = 'claimed', claimed_by = ?, claimed_at = ? "
                          "WHERE bucket = ? AND id = ? IF status = 'open'"),
    ("report_reclaim", "UPDATE reports SET status = 'claimed', claimed_by = ?, claimed_at = ? "
                       "WHERE bucket = ? AND id = ? IF status = 'claimed' AND claimed_by = ?"),
    ("report_resolve", "UPDATE reports SET status = 'resolved', resolved_by = ?, resolved_at = ?, resolution = ?, "
                       "note = ? WHERE bucket = ? AND id = ? IF status = ?"),
    ("report_target_put", "INSERT INTO reports_by_target (target_user, id) VALUES (?, ?)"),
    ("reports_of_target", "SELECT id FROM reports_by_target WHERE target_user = ? AND id < ? LIMIT ?"),
    # the instance policy: one partition, read whole
    ("policy_put", "INSERT INTO instance_policy (shard, name, value_json) VALUES (?, ?, ?)"),
    ("policy_all", "SELECT name, value_json FROM instance_policy WHERE shard = ?"),
    # conversations
    ("conv_insert", "INSERT INTO convs (id, kind, title, visibility, password_hash, history, owner, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
    ("conv_set_owner", "UPDATE convs SET owner = ? WHERE id = ?"),
    ("conv_get", "SELECT id, kind, title, visibility, password_hash, history, owner, created_at FROM convs WHERE id = ?"),
    ("conv_update", "UPDATE convs SET title = ?, visibility = ?, password_hash = ?, history = ? WHERE id = ?"),
    # conversation settings (0004): one row per conversation, written whole; no row = the defaults
    ("settings_put", f"INSERT INTO conv_settings ({_SETTINGS_COLS}) VALUES (?, ?, ?, ?, ?, ?)"),
    ("settings_get", f"SELECT {_SETTINGS_COLS} FROM conv_settings WHERE conv_id = ?"),
    # a conversation's topic (0012): no row = none
    ("topic_put", "INSERT INTO conv_topics (conv_id, topic) VALUES (?, ?)"),
    ("topic_get", "SELECT topic FROM conv_topics WHERE conv_id = ?"),
    # mutes and bans (0004), read whole with their conversation
    ("sanction_put", f"INSERT INTO sanctions ({_SANCTION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
    ("sanction_drop", "DELETE FROM sanctions WHERE conv_id = ? AND user_id = ? AND kind = ?"),
    ("sanctions_of", f"SELECT {_SANCTION_COLS} FROM sanctions WHERE conv_id = ?"),
    # invitations (0009): by conversation, read whole with it, and by invitee
    ("invitation_put", "INSERT INTO invitations (conv_id, user_id, invited_by, at) VALUES (?, ?, ?, ?)"),
    ("invitation_drop", "DELETE FROM invitations WHERE conv_id = ? AND user_id = ?"),
    ("invitations_of", "SELECT user_id, invited_by, at FROM invitations WHERE conv_id = ?"),
    ("invitation_by_user_put", "INSERT INTO invitations_by_user (user_id, conv_id, invited_by, at) "
                               "VALUES (?, ?, ?, ?)"),
    ("invitation_by_user_drop", "DELETE FROM invitations_by_user WHERE user_id = ? AND conv_id = ?"),
    ("invitations_of_user", "SELECT conv_id, invited_by, at FROM invitations_by_user WHERE user_id = ?"),
    # blocks (0004): by blocker, and by blocked user (written in the same logged batch)
    ("block_put", "INSERT INTO blocks (blocker, blocked, at) VALUES (?, ?, ?)"),
    ("block_drop", "DELETE FROM blocks WHERE blocker = ? AND blocked = ?"),
    ("block_get", "SELECT blocked FROM blocks WHERE blocker = ? AND blocked = ?"),
    ("blocks_by", "SELECT blocked FROM blocks WHERE blocker = ?"),
    ("blocked_by_put", "INSERT INTO blocked_by (blocked, blocker, at) VALUES (?, ?, ?)"),
    ("blocked_by_drop", "DELETE FROM blocked_by WHERE blocked = ? AND blocker = ?"),
    ("blockers_of", "SELECT blocker FROM blocked_by WHERE blocked = ?"),
    # the head only moves forward: its write timestamp is the seq itself
    ("head_set", "UPDATE conv_heads USING TIMESTAMP ? SET last_seq = ? WHERE conv_id = ?"),
    ("head_get", "SELECT last_seq FROM conv_heads WHERE conv_id = ?"),
    # members, their conversations, their cursors
    ("member_put", "INSERT INTO members (conv_id, user_id, role, visible_from, joined_at) VALUES (?, ?, ?, ?, ?)"),
    ("member_drop", "DELETE FROM members WHERE conv_id = ? AND user_id = ?"),
    ("members_of", "SELECT user_id, role, visible_from, joined_at FROM members WHERE conv_id = ?"),
    ("member_get", "SELECT user_id, role, visible_from, joined_at FROM members WHERE conv_id = ? AND user_id = ?"),
    ("user_conv_put", "INSERT INTO convs_by_user (user_id, conv_id) VALUES (?, ?)"),
    ("user_conv_drop", "DELETE FROM convs_by_user WHERE user_id = ? AND conv_id = ?"),
    ("user_convs", "SELECT conv_id FROM convs_by_user WHERE user_id = ?"),
    ("cursor_set", "UPDATE read_cursors USING TIMESTAMP ? SET read_seq = ? WHERE conv_id = ? AND user_id = ?"),
    ("delivered_set", "UPDATE delivered_cursors USING TIMESTAMP ? SET delivered_seq = ? "
                      "WHERE conv_id = ? AND user_id = ?"),
    ("delivered_of", "SELECT user_id, delivered_seq FROM delivered_cursors WHERE conv_id = ?"),
    ("cursors_of", "SELECT user_id, read_seq FROM read_cursors WHERE conv_id = ?"),
    ("cursor_get", "SELECT read_seq FROM read_cursors WHERE conv_id = ? AND user_id = ?"),
    # messages: claimed with IF NOT EXISTS (one conditional batch per (conv, bucket))
    ("message_claim", f"INSERT INTO messages ({_MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"),
    ("message_unclaim", "DELETE FROM messages WHERE conv_id = ? AND bucket = ? AND seq = ? IF cmid = ?"),
    ("message_edit", "UPDATE messages SET text = ?, edited_at = ?, deleted = ? WHERE conv_id = ? AND bucket = ? AND seq = ?"),
    ("message_delete", "UPDATE messages SET text = ?, edited_at = ?, deleted = ?, attachments = ? "
                       "WHERE conv_id = ? AND bucket = ? AND seq = ?"),
    ("message_get", f"SELECT {_MSG_COLS} FROM messages WHERE conv_id = ? AND bucket = ? AND seq = ?"),
    ("message_newest", "SELECT seq FROM messages WHERE conv_id = ? AND bucket = ? LIMIT 1"),
    ("message_tail", "SELECT seq, sender, ts, cmid FROM messages WHERE conv_id = ? AND bucket = ? AND seq > ?"),
    ("messages_desc", f"SELECT {_MSG_COLS} FROM messages WHERE conv_id = ? AND bucket = ? AND seq >= ? AND seq < ? "
                      "LIMIT ?"),
    ("messages_asc", f"SELECT {_MSG_COLS} FROM messages WHERE conv_id = ? AND bucket = ? AND seq >= ? AND seq < ? "
                     "ORDER BY seq ASC LIMIT ?"),
    # edit counts (0009): written with each edit, read with the message by chat_core
    ("message_edits_put", "INSERT INTO message_edits (conv_id, bucket, seq, edits) VALUES (?, ?, ?, ?)"),
    ("message_edits_get", "SELECT edits FROM message_edits WHERE conv_id = ? AND bucket = ? AND seq = ?"),
    ("reaction_put", "INSERT INTO reactions (conv_id, bucket, seq, emoji, user_id) VALUES (?, ?, ?, ?, ?)"),
    ("reaction_drop", "DELETE FROM reactions WHERE conv_id = ? AND bucket = ? AND seq = ? AND emoji = ? AND user_id = ?"),
    ("reactions_in", "SELECT seq, emoji, user_id FROM reactions WHERE conv_id = ? AND bucket = ? AND seq >= ? "
                     "AND seq <= ?"),
    # idempotency keys expire
    ("idem_put", "INSERT INTO idempotency (conv_id, sender, cmid, seq, ts) VALUES (?, ?, ?, ?, ?) USING TTL ?"),
    ("idem_get", "SELECT seq, ts FROM idempotency WHERE conv_id = ? AND sender = ? AND cmid = ?"),
    # outbox: appended, read past a checkpoint, never deleted (rows expire)
    ("outbox_put", "INSERT INTO outbox (shard, tb, id, record) VALUES (?, ?, ?, ?) USING TTL ?"),
    ("outbox_after", "SELECT id, record FROM outbox WHERE shard = ? AND tb = ? AND id > ? LIMIT ?"),
    ("checkpoint_get", "SELECT checkpoint FROM relay_checkpoints WHERE shard = ?"),
    ("checkpoint_init", "INSERT INTO relay_checkpoints (shard, checkpoint) VALUES (?, ?) IF NOT EXISTS"),
    ("checkpoint_advance", "UPDATE relay_checkpoints SET checkpoint = ? WHERE shard = ? IF checkpoint < ?"),
    # audit log: INSERT and SELECT only
    ("audit_put", f"INSERT INTO audit (scope, day, {_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    ("audit_day_put", "INSERT INTO audit_days (scope, day) VALUES (?, ?)"),
    ("audit_days", "SELECT day FROM audit_days WHERE scope = ?"),
    ("audit_page", f"SELECT {_AUDIT_COLS} FROM audit WHERE scope = ? AND day = ? AND id < ? LIMIT ?"),
    # attachments: one row per id; an insert sets every column, so it replaces the row whole
    ("attachment_put", "INSERT INTO attachments (id, conv_id, uploader, name, mime, size, created_at, uploaded) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
    ("attachment_media_put", "INSERT INTO attachment_media (id, width, height, thumbs) VALUES (?, ?, ?, ?)"),
    ("attachment_media_get", "SELECT width, height, thumbs FROM attachment_media WHERE id = ?"),
    ("attachment_get", "SELECT id, conv_id, uploader, name, mime, size, created_at, uploaded FROM attachments "
                       "WHERE id = ?"),
    # calls (0010): written by chat_core's batches with its conversations, plain writes (one writer each)
    ("call_put", "INSERT INTO calls (call_id, conv_id, body) VALUES (?, ?, ?)"),
    ("call_get", "SELECT body FROM calls WHERE call_id = ?"),
    ("live_call_put", "INSERT INTO live_calls (conv_id, call_id, body) VALUES (?, ?, ?)"),
    ("live_call_get", "SELECT call_id, body FROM live_calls WHERE conv_id = ?"),
    ("ring_timer_put", "INSERT INTO ring_timers (shard, hour, call_id, conv_id, deadline, ringing) "
                       "VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"),
    ("ring_timers_in", "SELECT call_id, conv_id, deadline, ringing FROM ring_timers WHERE shard = ? AND hour = ?"),
    ("call_settings_put", "INSERT INTO call_settings (conv_id, enabled, max_participants, max_video_subscriptions) "
                          "VALUES (?, ?, ?, ?)"),
    ("call_settings_get", "SELECT enabled, max_participants, max_video_subscriptions FROM call_settings "
                          "WHERE conv_id = ?"),
    ("call_member_put", "INSERT INTO call_members (user_id, call_id, conv_id) VALUES (?, ?, ?)"),
    ("call_member_drop", "DELETE FROM call_members WHERE user_id = ? AND call_id = ?"),
    ("calls_of_user", "SELECT call_id FROM call_members WHERE user_id = ?"),
    ("message_call_put", "INSERT INTO message_calls (conv_id, bucket, seq, record) VALUES (?, ?, ?, ?)"),
    ("message_call_get", "SELECT record FROM message_calls WHERE conv_id = ? AND bucket = ? AND seq = ?"),
    # login sessions (0008): every row expires with its TTL; a family is written whole (but for
    # revoked_at, which only a revocation writes) at login and again, with the new TTL, per refresh
    ("family_put", "INSERT INTO session_families (user_id, id, created_at, last_used_at, expires_at, label, "
                   "token_gen) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"),
    ("family_get", f"SELECT {_FAMILY_COLS} FROM session_families WHERE user_id = ? AND id = ?"),
    ("families_of", f"SELECT {_FAMILY_COLS} FROM session_families WHERE user_id = ?"),
    ("family_revoke", "UPDATE session_families USING TTL ? SET revoked_at = ? WHERE user_id = ? AND id = ?"),
    # refresh tokens: every write is an LWT (inserted IF NOT EXISTS, spent IF used_at = null)
    ("refresh_put", "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES (?, ?, ?, ?) "
                    "IF NOT EXISTS USING TTL ?"),
    ("refresh_get", "SELECT token_hash, family_id, user_id, expires_at, used_at FROM refresh_tokens "
                    "WHERE token_hash = ?"),
    ("refresh_spend", "UPDATE refresh_tokens USING TTL ? SET used_at = ? WHERE token_hash = ? IF used_at = null"),
    # the revocation log: appended, read by minute, never updated (rows expire)
    ("revocation_put", "INSERT INTO revocations (bucket, at, id, user_id, family_id, token_gen, reason) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"),
    ("revocations_in", "SELECT at, id, user_id, family_id, token_gen, reason FROM revocations "
                       "WHERE bucket = ? AND at >= ?"),
    # push devices (0011): a device row per user, and the current holder of each token
    ("device_put", "INSERT INTO devices (user_id, id, family_id, platform, push_token, app_id, locale, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
    ("devices_of", "SELECT user_id, id, family_id, platform, push_token, app_id, locale, created_at FROM devices "
                   "WHERE user_id = ?"),
    ("device_drop", "DELETE FROM devices WHERE user_id = ? AND id = ?"),
    ("device_token_put", "INSERT INTO device_tokens (push_token, user_id, device_id) VALUES (?, ?, ?)"),
    ("device_token_get", "SELECT user_id, device_id FROM device_tokens WHERE push_token = ?"),
    ("device_token_drop", "DELETE FROM device_tokens WHERE push_token = ?"),
    ("notify_put", "INSERT INTO notify_settings (user_id, scope, level, mute_until, previews) VALUES (?, ?, ?, ?, ?)"),
    ("notify_of", "SELECT scope, level, mute_until, previews FROM notify_settings WHERE user_id = ?"),
    ("notify_drop", "DELETE FROM notify_settings WHERE user_id = ? AND scope = ?"),
    # readiness: a node of the local datacenter answers (any one: the node's own table, no quorum)
    ("store_ping", "SELECT release_version FROM system.local WHERE key = 'local'", "LOCAL_ONE"),
    # the migration runner's own tables (created by the runner, not by a migration; prepared on
    # first use, since they may not exist when a role starts)
    ("migration_applied", "SELECT name, checksum FROM schema_migrations WHERE version = ?"),
    ("migration_record", "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"),
    # the runner's lease (parley/adapters/cassandra/lease.py): taken IF NOT EXISTS with a TTL, so a runner
    # that dies frees it; renewed and released only by its owner. Every write is an LWT.
    # One schema lock for the whole cluster: a Job per region must not both hold it.
    ("migration_lock_take", "INSERT INTO schema_lock (name, owner, since) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?",
     "LOCAL_QUORUM", "SERIAL"),
    ("migration_lock_renew", "UPDATE schema_lock USING TTL ? SET owner = ?, since = ? WHERE name = ? IF owner = ?",
     "LOCAL_QUORUM", "SERIAL"),
    ("migration_lock_release", "DELETE FROM schema_lock WHERE name = ? IF owner = ?", "LOCAL_QUORUM", "SERIAL"),
    ("migration_lock_holder", "SELECT owner, since FROM schema_lock WHERE name = ?"),
)

#: Batches that may carry conditions: each must stay in one partition of one table.
CONDITIONAL_BATCHES: dict[str, tuple[str, ...]] = {
    "claim": ("message_claim",),
    "unclaim": ("message_unclaim",),
}

#: The runner creates this table before the first migration (DDL is not prepared).
MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version int PRIMARY KEY, name text, checksum text, applied_at bigint)")

#: The runner's lease, one row per lock name; `since` is when the holder took it (epoch ms).
LOCK_TABLE = "CREATE TABLE IF NOT EXISTS schema_lock (name text PRIMARY KEY, owner text, since bigint)"

#: Every table the runner creates for itself, in order (`connect_for_migrations`).
RUNNER_TABLES = (MIGRATIONS_TABLE, LOCK_TABLE)

#: The part of Cassandra's own tables that statements read: known to the checker and the model,
#: never created by Parley.
SYSTEM_TABLES = "CREATE TABLE IF NOT EXISTS system.local (key text PRIMARY KEY, release_version text)"
