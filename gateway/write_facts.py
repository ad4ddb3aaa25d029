"""What the gateway establishes before publishing a write, so that chat_core's single writer
decides it without waiting for slow work (parley.records.EdgeFacts): room passwords, checked
and hashed here (gateway/room_passwords.py)."""

from __future__ import annotations

import msgspec

from gateway.room_passwords import RoomPasswords
from parley import frames as F
from parley.records import EdgeFacts

#: The writes that may need facts from the gateway; every other write goes out as it came.
EDGE_CHECKED = (F.ConvCreate, F.ConvJoin, F.ConvUpdate)


class WriteFacts:
    def __init__(self, passwords: RoomPasswords) -> None:
        self._passwords = passwords

    async def establish(self, user: str, req: F.WriteRequest) -> tuple[F.WriteRequest, EdgeFacts | None]:
        """`req` as it goes on the log (no plaintext password), and the facts it carries."""
        password_hash: str | None = None
        if isinstance(req, F.ConvJoin):
            req, password_hash = await self._passwords.join(user, req)
        elif isinstance(req, F.ConvCreate) and req.password is not None:
            password_hash = await self._passwords.hash(req.password)
            req = msgspec.structs.replace(req, password=None)
        elif isinstance(req, F.ConvUpdate) and isinstance(req.password, str):
            password_hash = await self._passwords.hash(req.password)
            req = msgspec.structs.replace(req, password=F.UNSET)
        return req, None if password_hash is None else EdgeFacts(password_hash=password_hash)
