"""Hypothesis strategies for the WebSocket frames a client can send: a request of every op of
parley/frames.py's `AnyRequest`, derived from its msgspec types (a new op is fuzzed with no change
here), and hostile frames made from them: wrong types, huge numbers, deep nesting, unknown ops,
lone surrogates, frames that are not JSON objects, not UTF-8, binary or over the size limit.

A `Frame` carries what the protocol promises about it (docs/protocol.md): the rid its answer must
echo, or that the server closes the session with a given code."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any

import msgspec.inspect as mi
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from parley import frames as F
from parley import limits as L
from parley.closecodes import CloseCode
from parley.limits import Limits

REQUESTS: tuple[mi.StructType, ...] = mi.type_info(F.AnyRequest).types  # type: ignore[attr-defined]
OPS = frozenset(t.tag for t in REQUESTS)
#: Strings and lists are kept short (the limits themselves are tested with oversized frames).
MAX_TEXT, MAX_ITEMS = 40, 4
#: Far deeper than any decoder goes (about 1,000 levels), or well within it.
DEEP, SHALLOW = 5_000, 60
#: Stands for a deeply nested value in a frame until the frame is rendered as text.
_DEEP_MARK = "\u0000deep\u0000"


@dataclass(frozen=True)
class Frame:
    data: str | bytes
    binary: bool = False
    #: The rid the answer must carry (None: an error without a rid).
    rid: str | None = None
    #: The server may leave the rid out (a frame too deep to read even leniently).
    rid_optional: bool = False
    #: The close code the protocol prescribes for this frame whatever else it holds.
    closes: CloseCode | None = None

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example, kept readable
        data = self.data if len(self.data) < 300 else self.data[:300] + (b"..." if isinstance(self.data, bytes) else "...")
        return f"Frame({data!r}, binary={self.binary}, rid={self.rid!r}, closes={self.closes!r})"


def readable_rid(obj: Any) -> str | None:
    """The rid the protocol says a refusal echoes: a string of 1-64 characters, none of them a
    lone surrogate (which no answer could carry)."""
    rid = obj.get("rid") if isinstance(obj, dict) else None
    usable = isinstance(rid, str) and 0 < len(rid) <= L.MAX_RID_CHARS and not any(
        "\ud800" <= c <= "\udfff" for c in rid)
    return rid if usable else None


# ---- requests from the msgspec types ------------------------------------------------------


def value(t: mi.Type, ids: SearchStrategy[str]) -> SearchStrategy[Any]:
    """Valid values of one field's type; id-shaped strings are mostly (three in four) ids the
    session knows, so that requests get past "no such conversation" to the decisions behind it."""
    if isinstance(t, mi.StrType):
        text = st.text(min_size=t.min_length or 0, max_size=min(t.max_length or MAX_TEXT, MAX_TEXT))
        return st.one_of(ids, st.one_of(ids, text)) if t.min_length == 1 and t.max_length == 64 else text
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        return st.integers(low, high)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):  # on the wire, a member's value (calls' `media`, ...)
        return st.sampled_from([member.value for member in t.cls])
    if isinstance(t, mi.ListType):
        return st.lists(value(t.item_type, ids), min_size=t.min_length or 0,
                        max_size=min(t.max_length or MAX_ITEMS, MAX_ITEMS))
    if isinstance(t, mi.DictType):
        return st.dictionaries(value(t.key_type, ids), value(t.value_type, ids), max_size=MAX_ITEMS)
    if isinstance(t, mi.UnionType):
        return st.one_of([value(option, ids) for option in t.types])
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    raise TypeError(f"no strategy for {t!r}: add one")


def request(t: mi.StructType, ids: SearchStrategy[str]) -> SearchStrategy[dict[str, Any]]:
    """A valid request of one op, rid aside (the caller gives each frame its own)."""
    fields = [f for f in t.fields if f.encode_name != "rid"]
    required = {f.encode_name: value(f.type, ids) for f in fields if f.required}
    optional = {f.encode_name: value(f.type, ids) for f in fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda d: {t.tag_field: t.tag, **d})


def requests(ids: SearchStrategy[str]) -> SearchStrategy[dict[str, Any]]:
    return st.one_of([request(t, ids) for t in REQUESTS])


# ---- hostile frames -----------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=MAX_TEXT))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=MAX_ITEMS), st.dictionaries(st.text(max_size=8), inner, max_size=MAX_ITEMS)),
    max_leaves=10)
huge_numbers = st.sampled_from([2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**100, -(10**400), 1e308, -1e-320,
                                float("inf"), float("-inf"), float("nan")])
#: Lone surrogate escapes (`"\ud800"` in the frame's text), which msgspec refuses.
surrogates = st.sampled_from(["\ud800", "a\udfff", "\udbff", "x\ud83d"])
rids = st.text(min_size=1, max_size=L.MAX_RID_CHARS)


def _replace(obj: dict[str, Any], replacement: SearchStrategy[Any]) -> SearchStrategy[dict[str, Any]]:
    """`obj` with one of its fields (or a new one) set to a drawn value."""
    keys = st.sampled_from(sorted(obj)) | st.text(max_size=8)
    return st.tuples(keys, replacement).map(lambda kv: {**obj, kv[0]: kv[1]})


def _mutations(obj: dict[str, Any]) -> SearchStrategy[Any]:
    keys = sorted(obj)
    return st.one_of(
        _replace(obj, json_values),  # wrong types, unknown fields
        _replace(obj, huge_numbers),
        _replace(obj, surrogates),
        _replace(obj, st.just(_DEEP_MARK)),
        st.sampled_from(keys).map(lambda k: {key: v for key, v in obj.items() if key != k}),  # a field missing
        st.text(max_size=20).filter(lambda op: op not in OPS).map(lambda op: {**obj, "op": op}),  # unknown op
        json_values,  # not an object at all
    )


def _render(obj: Any, deep: int) -> str:
    text = json.dumps(obj)
    mark = json.dumps(_DEEP_MARK)
    return text.replace(mark, "[" * deep + "]" * deep) if mark in text else text


@st.composite
def text_frames(draw: st.DrawFn, ids: SearchStrategy[str], *, hostile: bool = True) -> Frame:
    """A text frame within the size limit: a request, or (when `hostile`) often a mutated one."""
    obj: Any = {**draw(requests(ids)), "rid": draw(rids)}
    if hostile and draw(st.booleans()):
        obj = draw(_mutations(obj))
    deep = draw(st.sampled_from([DEEP, SHALLOW]))
    text = _render(obj, deep)
    too_deep = deep == DEEP and json.dumps(_DEEP_MARK) in json.dumps(obj)
    # The rid as the server reads it: a nested value in its place is no rid.
    rid = None if isinstance(obj, dict) and obj.get("rid") == _DEEP_MARK else readable_rid(obj)
    if hostile and draw(st.integers(0, 9)) == 0:
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]  # cut short: not JSON any more
        rid = readable_rid(json.loads(text)) if _parses(text) else None
    return Frame(text, rid=rid, rid_optional=too_deep)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


@st.composite
def other_frames(draw: st.DrawFn, ids: SearchStrategy[str]) -> Frame:
    """Frames the protocol answers by their kind: binary, not UTF-8, over `max_frame_bytes`."""
    base = _render({**draw(requests(ids)), "rid": draw(rids)}, SHALLOW)
    kind = draw(st.sampled_from(["binary", "not utf-8", "oversized"]))
    if kind == "binary":
        return Frame(base.encode(), binary=True)
    if kind == "not utf-8":
        raw = base.encode()
        at = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return Frame(raw[:at] + bad + raw[at:], closes=CloseCode.NOT_UTF8)
    pad = draw(st.sampled_from(string.ascii_letters))
    return Frame(base[:-1] + f', "pad": "{pad * (Limits().max_frame_bytes + 1)}"}}', closes=CloseCode.TOO_BIG)


def frames(ids: SearchStrategy[str]) -> SearchStrategy[Frame]:
    return st.one_of(text_frames(ids), text_frames(ids, hostile=False), other_frames(ids))
