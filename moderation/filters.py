"""The content-filter hook: every `send` and `edit` text passes one filter before it is stored.

A filter is any object with `check(text, *, conv, sender) -> Verdict | None`: None lets the text
through, `Verdict("reject", reason)` refuses it (`forbidden`, rule `content_filter`), and
`Verdict("flag", reason)` stores it and writes an audit entry for moderators. It runs on
chat_core's writer loop, inside the send path: it must be fast and must not do I/O (a slow
classifier belongs in a worker that reads the event log and flags afterwards).

Plug one in with `PARLEY_CONTENT_FILTER=module:attr`, where `attr` is a filter object, or a
class or factory called with no arguments that returns one. Parley ships `AllowAll` (the default)
and `WordList`, on when `PARLEY_FILTER_WORDS=word,other phrase` is set (with
`PARLEY_FILTER_ACTION=reject|flag`) and no other filter is named.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Literal, NamedTuple, Protocol

from parley.config import Settings


class Verdict(NamedTuple):
    action: Literal["reject", "flag"]
    reason: str


class ContentFilter(Protocol):
    def check(self, text: str, *, conv: str, sender: str) -> Verdict | None: ...


class AllowAll:
    """The default: every text passes."""

    def check(self, text: str, *, conv: str, sender: str) -> Verdict | None:
        return None


class WordList:
    """Rejects (or flags) texts containing any listed word or phrase, as whole words, any case."""

    def __init__(self, words: Iterable[str], action: Literal["reject", "flag"] = "reject") -> None:
        listed = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
        self.action: Literal["reject", "flag"] = action
        self._pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in listed) + r")\b", re.IGNORECASE) \
            if listed else None

    def check(self, text: str, *, conv: str, sender: str) -> Verdict | None:
        if self._pattern is None:
            return None
        found = self._pattern.search(text)
        if found is None:
            return None
        return Verdict(self.action, f"the message contains a blocked word ({found.group(1).lower()!r})")


def configured(settings: Settings) -> ContentFilter:
    """The filter the settings name: PARLEY_CONTENT_FILTER's, else the word list, else AllowAll."""
    if settings.content_filter:
        return load(settings.content_filter)
    if settings.filter_words:
        return WordList(settings.filter_words, "flag" if settings.filter_action == "flag" else "reject")
    return AllowAll()


def load(spec: str | None) -> ContentFilter:
    """The filter named by `module:attr` (PARLEY_CONTENT_FILTER); AllowAll when unset."""
    if not spec:
        return AllowAll()
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"PARLEY_CONTENT_FILTER must look like module:attr, not {spec!r}")
    target = getattr(importlib.import_module(module_name), attr)
    found = target if hasattr(target, "check") and not isinstance(target, type) else target()
    if not callable(getattr(found, "check", None)):
        raise TypeError(f"{spec} is not a content filter (it has no check method)")
    return found
