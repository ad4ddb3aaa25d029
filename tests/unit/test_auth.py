"""Passwords and tokens: argon2id hashes, JWTs with exp/iss/aud checked, a key that persists."""

from __future__ import annotations

import stat
import time
import warnings

import jwt
import pytest
from argon2 import PasswordHasher

from parley.auth import Passwords, Tokens, load_or_create_secret, normalize_username, worth_checking
from parley.errors import BadRequest, Unauthorized

SECRET = b"k" * 32


def test_passwords_verify_only_the_right_one_and_older_parameters_still_verify():
    p = Passwords()
    hashed = p.hash("correct horse")
    assert hashed.startswith("$argon2id$") and "m=19456,t=2,p=1" in hashed
    assert p.verify(hashed, "correct horse") and not p.verify(hashed, "wrong horse")
    assert p.verify(PasswordHasher().hash("legacy"), "legacy")
    assert not p.verify("not a hash", "x")


def test_a_token_carries_the_user_and_roles_and_is_checked_for_exp_iss_and_aud():
    tokens = Tokens(SECRET, ttl_s=60)
    claims = tokens.verify(tokens.issue("u1", roles=("admin",)))
    assert (claims.user_id, claims.roles) == ("u1", ("admin",))
    now = int(time.time())
    base = {"sub": "u1", "iat": now, "exp": now + 60, "iss": "parley", "aud": "parley"}
    for bad in ({"exp": now - 1}, {"iss": "someone-else"}, {"aud": "another-app"}):
        forged = jwt.encode({**base, **bad}, SECRET, algorithm="HS256")
        with pytest.raises(Unauthorized):
            tokens.verify(forged)
    with pytest.raises(Unauthorized):
        tokens.verify(jwt.encode(base, b"x" * 32, algorithm="HS256"))  # another key
    with pytest.raises(Unauthorized):
        tokens.verify(jwt.encode({k: v for k, v in base.items() if k != "exp"}, SECRET, algorithm="HS256"))
    with warnings.catch_warnings():  # same key on purpose, so only the algorithm differs
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        other_alg = jwt.encode(base, SECRET, algorithm="HS512")
    with pytest.raises(Unauthorized):
        tokens.verify(other_alg)  # only HS256 is accepted


def test_the_signing_key_is_created_once_private_and_reused(tmp_path):
    first = load_or_create_secret(tmp_path)
    assert len(first) >= 32 and load_or_create_secret(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "jwt-secret").stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        Tokens(b"short", ttl_s=60)


@pytest.mark.parametrize("raw, expected", [("Alice", "alice"), (" bob.smith ", "bob.smith"), ("a_b-c", "a_b-c")])
def test_usernames_are_lowercased_and_trimmed(raw, expected):
    assert normalize_username(raw) == expected


@pytest.mark.parametrize("raw", ["ab", "x" * 33, "has space", "émile", None, 3])
def test_bad_usernames_are_refused(raw):
    with pytest.raises(BadRequest):
        normalize_username(raw)


@pytest.mark.parametrize("raw", ["deleted-u1234567890abcdef", "Deleted-x", "guest-0a1b2c3d4e", " guest-me", "system"])
def test_names_the_server_gives_accounts_itself_cannot_be_registered(raw):
    with pytest.raises(BadRequest):
        normalize_username(raw)


def test_a_login_no_account_could_match_is_not_worth_a_hash():
    assert worth_checking("alice", "correct horse")
    assert worth_checking("guest-0a1b2c3d4e", "x")  # reserved now, maybe registered before
    assert not worth_checking("x" * 10_000, "correct horse")  # no account has such a name
    assert not worth_checking("Alice", "correct horse")  # names are stored lowercased
    assert not worth_checking("alice", "p" * 257)  # nor such a password
