"""Frame decoding and checks: pure, before any lookup."""

from __future__ import annotations

import pytest

from parley import frames as F
from parley.frames import FrameError, decode_request


def err(raw: str | bytes, max_text: int = 100) -> FrameError:
    with pytest.raises(FrameError) as exc:
        decode_request(raw, max_text)
    return exc.value


def test_each_op_decodes_to_its_type():
    assert isinstance(decode_request('{"op":"ping","rid":"1"}', 10), F.Ping)
    req = decode_request('{"op":"history","rid":"2","conv":"c","before":10}', 10)
    assert isinstance(req, F.History) and (req.before, req.limit) == (10, 50)
    req = decode_request('{"op":"send","rid":"3","conv":"c","cmid":"m","text":"hi","future_field":1}', 10)
    assert isinstance(req, F.Send) and req.mentions == []  # unknown fields are ignored: forward compatible


@pytest.mark.parametrize("raw, code, rid", [
    ("{", "bad_request", None),
    ("42", "bad_request", None),
    ('{"op":"ping"}', "bad_request", None),
    ('{"op":"ping","rid":7}', "bad_request", None),
    ('{"op":"ping","rid":"' + "r" * 65 + '"}', "bad_request", None),
    ('{"op":"nope","rid":"a"}', "bad_request", "a"),
    ('{"op":"send","rid":"b","conv":"c","cmid":"m","text":"' + "x" * 101 + '"}', "too_large", "b"),
    ('{"op":"send","rid":"c","conv":"c","cmid":"m","text":"   "}', "bad_request", "c"),
    ('{"op":"send","rid":"d","conv":"c","cmid":"m","text":"t","attachments":' + str([f"a{i}" for i in range(11)]).replace("'", '"') + '}',
     "bad_request", "d"),
    ('{"op":"send","rid":"d2","conv":"c","cmid":"m","text":" ","attachments":[]}', "bad_request", "d2"),
    ('{"op":"edit","rid":"d3","conv":"c","seq":1,"text":" "}', "bad_request", "d3"),
    ('{"op":"history","rid":"e","conv":"c","before":1,"after":2}', "bad_request", "e"),
    ('{"op":"history","rid":"f","conv":"c","limit":201}', "bad_request", "f"),
    ('{"op":"conv.create","rid":"g","kind":"direct","members":[]}', "bad_request", "g"),
    ('{"op":"conv.create","rid":"h","kind":"direct","members":["b"],"visibility":"public"}', "bad_request", "h"),
    ('{"op":"conv.create","rid":"i","kind":"group","password":"pw"}', "bad_request", "i"),
    ('{"op":"conv.invite","rid":"j","conv":"c","users":[]}', "bad_request", "j"),
    ('{"op":"react","rid":"k","conv":"c","seq":0,"emoji":"x","on":true}', "bad_request", "k"),
    ('{"op":"conv.update","rid":"l","conv":"c"}', "bad_request", "l"),
    ('{"op":"conv.update","rid":"m","conv":"c","slow_mode_s":86401}', "bad_request", "m"),
    ('{"op":"conv.update","rid":"n","conv":"c","permissions":{"manage_roles":"member"}}', "bad_request", "n"),
    ('{"op":"member.mute","rid":"o","conv":"c","user":"u","duration_s":0}', "bad_request", "o"),
    ('{"op":"member.role","rid":"p","conv":"c","user":"u","role":"god"}', "bad_request", "p"),
    ('{"op":"member.ban","rid":"q","conv":"c","user":"u","reason":""}', "bad_request", "q"),
    ('{"op":"user.block","rid":"r"}', "bad_request", "r"),
])
def test_malformed_frames_map_to_codes_and_keep_a_usable_rid(raw, code, rid):
    e = err(raw)
    assert (e.error.code, e.rid) == (code, rid)
    assert e.error.message


def test_a_send_may_be_attachments_alone_up_to_the_per_message_limit():
    ids = [f"a{i}" for i in range(10)]
    raw = '{"op":"send","rid":"1","conv":"c","cmid":"m","text":"","attachments":' + str(ids).replace("'", '"') + '}'
    req = decode_request(raw, 10)
    assert isinstance(req, F.Send) and req.attachments == ids


