"""The client REST API's OpenAPI 3.1 document (every route a client calls except the WebSocket:
accounts and login sessions, people, reports, privacy, attachments, capabilities, health), built
from the route list below and the msgspec types the routes take and answer (parley/openapi.py
builds it). Served at `/v1/openapi.json`; `python -m gateway.openapi` rewrites the copy kept in
docs/openapi/client.json (a test fails when that copy is stale, and another when the gateway serves
a route not listed).

How to add a route (tests/integration/test_client_openapi.py fails until it is here):
1. One entry in ROUTES: `route(method, path, summary, tag, Answer(status, type), ..., body=...,
   query=..., int_params=(...), errors=(statuses...), secured=...)`.
   - `type` and `body` are msgspec Structs: the handler's own where it decodes or answers one,
     else a Struct in gateway/bodies.py of exactly what the handler builds. `Answer(302, None)`
     answers no body; `body=bytes, body_media_types=(...)` takes raw bytes (an upload).
   - `query` is a Struct of the query parameters; `{name}` in the path is a path parameter,
     a string unless named in `int_params`.
   - `errors` lists every error status the handler can answer (see `_WHY`): 400 for any route
     that reads a body (not JSON), 413 too (the server's body limit), 422 when it decodes the body
     into a Struct, 404/409/415 as it raises them, 429 when it counts against a rate limit.
     401/403 come with every secured route; `secured=False` for a route without a token.
2. `python -m gateway.openapi` to rewrite docs/openapi/client.json, and commit both.
3. Run `pytest tests/integration/test_client_openapi.py`: schemathesis calls the route with
   generated requests and fails on a 5xx, a traceback, or an answer the document does not list.
   A route that needs an existing id to succeed gets a case in
   `test_the_routes_that_need_existing_ids_match_the_document_with_them`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from aiohttp import web

from calls.join import CallJoinResult
from gateway import bodies as G
from gateway.calls import JoinBody, SettingsBody, StartBody
from gateway.devices import DeviceBody, DeviceView
from gateway.devices import SettingsBody as NotifyBody
from gateway.privacy_settings import PrivacyBody
from gateway.session_routes import Ended, NoBody, PasswordBody, RefreshBody
from gateway.uploads import UploadBody
from moderation.admin import bodies as B
from parley import openapi
from parley.events import NotifySettingsChanged
from parley.openapi import Answer, Operation
from parley.profiles import MyProfile, Profile, ProfileBody
from parley.records import AttachmentRow
from parley.session_families import TokenPair
from parley.thumbnails import IMAGE_MIME

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
          body: Any = None, body_media_types: tuple[str, ...] = ("application/json",), query: type | None = None,
          int_params: tuple[str, ...] = (), secured: bool = True) -> Operation:
    statuses = sorted({*errors, *(_AUTH if secured else ())})
    return Operation(method, path, summary, tag, answers, errors={s: _WHY[s] for s in statuses}, body=body,
                     body_media_types=body_media_types, query=query, int_params=int_params, secured=secured)


ROUTES: tuple[Operation, ...] = (
    # accounts
    route("POST", "/v1/auth/register", "Create an account under the instance's registration policy", "accounts",
          Answer(201, TokenPair), Answer(202, G.PendingRegistration, "Pending a moderator's approval"),
          body=G.RegisterBody, errors=(400, 403, 409, 413, 429), secured=False),
    route("POST", "/v1/auth/login", "Log in with a username and password", "accounts", Answer(200, TokenPair),
          body=G.LoginBody, errors=(400, 401, 403, 413, 429), secured=False),
    route("POST", "/v1/auth/guest", "A short-lived token for a new guest account (when the instance allows guests)",
          "accounts", Answer(201, G.GuestGrant), errors=(403, 429), secured=False),
    # login sessions
    route("POST", "/v1/auth/refresh", "A new token pair for a refresh token (which is spent: it answers once)",
          "sessions", Answer(200, TokenPair), body=RefreshBody, errors=(400, 401, 403, 413, 422, 429), secured=False),
    route("POST", "/v1/auth/logout", "End the caller's login (not for guests)", "sessions", Answer(200, Ended),
          body=NoBody, errors=(400, 413, 422)),
    route("POST", "/v1/auth/logout/all", "End every login of the caller (not for guests)", "sessions",
          Answer(200, Ended), body=NoBody, errors=(400, 413, 422)),
    route("GET", "/v1/me/sessions", "The caller's live logins", "sessions", Answer(200, G.SessionList)),
    route("DELETE", "/v1/me/sessions/{id}", "End one of the caller's logins", "sessions", Answer(200, Ended),
          body=NoBody, errors=(400, 404, 413, 422)),
    route("POST", "/v1/me/password", "Change the caller's password; every other login of theirs ends", "sessions",
          Answer(200, Ended), body=PasswordBody, errors=(400, 413, 422, 429)),
    # people
    route("GET", "/v1/me/profile", "The caller's profile and its settings", "people", Answer(200, MyProfile)),
    route("PATCH", "/v1/me/profile", "Change the caller's profile (announced as `user.updated`)", "people",
          Answer(200, MyProfile), body=ProfileBody, errors=(400, 404, 413, 422, 429)),
    route("PUT", "/v1/me/avatar", "Upload the caller's avatar: the image's bytes, its type as Content-Type",
          "people", Answer(200, MyProfile), body=bytes, body_media_types=tuple(sorted(IMAGE_MIME)),
          errors=(400, 404, 413, 415, 429)),
    route("GET", "/v1/users/{id}", "A user's public profile", "people", Answer(200, Profile), errors=(404,)),
    route("GET", "/v1/users", "Public profiles by id, or a directory search by name prefix", "people",
          Answer(200, G.Users), query=G.UsersQuery, errors=(400, 429)),
    route("GET", "/v1/avatars/{version}/{size}", "An avatar image (the version in a profile is the secret)",
          "people", Answer(302, None, "To a short-lived URL of the image (`Location`)"), int_params=("size",),
          errors=(404,), secured=False),
    # reports and privacy
    route("POST", "/v1/reports", "Report a message or a user to the instance's moderators", "reports",
          Answer(201, B.ReportReceipt), body=B.ReportBody, errors=(400, 404, 413, 422, 429)),
    route("GET", "/v1/me/export", "Everything the server holds about the caller", "privacy",
          Answer(200, B.DataExport), errors=(429,)),
    route("DELETE", "/v1/me", "Delete the caller's account (messages tombstoned, conversations left)", "privacy",
          Answer(200, B.DeletionReceipt), body=B.DeleteAccountBody, errors=(400, 404, 413, 422, 429)),
    route("GET", "/v1/me/privacy", "The caller's privacy settings", "privacy", Answer(200, G.PrivacySettings)),
    route("PATCH", "/v1/me/privacy", "Change the caller's privacy settings", "privacy",
          Answer(200, G.PrivacySettings), body=PrivacyBody, errors=(400, 404, 413, 422, 429)),
    # attachments
    route("POST", "/v1/uploads", "Declare an upload; PUT the bytes to the URL answered", "attachments",
          Answer(201, G.UploadTicket), body=UploadBody, errors=(400, 404, 413, 415, 429)),
    route("POST", "/v1/uploads/{id}/complete", "Confirm an upload: the attachment is usable in `send`",
          "attachments", Answer(200, AttachmentRow), errors=(404, 409)),
    route("GET", "/v1/attachments/{id}", "An attachment and a short-lived URL for its bytes", "attachments",
          Answer(200, G.Download), errors=(404,)),
    # the instance
    route("POST", "/v1/convs/{conv}/calls", "Start a call in a conversation (or get the live one), with a join",
          "calls", Answer(201, CallJoinResult), body=StartBody, errors=(400, 404, 409, 413, 422, 429)),
    route("PATCH", "/v1/convs/{conv}/calls/settings", "A conversation's call settings (switch, caps)", "calls",
          Answer(200, G.CallSettingsAnswer), body=SettingsBody, errors=(400, 404, 413, 422, 429)),
    route("POST", "/v1/calls/{call}/join", "Answer or join a call, with a join", "calls", Answer(200, CallJoinResult),
          body=JoinBody, errors=(400, 404, 409, 413, 422, 429)),
    *(route("POST", f"/v1/calls/{{call}}/{op}", summary, "calls", Answer(200, G.CallAnswer),
            errors=(400, 404, 409, 429))
      for op, summary in (("decline", "Decline a ringing call on every device"), ("leave", "Leave a call"),
                          ("end", "End a call for everyone"))),
    route("POST", "/v1/devices", "Register this device for push (a token registered again moves to the caller)",
          "push", Answer(201, DeviceView), Answer(200, DeviceView), body=DeviceBody, errors=(400, 413, 422)),
    route("GET", "/v1/devices", "The caller's devices that can still be reached", "push", Answer(200, G.DeviceList)),
    route("DELETE", "/v1/devices/{id}", "Remove one of the caller's devices", "push", Answer(204, None), errors=(404,)),
    route("GET", "/v1/me/notifications", "The caller's notification settings", "push",
          Answer(200, G.NotifySettingsAnswer)),
    route("PUT", "/v1/me/notifications", "The caller's default notification settings (sent to every session)",
          "push", Answer(200, NotifySettingsChanged), body=NotifyBody, errors=(400, 413, 422)),
    route("PUT", "/v1/convs/{id}/notifications", "A conversation's notification settings", "push",
          Answer(200, NotifySettingsChanged), body=NotifyBody, errors=(400, 404, 413, 422)),
    route("DELETE", "/v1/convs/{id}/notifications", "The conversation follows the default again", "push",
          Answer(200, NotifySettingsChanged), errors=(404,)),
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
        description="Accounts and login sessions, people, reports, privacy, attachments and the server's "
                    "capabilities: everything a client calls besides the WebSocket (`GET /v1/ws`, "
                    "docs/protocol.md). Errors answer "
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
