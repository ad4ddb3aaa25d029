"""The error hierarchy: every failure a client can see, each with its one wire code.

ParleyError
 +-- BadRequest     bad_request   malformed or wrongly typed (checked before any lookup)
 |    +-- UnsupportedMediaType  bad_request (HTTP 415)  a MIME type the server does not take
 |    +-- Invalid   bad_request   (REST: 422) a well-formed body whose fields fail validation
 +-- Unauthorized   unauthorized  missing, bad or expired credentials
 +-- Forbidden      forbidden     authenticated but not allowed; carries a readable reason and,
                                  from the policy core, the id of the rule that denied (`rule`)
 +-- NotFound       not_found     no such thing, or not visible to the caller
 +-- Conflict       conflict      the state forbids it (name taken, already a member)
 +-- RateLimited    rate_limited  slow down; carries retry_after_ms
 +-- TooLarge       too_large     over a size limit
 +-- Unavailable    unavailable   a dependency is down or overloaded; retry (retry_after_ms)
 +-- Internal       internal      a bug; never carries details to the client

Domain code raises these; the gateway maps them to `error` frames and HTTP statuses once, and
the SDK (`parley.sdk`) maps those back with `error_for_code`, so a client catches the same classes.
"""

from __future__ import annotations


class ParleyError(Exception):
    code = "internal"
    http_status = 500

    def __init__(self, message: str, *, retry_after_ms: int | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms
        #: The policy rule that denied (e.g. "muted", "banned"): stable, unlike the wording.
        self.rule = rule


class BadRequest(ParleyError):
    code, http_status = "bad_request", 400


class UnsupportedMediaType(BadRequest):
    """The wire code stays `bad_request` (the contract's list of codes is closed); REST says 415."""

    http_status = 415


class Invalid(BadRequest):
    """A JSON body or query whose fields are missing, mistyped or out of range; `fields` names them."""

    http_status = 422

    def __init__(self, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.fields = fields


class Unauthorized(ParleyError):
    code, http_status = "unauthorized", 401


class Forbidden(ParleyError):
    code, http_status = "forbidden", 403


class NotFound(ParleyError):
    code, http_status = "not_found", 404


class Conflict(ParleyError):
    code, http_status = "conflict", 409


class TooLarge(ParleyError):
    code, http_status = "too_large", 413


class RateLimited(ParleyError):
    code, http_status = "rate_limited", 429


class Unavailable(ParleyError):
    code, http_status = "unavailable", 503


class Internal(ParleyError):
    code, http_status = "internal", 500


def error_body(err: ParleyError) -> dict[str, object]:
    """The REST error body of docs/protocol.md (plus `fields` for an Invalid body)."""
    body: dict[str, object] = {"code": err.code, "message": err.message}
    if err.rule is not None:
        body["rule"] = err.rule
    if isinstance(err, Invalid):
        body["fields"] = err.fields
    return {"error": body}


_BY_CODE: dict[str, type[ParleyError]] = {
    cls.code: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, RateLimited,
                              Unavailable, Internal)
}


def error_for_code(
    code: str, message: str, retry_after_ms: int | None = None, *, rule: str | None = None
) -> ParleyError:
    """The error an `error` frame or a REST error body carries, raised again: by the gateway
    for a REST call that ran a command, by the SDK for every refusal it is answered. A code
    outside the closed list is a server bug, so it reads as Internal."""
    return _BY_CODE.get(code, Internal)(message, retry_after_ms=retry_after_ms, rule=rule)
