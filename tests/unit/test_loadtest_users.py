"""`parley admin loadtest-users`: refused unless the instance allows it; otherwise accounts in bulk
whose tokens work and whose password cannot be used, audited, on SQLite and on the Cassandra
store (its in-memory model)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from parley.accounts import Authenticator
from parley.adapters.cassandra.store import CassandraStore
from parley.app import cli
from parley.app.loadtest_users import NO_PASSWORD, create_accounts, usernames
from parley.app.stores import open_store
from parley.auth import Passwords, Tokens, load_or_create_secret
from parley.config import Settings
from parley.records import AuditQuery
from parley.session_families import Logins, Revoker
from tests.cassandra_model import ModelSession


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: str | None, count: int = 30) -> tuple[int, Path]:
    if allow is None:
        monkeypatch.delenv("PARLEY_ALLOW_LOADTEST_USERS", raising=False)
    else:
        monkeypatch.setenv("PARLEY_ALLOW_LOADTEST_USERS", allow)
    out = tmp_path / "tokens.json"
    code = cli.main(["admin", "--data-dir", str(tmp_path), "loadtest-users", "--count", str(count),
                     "--out", str(out)])
    return code, out


@pytest.mark.parametrize("allow", [None, "0"])
def test_the_command_is_refused_unless_the_instance_allows_it(tmp_path, monkeypatch, capsys, allow):
    code, out = _run(tmp_path, monkeypatch, allow)
    assert code == 1
    assert not out.exists()
    assert "PARLEY_ALLOW_LOADTEST_USERS" in capsys.readouterr().err


def test_allowed_it_writes_working_tokens_for_accounts_no_password_opens(tmp_path, monkeypatch):
    code, out = _run(tmp_path, monkeypatch, "1", count=130)  # more than one concurrent batch
    assert code == 0
    accounts = json.loads(out.read_text())
    assert len(accounts) == 130 and len({a["user_id"] for a in accounts}) == 130
    assert out.stat().st_mode & 0o077 == 0  # bearer tokens: the owner's only
    # A day, not the 15-minute default: a load test outlives it and its client does not refresh.
    claims = Tokens(load_or_create_secret(tmp_path), 60).verify(accounts[0]["token"])
    assert claims.expires_at - time.time() > 23 * 3600 and accounts[0]["refresh_token"]
    asyncio.run(_check_accounts(tmp_path, accounts))


async def _check_accounts(tmp_path: Path, accounts: list[dict[str, str]]) -> None:
    store = await open_store(Settings.from_env(data_dir=tmp_path))
    try:
        auth = Authenticator(Tokens(load_or_create_secret(tmp_path), 3600), store, store)
        for account in (accounts[0], accounts[-1]):
            assert (await auth.principal(account["token"])).user_id == account["user_id"]
            found = await store.user_by_name(account["username"])
            assert found is not None and found[1] == NO_PASSWORD
            assert not Passwords().verify(found[1], "")  # no password, not even the empty one, logs in
        audit = await store.audit_entries(AuditQuery(action="loadtest.users"))
        assert [(e.actor, e.details["count"]) for e in audit] == [("cli", 130)]
    finally:
        await store.close()


async def test_accounts_and_their_logins_go_through_the_store_ports_on_cassandra_too():
    store = CassandraStore(ModelSession())
    tokens = Tokens(b"k" * 32, 3600)
    made = await create_accounts(store, Logins(store, tokens, 7200, Revoker(store)), usernames("lt", 70))
    account = await store.account_by_name(made[69]["username"])
    assert account is not None and account.id == made[69]["user_id"] and account.status == "active"
    principal = await Authenticator(tokens, store, store).principal(made[69]["token"])
    assert principal.user_id == account.id


def test_names_are_valid_usernames_and_differ_between_runs():
    first, second = usernames("lt", 3), usernames("lt", 3)
    assert first[0].startswith("lt-") and first[2].endswith("-2")
    assert set(first).isdisjoint(second)
    with pytest.raises(ValueError):
        usernames("a-prefix-far-too-long-for-a-name", 1000)
