"""What the gateway establishes before publishing a write, so that chat_core's single writer
decides it without waiting for slow or wide work (parley.records.EdgeFacts): room passwords,
checked and hashed here (gateway/room_passwords.py), and for conv.create and conv.invite the
named users' "who may add me" choices and which of them are the actor's contacts (reads of
other users' accounts and conversations, which no single conversation's writer holds)."""

from __future__ import annotations

import msgspec

from gateway.contacts import Contacts
from gateway.room_passwords import RoomPasswords
from parley import frames as F
from parley.ports import AccountStore
from parley.records import EdgeFacts

#: The writes that may need facts from the gateway; every other write goes out as it came.
EDGE_CHECKED = (F.ConvCreate, F.ConvJoin, F.ConvUpdate, F.ConvInvite)


class WriteFacts:
    def __init__(self, passwords: RoomPasswords, accounts: AccountStore, contacts: Contacts) -> None:
        self._passwords = passwords
        self._accounts = accounts
        self._contacts = contacts

    async def establish(self, user: str, req: F.WriteRequest) -> tuple[F.WriteRequest, EdgeFacts | None]:
        """`req` as it goes on the log (no plaintext password), and the facts it carries."""
        password_hash: str | None = None
        adding: list[str] = []
        if isinstance(req, F.ConvJoin):
            req, password_hash = await self._passwords.join(user, req)
        elif isinstance(req, F.ConvCreate):
            if req.password is not None:
                password_hash = await self._passwords.hash(req.password)
                req = msgspec.structs.replace(req, password=None)
            if req.kind != "direct":  # a direct chat is writing to someone, not adding them
                adding = req.members
        elif isinstance(req, F.ConvUpdate) and isinstance(req.password, str):
            password_hash = await self._passwords.hash(req.password)
            req = msgspec.structs.replace(req, password=F.UNSET)
        elif isinstance(req, F.ConvInvite):
            adding = req.users
        who_may_add, contacts = await self._choices(user, adding)
        if password_hash is None and not who_may_add:
            return req, None
        return req, EdgeFacts(password_hash=password_hash, who_may_add=who_may_add, contacts=contacts)

    async def _choices(self, user: str, adding: list[str]) -> tuple[dict[str, str], list[str]]:
        """The choices of the users `user` adds who made one, and those of them who are the
        user's contacts (read only when someone chose "contacts")."""
        others = {u for u in adding if u != user}
        if not others:
            return {}, []
        choices = await self._accounts.who_may_add(others)
        if "contacts" not in choices.values():
            return choices, []
        mine = await self._contacts.of(user)
        return choices, sorted(u for u, choice in choices.items() if choice == "contacts" and u in mine)
