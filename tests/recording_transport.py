"""A test double of the asyncio.Transport a gateway session writes to: it keeps every write and
reads the WebSocket frames back out of them (a write may carry several frames)."""

from __future__ import annotations

import struct

import msgspec


def split_frames(data: bytes) -> list[bytes]:
    """The payloads of the unmasked server frames concatenated in `data`."""
    payloads, at = [], 0
    while at < len(data):
        n, at = data[at + 1] & 0x7F, at + 2
        if n == 126:
            n, at = struct.unpack_from("!H", data, at)[0], at + 2
        elif n == 127:
            n, at = struct.unpack_from("!Q", data, at)[0], at + 8
        payloads.append(data[at:at + n])
        at += n
    return payloads


class RecordingTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        #: What get_write_buffer_size() answers: set it high to play a socket that backed up.
        self.buffered = buffered
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def frames(self) -> list[dict]:
        return [msgspec.json.decode(p) for data in self.writes for p in split_frames(data)]
