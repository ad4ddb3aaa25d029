"""Every CQL statement Parley runs, checked without a server: the migrations build the schema,
cqlsh's own grammar checks the syntax, and the checker applies Cassandra's key rules."""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel

from parley.adapters.cassandra.statements import CONDITIONAL_BATCHES, RUNNER_TABLES, STATEMENTS, SYSTEM_TABLES
from parley.migrations import migration_files
from tests.cql import checker
from tests.cql.grammar import CqlSyntaxError, parse

SCRIPTS = [*RUNNER_TABLES, SYSTEM_TABLES] + [text for _, _, text in migration_files("cassandra")]
SCHEMA, SCHEMA_PROBLEMS = checker.schema_from(SCRIPTS)


def problems(cql: str) -> list[str]:
    return checker.check_statement(SCHEMA, parse(cql))


def test_every_migration_and_prepared_statement_passes():
    assert checker.check_all({n: s.cql for n, s in STATEMENTS.items()}, SCRIPTS, CONDITIONAL_BATCHES) == []


def test_system_tables_are_only_read_and_only_by_the_readiness_probe_at_local_one():
    """The probe asks one node about itself: no quorum, so one slow replica does not make every
    role unready at once. Every other statement keeps LOCAL_QUORUM."""
    assert {n for n, s in STATEMENTS.items() if parse(s.cql).table.startswith("system.")} == {"store_ping"}
    assert type(parse(STATEMENTS["store_ping"].cql)).__name__ == "Select"
    assert {n: s.consistency for n, s in STATEMENTS.items() if s.consistency != "LOCAL_QUORUM"} == {
        "store_ping": "LOCAL_ONE"}
    assert all(hasattr(ConsistencyLevel, s.consistency) for s in STATEMENTS.values())


def test_only_the_schema_lock_is_linearizable_across_datacenters():
    """Two migration runners in two regions must not both hold the lock: its conditions run at
    SERIAL. Everything else is per datacenter (LOCAL_SERIAL) and only conditional statements
    have a serial phase at all."""
    assert {n for n, s in STATEMENTS.items() if s.serial != "LOCAL_SERIAL"} == {
        "migration_lock_take", "migration_lock_renew", "migration_lock_release"}
    assert all(STATEMENTS[n].conditional for n in ("migration_lock_take", "migration_lock_renew",
                                                    "migration_lock_release"))
    assert all(s.serial in ("SERIAL", "LOCAL_SERIAL") and hasattr(ConsistencyLevel, s.serial)
               for s in STATEMENTS.values())


def test_the_schema_has_the_data_model_of_the_architecture():
    messages = SCHEMA.tables["messages"]
    assert (messages.partition_key, messages.clustering) == (["conv_id", "bucket"], ["seq"])
    assert messages.clustering_order == {"seq": "DESC"}
    outbox = SCHEMA.tables["outbox"]
    assert (outbox.partition_key, outbox.clustering) == (["shard", "tb"], ["id"])
    assert int(outbox.options["default_time_to_live"]) > 0 and "TimeWindow" in outbox.options["compaction"]
    assert int(SCHEMA.tables["idempotency"].options["default_time_to_live"]) > 0
    assert SCHEMA.tables["audit"].partition_key == ["scope", "day"]


def test_the_audit_log_and_the_outbox_are_never_updated_or_deleted_from():
    for name, stmt in STATEMENTS.items():
        tree = parse(stmt.cql)
        if tree.table in ("audit", "audit_days", "outbox"):
            assert type(tree).__name__ in ("Insert", "Select"), name


def test_statements_that_need_lwt_are_the_claims_the_name_and_the_checkpoint():
    assert {n for n, s in STATEMENTS.items() if s.conditional} == {
        "user_claim_name", "message_claim", "message_unclaim", "checkpoint_init", "checkpoint_advance",
        # accounts and the admin API (migration 0003)
        "user_release_name", "user_name_set_hash", "state_init", "state_cas", "invite_create", "invite_use",
        "counter_init", "counter_cas", "report_put", "report_claim_open", "report_reclaim", "report_resolve",
        # login sessions (migration 0005): a refresh token is spent once
        "refresh_put", "refresh_spend",
        # the migration runner's lease
        "migration_lock_take", "migration_lock_renew", "migration_lock_release"}


@pytest.mark.parametrize("table", ["users_by_name", "account_state", "invites", "counters", "reports", "schema_lock",
                                   "refresh_tokens"])
def test_rows_kept_by_lwt_are_never_written_without_one(table: str):
    """Mixing LWT and plain writes on one row breaks the LWT's linearizability: every write to
    these tables is conditional."""
    writes = {n: s for n, s in STATEMENTS.items() if parse(s.cql).table == table
              and type(parse(s.cql)).__name__ != "Select"}
    assert writes and all(s.conditional for s in writes.values()), writes


