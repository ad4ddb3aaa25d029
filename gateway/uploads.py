"""REST for attachments: declare an upload, confirm it, fetch one.

The bytes never pass through here: clients PUT and GET them at presigned URLs (S3, or the
embedded gateway's own /v1/blobs). Only a member who may send in a conversation uploads to it;
only its members fetch, within their history window, and anyone else gets 404, whatever the id.
An object is written once (both adapters refuse a second PUT), and an upload completes once,
so what members were sent cannot be replaced through the upload URL that is still alive.

    POST /v1/uploads {conv, name, mime, size}  -> 201 {id, upload_url, method, headers, expires_at}
    (client PUTs the bytes to upload_url with exactly `headers`)
    POST /v1/uploads/{id}/complete             -> 200 attachment (now usable in `send`)
    GET  /v1/attachments/{id}                  -> 200 attachment + {url, expires_at, thumbnails}

Completing the upload of an image makes its thumbnails (parley/thumbnails.py) in a thread and
stores them beside the object, before the attachment can be sent: every message that carries it
knows its size and thumbnails.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta
from yarl import URL

from gateway.rest import bearer_token
from moderation import policy
from moderation.policy import Action
from parley import limits as L
from parley.accounts import Authenticator
from parley.errors import BadRequest, Conflict, NotFound, TooLarge, UnsupportedMediaType
from parley.frames import Id
from parley.ids import new_attachment_id
from parley.limits import Limits
from parley.mime import normalize_mime, sanitize_file_name
from parley.ports import Attachments, Presigned, Store
from parley.ratelimit import Limiter
from parley.records import AttachmentRow, MemberRow
from parley.thumbnails import THUMB_MIME, NotAnImage, Thumbnails, is_image, make_thumbnails, thumbnail_key

#: Thumbnails made at once per gateway: each holds an image's pixels in memory and a thread.
THUMBNAILING_AT_ONCE = 2


class UploadBody(msgspec.Struct, frozen=True):
    conv: Id
    name: Annotated[str, Meta(min_length=1, max_length=L.MAX_ATTACHMENT_NAME_CHARS)]
    mime: Annotated[str, Meta(min_length=1, max_length=255)]
    size: Annotated[int, Meta(ge=1)]


_decode_upload = msgspec.json.Decoder(UploadBody).decode


def decode_upload(raw: bytes, limits: Limits) -> UploadBody:
    """The declared upload, checked against the limits before anything is looked up. Pure."""
    try:
        body = _decode_upload(raw)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc)) from None
    except msgspec.DecodeError:
        raise BadRequest("body must be a JSON object") from None
    mime = normalize_mime(body.mime)
    name = sanitize_file_name(body.name)
    if body.size > limits.max_upload_bytes:
        raise TooLarge(f"an attachment may have at most {limits.max_upload_bytes} bytes")
    if not limits.mime_allowed(mime):
        raise UnsupportedMediaType(f"{mime} is not accepted; see uploads.mime in /v1/client/capabilities")
    return msgspec.structs.replace(body, mime=mime, name=name)


def may_fetch(row: AttachmentRow, member: MemberRow) -> bool:
    """Membership-bound history applies to files: a member whose window starts after the first
    message (history "joined", joined later) fetches only what was uploaded after they joined,
    and their own. Pure. Without the seq of the message that carries a file, the upload time
    stands for it: a file uploaded just before someone joined and sent just after is hidden
    from them too."""
    return member.visible_from <= 1 or row.uploader == member.user or row.created_at >= member.joined_at


def _view(row: AttachmentRow) -> dict[str, Any]:
    return msgspec.structs.asdict(row)


class Thumbnailer:
    """Thumbnails of stored images, made in a thread, a few at a time, stored beside the object."""

    def __init__(self, attachments: Attachments, at_once: int = THUMBNAILING_AT_ONCE) -> None:
        self._attachments = attachments
        self._slots = asyncio.Semaphore(at_once)

    async def images(self, data: bytes) -> Thumbnails | None:
        """None if `data` is not an image this server decodes."""
        async with self._slots:
            try:
                return await asyncio.to_thread(make_thumbnails, data)
            except NotAnImage:
                return None

    async def make(self, key: str, data: bytes) -> Thumbnails | None:
        """Stored beside `key`; None if `data` is not an image (it stays a plain file)."""
        thumbs = await self.images(data)
        if thumbs is None:
            return None
        await asyncio.gather(*(self._attachments.put(thumbnail_key(key, size), image, THUMB_MIME)
                               for size, image in thumbs.images.items()))
        return thumbs

    async def urls(self, request: web.Request, key: str, sizes: list[int], expires_s: int) -> dict[str, str]:
        signed = await asyncio.gather(*(self._attachments.presign_get(thumbnail_key(key, size), f"{size}.webp",
                                                                      THUMB_MIME, expires_s) for size in sizes))
        return {str(size): absolute_url(request, url) for size, url in zip(sizes, signed)}


class UploadRoutes:
    def __init__(self, store: Store, attachments: Attachments, auth: Authenticator, limits: Limits,
                 declarations: Limiter, thumbnailer: Thumbnailer) -> None:
        self._store = store
        self._attachments = attachments
        self._thumbnailer = thumbnailer
        self._auth = auth
        self._limits = limits
        self._declarations = declarations

    async def create(self, request: web.Request) -> web.Response:
        user = (await self._auth.principal(bearer_token(request))).user_id
        await self._declarations.hit(user)  # each stores a row, used or not
        body = decode_upload(await request.read(), self._limits)
        found = await self._store.membership(body.conv, user)
        if found is None:
            raise NotFound("no such conversation")
        policy.authorize(*found, Action.SEND)  # uploading is the first half of sending
        row = AttachmentRow(id=new_attachment_id(), conv=body.conv, uploader=user, name=body.name,
                            mime=body.mime, size=body.size, created_at=int(time.time() * 1000))
        await self._store.put_attachment(row)
        put = await self._attachments.presign_put(row.id, row.mime, row.size, L.UPLOAD_URL_TTL_S)
        return web.json_response({"id": row.id, "upload_url": absolute_url(request, put), "method": put.method,
                                  "headers": put.headers, "expires_at": put.expires_at}, status=201)

    async def complete(self, request: web.Request) -> web.Response:
        user = (await self._auth.principal(bearer_token(request))).user_id
        row = await self._store.attachment(request.match_info["id"])
        if row is None or row.uploader != user:
            raise NotFound("no such upload")
        if row.uploaded:
            raise Conflict("the upload is complete already")
        stored = await self._attachments.size(row.id)
        if stored != row.size:
            raise Conflict(f"the upload is not complete: {stored or 0} of {row.size} bytes stored")
        if is_image(row.mime):
            data = await self._attachments.read(row.id)
            thumbs = await self._thumbnailer.make(row.id, data) if data is not None else None
            if thumbs is not None:
                row.width, row.height, row.thumbs = thumbs.width, thumbs.height, sorted(thumbs.images)
        row.uploaded = True
        await self._store.put_attachment(row)
        return web.json_response(_view(row))

    async def fetch(self, request: web.Request) -> web.Response:
        user = (await self._auth.principal(bearer_token(request))).user_id
        row = await self._store.attachment(request.match_info["id"])
        found = await self._store.membership(row.conv, user) if row is not None else None
        # Unknown, not yours to see, or not uploaded yet: one answer, so ids reveal nothing.
        if row is None or found is None or found[1] is None or not row.uploaded or not may_fetch(row, found[1]):
            raise NotFound("no such attachment")
        policy.authorize(*found, Action.READ)
        # Short-lived: a URL handed out works until it expires, membership changes or not.
        ttl = self._limits.download_url_ttl_s
        get = await self._attachments.presign_get(row.id, row.name, row.mime, ttl)
        return web.json_response({**_view(row), "url": absolute_url(request, get), "expires_at": get.expires_at,
                                  "thumbnails": await self._thumbnailer.urls(request, row.id, row.thumbs, ttl)})

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v1/uploads", self.create)
        app.router.add_post("/v1/uploads/{id}/complete", self.complete)
        app.router.add_get("/v1/attachments/{id}", self.fetch)


def absolute_url(request: web.Request, signed: Presigned) -> str:
    """S3 URLs are absolute already; the embedded gateway's are paths on this server."""
    return str(request.url.join(URL(signed.url, encoded=True)))
