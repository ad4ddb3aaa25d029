"""The operations table of chat_core: one operation per write request, and nothing else."""

from __future__ import annotations

from typing import get_args

from chat_core.ops import OPERATIONS
from parley import frames as F

WRITES = set(get_args(F.WriteRequest))


def test_every_write_request_has_an_operation():
    missing = sorted(t.__name__ for t in WRITES - OPERATIONS.keys())
    assert not missing, f"write requests with no operation in chat_core.ops.OPERATIONS: {missing}"


def test_the_table_holds_only_write_requests():
    strays = sorted(t.__name__ for t in OPERATIONS.keys() - WRITES)
    assert not strays, f"chat_core.ops.OPERATIONS holds types that are not in parley.frames.WriteRequest: {strays}"

