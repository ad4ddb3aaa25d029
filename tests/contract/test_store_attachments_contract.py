"""The store contract, AttachmentStore: the rows of uploads (their bytes are the Attachments port's,
test_attachments_contract.py). Every adapter must pass these unchanged (conftest.py)."""

from __future__ import annotations

import msgspec

from parley.records import AttachmentRow, Needs

async def test_an_attachment_is_read_back_by_id_replaced_whole_and_prefetched(reopen):
    store = await reopen()
    row = AttachmentRow(id="a1", conv="c1", uploader="u1", name="café menu.pdf", mime="application/pdf",
                        size=25 * 1024 * 1024, created_at=7)
    await store.put_attachment(row)
    assert await store.attachment("a1") == row and row.uploaded is False
    await store.put_attachment(AttachmentRow(**{**msgspec.structs.asdict(row), "uploaded": True}))
    assert (await store.attachment("a1")).uploaded is True
    assert await store.attachment("a2") is None
    facts = await store.prefetch(Needs(attachments={"a1", "a2"}))
    assert list(facts.attachments) == ["a1"] and facts.attachments["a1"].uploaded is True
    await store.close()
    again = await reopen()
    assert (await again.attachment("a1")).name == "café menu.pdf"


async def test_an_image_keeps_its_size_and_thumbnail_sizes_and_chat_core_sees_them(reopen):
    store = await reopen()
    row = AttachmentRow(id="a2", conv="c1", uploader="u1", name="cat.png", mime="image/png", size=10, created_at=1)
    await store.put_attachment(row)
    assert (await store.attachment("a2")).thumbs == []  # type: ignore[union-attr]
    done = AttachmentRow(**{**msgspec.structs.asdict(row), "uploaded": True, "width": 640, "height": 480,
                            "thumbs": [96, 480]})
    await store.put_attachment(done)
    store = await reopen()
    assert await store.attachment("a2") == done
    assert (await store.prefetch(Needs(attachments={"a2"}))).attachments == {"a2": done}
