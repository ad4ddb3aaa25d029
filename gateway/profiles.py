"""REST for people: the caller's profile and avatar, public profiles by id (one or a batch), the
directory (search by username or display-name prefix), and the avatars' image URLs; a profile
change is announced as `user.updated` to everyone who shares a conversation with the user.

    GET    /v1/me/profile                 -> 200 my profile
    PATCH  /v1/me/profile {display_name?, status_text?, discoverable?} -> 200 my profile
    PUT    /v1/me/avatar   (image bytes)  -> 200 my profile  (PATCH {avatar: null} removes it)
    GET    /v1/users/{id}                 -> 200 profile
    GET    /v1/users?ids=a,b,c            -> 200 {profiles: [...]}
    GET    /v1/users?q=prefix[&limit=n]   -> 200 {users: [...]}
    GET    /v1/avatars/{version}/{size}   -> 302 to the image (no token: the version is the secret)
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

import msgspec
from aiohttp import web

from delivery.fanout import Fanout
from gateway.uploads import Thumbnailer, absolute_url
from moderation.admin.routes import bearer_token, decode_body, json_response
from parley.accounts import Authenticator, Principal
from parley.errors import BadRequest, Forbidden, NotFound, TooLarge, UnsupportedMediaType
from parley.events import UserUpdated, encode_event
from parley.limits import PRESENCE_MAX_MEMBERS, Limits
from parley.ports import Attachments, Store
from parley.profiles import (
    MAX_DIRECTORY_RESULTS, MAX_PROFILE_BATCH, Profile, ProfileBody, directory_prefix, my_profile, profile_patch,
    public_profile,
)
from parley.ratelimit import Limiter
from parley.records import Account, AccountPatch, EventRecord
from parley.thumbnails import THUMB_MIME, THUMB_SIZES, is_image, thumbnail_key

log = logging.getLogger(__name__)

#: How long the URL an avatar redirects to is valid, and how long the redirect may be cached
#: (less: a cached redirect must not outlive its target).
AVATAR_URL_TTL_S = 3600
AVATAR_REDIRECT_MAX_AGE_S = 600
_VERSION_RE = re.compile(r"^[a-z0-9]{16}$")


def avatar_key(version: str, size: int) -> str:
    return thumbnail_key("av" + version, size)


class ProfileAnnouncer:
    """`user.updated` to the user's own sessions and everyone who shares a conversation with
    them: one event to the members of their direct chats and small groups (deduplicated), and
    one per larger conversation, which goes out once on its subject when it is large enough."""

    def __init__(self, store: Store, fanout: Fanout) -> None:
        self._store = store
        self._fanout = fanout

    async def announce(self, account: Account) -> None:
        frame = encode_event(UserUpdated(user=public_profile(account)))
        small: set[str] = {account.id}
        for row, _, peer in await self._store.conv_list(account.id):
            if row.kind == "direct":
                if peer is not None:
                    small.add(peer)
                continue
            members = await self._fanout.members.get(row.id)
            if len(members) <= PRESENCE_MAX_MEMBERS:
                small.update(members)
            else:
                await self._fanout.send(EventRecord(row.id, frame))
        await self._fanout.send(EventRecord("", frame, to=sorted(small)))


class ProfileRoutes:
    def __init__(self, store: Store, attachments: Attachments, auth: Authenticator, limits: Limits,
                 thumbnailer: Thumbnailer, announcer: ProfileAnnouncer, directory_limiter: Limiter,
                 profile_limiter: Limiter) -> None:
        self._store = store
        self._attachments = attachments
        self._auth = auth
        self._limits = limits
        self._thumbnailer = thumbnailer
        self._announcer = announcer
        self._directory = directory_limiter
        self._profile = profile_limiter

    async def _me(self, request: web.Request) -> Principal:
        return await self._auth.principal(bearer_token(request))

    async def get_mine(self, request: web.Request) -> web.Response:
        return json_response(my_profile((await self._me(request)).account))

    async def patch_mine(self, request: web.Request) -> web.Response:
        who = await self._me(request)
        patch = profile_patch(await decode_body(request, ProfileBody))
        await self._profile.hit(who.user_id)
        return json_response(my_profile(await self._change(who, patch)))

    async def put_avatar(self, request: web.Request) -> web.Response:
        who = await self._me(request)
        mime = (request.content_type or "").lower()
        if not is_image(mime):
            raise UnsupportedMediaType("an avatar is a PNG, JPEG, GIF or WebP image (its Content-Type)")
        if request.content_length is not None and request.content_length > self._limits.max_avatar_bytes:
            raise TooLarge(f"an avatar may have at most {self._limits.max_avatar_bytes} bytes")
        await self._profile.hit(who.user_id)
        data = await _read_bounded(request, self._limits.max_avatar_bytes)
        version = secrets.token_hex(8)
        thumbs = await self._thumbnailer.images(data)
        if thumbs is None:
            raise BadRequest("the avatar is not an image this server can read")
        largest = thumbs.images[max(thumbs.images)]
        # Every size is stored (a small picture's larger sizes are the picture itself), so each
        # avatar URL works whatever was uploaded.
        await asyncio.gather(*(self._attachments.put(avatar_key(version, size), thumbs.images.get(size, largest),
                                                     THUMB_MIME) for size in THUMB_SIZES))
        return json_response(my_profile(await self._change(who, AccountPatch(avatar=version))))

    async def _change(self, who: Principal, patch: AccountPatch) -> Account:
        account = await self._store.update_account(who.user_id, patch)
        if account is None:
            raise NotFound("no such account")
        try:
            await self._announcer.announce(account)
        except Exception:  # best effort, like presence: clients that missed it read profiles again
            log.warning("user.updated of %s not announced", who.user_id, exc_info=True)
        return account

    async def get_user(self, request: web.Request) -> web.Response:
        await self._me(request)
        found = await self._store.account(request.match_info["id"])
        if found is None:
            raise NotFound("no such user")
        return json_response(public_profile(found))

    async def users(self, request: web.Request) -> web.Response:
        who = await self._me(request)
        q, ids = request.query.get("q"), request.query.get("ids")
        if (q is None) == (ids is None):
            raise BadRequest("give exactly one of `q` (a name prefix) and `ids` (comma-separated user ids)")
        if ids is not None:
            wanted = [i for i in ids.split(",") if i]
            if not 1 <= len(wanted) <= MAX_PROFILE_BATCH:
                raise BadRequest(f"ids takes 1 to {MAX_PROFILE_BATCH} user ids")
            return json_response({"profiles": [public_profile(a) for a in await self._store.accounts(wanted)]})
        assert q is not None
        return json_response({"users": await self._search(who, q, request.query.get("limit"))})

    async def _search(self, who: Principal, q: str, limit_arg: str | None) -> list[Profile]:
        if who.guest:
            raise Forbidden("guests cannot search the directory")
        prefix = directory_prefix(q)
        try:
            limit = MAX_DIRECTORY_RESULTS if limit_arg is None else int(limit_arg)
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        if not 1 <= limit <= MAX_DIRECTORY_RESULTS:
            raise BadRequest(f"limit takes 1 to {MAX_DIRECTORY_RESULTS}")
        await self._directory.hit(who.user_id)
        # From the store, not the gateway's block cache: a block must hide at once, and searches
        # are few (rate-limited) where typing, which the cache serves, is many.
        hidden = await self._store.block_peers(who.user_id) | {who.user_id}
        # Over-read by what is hidden, so a page is full whoever the caller blocks.
        found = await self._store.search_directory(prefix, limit + len(hidden))
        return [public_profile(a) for a in found if a.id not in hidden][:limit]

    async def avatar(self, request: web.Request) -> web.Response:
        version, size = request.match_info["version"], request.match_info["size"]
        if not _VERSION_RE.match(version) or not size.isdigit() or int(size) not in THUMB_SIZES:
            raise NotFound("no such avatar")
        signed = await self._attachments.presign_get(avatar_key(version, int(size)), f"avatar-{size}.webp",
                                                     THUMB_MIME, AVATAR_URL_TTL_S)
        return web.Response(status=302, headers={"Location": absolute_url(request, signed),
                                                 "Cache-Control": f"private, max-age={AVATAR_REDIRECT_MAX_AGE_S}"})

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/v1/me/profile", self.get_mine)
        app.router.add_patch("/v1/me/profile", self.patch_mine)
        app.router.add_put("/v1/me/avatar", self.put_avatar)
        app.router.add_get("/v1/users/{id}", self.get_user)
        app.router.add_get("/v1/users", self.users)
        app.router.add_get("/v1/avatars/{version}/{size}", self.avatar)


async def _read_bounded(request: web.Request, max_bytes: int) -> bytes:
    """The body, refused as soon as it passes `max_bytes` (a chunked body has no length up front)."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"an avatar may have at most {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