def test_the_admin_tables_have_their_keys():
    assert SCHEMA.tables["accounts_by_name"].partition_key == ["bucket"]
    assert SCHEMA.tables["accounts_by_name"].clustering == ["username"]
    assert (SCHEMA.tables["account_name_buckets"].partition_key, SCHEMA.tables["account_name_buckets"].clustering) == (
        ["shard"], ["bucket"])
    reports = SCHEMA.tables["reports"]
    assert (reports.partition_key, reports.clustering, reports.clustering_order) == (["bucket"], ["id"], {"id": "DESC"})
    assert SCHEMA.tables["invites_by_time"].clustering_order == {"created_at": "DESC", "code": "ASC"}
    assert SCHEMA.tables["instance_policy"].partition_key == ["shard"]


def test_the_moderation_tables_have_their_keys_and_no_lwt():
    """Migration 0004: settings beside `convs`, sanctions by conversation (read whole when a writer
    loads it), blocks by blocker and by blocked user. One writer per conversation (and per pair,
    through its direct conversation) writes them: plain writes, no LWT."""
    settings = SCHEMA.tables["conv_settings"]
    assert (settings.partition_key, settings.clustering) == (["conv_id"], [])
    assert settings.columns["permissions"] == "frozen<map<text, text>>"
    assert settings.columns["pinned"] == "frozen<list<bigint>>"
    sanctions = SCHEMA.tables["sanctions"]
    assert (sanctions.partition_key, sanctions.clustering) == (["conv_id"], ["user_id", "kind"])
    assert (SCHEMA.tables["blocks"].partition_key, SCHEMA.tables["blocks"].clustering) == (["blocker"], ["blocked"])
    assert (SCHEMA.tables["blocked_by"].partition_key, SCHEMA.tables["blocked_by"].clustering) == (
        ["blocked"], ["blocker"])
    moderation = {n: s for n, s in STATEMENTS.items()
                  if parse(s.cql).table in ("conv_settings", "sanctions", "blocks", "blocked_by")}
    assert set(moderation) == {"settings_put", "settings_get", "sanction_put", "sanction_drop", "sanctions_of",
                               "block_put", "block_drop", "block_get", "blocks_by", "blocked_by_put",
                               "blocked_by_drop", "blockers_of"}
    assert not any(s.conditional for s in moderation.values())
    assert not STATEMENTS["conv_update"].conditional and "owner" not in STATEMENTS["conv_update"].cql


def test_every_write_of_blocks_has_its_mirror_in_blocked_by():
    for op in ("put", "drop"):
        a, b = parse(STATEMENTS[f"block_{op}"].cql), parse(STATEMENTS[f"blocked_by_{op}"].cql)
        assert (type(a), a.table, b.table) == (type(b), "blocks", "blocked_by")


def test_migration_comments_hold_no_quote():
    """split_script keeps a comment line that holds a quote, and the quote then swallows the
    statements after it (cqlsh's grammar takes minutes on what is left)."""
    for _, name, text in migration_files("cassandra"):
        for line in text.splitlines():
            assert "--" not in line or "'" not in line.split("--", 1)[1], (name, line)


