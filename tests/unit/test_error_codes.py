"""Every wire code maps back to its one class of the error hierarchy, carrying what the wire said."""

from __future__ import annotations

import pytest

from parley.errors import (BadRequest, Conflict, Forbidden, Internal, NotFound, ParleyError, RateLimited, TooLarge,
                           Unauthorized, Unavailable, error_for_code)


@pytest.mark.parametrize("cls", [BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, RateLimited,
                                 Unavailable, Internal])
def test_a_wire_code_comes_back_as_the_class_that_sends_it(cls: type[ParleyError]):
    err = error_for_code(cls.code, "why")
    assert type(err) is cls and err.message == "why"


def test_a_refusal_keeps_its_rule_and_its_wait():
    muted = error_for_code("forbidden", "you are muted", 59_000, rule="muted")
    assert isinstance(muted, Forbidden) and (muted.rule, muted.retry_after_ms) == ("muted", 59_000)


def test_a_code_outside_the_closed_list_reads_as_a_server_bug():
    assert type(error_for_code("no_such_code", "?")) is Internal
