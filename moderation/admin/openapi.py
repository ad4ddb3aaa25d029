"""The admin API's OpenAPI 3.1 document, generated from the route table and the same msgspec
Structs that validate requests (parley/openapi.py builds it). `python -m moderation.admin.openapi`
rewrites the copy kept in docs/openapi/admin.json (a test fails when that copy is stale)."""

from __future__ import annotations

import sys
from typing import Any

from moderation.admin import bodies as B
from moderation.admin.routes import PREFIX, ROUTES, Route
from parley import openapi
from parley.openapi import Answer, Operation

DOC_PATH = openapi.DOCS_DIR / "admin.json"
_ERRORS = {
    400: "Malformed JSON", 401: "Missing, bad, expired or revoked token",
    403: "Not instance staff (or not allowed this action); the message says why",
    404: "No such user, conversation, message or report", 409: "The state forbids it",
    422: "A field is missing, mistyped or out of range; `fields` names it",
    429: "Rate limited (`Retry-After`)",
}


def _operation(route: Route) -> Operation:
    takes_fields = route.body is not None or route.query is not None
    return Operation(
        route.method, route.full_path, route.summary, route.tag, (Answer(route.status, route.response),),
        errors={s: text for s, text in _ERRORS.items() if s != 422 or takes_fields},
        body=route.body, query=route.query, int_params=route.int_params,
        description=f"Needs the instance `{route.min_role}` role or higher."
        + (f" Publishes the protocol command `{route.op}` as the moderator; chat_core decides." if route.op else ""),
        # Named below the prefix, as they were before the prefix was part of the path.
        operation_id=openapi.operation_id(route.method, route.path),
        extensions={"x-parley-op": route.op} if route.op is not None else {},
    )


def document() -> dict[str, Any]:
    this_document = Operation("GET", PREFIX + "/openapi.json", "This document", "meta",
                              (Answer(200, dict[str, Any]),), errors={s: _ERRORS[s] for s in (401, 403)},
                              operation_id="get_openapi")
    return openapi.document(
        title="Parley admin API",
        description="Instance staff (a token whose `roles` claim holds `admin` or `moderator`) "
                    "moderate users, conversations and reports. Every action is audited; the "
                    "audit log is read-only. See docs/admin-api.md.",
        operations=[*map(_operation, ROUTES), this_document], error_type=B.ErrorBody)


def render() -> str:
    return openapi.render(document())


if __name__ == "__main__":
    openapi.write_copy(DOC_PATH, document())
    sys.stdout.write(f"wrote {DOC_PATH}\n")