def test_moderation_ops_decode_and_an_absent_setting_stays_unset():
    req = decode_request('{"op":"conv.update","rid":"1","conv":"c","title":null,"read_only":true}', 10)
    assert isinstance(req, F.ConvUpdate) and req.title is None and req.read_only is True
    assert req.slow_mode_s is F.UNSET and req.password is F.UNSET
    req = decode_request('{"op":"member.mute","rid":"2","conv":"c","user":"u","duration_s":60}', 10)
    assert isinstance(req, F.MemberMute) and (req.duration_s, req.reason) == (60, None)
    assert F.is_write(decode_request('{"op":"user.block","rid":"3","user":"u"}', 10))
    assert F.is_write(decode_request('{"op":"pin","rid":"4","conv":"c","seq":3}', 10))


def test_a_policy_denial_names_its_rule():
    from parley.errors import Forbidden
    assert F.error_frame(Forbidden("you are muted", rule="muted"), "r") == \
        b'{"op":"error","rid":"r","code":"forbidden","message":"you are muted","rule":"muted"}'


def test_text_length_counts_characters_not_bytes():
    assert isinstance(decode_request('{"op":"send","rid":"1","conv":"c","cmid":"m","text":"' + "é" * 100 + '"}', 100), F.Send)


def test_error_frames_carry_retry_after_only_when_set():
    from parley.errors import RateLimited, NotFound
    assert F.error_frame(RateLimited("slow", retry_after_ms=50), "r") == \
        b'{"op":"error","rid":"r","code":"rate_limited","message":"slow","retry_after_ms":50}'
    assert F.error_frame(NotFound("gone")) == b'{"op":"error","code":"not_found","message":"gone"}'


def test_moderation_commands_cross_the_command_log_unchanged():
    import msgspec
    from parley.records import Command
    for body in (F.ConvUpdate(rid="1", conv="c", title=None, permissions={"pin": "member"}),
                 F.UserBlock(rid="2", user="u"), F.MemberMute(rid="3", conv="c", user="u", duration_s=5)):
        command = Command("c", "u", "gw", "s", body, "admin")
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(command), type=Command) == command


def deep(depth: int, rid: str = "d") -> str:
    return '{"op":"ping","rid":"' + rid + '","x":' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("raw", [deep(1_000), deep(20_000), '{"a":' * 5_000])
def test_json_nested_past_any_sane_depth_is_a_bad_request(raw):
    e = err(raw)
    assert e.error.code == "bad_request" and "nest" in e.error.message


@pytest.mark.parametrize("raw, rid", [
    (r'{"op":"ping","rid":"s1","x":"\ud800"}', "s1"),       # a lone high surrogate after the rid
    (r'{"op":"ping","x":"\udc00 z","rid":"s2"}', "s2"),     # a lone low surrogate before it
    (r'{"op":"ping","rid":"\ud800"}', None),                # a rid that could not be echoed
    ('{"op":"ping","rid":"s3","x":NaN}', "s3"),             # not JSON msgspec accepts, rid readable
])
def test_a_frame_that_is_not_valid_json_keeps_its_rid_when_the_rid_is_readable(raw, rid):
    e = err(raw)
    assert (e.error.code, e.rid) == ("bad_request", rid)
    F.error_frame(e.error, e.rid)  # and the answer can be encoded


def test_an_empty_token_decodes_and_is_left_to_the_token_check():
    req = decode_request('{"op":"hello","rid":"h","token":""}', 10)
    assert isinstance(req, F.Hello) and req.token == ""


@pytest.mark.parametrize("reaction", ["👍", "👍🏽", "❤️", "🏳️‍🌈", "👨‍👩‍👧", "🇫🇷", "#️⃣", "🫠"])
def test_a_reaction_is_one_emoji(reaction):
    req = decode_request(F.encode({"op": "react", "rid": "r", "conv": "c", "seq": 1, "emoji": reaction, "on": True}),
                         10)
    assert isinstance(req, F.React) and req.emoji == reaction


@pytest.mark.parametrize("reaction", ["BUY CHEAP www.spam.tld", "x", "+1", ":thumbsup:", "👍👍", " 👍", "\u200d"])
def test_anything_but_one_emoji_is_no_reaction(reaction):
    """Reactions took any 32 characters: "BUY CHEAP www.spam.tld" went to every member, past the
    content filter and the new-account link rule (issue 12)."""
    e = err(F.encode({"op": "react", "rid": "r", "conv": "c", "seq": 1, "emoji": reaction, "on": True}))
    assert (e.error.code, e.rid) == ("bad_request", "r")
