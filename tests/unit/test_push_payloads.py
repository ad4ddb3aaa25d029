"""Push payloads (push/payloads.py): what each provider is sent for each kind of push."""

from __future__ import annotations

import json

import msgspec
import pytest

from push.notification import PushRequest
from push.payloads import (APNS_MAX_BYTES, CALL_TTL_S, ELLIPSIS, FCM_MAX_BYTES, PayloadError, apns_payload, apns_size,
                           collapse_id, fcm_payload, fcm_size)


def request(**fields: object) -> PushRequest:
    base: dict[str, object] = dict(user="u1", device_id="d1", platform="apns", token="ab" * 32, app_id="chat.parley.app",
                                   conv="c1", seq=7, title="Ada", body="hello there", badge=3)
    base.update(fields)
    return msgspec.convert(base, PushRequest)


# ---- messages ---------------------------------------------------------------------------------


def test_an_apns_message_is_an_alert_collapsed_and_threaded_by_conversation() -> None:
    p = apns_payload(request())
    assert (p.topic, p.push_type, p.priority, p.collapse_id, p.ttl_s) == ("chat.parley.app", "alert", 10, "c1", None)
    assert p.body == {"aps": {"alert": {"title": "Ada", "body": "hello there"}, "sound": "default", "thread-id": "c1",
                              "badge": 3},
                      "kind": "message", "conv": "c1", "seq": 7}


def test_an_fcm_message_is_a_notification_collapsed_and_tagged_by_conversation() -> None:
    p = fcm_payload(request(platform="fcm"))
    assert (p.priority, p.collapse_key, p.ttl_s) == ("high", "c1", None)
    assert p.notification is not None
    assert (p.notification.title, p.notification.body, p.notification.tag, p.notification.count) == (
        "Ada", "hello there", "c1", 3)
    assert p.data == {"kind": "message", "conv": "c1", "seq": "7", "badge": "3"}


def test_two_conversations_do_not_collapse_into_each_other() -> None:
    assert apns_payload(request(conv="c2")).collapse_id == "c2"
    assert fcm_payload(request(platform="fcm", conv="c2")).collapse_key == "c2"


def test_a_given_collapse_id_wins_and_a_long_one_is_hashed_to_64_bytes() -> None:
    assert collapse_id(request(collapse_id="x")) == "x"
    long = collapse_id(request(conv="c" * 100))
    assert len(long.encode()) == 64 and long != "c" * 64
    assert long == collapse_id(request(conv="c" * 100))  # stable: later pushes still collapse


def test_no_badge_leaves_the_badge_out() -> None:
    assert "badge" not in apns_payload(request(badge=None)).body["aps"]
    p = fcm_payload(request(platform="fcm", badge=None))
    assert "badge" not in p.data and p.notification is not None and p.notification.count is None


def test_normal_priority_is_kept_for_messages() -> None:
    assert apns_payload(request(priority="normal")).priority == 5
    assert fcm_payload(request(platform="fcm", priority="normal")).priority == "normal"


def test_previews_off_say_new_message_only() -> None:
    p = apns_payload(request(previews=False))
    assert p.body["aps"]["alert"] == {"body": "New message"}
    assert "hello" not in json.dumps(p.body) and "Ada" not in json.dumps(p.body)
    f = fcm_payload(request(platform="fcm", previews=False))
    assert f.notification is not None and (f.notification.title, f.notification.body) == (None, "New message")
    assert "hello" not in json.dumps(f.data) and "Ada" not in json.dumps(f.data)


@pytest.mark.parametrize("platform", ["apns", "fcm"])
def test_an_end_to_end_encrypted_body_never_goes_into_a_push(platform: str) -> None:
    r = request(platform=platform, e2e=True, body="secret plans")
    if platform == "apns":
        body = apns_payload(r).body
        assert body["aps"]["alert"] == {"title": "Ada", "body": "New message"}
        assert body["aps"]["mutable-content"] == 1  # the app's extension may fetch and decrypt
        assert "secret" not in json.dumps(body)
    else:
        f = fcm_payload(r)
        assert f.notification is not None and f.notification.body == "New message"
        assert "secret" not in json.dumps(f.data)


def test_a_message_without_text_says_new_message() -> None:
    assert apns_payload(request(body=None)).body["aps"]["alert"]["body"] == "New message"


# ---- calls ------------------------------------------------------------------------------------


def call(kind: str = "call", **fields: object) -> PushRequest:
    return request(**{"kind": kind, "call_id": "k1", "call_media": "video", "body": None, "badge": None, **fields})


def test_a_call_to_a_voip_token_is_a_voip_push_on_the_voip_topic_at_priority_10() -> None:
    p = apns_payload(call(platform="apns_voip", priority="normal"))
    assert (p.topic, p.push_type, p.priority, p.ttl_s) == ("chat.parley.app.voip", "voip", 10, CALL_TTL_S)
    assert p.collapse_id == "call-k1"
    assert p.body == {"kind": "call", "conv": "c1", "seq": 7, "call_id": "k1", "media": "video", "title": "Ada"}


def test_a_call_cancel_to_a_voip_token_is_a_voip_push_too() -> None:
    p = apns_payload(call("call_cancel", platform="apns_voip"))
    assert (p.topic, p.push_type, p.priority, p.collapse_id) == ("chat.parley.app.voip", "voip", 10, "call-k1")
    assert p.body["kind"] == "call_cancel" and p.body["call_id"] == "k1"


