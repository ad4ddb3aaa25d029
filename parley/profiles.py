"""People as others see them: the public profile (display name, avatar, short status), the
checks on a profile change, and the directory's search terms. Pure: values in, values out."""

from __future__ import annotations

import unicodedata
from typing import Annotated

import msgspec
from msgspec import Meta

from parley.errors import BadRequest
from parley.records import Account, AccountPatch

MAX_DISPLAY_NAME_CHARS = 64
MAX_STATUS_TEXT_CHARS = 140
#: A directory query shorter than this is refused: one letter would list a crowd, and the
#: Cassandra term index is bucketed by the first two characters (adapters/cassandra/accounts.py).
MIN_DIRECTORY_PREFIX = 2
MAX_DIRECTORY_PREFIX = 64
#: Answers of `GET /v1/users?q=` and `?ids=`, and the `profiles` map of one answer.
MAX_DIRECTORY_RESULTS = 20
MAX_PROFILE_BATCH = 100
#: Words of a display name that are search terms (besides the whole name and the username).
MAX_NAME_WORDS = 4


class Profile(msgspec.Struct, kw_only=True):
    """A user's public profile (docs/protocol.md, Profiles). `avatar` is the version of the
    current picture (null: none); its images are at /v1/avatars/{id}/{avatar}/{size}."""

    id: str
    username: str
    display_name: str | None
    avatar: str | None
    status_text: str | None


class MyProfile(Profile, kw_only=True):
    """The caller's own profile: the public one and the settings only they see."""

    discoverable: bool


class ProfileBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """PATCH /v1/me/profile: absent fields stay; null clears display_name and status_text, and
    removes the avatar (a new one is uploaded with PUT /v1/me/avatar)."""

    display_name: Annotated[str, Meta(max_length=MAX_DISPLAY_NAME_CHARS)] | None | msgspec.UnsetType = msgspec.UNSET
    status_text: Annotated[str, Meta(max_length=MAX_STATUS_TEXT_CHARS)] | None | msgspec.UnsetType = msgspec.UNSET
    discoverable: bool | msgspec.UnsetType = msgspec.UNSET
    avatar: None | msgspec.UnsetType = msgspec.UNSET


def public_profile(account: Account) -> Profile:
    return Profile(id=account.id, username=account.username, display_name=account.display_name,
                   avatar=account.avatar, status_text=account.status_text)


def my_profile(account: Account) -> MyProfile:
    return MyProfile(id=account.id, username=account.username, display_name=account.display_name,
                     avatar=account.avatar, status_text=account.status_text, discoverable=account.discoverable)


def one_line_text(value: str | None, what: str) -> str | None:
    """A short text others read (a display name, a status, a conversation's topic): trimmed, inner runs of white space (tabs and line breaks too) as one space, no other
    control or format characters (a bidi override would disguise a name); empty -> None."""
    if value is None:
        return None
    if any(not ch.isspace() and unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise BadRequest(f"{what} must not contain control or format characters")
    cleaned = " ".join(value.split())
    return cleaned or None


def profile_patch(body: ProfileBody) -> AccountPatch:
    """The account change a profile body asks for; BadRequest if it changes nothing."""
    changes: dict[str, object] = {}
    if not isinstance(body.display_name, msgspec.UnsetType):
        changes["display_name"] = one_line_text(body.display_name, "display_name")
    if not isinstance(body.status_text, msgspec.UnsetType):
        changes["status_text"] = one_line_text(body.status_text, "status_text")
    if not isinstance(body.discoverable, msgspec.UnsetType):
        changes["discoverable"] = body.discoverable
    if body.avatar is None:
        changes["avatar"] = None
    if not changes:
        raise BadRequest("the profile change names no field: display_name, status_text, discoverable or avatar")
    return AccountPatch(**changes)  # type: ignore[arg-type]


def search_key(text: str) -> str:
    """What the directory compares: NFKC, case-folded, accents dropped, white space as one space
    ("Zoë  Smith" and "zoe smith" are the same key)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


def search_terms(username: str, display_name: str | None) -> set[str]:
    """The keys a user is found by: the username, the whole display name and its first words."""
    terms = {search_key(username)}
    if display_name:
        key = search_key(display_name)
        if key:
            terms.add(key)
            terms.update(key.split(" ")[:MAX_NAME_WORDS])
    terms.discard("")
    return terms


def directory_prefix(q: str) -> str:
    """A directory query as a search key; BadRequest if it is too short or too long."""
    key = search_key(q)
    if not MIN_DIRECTORY_PREFIX <= len(key) <= MAX_DIRECTORY_PREFIX:
        raise BadRequest(f"q must have {MIN_DIRECTORY_PREFIX} to {MAX_DIRECTORY_PREFIX} characters")
    return key


def key_successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix` (a range's end)."""
    while prefix and ord(prefix[-1]) == 0x10FFFF:
        prefix = prefix[:-1]
    if not prefix:
        return "\U0010ffff" * 64
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
