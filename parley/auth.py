"""Accounts' secrets: argon2 password hashing and JWT issue/verify (HS256, exp/iss/aud checked).

Token claims beyond the standard ones: `roles` (the instance role, "admin" or "moderator", from
the users table at login; an external identity provider's token may carry it too), `guest`
(a short-lived guest token), `gen` (the account's token generation: suspending, deleting or
revoking a role bumps it, which refuses every token issued before) and `sid` (the login session
family that issued it: parley/session_families.py; guests have none).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from parley.errors import BadRequest, Unauthorized

USERNAME_RE = re.compile(r"^[a-z0-9_.-]{3,32}$")
#: Usernames the server gives accounts itself: guests' random handles and deleted accounts'
#: anonymized names. No one may register them (a `deleted-<id>` taken in advance would block
#: that account's deletion).
GUEST_PREFIX, DELETED_PREFIX = "guest-", "deleted-"
#: The actors the server itself writes where a user id would be (events' `by`, the audit log).
RESERVED_NAMES = frozenset({"system", "cli"})
PASSWORD_MIN, PASSWORD_MAX = 8, 256
ISSUER = "parley"
AUDIENCE = "parley"
SECRET_FILE = "jwt-secret"
#: Instance staff roles, highest first. Everyone else has no instance role.
INSTANCE_ROLES = ("admin", "moderator")
INSTANCE_RANK = {"admin": 2, "moderator": 1}


def normalize_username(raw: object) -> str:
    """The name a new account asks for, lowercased and trimmed; BadRequest unless it may have it."""
    if not isinstance(raw, str):
        raise BadRequest("username must be a string")
    name = raw.strip().lower()
    if not USERNAME_RE.match(name):
        raise BadRequest("username must be 3-32 characters of a-z, 0-9, '_', '.', '-'")
    if name.startswith((GUEST_PREFIX, DELETED_PREFIX)) or name in RESERVED_NAMES:
        raise BadRequest(f"usernames starting with {GUEST_PREFIX!r} or {DELETED_PREFIX!r} and the names "
                         f"{', '.join(sorted(RESERVED_NAMES))} are reserved")
    return name


def worth_checking(username: str, password: str) -> bool:
    """Whether some account could have this (lowercased) name and this password: every account
    was registered under these rules. A login that could not is refused without hashing or
    counting anything: no CPU for argon2, no memory for a limiter key of any length."""
    return bool(USERNAME_RE.match(username)) and len(password) <= PASSWORD_MAX


def check_password_shape(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadRequest("password must be a string")
    if not PASSWORD_MIN <= len(raw) <= PASSWORD_MAX:
        raise BadRequest(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    return raw


class Passwords:
    """argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): memory-hard, yet ~5x
    cheaper than argon2-cffi's default (64 MiB, 3 passes, 4 lanes), which holds a 2-core server
    to ~10 registrations/s. Hashes carry their parameters, so older ones still verify.
    CPU-heavy all the same: call from a thread."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False


def instance_role(roles: tuple[str, ...] | list[str]) -> str | None:
    """The highest instance role among a token's `roles`, or None."""
    return next((r for r in INSTANCE_ROLES if r in roles), None)


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    roles: tuple[str, ...]
    expires_at: int
    guest: bool = False
    #: The account's token generation when this token was issued (0 when the token has none).
    gen: int = 0
    #: The login session family that issued it (`sid`); None for a guest's token.
    family: str | None = None

    @property
    def instance_role(self) -> str | None:
        return instance_role(self.roles)


class Tokens:
    """Issues and verifies Parley's own HS256 tokens; survives restarts because the key does."""

    def __init__(self, secret: bytes, ttl_s: int, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes")
        self._secret = secret
        #: Lifetime of an access token (a guest's is the instance policy's).
        self.ttl_s = ttl_s
        self._issuer = issuer
        self._audience = audience

    def issue(self, user_id: str, roles: tuple[str, ...] = (), *, guest: bool = False, gen: int = 0,
              ttl_s: int | None = None, family: str | None = None, now: int | None = None) -> str:
        """`now` (unix seconds) is the caller's when it tells the client the expiry too."""
        now = int(time.time()) if now is None else now
        claims: dict[str, object] = {
            "sub": user_id, "iat": now, "exp": now + (self.ttl_s if ttl_s is None else ttl_s),
            "iss": self._issuer, "aud": self._audience,
        }
        if roles:
            claims["roles"] = list(roles)
        if guest:
            claims["guest"] = True
        if gen:
            claims["gen"] = gen
        if family is not None:
            claims["sid"] = family
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Claims:
        if not token.isascii():  # a header's undecodable bytes: a JWT is base64url and dots
            raise Unauthorized("invalid token")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], audience=self._audience,
                issuer=self._issuer, options={"require": ["sub", "exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        sub, roles = claims["sub"], claims.get("roles", [])
        guest, gen, family = claims.get("guest", False), claims.get("gen", 0), claims.get("sid")
        if (not isinstance(sub, str) or not isinstance(roles, list) or not isinstance(guest, bool)
                or not isinstance(gen, int) or isinstance(gen, bool) or not isinstance(family, (str, type(None)))):
            raise Unauthorized("invalid token claims")
        return Claims(user_id=sub, roles=tuple(str(r) for r in roles), expires_at=int(claims["exp"]),
                      guest=guest, gen=gen, family=family)


def load_or_create_secret(data_dir: Path) -> bytes:
    """The signing key lives in the data dir, created (0600) on first start when none is configured."""
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(secret)
    tmp.chmod(0o600)
    tmp.rename(path)
    return secret