def test_a_voip_token_takes_nothing_but_calls() -> None:
    for kind in ("message", "clear"):
        with pytest.raises(PayloadError) as e:
            apns_payload(request(platform="apns_voip", kind=kind))
        assert e.value.reason == "voip_token_takes_calls_only"


def test_a_call_on_fcm_is_a_high_priority_data_message_carrying_the_call() -> None:
    p = fcm_payload(call(platform="fcm", priority="normal"))
    assert (p.priority, p.collapse_key, p.ttl_s, p.notification) == ("high", "call-k1", CALL_TTL_S, None)
    assert p.data == {"kind": "call", "conv": "c1", "seq": "7", "call_id": "k1", "media": "video", "title": "Ada"}


def test_a_call_cancel_on_fcm_replaces_the_ring_at_high_priority() -> None:
    p = fcm_payload(call("call_cancel", platform="fcm"))
    assert (p.priority, p.collapse_key, p.notification) == ("high", "call-k1", None)
    assert p.data["kind"] == "call_cancel" and p.data["call_id"] == "k1"


def test_a_call_with_previews_off_does_not_name_the_caller() -> None:
    assert "title" not in apns_payload(call(platform="apns_voip", previews=False)).body
    assert "title" not in fcm_payload(call(platform="fcm", previews=False)).data


def test_a_call_to_an_ordinary_apns_token_is_an_alert_and_its_cancel_a_background_push() -> None:
    ring = apns_payload(call(platform="apns"))
    assert (ring.push_type, ring.priority, ring.collapse_id, ring.topic) == ("alert", 10, "call-k1", "chat.parley.app")
    assert ring.body["aps"]["alert"] == {"title": "Ada", "body": "Incoming call"}
    cancel = apns_payload(call("call_cancel", platform="apns"))
    assert (cancel.push_type, cancel.priority, cancel.collapse_id) == ("background", 5, "call-k1")
    assert cancel.body["aps"] == {"content-available": 1} and cancel.body["call_id"] == "k1"


def test_a_call_push_without_a_call_id_is_refused() -> None:
    with pytest.raises(PayloadError) as e:
        fcm_payload(request(platform="fcm", kind="call"))
    assert e.value.reason == "call_id_missing"


# ---- clearing after a read --------------------------------------------------------------------


def test_a_clear_on_apns_is_a_background_push_with_the_badge() -> None:
    p = apns_payload(request(kind="clear", badge=0, priority="high"))
    assert (p.push_type, p.priority, p.collapse_id, p.topic) == ("background", 5, "c1", "chat.parley.app")
    assert p.body == {"aps": {"content-available": 1, "badge": 0}, "kind": "clear", "conv": "c1", "seq": 7}


def test_a_clear_on_fcm_is_a_data_message_replacing_the_conversations_pending_push() -> None:
    p = fcm_payload(request(platform="fcm", kind="clear", badge=0))
    assert (p.priority, p.collapse_key, p.notification) == ("normal", "c1", None)
    assert p.data == {"kind": "clear", "conv": "c1", "seq": "7", "badge": "0"}
    assert "hello" not in json.dumps(p.data)


# ---- size limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a" * 10_000, "\u00e9" * 5_000, "\U0001f600" * 3_000, "\"\\" * 4_000,
                                  "a" + "\u20ac" * 4_000])
def test_an_apns_payload_is_cut_to_4_kb_on_a_character_boundary(text: str) -> None:
    p = apns_payload(request(body=text))
    assert apns_size(p) <= APNS_MAX_BYTES
    assert apns_size(p) > APNS_MAX_BYTES - 16  # cut, not emptied
    body = p.body["aps"]["alert"]["body"]
    assert body.endswith(ELLIPSIS) and text.startswith(body[:-1])
    assert len(json.dumps(p.body, ensure_ascii=False).encode()) == apns_size(p)


@pytest.mark.parametrize("text", ["a" * 10_000, "\U0001f600" * 3_000])
def test_an_fcm_payload_is_cut_to_4_kb_on_a_character_boundary(text: str) -> None:
    p = fcm_payload(request(platform="fcm", body=text))
    assert fcm_size(p) <= FCM_MAX_BYTES
    assert p.notification is not None
    assert p.notification.body.endswith(ELLIPSIS) and text.startswith(p.notification.body[:-1])


def test_the_title_is_cut_once_the_body_is_gone() -> None:
    p = apns_payload(request(title="t" * 9_000, body="short"))
    assert apns_size(p) <= APNS_MAX_BYTES
    alert = p.body["aps"]["alert"]
    assert "body" not in alert and alert["title"].endswith(ELLIPSIS)


def test_a_long_caller_name_is_cut_in_a_voip_push() -> None:
    p = apns_payload(call(platform="apns_voip", title="\u00e9" * 5_000))
    assert apns_size(p) <= APNS_MAX_BYTES and p.body["title"].endswith(ELLIPSIS)
    f = fcm_payload(call(platform="fcm", title="\u00e9" * 5_000))
    assert fcm_size(f) <= FCM_MAX_BYTES and f.data["title"].endswith(ELLIPSIS)


def test_a_payload_too_large_without_any_text_is_refused() -> None:
    with pytest.raises(PayloadError) as e:
        apns_payload(request(conv="c" * 5_000, title=None, body=None))
    assert e.value.reason == "payload_too_large"


def test_a_payload_within_the_limit_is_not_touched() -> None:
    text = "x" * 3_000
    assert apns_payload(request(body=text)).body["aps"]["alert"]["body"] == text
