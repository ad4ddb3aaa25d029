"""LiveKit's webhooks in: verified with livekit-api's WebhookReceiver (the Authorization header is
a token signed with the API secret whose `sha256` claim is the body's hash), then parsed into the
state machine's room events (calls/state.py). A bad signature or body hash is Unauthorized and
nothing comes out of it. Events for rooms or participants that are not Parley's, and kinds of
event the state machine does not need, come out as None: LiveKit is answered and nothing changes.
"""

from __future__ import annotations

from google.protobuf.json_format import ParseError
from livekit.api import TokenVerifier, WebhookReceiver
from livekit.protocol.models import DisconnectReason, RoomEndReason

from calls.tokens import call_of_room, parse_identity
from parley.errors import BadRequest, Unauthorized
from parley.frames import ParticipantJoined, ParticipantLeft, RoomEvent, RoomFinished

#: The participant's connection was taken over by a new one of the same identity: not a leave.
_REPLACED = frozenset({DisconnectReason.DUPLICATE_IDENTITY, DisconnectReason.MIGRATION})
_LEFT = frozenset({"participant_left", "participant_connection_aborted"})


class WebhookIntake:
    def __init__(self, api_key: str, api_secret: str) -> None:
        # The verifier's default leeway (a minute) absorbs clock skew between LiveKit and Parley.
        self._receiver = WebhookReceiver(TokenVerifier(api_key, api_secret))

    def receive(self, body: bytes, authorization: str | None) -> RoomEvent | None:
        """The room event of one webhook delivery (POST body and Authorization header)."""
        if not authorization:
            raise Unauthorized("the webhook carries no Authorization header")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            event = self._receiver.receive(body.decode(), token)
        except ParseError as exc:
            # Signed and hashed by LiveKit, yet not a webhook event: say so rather than retry it forever.
            raise BadRequest(f"the webhook body is not a LiveKit event: {exc}") from exc
        except Exception as exc:  # livekit-api raises plain Exceptions (and PyJWT's) for every refusal;
            # a body that is not even UTF-8 cannot be what LiveKit signed either
            raise Unauthorized("the webhook's signature or body hash does not verify") from exc
        call = call_of_room(event.room.name)
        if call is None:
            return None
        if event.event == "room_finished":
            return RoomFinished(call=call, failed=event.room_end_reason == RoomEndReason.ROOM_END_SERVER_SHUTDOWN)
        if event.event != "participant_joined" and event.event not in _LEFT:
            return None
        who = parse_identity(event.participant.identity)
        if who is None:
            return None
        user, device = who
        sid = event.participant.sid
        if event.event == "participant_joined":
            return ParticipantJoined(call=call, user=user, device=device, sid=sid)
        return ParticipantLeft(call=call, user=user, device=device, sid=sid,
                               replaced=event.participant.disconnect_reason in _REPLACED)