@pytest.mark.parametrize("cql, expected", [
    ("SELECT seq, colour FROM messages WHERE conv_id = ? AND bucket = ?", "no column colour"),
    ("SELECT seq FROM messages WHERE conv_id = ?", "partition key column bucket"),
    ("SELECT seq FROM messages WHERE conv_id = ? AND bucket > ?", "must be restricted by = or IN"),
    ("SELECT seq FROM reactions WHERE conv_id = ? AND bucket = ? AND emoji = ?", "restrictions must be a prefix"),
    ("SELECT seq FROM reactions WHERE conv_id = ? AND bucket = ? AND seq > ? AND emoji = ?",
     "range but is not the last"),
    ("SELECT seq FROM messages WHERE conv_id = ? AND bucket = ? AND sender = ?", "ALLOW FILTERING"),
    ("SELECT seq FROM messages WHERE conv_id = ? AND bucket = ? ORDER BY ts DESC", "ORDER BY must follow"),
    ("SELECT seq FROM nosuch WHERE id = ?", "no table nosuch"),
    ("INSERT INTO messages (conv_id, seq, text) VALUES (?, ?, ?)", "must set primary key column bucket"),
    ("INSERT INTO messages (conv_id, bucket, seq) VALUES (?, ?)", "3 columns but 2 values"),
    ("INSERT INTO messages (conv_id, bucket, seq) VALUES (?, ?, ?) IF NOT EXISTS USING TIMESTAMP ?",
     "cannot set its own timestamp"),
    ("UPDATE messages SET text = ? WHERE conv_id = ? AND bucket = ?", "clustering column seq"),
    ("UPDATE messages SET seq = ? WHERE conv_id = ? AND bucket = ? AND seq = ?", "cannot be updated"),
    ("UPDATE relay_checkpoints SET checkpoint = ? WHERE shard = ? IF shard = ?", "IF cannot test primary key"),
    ("UPDATE conv_heads USING TIMESTAMP ? SET last_seq = ? WHERE conv_id = ? IF last_seq < ?",
     "cannot set its own timestamp"),
    ("DELETE FROM messages WHERE conv_id = ? AND bucket = ? IF cmid = ?", "clustering column seq"),
    ("DELETE FROM outbox USING TTL ? WHERE shard = ? AND tb = ?", "DELETE cannot set a TTL"),
    # migration 0004
    ("SELECT blocked FROM blocked_by WHERE blocker = ?", "partition key column blocked"),
    ("SELECT user_id FROM sanctions WHERE conv_id = ? AND kind = ?", "restrictions must be a prefix"),
    ("DELETE FROM sanctions WHERE conv_id = ? AND user_id = ? IF until = ?", "clustering column kind"),
    ("UPDATE conv_settings SET conv_id = ? WHERE conv_id = ?", "cannot be updated"),
    # Cassandra's own tables, by keyspace-qualified name
    ("SELECT release_version FROM system.local", "partition key column key of system.local"),
    ("SELECT peer FROM system.peers WHERE peer = ?", "no table system.peers"),
])
def test_the_checker_catches(cql: str, expected: str):
    found = problems(cql)
    assert any(expected in p for p in found), found


def test_range_on_the_last_clustering_column_and_reversed_order_are_legal():
    assert problems("SELECT seq FROM reactions WHERE conv_id = ? AND bucket = ? AND seq >= ? AND seq <= ?") == []
    assert problems("SELECT seq FROM messages WHERE conv_id = ? AND bucket = ? ORDER BY seq ASC LIMIT ?") == []


def test_a_conditional_batch_must_stay_in_one_table():
    stmts = [parse(STATEMENTS["message_claim"].cql), parse(STATEMENTS["user_claim_name"].cql)]
    assert checker.check_conditional_batch(SCHEMA, stmts, "b")


@pytest.mark.parametrize("cql", [
    "SELEC seq FROM messages",
    "SELECT seq FROM messages WHERE conv_id = ? ALLOW FILTERING",
    "INSERT INTO messages (conv_id bucket) VALUES (?)",
])
def test_the_parser_refuses_what_it_does_not_know(cql: str):
    with pytest.raises(CqlSyntaxError):
        parse(cql)


def test_cqlsh_grammar_is_a_real_syntax_gate():
    assert checker.cqlsh_syntax(STATEMENTS["message_claim"].cql) is None
    assert checker.cqlsh_syntax("SELECT seq FROM messages WHERE conv_id = ? AND bucket IN ?") is None
    assert checker.cqlsh_syntax("SELECT FROM messages WHERE conv_id = ?") is not None
    assert checker.cqlsh_syntax("UPDATE messages SET text = ? WHERE") is not None
    assert checker.cqlsh_syntax("CREATE TABLE t (a int PRIMARY KEY) WITH CLUSTERING ORDER BY (a DESCC)") is not None


def test_the_runners_lease_expires_and_is_written_only_by_its_owner():
    """Taken with a TTL (a runner that dies frees it), renewed with one (a renewal without a TTL
    would make it permanent), released and renewed only while the row names the caller."""
    take, renew, release = (parse(STATEMENTS[f"migration_lock_{op}"].cql) for op in ("take", "renew", "release"))
    assert take.if_not_exists and take.using.get("TTL") == "?"
    assert renew.using.get("TTL") == "?" and [c.column for c in renew.conditions] == ["owner"]
    assert [c.column for c in release.conditions] == ["owner"]
    # every runner statement shares the prefix the roles skip when they prepare at start
    assert {n for n, s in STATEMENTS.items() if parse(s.cql).table in ("schema_migrations", "schema_lock")} == {
        n for n in STATEMENTS if n.startswith("migration_")}


def test_a_broken_migration_is_reported():
    bad = "CREATE TABLE x (a int, b list<text>, PRIMARY KEY (a, b)) WITH CLUSTERING ORDER BY (a DESC);"
    found = checker.check_all({}, [bad], {})
    assert any("non-frozen collection" in p for p in found) and any("clustering columns in key order" in p
                                                                    for p in found)
    assert SCHEMA_PROBLEMS == []
