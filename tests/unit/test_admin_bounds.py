"""The admin API documents the bounds the server enforces: a route that publishes a protocol
command takes each of the command's fields within the command's own limits."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest

from moderation.admin.openapi import document
from moderation.admin.routes import ROUTES, Route
from parley import frames as F

PUBLISHING = [route for route in ROUTES if route.op is not None]
BOUNDS = ("minLength", "maxLength", "minimum", "maximum")


def frame_type(op: str) -> type:
    return next(t for t in get_args(F.WriteRequest) if t.__struct_config__.tag == op)


def bounds(prop: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    return {k: v for o in options for k, v in o.items() if k in BOUNDS}


@pytest.mark.parametrize("route", PUBLISHING, ids=lambda r: f"{r.method} {r.path}")
def test_a_route_that_publishes_a_command_takes_its_fields_within_the_commands_bounds(route: Route):
    assert route.body is not None and route.op is not None
    frame = frame_type(route.op)
    _, components = msgspec.json.schema_components([route.body, frame])
    body, command = components[route.body.__name__]["properties"], components[frame.__name__]["properties"]
    shared = set(body) & set(command)
    assert shared, route.op
    for name in shared:
        assert bounds(body[name]) == bounds(command[name]), (route.op, name)


def test_the_mute_route_documents_a_year_and_512_characters():
    mute = document()["components"]["schemas"]["MemberActionBody"]["properties"]
    assert bounds(mute["duration_s"])["maximum"] == 366 * 24 * 3600
    assert bounds(mute["reason"])["maxLength"] == 512
