"""LiveKit join tokens, TURN credentials and the join answer (calls/tokens.py, turn.py, join.py).
Tokens are decoded with livekit-api's own TokenVerifier at leeway 0, and every grant is asserted
in the raw claims too: the verifier fills in permissive defaults for what a token leaves out."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
from typing import Any

import jwt
import pytest
from livekit.api import TokenVerifier

from calls import state as S
from calls.join import CallJoin, JoinMinter, capabilities
from parley.frames import Media
from parley.records import Call
from calls.tokens import (DEPARTURE_TIMEOUT_S, Role, TokenMinter, call_of_room, identity, parse_identity, room_name)
from calls.turn import IceServer, ice_servers, turn_credentials
from parley.config import Settings

KEY, SECRET = "APIkey123", "a-livekit-secret-of-at-least-32-chars!"
STRICT = TokenVerifier(KEY, SECRET, leeway=datetime.timedelta(0))


def a_call(media: Media = Media.AUDIO, max_participants: int = 6) -> Call:
    return S.start(call_id="kabc", conv="c1", media=media, initiator="uann", device="d1", callees=["ubob"],
                   direct=False, max_participants=max_participants, ring_timeout_ms=45_000, now=0).call


def mint(media: Media = Media.AUDIO, role: Role = Role.SPEAKER, ttl_s: int = 600) -> str:
    minter = TokenMinter(api_key=KEY, api_secret=SECRET, ttl_s=ttl_s, empty_timeout_s=45)
    return minter.mint(a_call(media), user="ubob", device="phone-1", name="Bob B.", role=role)


def raw_video(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)
    return dict(claims["video"])


NEVER = ("roomAdmin", "roomCreate", "roomList", "roomRecord", "hidden", "recorder", "agent", "ingressAdmin",
         "canUpdateOwnMetadata", "canPublishData")


def test_a_token_names_the_user_and_device_the_call_room_and_the_display_name() -> None:
    claims = STRICT.verify(mint())
    assert claims.identity == "ubob:phone-1" and claims.name == "Bob B." and claims.kind == "standard"
    assert claims.video is not None and claims.video.room_join is True and claims.video.room == "parley-call-kabc"


def test_an_audio_speaker_publishes_its_microphone_only() -> None:
    token = mint(Media.AUDIO)
    video = STRICT.verify(token).video
    assert video is not None
    assert video.can_publish is True and video.can_subscribe is True
    assert video.can_publish_sources == ["microphone"]
    raw = raw_video(token)
    assert raw["canPublishSources"] == ["microphone"]
    assert all(raw[name] is False for name in NEVER)


def test_a_video_speaker_publishes_camera_microphone_and_screen() -> None:
    video = STRICT.verify(mint(Media.VIDEO)).video
    assert video is not None and video.can_publish is True
    assert video.can_publish_sources == ["camera", "microphone", "screen_share", "screen_share_audio"]
    assert all(raw_video(mint(Media.VIDEO))[name] is False for name in NEVER)


def test_a_listener_publishes_nothing_and_subscribes() -> None:
    token = mint(Media.AUDIO, Role.LISTENER)
    video = STRICT.verify(token).video
    assert video is not None
    assert video.can_publish is False and video.can_subscribe is True and video.room_join is True
    raw = raw_video(token)
    assert "canPublishSources" not in raw and raw["canPublish"] is False
    assert all(raw[name] is False for name in NEVER)


def test_the_room_configuration_rides_in_the_token() -> None:
    config = STRICT.verify(mint()).room_config
    assert config is not None
    assert config.name == "parley-call-kabc" and config.max_participants == 6
    assert config.empty_timeout == 45 and config.departure_timeout == DEPARTURE_TIMEOUT_S


def test_a_token_lives_for_its_ttl_and_not_a_second_more() -> None:
    before = int(time.time())
    claims = jwt.decode(mint(ttl_s=600), SECRET, algorithms=["HS256"], issuer=KEY)
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600
    expired = mint(ttl_s=-1)
    with pytest.raises(jwt.ExpiredSignatureError):
        STRICT.verify(expired)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = TokenMinter(api_key=KEY, api_secret="not-the-secret-" * 3, ttl_s=600, empty_timeout_s=45)
    token = other.mint(a_call(), user="ubob", device="d", name="Bob", role=Role.SPEAKER)
    with pytest.raises(jwt.InvalidSignatureError):
        STRICT.verify(token)


def test_identities_and_rooms_map_back_and_foreign_ones_do_not() -> None:
    assert parse_identity(identity("uabc", "dev:with:colons")) == ("uabc", "dev:with:colons")
    assert parse_identity("egress-recorder") is None and parse_identity(":x") is None and parse_identity("u:") is None
    with pytest.raises(ValueError):
        identity("u:x", "d")
    with pytest.raises(ValueError):
        identity("u", "")
    assert call_of_room(room_name("k1")) == "k1"
    assert call_of_room("someone-elses-room") is None and call_of_room("parley-call-") is None


# ---- TURN ---------------------------------------------------------------------------------


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    username, password = turn_credentials("s3cret", "uann", now_s=1_000, ttl_s=3_600)
    assert username == "4600:uann"
    assert password == base64.b64encode(hmac.new(b"s3cret", b"4600:uann", hashlib.sha1).digest()).decode()


def test_ice_servers_list_stun_then_turn_with_credentials() -> None:
    servers = ice_servers(stun_urls=("stun:stun.example.org:3478",),
                          turn_urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
                          turn_secret="s3cret", user="uann", now_s=10, ttl_s=90)
    username, password = turn_credentials("s3cret", "uann", now_s=10, ttl_s=90)
    assert servers == (IceServer(urls=("stun:stun.example.org:3478",)),
                       IceServer(urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
                                 username=username, credential=password))
    assert ice_servers(stun_urls=(), turn_urls=(), turn_secret=None, user="u", now_s=0, ttl_s=1) == ()
    with pytest.raises(ValueError):
        ice_servers(stun_urls=(), turn_urls=("turn:x",), turn_secret=None, user="u", now_s=0, ttl_s=1)


# ---- the join answer and the settings -----------------------------------------------------


def calls_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for name, value in {"PARLEY_LIVEKIT_URL": "wss://lk.example.org", "PARLEY_LIVEKIT_API_KEY": KEY,
                        "PARLEY_LIVEKIT_API_SECRET": SECRET, **extra}.items():
        monkeypatch.setenv(name, value)


def test_settings_default_to_calls_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PARLEY_LIVEKIT_URL", "PARLEY_LIVEKIT_API_KEY", "PARLEY_LIVEKIT_API_SECRET", "PARLEY_TURN_URLS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert JoinMinter.from_settings(settings) is None
    assert capabilities(settings).calls is False
    assert (settings.call_ring_timeout_s, settings.call_token_ttl_s) == (45, 600)


def test_settings_read_every_call_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    calls_env(monkeypatch, PARLEY_STUN_URLS="stun:a:3478, stun:B:3478", PARLEY_TURN_URLS="turn:T:3478?transport=udp",
              PARLEY_TURN_SECRET="ts", PARLEY_TURN_TTL_S="7200", PARLEY_CALL_RING_TIMEOUT_S="30",
              PARLEY_CALL_TOKEN_TTL_S="300", PARLEY_CALL_MAX_PARTICIPANTS="4", PARLEY_CALL_MAX_VIDEO_SUBSCRIPTIONS="2")
    s = Settings.from_env()
    assert (s.livekit_url, s.livekit_api_key, s.livekit_api_secret) == ("wss://lk.example.org", KEY, SECRET)
    assert s.stun_urls == ("stun:a:3478", "stun:B:3478") and s.turn_urls == ("turn:T:3478?transport=udp",)
    assert (s.turn_secret, s.turn_ttl_s, s.call_ring_timeout_s, s.call_token_ttl_s) == ("ts", 7200, 30, 300)
    assert (s.call_max_participants, s.call_max_video_subscriptions) == (4, 2)
    caps = capabilities(s)
    assert caps.calls and caps.media == (Media.AUDIO, Media.VIDEO) and caps.max_participants == 4


@pytest.mark.parametrize("env", [
    {"PARLEY_LIVEKIT_URL": "wss://lk"},                                   # half a LiveKit
    {"PARLEY_LIVEKIT_API_KEY": "k", "PARLEY_LIVEKIT_API_SECRET": "s"},
    {"PARLEY_TURN_URLS": "turn:t:3478"},                                  # TURN without its secret
    {"PARLEY_CALL_MAX_PARTICIPANTS": "1"},
    {"PARLEY_CALL_RING_TIMEOUT_S": "0"},
    {"PARLEY_CALL_TOKEN_TTL_S": "5"},
    {"PARLEY_TURN_TTL_S": "10"},
    {"PARLEY_CALL_MAX_VIDEO_SUBSCRIPTIONS": "-1"},
])
def test_settings_refuse_what_cannot_work(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings.from_env()


def test_a_join_answer_carries_url_room_token_ice_servers_and_the_subscribe_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls_env(monkeypatch, PARLEY_STUN_URLS="stun:s:3478", PARLEY_TURN_URLS="turn:t:3478", PARLEY_TURN_SECRET="ts",
              PARLEY_TURN_TTL_S="3600", PARLEY_CALL_TOKEN_TTL_S="120", PARLEY_CALL_MAX_VIDEO_SUBSCRIPTIONS="6")
    minter = JoinMinter.from_settings(Settings.from_env())
    assert minter is not None
    answer = minter.join(a_call(Media.VIDEO), user="ubob", device="tab", name="Bob", role=Role.SPEAKER, now_s=1_000)
    assert isinstance(answer, CallJoin)
    assert (answer.url, answer.room, answer.role, answer.max_video_subscriptions) == (
        "wss://lk.example.org", "parley-call-kabc", Role.SPEAKER, 6)
    username, password = turn_credentials("ts", "ubob", now_s=1_000, ttl_s=3600)
    assert answer.ice_servers == (IceServer(urls=("stun:s:3478",)),
                                  IceServer(urls=("turn:t:3478",), username=username, credential=password))
    claims = STRICT.verify(answer.token)
    assert claims.identity == "ubob:tab" and claims.video is not None and claims.video.room == answer.room
    exp = jwt.decode(answer.token, SECRET, algorithms=["HS256"], issuer=KEY)["exp"]
    assert exp <= int(time.time()) + 120
    # a conversation's own cap wins over the instance's
    assert minter.join(a_call(), user="u", device="d", name="U", role=Role.LISTENER, now_s=0,
                       max_video_subscriptions=1).max_video_subscriptions == 1
