"""Schemathesis against the admin API's OpenAPI document (docs/openapi/admin.json), as an admin:
no 5xx, and every response matches the documented status codes, content type and schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from moderation.admin.openapi import DOC_PATH
from tests.conftest import ParleyProcess
from tests.integration.test_admin import staff

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_path(DOC_PATH)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    proc = ParleyProcess(tmp_path_factory.mktemp("openapi") / "data", env={"PARLEY_IP_AUTH_BURST": "100000"})
    proc.start()
    try:
        admin = asyncio.run(staff(proc, "admin"))
        yield proc.base_url, admin.token
    finally:
        proc.stop()
    if "Traceback" in proc.log():
        pytest.fail(f"the server logged a traceback:\n{proc.log()}")


@pytest.mark.fuzz
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_admin_api_matches_its_openapi_document(case, admin_api):
    base_url, token = admin_api
    case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
