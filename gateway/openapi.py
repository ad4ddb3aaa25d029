"""The client REST API's OpenAPI 3.1 document (every route a client calls except the WebSocket:
accounts, reports, privacy, attachments, capabilities, health), built from the route list below
and the msgspec types the routes take and answer (parley/openapi.py builds it). Served at
`/v1/openapi.json`; `python -m gateway.openapi` rewrites the copy kept in docs/openapi/client.json
(a test fails when that copy is stale, and another when the gateway serves a route not listed).

A new route is one entry in ROUTES: `route(method, path, summary, tag, Answer(status, type), ...,
body=..., errors=(statuses...))`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from aiohttp import web

from gateway import bodies as G
from gateway.uploads import UploadBody
from moderation.admin import bodies as B
from parley import openapi
from parley.openapi import Answer, Operation
from parley.records import AttachmentRow

DOC_PATH = openapi.DOCS_DIR / "client.json"
PATH = "/v1/openapi.json"
#: Why each error status is answered; a route lists the statuses it may answer.
_WHY = {
    400: "Malformed: not JSON, a field of the wrong type or shape",
    401: "Missing, bad, expired or revoked token (or, at login, wrong credentials)",
    403: "Not allowed: the account is pending or suspended, or the policy forbids it; the message says why",
    404: "No such thing, or not visible to the caller",
    409: "The state forbids it",
    413: "Over a size limit (the body, or a declared upload)",
    415: "A MIME type the server does not take (code `bad_request`)",
    422: "A field is missing, mistyped or out of range; `fields` names it",
    429: "Rate limited (`Retry-After`)",
    503: "Not ready: a dependency does not answer",
}
#: What any route with a bearer token may answer before it looks at the request.
_AUTH = (401, 403)


def route(method: str, path: str, summary: str, tag: str, *answers: Answer, errors: tuple[int, ...] = (),
          body: Any = None, secured: bool = True) -> Operation:
    statuses = sorted({*errors, *(_AUTH if secured else ())})
    return Operation(method, path, summary, tag, answers, errors={s: _WHY[s] for s in statuses}, body=body,
                     secured=secured)


ROUTES: tuple[Operation, ...] = (
    # accounts
    route("POST", "/v1/auth/register", "Create an account under the instance's registration policy", "accounts",
          Answer(201, G.TokenGrant), Answer(202, G.PendingRegistration, "Pending a moderator's approval"),
          body=G.RegisterBody, errors=(400, 403, 409, 413, 429), secured=False),
    route("POST", "/v1/auth/login", "Log in with a username and password", "accounts", Answer(200, G.TokenGrant),
          body=G.LoginBody, errors=(400, 401, 403, 413, 429), secured=False),
    route("POST", "/v1/auth/guest", "A short-lived token for a new guest account (when the instance allows guests)",
          "accounts", Answer(201, G.GuestGrant), errors=(403, 429), secured=False),
    # reports and privacy
    route("POST", "/v1/reports", "Report a message or a user to the instance's moderators", "reports",
          Answer(201, B.ReportReceipt), body=B.ReportBody, errors=(400, 404, 413, 422, 429)),
    route("GET", "/v1/me/export", "Everything the server holds about the caller", "privacy",
          Answer(200, B.DataExport), errors=(429,)),
    route("DELETE", "/v1/me", "Delete the caller's account (messages tombstoned, conversations left)", "privacy",
          Answer(200, B.DeletionReceipt), body=B.DeleteAccountBody, errors=(400, 404, 413, 422, 429)),
    # attachments
    route("POST", "/v1/uploads", "Declare an upload; PUT the bytes to the URL answered", "attachments",
          Answer(201, G.UploadTicket), body=UploadBody, errors=(400, 404, 413, 415, 429)),
    route("POST", "/v1/uploads/{id}/complete", "Confirm an upload: the attachment is usable in `send`",
          "attachments", Answer(200, AttachmentRow), errors=(404, 409)),
    route("GET", "/v1/attachments/{id}", "An attachment and a short-lived URL for its bytes", "attachments",
          Answer(200, G.Download), errors=(404,)),
    # the instance
    route("GET", "/v1/client/capabilities", "Limits, rate limits, upload rules and features of this server",
          "instance", Answer(200, G.Capabilities), secured=False),
    route("GET", PATH, "This document", "instance", Answer(200, dict[str, Any]), secured=False),
    route("GET", "/healthz", "The process is alive", "health", Answer(200, G.Health),
          Answer(503, G.Health, "A pipeline task ended: restart the process"), secured=False),
    route("GET", "/readyz", "Every dependency answers", "health", Answer(200, G.Readiness),
          Answer(503, G.Readiness, _WHY[503]), secured=False),
    route("GET", "/metrics", "Prometheus metrics (text exposition format)", "health",
          Answer(200, str, media_type="text/plain"), secured=False),
)


def document() -> dict[str, Any]:
    return openapi.document(
        title="Parley client REST API",
        description="Accounts, reports, privacy, attachments and the server's capabilities: everything "
                    "a client calls besides the WebSocket (`GET /v1/ws`, docs/protocol.md). Errors answer "
                    "`{\"error\": {\"code\", \"message\"}}` with the protocol's codes.",
        operations=ROUTES, error_type=B.ErrorBody)


@functools.cache
def _served() -> bytes:
    return openapi.render(document()).encode()


async def serve(_: web.Request) -> web.Response:
    return web.Response(body=_served(), content_type="application/json")


if __name__ == "__main__":
    openapi.write_copy(DOC_PATH, document())
    sys.stdout.write(f"wrote {DOC_PATH}\n")
