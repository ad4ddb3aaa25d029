"""Prebuilt WebSocket frames: the three length encodings of RFC 6455, FIN set, text, unmasked."""

from __future__ import annotations

import struct

import pytest

from gateway.session import unwrap, wire_frame


def parse(frame: bytes) -> tuple[int, bytes]:
    first, second = frame[0], frame[1]
    assert second & 0x80 == 0, "server frames are not masked"
    n, at = second & 0x7F, 2
    if n == 126:
        n, at = struct.unpack("!H", frame[2:4])[0], 4
    elif n == 127:
        n, at = struct.unpack("!Q", frame[2:10])[0], 10
    assert len(frame) == at + n
    return first, frame[at:]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_every_length_encodes_as_one_final_text_frame(size):
    payload = b"x" * size
    first, body = parse(wire_frame(payload))
    assert first == 0x81 and body == payload


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_unwrap_gives_back_the_payload(size):
    payload = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
    assert unwrap(wire_frame(payload)) == payload
