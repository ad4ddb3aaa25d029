"""Calls: the call state machine (state.py, pure, decided by the conversation's writer) and the
media side around LiveKit: join tokens (tokens.py), TURN credentials (turn.py), join answers and
capabilities (join.py), RoomService (livekit.py) and webhook intake (webhooks.py). See
docs/adr/0004-calls.md."""
