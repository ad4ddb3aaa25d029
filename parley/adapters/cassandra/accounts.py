"""The Cassandra store's accounts.

users (0001): id -> username, password_hash, created_at; users_by_name: the username claim
(LWT) and login's (id, hash). account_state (0003): role, status, suspension, guest, token
generation and `rev`, written by LWT only; a user older than 0003 has no row there and reads as
the defaults. account_privacy: the user's "who may add me" choice, plain writes (the user
alone sets it; no row: the default). accounts_by_name: the search index (see search_accounts).
Registration spends an invite code (`invites`) by LWT. profiles: display name, avatar, status
line and discoverability; directory_terms: the people directory (see search_directory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from contextlib import aclosing
from collections.abc import Sequence
from typing import Any

import msgspec

from parley.adapters.cassandra.database import CAS_ROUNDS, NO_LIMIT, PAGE, CassandraDatabase
from parley.adapters.cassandra.session import Row
from parley.adapters.cassandra.writes import Statement
from parley.errors import Conflict, Forbidden, Unavailable
from parley.profiles import MIN_DIRECTORY_PREFIX, key_successor, search_terms
from parley.records import WHO_MAY_ADD_DEFAULT, Account, AccountPatch, AccountQuery

#: Usernames are clustered in partitions named by their first NAME_BUCKET_CHARS characters.
NAME_BUCKET_CHARS = 2
#: Directory terms one search reads at most (a prefix shared by a crowd stops there).
DIRECTORY_SCAN = 1000


def name_bucket(username: str) -> str:
    return username[:NAME_BUCKET_CHARS]


def term_bucket(term: str) -> str:
    return term[:MIN_DIRECTORY_PREFIX]


def _account(user: Row, state: Row | None, profile: Row | None = None, privacy: Row | None = None) -> Account:
    """A `users` row (id, username, password_hash, created_at) with its account_state row
    (id, role, status, suspended_until, suspend_reason, guest, token_gen, rev), its profiles
    row (id, display_name, avatar, status_text, discoverable) and its account_privacy row
    (who_may_add), if any."""
    account = Account(id=user[0], username=user[1], created_at=user[3])
    if state is not None:
        account = Account(id=user[0], username=user[1], created_at=user[3], role=state[1],
                          status=state[2] or "active", suspended_until=state[3], suspend_reason=state[4],
                          guest=bool(state[5]), token_gen=int(state[6] or 0))
    if profile is not None:
        account.display_name, account.avatar, account.status_text = profile[1], profile[2], profile[3]
        account.discoverable = profile[4] is not False
    account.who_may_add = privacy[0] if privacy is not None and privacy[0] else WHO_MAY_ADD_DEFAULT
    return account


def _patch_profile(new: Account, old: Account, patch: AccountPatch) -> None:
    """`new` (the account state after the update) gets `old`'s profile with `patch` applied."""
    for field_ in ("display_name", "avatar", "status_text", "discoverable"):
        value = getattr(patch, field_)
        setattr(new, field_, getattr(old, field_) if isinstance(value, msgspec.UnsetType) else value)


