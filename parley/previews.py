"""What a conversation list shows of a message: a bounded one-line preview. Pure."""

from __future__ import annotations

from parley.frames import Message
from parley.limits import PREVIEW_CHARS


def preview(msg: Message, max_chars: int = PREVIEW_CHARS) -> str | None:
    """The text on one line, cut to `max_chars` (an ellipsis ends a cut one); a message of
    attachments alone says how many; a deleted one has none."""
    if msg.deleted:
        return None
    text = " ".join((msg.text or "").split())
    if not text:
        n = len(msg.attachments)
        return f"{n} attachment" if n == 1 else f"{n} attachments"
    if len(text) <= max_chars:
        return text
    return text[:max_chars - 1].rstrip() + "…"
