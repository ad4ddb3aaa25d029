"""The client REST API's OpenAPI document (docs/openapi/client.json): it lists every route the
gateway serves to clients, its copy in docs/ is current, and schemathesis fuzzes every route of it
against a real `parley dev` as a registered user: no 5xx, every answer matches the documented
status codes, content type and schema, and the server logs no traceback."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from gateway.openapi import DOC_PATH, PATH, ROUTES, document
from moderation.admin.routes import PREFIX as ADMIN_PREFIX
from parley import openapi
from parley.adapters.local_attachments import LocalAttachments
from parley.app.stores import attachment_routes
from parley.sdk import Account, Client, register
from tests.conftest import ParleyProcess
from tests.integration.test_admin import served_routes

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_path(DOC_PATH)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Served by the gateway but not the client REST API: the WebSocket (docs/protocol.md), the admin
#: API (its own document), the web client's files.
NOT_REST = ("/v1/ws", "/", "/static")


def blob_routes() -> set[tuple[str, str]]:
    """The embedded object store's signed URLs: the attachments adapter's, not the API's."""
    app = web.Application()
    for mount in attachment_routes(LocalAttachments(Path("unused"), b"k" * 32)):
        mount(app)
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource and r.method != "HEAD"}


def test_every_client_route_the_gateway_serves_is_in_the_document_and_no_other():
    served = {(method, path) for method, path in served_routes()
              if path not in NOT_REST and not path.startswith(ADMIN_PREFIX)} - blob_routes()
    documented = {(op.method, op.path) for op in ROUTES}
    assert served - documented == set(), "add these to gateway/openapi.py's ROUTES"
    assert documented - served == set(), "documented but not served"


def test_the_client_openapi_document_in_docs_is_current():
    assert DOC_PATH.read_text() == openapi.render(document()), "run: python -m gateway.openapi"


# ---- schemathesis against a real server ---------------------------------------------------


@dataclass(frozen=True)
class Api:
    base_url: str
    #: Whose token the generated calls carry.
    fuzzer: Account
    #: The fixed examples' user (the fuzzer uses up its rate limits), with a conversation of
    #: theirs holding one message, and an attachment uploaded to it.
    owner: Account
    conv: str
    attachment: str


async def _upload(base_url: str, user: Account, conv: str) -> str:
    headers = {"Authorization": f"Bearer {user.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url + "/v1/uploads", headers=headers,
                             json={"conv": conv, "name": "a.txt", "mime": "text/plain", "size": 3}) as resp:
            ticket = await resp.json()
            assert resp.status == 201, ticket
        async with http.put(ticket["upload_url"], data=b"abc", headers=ticket["headers"]) as resp:
            assert resp.status < 300, await resp.text()
    return ticket["id"]


async def _user(base_url: str) -> Account:
    # A password no generated body will guess: DELETE /v1/me must not succeed.
    return await register(base_url, f"fuzz_{secrets.token_hex(4)}", secrets.token_urlsafe(24))


async def _setup(base_url: str) -> Api:
    owner = await _user(base_url)
    client = await Client.connect(base_url, owner.token)
    try:
        conv = (await client.request("conv.create", kind="group", members=[]))["conv"]["id"]
        await client.send(conv, "something to report")
    finally:
        await client.close()
    return Api(base_url, await _user(base_url), owner, conv, await _upload(base_url, owner, conv))


@pytest.fixture(scope="module")
def client_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    proc = ParleyProcess(tmp_path_factory.mktemp("client-openapi") / "data",
                         env={"PARLEY_IP_AUTH_BURST": "100000"})
    proc.start()
    try:
        yield asyncio.run(_setup(proc.base_url))
    finally:
        proc.stop()
    if "Traceback" in proc.log():
        pytest.fail(f"the server logged a traceback:\n{proc.log()}")


def _auth(user: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}"}


@pytest.mark.fuzz
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_client_route_matches_its_openapi_document(case, client_api):
    case.call_and_validate(base_url=client_api.base_url, headers=_auth(client_api.fuzzer), checks=CHECKS)


@pytest.mark.fuzz
def test_the_routes_that_need_existing_ids_match_the_document_with_them(client_api):
    """Generated ids find nothing: these calls reach each route's success answer."""
    api = client_api
    cases = [
        schema[PATH]["GET"].Case(),
        schema["/v1/uploads/{id}/complete"]["POST"].Case(path_parameters={"id": api.attachment}),
        schema["/v1/attachments/{id}"]["GET"].Case(path_parameters={"id": api.attachment}),
        schema["/v1/reports"]["POST"].Case(body={"kind": "message", "conv": api.conv, "seq": 1, "reason": "fuzz"}),
    ]
    statuses = []
    for case in cases:
        response = case.call_and_validate(base_url=api.base_url, headers=_auth(api.owner), checks=CHECKS)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 201]
