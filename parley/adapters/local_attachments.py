"""Attachments in a directory of the data dir, for the embedded default. The gateway serves their
URLs itself (local_blob_routes.py mounted on it), signed the way S3 signs presigned URLs: an
HMAC over the method, the key, the expiry and what the request must carry (an upload's
Content-Type and Content-Length; a download's response headers). A changed URL, an upload other
than the one declared, or an expired URL is refused, as S3 refuses it. An object is written
once: a second upload to its URL is refused (409), as S3 refuses the conditional PUT of
s3_attachments.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

import msgspec

from parley.errors import BadRequest, Conflict, Forbidden, NotFound
from parley.mime import content_disposition
from parley.ports import Presigned

#: Where the gateway serves the bytes: `PUT|GET {URL_PREFIX}{key}?expires=..&signature=..`.
URL_PREFIX = "/v1/blobs/"
_KEY_RE = re.compile(r"^[a-z0-9]{1,64}$")
_WRITTEN_ONCE = "an attachment's bytes are written once: this one is stored already"
_encode = msgspec.json.Encoder().encode


class LocalAttachments:
    """Implements parley.ports.Attachments on a directory; also checks and serves its URLs."""

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        # A key of its own, derived: the token key never signs anything but tokens.
        self._key = hmac.new(secret, b"parley attachment urls v1", hashlib.sha256).digest()

    # ---- the port -------------------------------------------------------------------------

    async def presign_put(self, key: str, mime: str, size: int, expires_s: int) -> Presigned:
        expires = int(time.time()) + expires_s
        query = {"expires": expires, "signature": self._sign("PUT", key, expires, mime, size)}
        return Presigned(url=f"{URL_PREFIX}{key}?{urlencode(query)}", method="PUT",
                         headers={"Content-Type": mime, "Content-Length": str(size)}, expires_at=expires)

    async def presign_get(self, key: str, name: str, mime: str, expires_s: int) -> Presigned:
        expires, disposition = int(time.time()) + expires_s, content_disposition(name)
        query = {"expires": expires, "type": mime, "disposition": disposition,
                 "signature": self._sign("GET", key, expires, mime, disposition)}
        return Presigned(url=f"{URL_PREFIX}{key}?{urlencode(query)}", method="GET", headers={},
                         expires_at=expires)

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def put(self, key: str, data: bytes, mime: str) -> None:
        """Written aside, synced, then renamed into place: readers see the old or the new whole."""
        path = self.path(key)

        def run() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
            try:
                with open(part, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)
        await asyncio.to_thread(run)

    # ---- serving the URLs -----------------------------------------------------------------

    def check(self, method: str, key: str, query: Mapping[str, str], *signed: str | int) -> None:
        """Raise Forbidden unless the URL was signed for exactly this request and is still valid."""
        try:
            expires, signature = int(query["expires"]), query["signature"]
        except (KeyError, ValueError):
            raise Forbidden("not a signed URL") from None
        expected = self._sign(method, key, expires, *signed)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise Forbidden("the URL's signature does not match this request")
        if expires < time.time():
            raise Forbidden("the URL has expired")

    def path(self, key: str) -> Path:
        if not _KEY_RE.match(key):  # keys are attachment ids: nothing can climb out of root
            raise NotFound("no such object")
        return self.root / key

    async def write(self, key: str, chunks: AsyncIterator[bytes], size: int) -> None:
        """Store exactly `size` bytes under `key`, once: written aside, synced, then linked into
        place (which fails if the name exists, so of two uploads at once one wins), so a reader
        never sees half a file and an object never changes."""
        path = self.path(key)
        if await asyncio.to_thread(path.exists):  # refused before reading the body
            raise Conflict(_WRITTEN_ONCE)
        part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        file = await asyncio.to_thread(open, part, "wb")
        try:
            written = 0
            async for chunk in chunks:
                written += len(chunk)
                if written > size:
                    raise BadRequest("the body is longer than its Content-Length")
                await asyncio.to_thread(file.write, chunk)
            if written != size:
                raise BadRequest(f"the body ended after {written} of {size} bytes")
            await asyncio.to_thread(_sync_and_close, file)
            try:
                await asyncio.to_thread(os.link, part, path)
            except FileExistsError:
                raise Conflict(_WRITTEN_ONCE) from None
        finally:
            if not file.closed:
                file.close()
            part.unlink(missing_ok=True)

    def _sign(self, *fields: str | int) -> str:
        # A JSON array: no choice of field values can make two different requests sign alike.
        return hmac.new(self._key, _encode(fields), hashlib.sha256).hexdigest()


def _sync_and_close(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
