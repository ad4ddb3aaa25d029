"""The SDK's catch-up bookkeeping without a socket: a message is delivered once however often it
arrives, and the watermark a sync asks from moves only over what the session really holds."""

from __future__ import annotations

from parley.sdk.catchup import Catchup, sync_replay


def message_new(conv: str, seq: int) -> dict[str, object]:
    return {"op": "event", "type": "message.new", "message": {"conv": conv, "seq": seq, "text": f"m{seq}"}}


def test_a_message_arriving_twice_is_delivered_once():
    held = Catchup()
    assert held.admit(message_new("c1", 1))
    assert not held.admit(message_new("c1", 1))
    assert held.admit(message_new("c2", 1))  # the same seq in another conversation is another message


def test_the_watermark_moves_only_over_a_contiguous_run():
    held = Catchup()
    assert held.admit(message_new("c1", 1)) and held.admit(message_new("c1", 3))
    assert held.last_seq == {"c1": 1}  # seq 2 is missing: a sync must still ask from 1
    assert not held.admit(message_new("c1", 3))


def test_other_frames_always_pass():
    held = Catchup()
    typing = {"op": "event", "type": "typing", "conv": "c1"}
    assert held.admit(typing) and held.admit(typing)
    assert held.last_seq == {}


def test_only_an_uncut_sync_proves_everything_up_to_its_last_seq():
    held = Catchup()
    held.note_sync({"convs": [{"conv": "c1", "last_seq": 9, "messages": [], "more": False},
                              {"conv": "c2", "last_seq": 50, "more": True,
                               "messages": [{"conv": "c2", "seq": 20}, {"conv": "c2", "seq": 21}]}]})
    assert held.last_seq == {"c1": 9, "c2": 21}  # c2 was cut after 21: the next sync continues there
    held.note_sync({"convs": [{"conv": "c1", "last_seq": 4, "messages": [], "more": False}]})
    assert held.last_seq["c1"] == 9  # a watermark never goes back


def test_a_recovery_sync_replays_its_messages_as_events_and_says_when_it_was_cut():
    page = {"conv": "c1", "seq": 5}
    events, cut = sync_replay({"convs": [{"conv": "c1", "messages": [page], "more": True}]})
    assert events == [{"op": "event", "type": "message.new", "message": page}] and cut
    assert sync_replay({"convs": [{"conv": "c1", "messages": [], "more": True}]}) == ([], False)
