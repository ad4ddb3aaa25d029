"""Upload declarations and download grants: pure checks, before and after any lookup."""

from __future__ import annotations

import pytest

from gateway.uploads import decode_upload, may_fetch
from parley.errors import BadRequest
from parley.limits import Limits
from parley.records import AttachmentRow, MemberRow


def declared(name: str) -> str:
    raw = '{"conv":"c1","name":%s,"mime":"text/plain","size":3}' % __import__("json").dumps(name)
    return decode_upload(raw.encode(), Limits()).name


@pytest.mark.parametrize("name, kept", [
    ("invoice\u202efdp.exe", "invoicefdp.exe"),          # right-to-left override
    ("\u2067report\u2069.pdf", "report.pdf"),            # bidi isolates
    ("a\u200bb\ufeff.txt", "ab.txt"),                    # zero-width space, byte order mark
    ("\U000e0041hidden.txt", "hidden.txt"),              # tag characters
    ("👨\u200d👩\u200d👧.png", "👨\u200d👩\u200d👧.png"),  # the zero-width joiner shapes emoji: kept
    ("  spaced name.txt ", "spaced name.txt"),
])
def test_file_names_lose_invisible_format_characters(name, kept):
    assert declared(name) == kept


@pytest.mark.parametrize("name", ["../x", "a\\b", "a\x00b", "a\x85b", "\u202e", "...", "..", "   "])
def test_names_that_are_no_file_names_are_refused(name):
    with pytest.raises(BadRequest):
        declared(name)


def member(visible_from: int, joined_at: int, user: str = "carol") -> MemberRow:
    return MemberRow(conv="c1", user=user, role="member", visible_from=visible_from, read_seq=0, joined_at=joined_at)


def row(created_at: int, uploader: str = "alice") -> AttachmentRow:
    return AttachmentRow(id="a1", conv="c1", uploader=uploader, name="n", mime="text/plain", size=1,
                         created_at=created_at, uploaded=True)


def test_a_member_fetches_files_of_their_history_window():
    assert may_fetch(row(created_at=100), member(visible_from=1, joined_at=500))  # sees all history
    assert not may_fetch(row(created_at=100), member(visible_from=7, joined_at=500))  # joined later
    assert may_fetch(row(created_at=600), member(visible_from=7, joined_at=500))
    assert may_fetch(row(created_at=100, uploader="carol"), member(visible_from=7, joined_at=500))  # their own
