"""LiveKit webhook intake (calls/webhooks.py): deliveries signed as LiveKit signs them become
room events; anything that does not verify is Unauthorized and yields nothing."""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Callable

import pytest
from livekit.api import AccessToken
from livekit.protocol.models import DisconnectReason, ParticipantInfo, Room, RoomEndReason
from livekit.protocol.webhook import WebhookEvent

from calls.webhooks import WebhookIntake
from parley.errors import BadRequest, Unauthorized
from parley.frames import ParticipantJoined, ParticipantLeft, RoomFinished
from tests.livekit_standin import signed_webhook

KEY, SECRET = "APIhooks", "a-webhook-secret-of-at-least-32-chars"
INTAKE = WebhookIntake(KEY, SECRET)


def event(kind: str, room: str = "parley-call-k1", identity: str = "uann:phone", sid: str = "PA_1",
          reason: DisconnectReason = DisconnectReason.CLIENT_INITIATED) -> WebhookEvent:
    out = WebhookEvent(event=kind, room=Room(name=room, sid="RM_1"), id="EV_1", created_at=1)
    if kind.startswith("participant"):
        out.participant.CopyFrom(ParticipantInfo(identity=identity, sid=sid, disconnect_reason=reason))
    return out


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def deliver(ev: WebhookEvent) -> object:
    body, token = signed_webhook(ev, KEY, SECRET)
    return INTAKE.receive(body, token)


def test_participant_and_room_events_become_room_events() -> None:
    assert deliver(event("participant_joined")) == ParticipantJoined(call="k1", user="uann", device="phone", sid="PA_1")
    assert deliver(event("participant_left")) == ParticipantLeft(call="k1", user="uann", device="phone", sid="PA_1")
    assert deliver(event("participant_connection_aborted")) == ParticipantLeft(call="k1", user="uann", device="phone",
                                                                               sid="PA_1")
    assert deliver(event("room_finished")) == RoomFinished(call="k1")


@pytest.mark.parametrize("reason", [DisconnectReason.DUPLICATE_IDENTITY, DisconnectReason.MIGRATION])
def test_a_connection_taken_over_by_the_same_identity_is_a_replaced_leave(reason: DisconnectReason) -> None:
    left = deliver(event("participant_left", reason=reason))
    assert isinstance(left, ParticipantLeft) and left.replaced


def test_a_room_whose_server_shut_down_finished_as_failed() -> None:
    ev = event("room_finished")
    ev.room_end_reason = RoomEndReason.ROOM_END_SERVER_SHUTDOWN
    assert deliver(ev) == RoomFinished(call="k1", failed=True)


def test_what_is_not_parleys_or_not_needed_yields_nothing() -> None:
    assert deliver(event("participant_joined", room="someone-elses")) is None
    assert deliver(event("participant_joined", identity="EG_recorder")) is None
    assert deliver(event("track_published")) is None
    assert deliver(event("room_started")) is None


def test_the_bearer_prefix_is_accepted() -> None:
    body, token = signed_webhook(event("room_finished"), KEY, SECRET)
    assert INTAKE.receive(body, f"Bearer {token}") == RoomFinished(call="k1")


def test_a_tampered_body_is_unauthorized() -> None:
    body, token = signed_webhook(event("participant_left"), KEY, SECRET)
    with pytest.raises(Unauthorized):
        INTAKE.receive(body.replace(b"uann", b"uevi"), token)


@pytest.mark.parametrize("sign", [
    lambda body_hash: AccessToken(KEY, "another-secret-of-at-least-32-chars!").with_sha256(body_hash).to_jwt(),
    lambda body_hash: AccessToken("APIother", SECRET).with_sha256(body_hash).to_jwt(),
    lambda body_hash: AccessToken(KEY, SECRET).with_sha256(body_hash)
    .with_ttl(datetime.timedelta(minutes=-5)).to_jwt(),                     # expired beyond the leeway
    lambda body_hash: AccessToken(KEY, SECRET).to_jwt(),                   # no body hash at all
], ids=["wrong secret", "wrong key", "expired", "no sha256"])
def test_a_token_that_does_not_verify_is_unauthorized(sign: Callable[[str], str]) -> None:
    body, _ = signed_webhook(event("room_finished"), KEY, SECRET)
    token = sign(body_hash(body))
    with pytest.raises(Unauthorized):
        INTAKE.receive(body, token)


def test_no_authorization_or_a_body_that_is_not_utf8_is_unauthorized() -> None:
    body, token = signed_webhook(event("room_finished"), KEY, SECRET)
    with pytest.raises(Unauthorized):
        INTAKE.receive(body, None)
    with pytest.raises(Unauthorized):
        INTAKE.receive(b"\xff" + body, token)


def test_a_signed_body_that_is_not_an_event_is_a_bad_request() -> None:
    body = b'{"event": 12, "room": []}'
    token = AccessToken(KEY, SECRET).with_sha256(body_hash(body)).to_jwt()
    with pytest.raises(BadRequest):
        INTAKE.receive(body, token)
