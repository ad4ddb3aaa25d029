"""The admin API's OpenAPI 3.1 document, generated from the route table and the same msgspec
Structs that validate requests. `python -m moderation.admin.openapi` rewrites the copy kept in
docs/openapi/admin.json (a unit test fails when that copy is stale)."""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec

from moderation.admin import bodies as B
from moderation.admin.routes import PREFIX, ROUTES, Route
from parley import __version__

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "admin.json"
REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "Malformed JSON", "401": "Missing, bad, expired or revoked token",
    "403": "Not instance staff (or not allowed this action); the message says why",
    "404": "No such user, conversation, message or report", "409": "The state forbids it",
    "422": "A field is missing, mistyped or out of range; `fields` names it",
    "429": "Rate limited (`Retry-After`)",
}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query string cannot say null: an optional parameter is simply left out."""
    options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
    if len(options) == 1:
        prop = {**options[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
    if prop.get("default", 0) is None:
        prop = {k: v for k, v in prop.items() if k != "default"}
    return prop


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": _not_null(prop)}
            for name, prop in schema["properties"].items()]


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    params = []
    for name in re.findall(r"\{(\w+)(?::int)?\}", route.path):
        schema: dict[str, Any] = ({"type": "integer", "minimum": 1, "maximum": 10**15 - 1}
                                  if name in route.int_params else {"type": "string", "minLength": 1, "maxLength": 64})
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def document() -> dict[str, Any]:
    types: list[Any] = [B.ErrorBody]
    for route in ROUTES:
        types += [t for t in (route.response, route.body, route.query) if t is not None]
    schemas, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=REF)
    for component in components.values():
        # Dedented whichever msgspec renders them (0.23 dedents docstrings, earlier releases did not).
        if "description" in component:
            component["description"] = inspect.cleandoc(component["description"])
    by_type = dict(zip(dict.fromkeys(types), schemas))
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        params = _path_parameters(route)
        if route.query is not None:
            params += _query_parameters(components.pop(route.query.__name__, None) or by_type[route.query])
        responses: dict[str, Any] = {
            str(route.status): {"description": "OK", "content": {"application/json": {"schema": by_type[route.response]}}},
        }
        for status, text in _ERRORS.items():
            if status == "422" and route.body is None and route.query is None:
                continue
            responses[status] = {"description": text, "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}}}
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', route.path.lower()).strip('_')}",
            "summary": route.summary, "tags": [route.tag],
            "description": f"Needs the instance `{route.min_role}` role or higher."
            + (f" Publishes the protocol command `{route.op}` as the moderator; chat_core decides." if route.op else ""),
        }
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": by_type[route.body]}}}
        op["responses"] = responses
        if route.op is not None:
            op["x-parley-op"] = route.op
        paths.setdefault(route.full_path, {})[route.method.lower()] = op
    paths[PREFIX + "/openapi.json"] = {"get": {
        "operationId": "get_openapi", "summary": "This document", "tags": ["meta"],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                      "401": {"description": _ERRORS["401"], "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}}},
                      "403": {"description": _ERRORS["403"], "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parley admin API", "version": __version__,
                 "description": "Instance staff (a token whose `roles` claim holds `admin` or `moderator`) "
                                "moderate users, conversations and reports. Every action is audited; the "
                                "audit log is read-only. See docs/admin-api.md."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(render())
    sys.stdout.write(f"wrote {DOC_PATH}\n")