class CassandraAccounts(CassandraDatabase):
    """Implements parley.ports.AccountStore."""

    async def create_user(self, user_id: str, username: str, password_hash: str, created_at: int, *,
                          status: str = "active", guest: bool = False, invite: str | None = None) -> None:
        """The name is claimed first (LWT), then the invite is spent (LWT); a refused invite gives
        the name back, so a refused registration leaves nothing. Then the state row (LWT insert,
        before the `users` row: an account is never read without its status) and the `users` row
        with its search entry (one logged batch). A retry with the same id goes on where it
        stopped. If the process dies, or the cluster fails, after the claims, the name (and the
        code) stay held by `user_id` without an account: login finds no account for it."""
        if not await self._lwt("user_claim_name", [username, user_id, password_hash]):
            owner = await self._one("user_by_name", [username])
            if owner is None or owner[0] != user_id:
                raise Conflict("username is taken")
        if invite is not None:
            try:
                await self._use_invite(invite, user_id, created_at)
            except Forbidden:
                await self._lwt("user_release_name", [username, user_id])
                raise
        await self._lwt("state_init", [user_id, None, status, None, None, guest, 0, 0])
        bucket = name_bucket(username)
        await self._batch([
            ("user_insert", [user_id, username, password_hash, created_at]),
            ("name_index_put", [bucket, username, user_id, status, None, guest]),
            ("name_bucket_put", [0, bucket]),
            *[("term_put", [term_bucket(t), t, user_id]) for t in sorted(search_terms(username, None))],
        ])

    async def _use_invite(self, code: str, user_id: str, at: int) -> None:
        row = await self._one("invite_get", [code])
        if row is not None and row[4] == user_id:
            return  # our own retry
        if row is None or row[4] is not None or (row[3] is not None and row[3] <= at):
            raise Forbidden("the invite code is unknown, used or expired")
        # expires_at never changes: checked above; the LWT only has to win the code.
        if not await self._lwt("invite_use", [user_id, at, code, row[1]]):
            again = await self._one("invite_get", [code])
            if again is None or again[4] != user_id:
                raise Forbidden("the invite code is unknown, used or expired")

    async def user_by_name(self, username: str) -> tuple[str, str] | None:
        row = await self._one("user_by_name", [username])
        return (row[0], row[1]) if row else None

    async def _account_rows(self, user_id: str) -> tuple[Row | None, Row | None, Row | None]:
        user, state, profile = await asyncio.gather(self._one("user_get", [user_id]), self._one("state_get", [user_id]),
                                                    self._one("profile_get", [user_id]))
        return user, state, profile

    async def account(self, user_id: str) -> Account | None:
        (user, state, profile), privacy = await asyncio.gather(self._account_rows(user_id),
                                                               self._one("privacy_get", [user_id]))
        return None if user is None else _account(user, state, profile, privacy)

    async def accounts(self, user_ids: Sequence[str]) -> list[Account]:
        found = await self._gather(self.account(u) for u in dict.fromkeys(user_ids))
        return [a for a in found if a is not None]

    async def who_may_add(self, user_ids: Collection[str]) -> dict[str, str]:
        ids = sorted(user_ids)
        rows = await self._gather(self._one("privacy_get", [user_id]) for user_id in ids)
        return {user_id: row[0] for user_id, row in zip(ids, rows) if row is not None and row[0]}

    async def account_by_name(self, username: str) -> Account | None:
        row = await self._one("user_by_name", [username])
        if row is None:
            return None
        found = await self.account(row[0])
        # `users` holds the name: a claim whose account is not written (or renamed away) is no match
        return found if found is not None and found.username == username else None

    async def update_account(self, user_id: str, patch: AccountPatch) -> Account | None:
        """A new username is claimed first (LWT: Conflict before anything changes); the state
        changes by compare-and-set on `rev`, so concurrent updates (a suspension and a role
        change, two session cuts) all land; then `users`, the search entry and the old name's
        release. The search entry is written after the state's LWT and may lag an update that
        died half way (or one racing another): the next update rewrites it, and search
        re-checks every match against the state. The profile is one upsert of its whole row
        (only its owner changes it) and the directory's terms follow the name and display name."""
        user, state, profile = await self._account_rows(user_id)
        if user is None:
            return None
        if not isinstance(patch.who_may_add, msgspec.UnsetType):  # the user's own choice: no CAS needed
            await self._batch([("privacy_put", [user_id, patch.who_may_add])])
        old_name, old_hash = user[1], user[2]
        name = old_name if isinstance(patch.username, msgspec.UnsetType) else patch.username
        pw = old_hash if isinstance(patch.password_hash, msgspec.UnsetType) else patch.password_hash
        renamed = name != old_name
        if renamed and not await self._lwt("user_claim_name", [name, user_id, pw]):
            owner = await self._one("user_by_name", [name])
            if owner is None or owner[0] != user_id:
                raise Conflict("username is taken")
        try:
            new = await self._set_state(user, state, patch, name)
        except Exception:
            if renamed:  # nothing else changed: give the new name back
                await self._lwt("user_release_name", [name, user_id])
            raise
        old = _account(user, state, profile)
        _patch_profile(new, old, patch)
        stmts: list[Statement] = [("name_index_put", [name_bucket(name), name, user_id, new.status, new.role,
                                                      new.guest])]
        if renamed or pw != old_hash:
            stmts.append(("user_set_name", [name, pw, user_id]))
        if renamed:
            stmts += [("name_index_drop", [name_bucket(old_name), old_name]), ("name_bucket_put", [0, name_bucket(name)])]
        profile_now = (new.display_name, new.avatar, new.status_text, new.discoverable)
        if profile_now != (old.display_name, old.avatar, old.status_text, old.discoverable):
            stmts.append(("profile_put", [user_id, *profile_now]))
        old_terms, new_terms = search_terms(old_name, old.display_name), search_terms(name, new.display_name)
        stmts += [("term_drop", [term_bucket(t), t, user_id]) for t in sorted(old_terms - new_terms)]
        # Every term again (upserts): an account from before migration 0005 gets its terms here.
        stmts += [("term_put", [term_bucket(t), t, user_id]) for t in sorted(new_terms)]
        await self._batch(stmts)
        if renamed:
            await self._lwt("user_release_name", [old_name, user_id])
        elif pw != old_hash:
            await self._lwt("user_name_set_hash", [pw, name, user_id])
        privacy = await self._one("privacy_get", [user_id])
        return msgspec.structs.replace(new, who_may_add=_account(user, state, None, privacy).who_may_add)

    async def _set_state(self, user: Row, state: Row | None, patch: AccountPatch, name: str) -> Account:
        """Compare-and-set of account_state on `rev`: the account after `patch`."""
        user_id = user[0]
        for _ in range(CAS_ROUNDS):
            if state is None:  # an account from before migration 0003: give it its row first
                await self._lwt("state_init", [user_id, None, "active", None, None, False, 0, 0])
                state = await self._one("state_get", [user_id])
                continue
            cur = _account(user, state)
            new = msgspec.structs.replace(cur, username=name)
            for field_ in ("role", "status", "suspended_until", "suspend_reason"):
                value = getattr(patch, field_)
                if not isinstance(value, msgspec.UnsetType):
                    setattr(new, field_, value)
            if patch.cut_sessions:
                new.token_gen += 1
            rev = state[7]
            if (new.role, new.status, new.suspended_until, new.suspend_reason, new.token_gen) == (
                    cur.role, cur.status, cur.suspended_until, cur.suspend_reason, cur.token_gen):
                return new
            if await self._lwt("state_cas", [new.role, new.status, new.suspended_until, new.suspend_reason,
                                             new.token_gen, (rev or 0) + 1, user_id, rev]):
                return new
            state = await self._one("state_get", [user_id])
        raise Unavailable("account update contended; try again", retry_after_ms=100)

    async def search_accounts(self, query: AccountQuery) -> list[Account]:
        """Usernames live in `accounts_by_name`, partitioned by their first two characters: a
        prefix of two or more is a range in one partition; a shorter one (or none) walks the
        buckets in order (`account_name_buckets`, one small partition). Status, role and guest
        are filtered on the index copies and re-checked on the account: a filter that matches
        few accounts (status=pending) walks every name after `after`, one page request per
        200 names and one account read per match. Accounts created before migration 0003 are
        in no bucket until they are next updated."""
        prefix = query.prefix or ""
        after = query.after
        out: list[Account] = []
        if query.limit <= 0:
            return out
        if len(prefix) >= NAME_BUCKET_CHARS:
            buckets = [prefix[:NAME_BUCKET_CHARS]]
        else:
            buckets = [r[0] for r in await self._all("name_buckets", [0]) if r[0].startswith(prefix)]
        if after is not None:
            buckets = [b for b in buckets if b >= after[:NAME_BUCKET_CHARS]]
        lo = prefix if after is None or after < prefix else after
        hi = key_successor(prefix) if prefix else None

        def wanted(status: str | None, role: str | None, guest: bool | None) -> bool:
            return ((query.status is None or (status or "active") == query.status)
                    and (query.role is None or role == query.role)
                    and (query.guest is None or bool(guest) == query.guest))

        for b in sorted(buckets):
            top = key_successor(b) if hi is None else min(hi, key_successor(b))
            if lo >= top:
                continue
            async with aclosing(self._rows("name_index_range", [b, lo, top, NO_LIMIT], fetch_size=PAGE)) as rows:
                batch: list[tuple[str, str]] = []
                async for username, uid, status, role, guest in rows:
                    if username != after and wanted(status, role, guest):
                        batch.append((username, uid))
                    if len(batch) >= PAGE:
                        out += await self._recheck(batch, wanted)
                        batch = []
                        if len(out) >= query.limit:
                            break
                out += await self._recheck(batch, wanted)
            if len(out) >= query.limit:
                break
        if query.prefix:  # or an exact user id
            exact = await self.account(query.prefix)
            if (exact is not None and wanted(exact.status, exact.role, exact.guest)
                    and (after is None or exact.username > after) and all(a.id != exact.id for a in out)):
                out.append(exact)
                out.sort(key=lambda a: a.username)
        return out[:query.limit]

    async def search_directory(self, prefix: str, limit: int) -> list[Account]:
        """One range of `directory_terms` in the partition of the prefix's first two characters,
        read in pages until `limit` accounts pass the re-check (active, discoverable, not a
        guest, and still holding the term: an entry an interrupted update left behind is
        skipped). A popular prefix reads at most DIRECTORY_SCAN terms."""
        if len(prefix) < MIN_DIRECTORY_PREFIX or limit <= 0:
            return []
        seen: dict[str, Account] = {}
        async with aclosing(self._rows("term_range", [term_bucket(prefix), prefix, key_successor(prefix),
                                                      DIRECTORY_SCAN], fetch_size=PAGE)) as rows:
            batch: list[str] = []
            async for _, uid in rows:
                if uid not in seen and uid not in batch:
                    batch.append(uid)
                if len(batch) >= limit:
                    await self._directory_check(batch, prefix, seen)
                    batch = []
                    if len(seen) >= limit:
                        break
            await self._directory_check(batch, prefix, seen)
        return sorted(seen.values(), key=lambda a: a.username)[:limit]

    async def _directory_check(self, uids: list[str], prefix: str, seen: dict[str, Account]) -> None:
        for a in await self.accounts(uids):
            if (a.status == "active" and not a.guest and a.discoverable
                    and any(t.startswith(prefix) for t in search_terms(a.username, a.display_name))):
                seen[a.id] = a

    async def _recheck(self, found: list[tuple[str, str]], wanted: Any) -> list[Account]:
        accounts = await self._gather(self.account(uid) for _, uid in found)
        return [a for (username, _), a in zip(found, accounts)
                if a is not None and a.username == username and wanted(a.status, a.role, a.guest)]
