"""Instance staff and the admin REST API, against a real `parley dev`: roles from the CLI, the
role claim, suspensions, registration policies, reports, guests, privacy, the audit log."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from gateway.app import gateway_app
from gateway.hub import Hub
from moderation.admin.routes import PREFIX, ROUTES
from parley.adapters.local_attachments import LocalAttachments
from parley.app.stores import attachment_routes
from parley.auth import Tokens
from parley.config import SessionLifetimes
from parley.errors import ParleyError
from parley.limits import Limits
from parley.sdk import Account, Client, login, register
from tests.conftest import ROOT, ParleyProcess

pytestmark = pytest.mark.integration
PASSWORD = "correct horse"
_names = itertools.count()
#: The audit actions of staff reads (the rest of the admin API's entries are actions).
STAFF_READS = {"user.view", "user.search", "conv.view", "report.view", "report.list"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    proc = ParleyProcess(tmp_path_factory.mktemp("admin") / "data",
                         env={"PARLEY_IP_AUTH_BURST": "100000", "PARLEY_GUEST_SEND_BURST": "3",
                              "PARLEY_GUEST_SEND_WINDOW_S": "60", "PARLEY_POLICY_REFRESH_S": "0.3"})
    proc.start()
    yield proc
    proc.stop()
    if "Traceback" in proc.log():
        pytest.fail(f"the server logged a traceback:\n{proc.log()}")


def parley_admin(srv: ParleyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley", "admin", "--data-dir", str(srv.data_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def name(prefix: str = "u") -> str:
    return f"{prefix}{os.getpid()}_{next(_names)}_{time.monotonic_ns() % 10**6}"


async def member(srv: ParleyProcess) -> Account:
    return await register(srv.base_url, name(), PASSWORD)


async def staff(srv: ParleyProcess, role: str) -> Account:
    account = await member(srv)
    done = parley_admin(srv, "grant", account.username, role)
    assert done.returncode == 0, done.stderr
    return await login(srv.base_url, account.username, PASSWORD)


async def call(srv: ParleyProcess, method: str, path: str, token: str | None = None, body: Any = None,
               raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        async with http.request(method, srv.base_url + path, headers=headers, **kwargs) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)


async def audit(srv: ParleyProcess, token: str, **filters: str) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    status, body = await call(srv, "GET", f"{PREFIX}/audit?{query}", token)
    assert status == 200, body
    return body["entries"]


async def set_policy(srv: ParleyProcess, admin: Account, **changes: Any) -> dict:
    status, body = await call(srv, "PATCH", f"{PREFIX}/policies", admin.token, changes)
    assert status == 200, body
    return body


# ---- the gate -----------------------------------------------------------------------------


def served_routes(prefix: str = "/") -> list[tuple[str, str]]:
    """Every (method, path) the gateway serves under `prefix`, read from its real router."""
    local = LocalAttachments(Path("unused"), b"k" * 32)  # so the embedded object store's routes are served too
    app = gateway_app(hub=Hub("gw", Limits()), store=None, tokens=Tokens(b"k" * 32, 60),  # type: ignore[arg-type]
                      passwords=None, commands=None, fanout=None, bus=None,  # type: ignore[arg-type]
                      attachments=local, limits=Limits(), sessions=SessionLifetimes(), ready=None,  # type: ignore[arg-type]
                      routes=attachment_routes(local))
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(prefix) and route.method != "HEAD":
            out.append((route.method, path))
    return sorted(out)


def served_admin_routes() -> list[tuple[str, str]]:
    return served_routes(PREFIX)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)  # "1" fits string and integer parameters alike


def test_the_route_table_is_what_the_gateway_serves():
    served = served_admin_routes()
    assert len(served) == len(ROUTES) + 1  # + openapi.json
    assert ("GET", f"{PREFIX}/openapi.json") in served


async def test_every_admin_route_refuses_members_and_guests_before_looking_at_the_request(srv):
    admin = await staff(srv, "admin")
    await set_policy(srv, admin, guests=True)
    plain = await member(srv)
    status, guest = await call(srv, "POST", "/v1/auth/guest")
    assert status == 201, guest
    before = await audit(srv, admin.token)
    routes = served_admin_routes()
    for method, path in routes:
        url = concrete(path)
        for token in (plain.token, guest["token"]):
            for body in ({"reason": "x", "user": plain.user_id, "duration_s": 60, "action": "dismiss"}, None):
                status, reply = await call(srv, method, url, token, body)
                assert status == 403 and reply["error"]["code"] == "forbidden", (method, url, reply)
                assert "moderator" in reply["error"]["message"] or "admin" in reply["error"]["message"]
            status, _ = await call(srv, method, url, token, raw=b"not json")
            assert status == 403, (method, url)
        status, reply = await call(srv, method, url, None)
        assert status == 401 and reply["error"]["code"] == "unauthorized", (method, url)
        status, _ = await call(srv, method, url, "garbage")
        assert status == 401, (method, url)
    # Nothing of it reached an action: no audit entry, the member is not suspended.
    assert await audit(srv, admin.token) == before
    assert (await login(srv.base_url, plain.username, PASSWORD)).user_id == plain.user_id
    await set_policy(srv, admin, guests=False)


#: What a client may send as a body, and the headers that go with it.
HOSTILE_BODIES = {
    "nested 5,000 deep": (b'{"reason":' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
    "not the gzip it says it is": (b'{"reason": "x"}', {"Content-Encoding": "gzip"}),
    "a lone surrogate escape": (rb'{"username":"x\ud800","password":"\ud800 long enough","reason":"\ud800"}', {}),
    "an integer of 5,000 digits": (b'{"size":' + b"9" * 5000 + b"}", {}),
}
#: Routes whose handler reads the body (the rest answer before, or never look at it).
READS_BODY = {("POST", "/v1/auth/register"), ("POST", "/v1/auth/login"), ("POST", "/v1/reports"),
              ("DELETE", "/v1/me"), ("POST", "/v1/uploads"),
              *((route.method, route.full_path) for route in ROUTES if route.body is not None)}


async def test_hostile_bodies_get_a_json_4xx_on_every_route_and_bad_request_where_the_body_is_read(srv):
    admin = await staff(srv, "admin")  # past every gate, so each handler gets to the body
    before = len(srv.log())
    routes = [(m, p) for m, p in served_routes() if m not in ("GET", "HEAD")]
    assert READS_BODY <= set(routes)
    # A connection per request: the server ends one whose body it could not read.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for method, path in routes:
            for what, (raw, headers) in HOSTILE_BODIES.items():
                async with http.request(method, srv.base_url + concrete(path), data=raw,
                                        headers={"Authorization": f"Bearer {admin.token}", **headers}) as resp:
                    status, reply = resp.status, await resp.json()
                assert 400 <= status < 500 and reply["error"]["message"], (method, path, what, status, reply)
                if (method, path) in READS_BODY:  # refused as a malformed body (422: a typed field's fault)
                    assert status in (400, 422) and reply["error"]["code"] == "bad_request", (method, path, what)
                    assert status == 400 or what != "not the gzip it says it is"
    await asyncio.sleep(0.2)
    assert "Traceback" not in srv.log()[before:]
    assert (await call(srv, "GET", "/v1/me/export", admin.token))[0] == 200  # nothing was deleted


async def test_moderators_are_refused_admin_only_routes(srv):
    mod = await staff(srv, "moderator")
    status, reply = await call(srv, "PATCH", f"{PREFIX}/policies", mod.token, {"registration": "closed"})
    assert status == 403 and "admin" in reply["error"]["message"]
    status, policy = await call(srv, "GET", f"{PREFIX}/policies", mod.token)
    assert status == 200 and policy["registration"] == "open"


# ---- roles ----------------------------------------------------------------------------------


async def test_the_cli_grants_a_role_that_the_next_login_carries_and_a_revoke_cuts_the_token(srv):
    account = await member(srv)
    assert parley_admin(srv, "grant", account.username, "moderator").returncode == 0
    status, _ = await call(srv, "GET", f"{PREFIX}/users", account.token)
    assert status == 403  # a token issued before the grant carries no role
    mod = await login(srv.base_url, account.username, PASSWORD)
    claims = jwt.decode(mod.token, options={"verify_signature": False})
    assert claims["roles"] == ["moderator"]
    status, page = await call(srv, "GET", f"{PREFIX}/users?q={account.username}", mod.token)
    assert status == 200 and [u["role"] for u in page["users"]] == ["moderator"]
    revoked = parley_admin(srv, "revoke", account.username)
    assert revoked.returncode == 0, revoked.stderr
    status, reply = await call(srv, "GET", f"{PREFIX}/users", mod.token)
    assert status == 401 and "revoked" in reply["error"]["message"]
    again = await login(srv.base_url, account.username, PASSWORD)
    assert "roles" not in jwt.decode(again.token, options={"verify_signature": False})
    assert (await call(srv, "GET", f"{PREFIX}/users", again.token))[0] == 403
    entries = await audit(srv, (await staff(srv, "admin")).token, target=account.user_id)
    assert [(e["action"], e["actor"], e["details"]["role"]) for e in entries] == [
        ("role.revoke", "cli", "moderator"), ("role.grant", "cli", "moderator")]
    missing = parley_admin(srv, "grant", "nobody-here", "admin")
    assert missing.returncode == 1 and "no user" in missing.stderr


async def test_a_role_revoked_with_the_cli_closes_the_staff_members_live_session_within_seconds(srv):
    mod = await staff(srv, "moderator")
    live = await Client.connect(srv.base_url, mod.token)
    revoked = parley_admin(srv, "revoke", mod.username)  # another process, which writes the store only
    assert revoked.returncode == 0, revoked.stderr
    started = time.monotonic()
    assert await live.wait_closed(timeout=10) == 4003
    assert time.monotonic() - started < 5
    with pytest.raises(ParleyError) as refused:
        await Client.connect(srv.base_url, mod.token)
    assert refused.value.code == "unauthorized"


# ---- users --------------------------------------------------------------------------------


async def test_a_suspension_closes_live_sessions_refuses_login_and_old_tokens_until_lifted(srv):
    mod = await staff(srv, "moderator")
    bob = await member(srv)
    live = await Client.connect(srv.base_url, bob.token)
    status, account = await call(srv, "POST", f"{PREFIX}/users/{bob.user_id}/suspend", mod.token,
                                 {"reason": "spam links", "duration_s": 3600})
    assert status == 200 and account["suspend_reason"] == "spam links"
    assert account["suspended_until"] > time.time() * 1000 + 3500_000
    assert await live.wait_closed() == 4003
    with pytest.raises(ParleyError) as refused:
        await Client.connect(srv.base_url, bob.token)
    assert refused.value.code == "unauthorized"  # the old token's generation is gone
    status, reply = await call(srv, "POST", "/v1/uploads", bob.token,
                               {"conv": "c-any", "name": "a.png", "mime": "image/png", "size": 10})
    assert status == 401, reply  # no REST route takes the old token either
    with pytest.raises(ParleyError) as refused:
        await login(srv.base_url, bob.username, PASSWORD)
    assert refused.value.http_status == 403 and "suspended until" in refused.value.message
    assert "spam links" in refused.value.message
    status, _ = await call(srv, "POST", f"{PREFIX}/users/{bob.user_id}/unsuspend", mod.token, {"reason": "appeal"})
    assert status == 200
    bob = await login(srv.base_url, bob.username, PASSWORD)
    await (await Client.connect(srv.base_url, bob.token)).close()
    entries = await audit(srv, mod.token, target=bob.user_id)
    assert [(e["action"], e["actor"], e["reason"]) for e in entries] == [
        ("user.unsuspend", mod.user_id, "appeal"), ("user.suspend", mod.user_id, "spam links")]
    assert entries[1]["details"]["duration_s"] == 3600


async def test_staff_cannot_suspend_themselves_or_staff_of_their_rank(srv):
    mod, other, admin = await staff(srv, "moderator"), await staff(srv, "moderator"), await staff(srv, "admin")
    for target in (mod.user_id, other.user_id, admin.user_id):
        status, reply = await call(srv, "POST", f"{PREFIX}/users/{target}/suspend", mod.token, {"reason": "x"})
        assert status == 403, reply
    status, _ = await call(srv, "POST", f"{PREFIX}/users/{other.user_id}/suspend", admin.token, {"reason": "x"})
    assert status == 200
    status, _ = await call(srv, "POST", f"{PREFIX}/users/{other.user_id}/unsuspend", admin.token, {})
    assert status == 200


async def test_bad_bodies_and_unknown_ids_answer_400_422_404(srv):
    mod = await staff(srv, "moderator")
    bob = await member(srv)
    url = f"{PREFIX}/users/{bob.user_id}/suspend"
    status, reply = await call(srv, "POST", url, mod.token, raw=b"{not json")
    assert status == 400 and reply["error"]["code"] == "bad_request"
    status, reply = await call(srv, "POST", url, mod.token, {"reason": "x", "duration_s": "soon"})
    assert status == 422 and reply["error"]["fields"][0]["field"] == "duration_s"
    status, reply = await call(srv, "POST", url, mod.token, {})
    assert status == 422 and reply["error"]["fields"][0]["field"] == "reason"
    status, reply = await call(srv, "POST", url, mod.token, {"reason": "x", "until": 5})
    assert status == 422  # unknown fields are refused: a typo must not do less than asked
    status, reply = await call(srv, "GET", f"{PREFIX}/users?limit=1000", mod.token)
    assert status == 422 and reply["error"]["fields"][0]["field"] == "limit"
    for method, path in [("GET", "/users/u-nobody"), ("POST", "/users/u-nobody/unsuspend"),
                         ("GET", "/convs/c-nothing"), ("GET", "/reports/999999"),
                         ("POST", "/reports/999999/claim")]:
        status, reply = await call(srv, method, PREFIX + path, mod.token, {})
        assert status == 404 and reply["error"]["code"] == "not_found", (path, reply)


async def test_users_are_searched_by_prefix_status_and_role_and_paged(srv):
    mod = await staff(srv, "moderator")
    prefix = name("srch")
    for i in range(3):
        await register(srv.base_url, f"{prefix}_{i}", PASSWORD)
    status, page = await call(srv, "GET", f"{PREFIX}/users?q={prefix}&limit=2", mod.token)
    assert status == 200 and [u["username"] for u in page["users"]] == [f"{prefix}_0", f"{prefix}_1"]
    status, rest = await call(srv, "GET", f"{PREFIX}/users?q={prefix}&after={page['next_after']}", mod.token)
    assert [u["username"] for u in rest["users"]] == [f"{prefix}_2"] and rest["next_after"] is None
    status, staffers = await call(srv, "GET", f"{PREFIX}/users?role=moderator&limit=200", mod.token)
    assert mod.user_id in [u["id"] for u in staffers["users"]]
    assert all("password" not in json.dumps(u) for u in page["users"])


# ---- registration policy --------------------------------------------------------------------


async def test_registration_by_approval_invite_or_not_at_all(srv):
    admin, mod = await staff(srv, "admin"), await staff(srv, "moderator")
    try:
        await set_policy(srv, admin, registration="approval")
        status, body = await call(srv, "POST", "/v1/auth/register", None, {"username": (n := name()), "password": PASSWORD})
        assert status == 202 and body["status"] == "pending" and "token" not in body
        with pytest.raises(ParleyError) as refused:
            await login(srv.base_url, n, PASSWORD)
        assert refused.value.http_status == 403 and "approval" in refused.value.message
        status, pending = await call(srv, "GET", f"{PREFIX}/users?status=pending&q={n}", mod.token)
        assert [u["id"] for u in pending["users"]] == [body["user_id"]]
        assert (await call(srv, "POST", f"{PREFIX}/users/{body['user_id']}/approve", mod.token, {}))[0] == 200
        assert (await login(srv.base_url, n, PASSWORD)).user_id == body["user_id"]
        assert (await call(srv, "POST", f"{PREFIX}/users/{body['user_id']}/approve", mod.token, {}))[0] == 409

        await set_policy(srv, admin, registration="invite")
        status, reply = await call(srv, "POST", "/v1/auth/register", None, {"username": name(), "password": PASSWORD})
        assert status == 403 and "invite" in reply["error"]["message"]
        status, made = await call(srv, "POST", f"{PREFIX}/invites", mod.token, {"count": 2})
        assert status == 201 and len(made["invites"]) == 2
        code = made["invites"][0]["code"]
        status, body = await call(srv, "POST", "/v1/auth/register", None,
                                  {"username": name(), "password": PASSWORD, "invite": code})
        assert status == 201 and body["token"]
        status, reply = await call(srv, "POST", "/v1/auth/register", None,
                                   {"username": name(), "password": PASSWORD, "invite": code})
        assert status == 403 and "used" in reply["error"]["message"]
        status, unused = await call(srv, "GET", f"{PREFIX}/invites", mod.token)
        assert code not in [i["code"] for i in unused["invites"]]

        await set_policy(srv, admin, registration="closed")
        status, reply = await call(srv, "POST", "/v1/auth/register", None, {"username": name(), "password": PASSWORD})
        assert status == 403 and "closed" in reply["error"]["message"]
    finally:
        await set_policy(srv, admin, registration="open")
    actions = [e["action"] for e in await audit(srv, admin.token, actor=admin.user_id, action="policy.update")]
    assert len(actions) == 4
    assert [e["action"] for e in await audit(srv, mod.token, actor=mod.user_id)
            if e["action"] not in STAFF_READS] == ["invite.create", "user.approve"]


# ---- conversations and reports ----------------------------------------------------------------


async def test_a_moderator_inspects_a_conversation_and_deletes_a_message_with_a_reason(srv):
    mod, alice = await staff(srv, "moderator"), await member(srv)
    m = await Client.connect(srv.base_url, mod.token)
    a = await Client.connect(srv.base_url, alice.token)
    # Today chat_core lets a moderator delete where it is a moderator of the conversation or higher;
    # a non-member staff delete needs chat_core to honour Command.instance_role (see the report).
    conv = (await m.request("conv.create", kind="group", members=[alice.user_id], title="t"))["conv"]["id"]
    seq = (await a.send(conv, "rule-breaking text"))["seq"]
    status, seen = await call(srv, "GET", f"{PREFIX}/convs/{conv}", mod.token)
    assert status == 200 and seen["conv"]["title"] == "t" and "password_hash" not in seen["conv"]
    assert sorted((x["user"], x["role"]) for x in seen["members"]) == sorted(
        [(mod.user_id, "owner"), (alice.user_id, "member")])
    status, done = await call(srv, "POST", f"{PREFIX}/convs/{conv}/messages/{seq}/delete", mod.token,
                              {"reason": "off-topic"})
    assert status == 200 and done == {"op": "delete", "result": {"conv": conv, "seq": seq}}
    event = await a.next_event("message.deleted", conv=conv)
    assert event["message"]["deleted"] is True
    (entry,) = await audit(srv, mod.token, actor=mod.user_id, action="message.delete")
    assert (entry["target"], entry["conv"], entry["reason"]) == (f"{conv}/{seq}", conv, "off-topic")
    status, reply = await call(srv, "POST", f"{PREFIX}/convs/{conv}/messages/{seq}/delete", mod.token, {})
    assert status == 422
    await asyncio.gather(m.close(), a.close())


async def test_members_report_moderators_claim_and_resolve_with_an_action(srv):
    mod, mod2 = await staff(srv, "moderator"), await staff(srv, "moderator")
    alice, bob, eve = await member(srv), await member(srv), await member(srv)
    m = await Client.connect(srv.base_url, mod.token)
    a = await Client.connect(srv.base_url, alice.token)
    conv = (await m.request("conv.create", kind="group", members=[alice.user_id, bob.user_id]))["conv"]["id"]
    seq = (await a.send(conv, "buy cheap watches"))["seq"]
    status, receipt = await call(srv, "POST", "/v1/reports", bob.token,
                                 {"kind": "message", "conv": conv, "seq": seq, "reason": "spam"})
    assert status == 201 and receipt["status"] == "open"
    status, reply = await call(srv, "POST", "/v1/reports", eve.token,
                               {"kind": "message", "conv": conv, "seq": seq, "reason": "spam"})
    assert status == 404  # a non-member learns nothing
    status, reply = await call(srv, "POST", "/v1/reports", bob.token, {"kind": "message", "conv": conv, "reason": "x"})
    assert status == 422 and reply["error"]["fields"][0]["field"] == "seq"
    status, user_report = await call(srv, "POST", "/v1/reports", eve.token,
                                     {"kind": "user", "user": alice.user_id, "reason": "harassment"})
    assert status == 201

    status, queue = await call(srv, "GET", f"{PREFIX}/reports?status=open&target_user={alice.user_id}", mod.token)
    assert [r["id"] for r in queue["reports"]] == [user_report["id"], receipt["id"]]
    report = queue["reports"][1]
    assert (report["excerpt"], report["reporter"], report["kind"]) == ("buy cheap watches", bob.user_id, "message")
    rid = receipt["id"]
    assert (await call(srv, "POST", f"{PREFIX}/reports/{rid}/claim", mod.token))[0] == 200
    status, reply = await call(srv, "POST", f"{PREFIX}/reports/{rid}/claim", mod2.token)
    assert status == 409 and mod.user_id in reply["error"]["message"]
    status, reply = await call(srv, "POST", f"{PREFIX}/reports/{rid}/resolve", mod2.token, {"action": "dismiss"})
    assert status == 403
    status, resolved = await call(srv, "POST", f"{PREFIX}/reports/{rid}/resolve", mod.token,
                                  {"action": "delete_message", "note": "spam"})
    assert status == 200 and (resolved["status"], resolved["resolution"]) == ("resolved", "delete_message")
    history = (await a.request("history", conv=conv))["messages"]
    assert history[-1]["deleted"] is True and history[-1]["text"] is None
    assert (await call(srv, "POST", f"{PREFIX}/reports/{rid}/resolve", mod.token, {"action": "dismiss"}))[0] == 409

    status, resolved = await call(srv, "POST", f"{PREFIX}/reports/{user_report['id']}/resolve", mod2.token,
                                  {"action": "suspend_user", "duration_s": 60})
    assert status == 200
    with pytest.raises(ParleyError) as refused:
        await login(srv.base_url, alice.username, PASSWORD)
    assert refused.value.http_status == 403
    actions = [e["action"] for e in await audit(srv, mod.token, since=str(int(time.time() * 1000) - 60_000))
               if e["actor"] in (mod.user_id, mod2.user_id) and e["action"] not in STAFF_READS]
    assert actions == ["report.resolve", "user.suspend", "report.resolve", "message.delete", "report.claim"]
    await asyncio.gather(m.close(), a.close())


async def test_staff_reads_of_accounts_member_lists_and_reports_are_audited(srv):
    mod = await staff(srv, "moderator")
    alice, bob = await member(srv), await member(srv)
    async with await Client.connect(srv.base_url, alice.token) as a:
        conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
        seq = (await a.send(conv, "a private word"))["seq"]
    status, report = await call(srv, "POST", "/v1/reports", bob.token,
                                {"kind": "message", "conv": conv, "seq": seq, "reason": "rude"})
    assert status == 201
    for path in (f"/users/{alice.user_id}", f"/users?q={alice.username}", f"/convs/{conv}",
                 f"/reports?target_user={alice.user_id}", f"/reports/{report['id']}"):
        status, _ = await call(srv, "GET", PREFIX + path, mod.token)
        assert status == 200, path
    seen = {(e["action"], e["target"]) for e in await audit(srv, mod.token, actor=mod.user_id)}
    assert seen == {("user.view", alice.user_id), ("user.search", "users"), ("conv.view", conv),
                    ("report.list", "reports"), ("report.view", f"report/{report['id']}")}
    (listed,) = await audit(srv, mod.token, actor=mod.user_id, action="report.list")
    assert listed["details"]["ids"] == str(report["id"]) and listed["details"]["target_user"] == alice.user_id
    (viewed,) = await audit(srv, mod.token, actor=mod.user_id, action="conv.view")
    assert (viewed["conv"], viewed["details"]["visibility"], viewed["details"]["members"]) == (conv, "private", 2)


# ---- the audit log ----------------------------------------------------------------------------


async def test_the_audit_log_has_no_write_route_and_pages_newest_first(srv):
    admin = await staff(srv, "admin")
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        status, reply = await call(srv, method, f"{PREFIX}/audit", admin.token, {"id": 1})
        assert status == 405, (method, reply)
    for i in range(3):
        await set_policy(srv, admin, guest_ttl_s=600 + i)
    first = await audit(srv, admin.token, actor=admin.user_id, limit="2")
    status, page = await call(srv, "GET", f"{PREFIX}/audit?actor={admin.user_id}&limit=2", admin.token)
    assert [e["details"]["guest_ttl_s"] for e in first] == [602, 601] and page["next_before"] == first[-1]["id"]
    older = await audit(srv, admin.token, actor=admin.user_id, before=str(page["next_before"]))
    assert [e["details"]["guest_ttl_s"] for e in older] == [600]
    await set_policy(srv, admin, guest_ttl_s=3600)


async def test_conversation_defaults_set_by_an_admin_reach_chat_core(srv):
    admin, alice, bob = await staff(srv, "admin"), await member(srv), await member(srv)
    a = await Client.connect(srv.base_url, alice.token)
    b = await Client.connect(srv.base_url, bob.token)
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    await b.send(conv, "members may post")
    await set_policy(srv, admin, conv_defaults={"group.send": "admin"})
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                await b.send(conv, "still?")
            except ParleyError as err:
                assert (err.code, err.rule) == ("forbidden", "role"), err
                break
            assert time.monotonic() < deadline, "the new default never reached chat_core"
            await asyncio.sleep(0.2)
        await a.send(conv, "the owner still may")
    finally:
        await set_policy(srv, admin, conv_defaults={})
    await asyncio.gather(a.close(), b.close())


async def test_a_conversation_default_the_engine_does_not_have_is_refused_with_422(srv):
    admin = await staff(srv, "admin")
    for key in ("channel.jvaixmykeu", "group.set_permissions", "direct.kick"):  # unknown; not overridable; not of that kind
        status, body = await call(srv, "PATCH", f"{PREFIX}/policies", admin.token, {"conv_defaults": {key: "member"}})
        assert status == 422, body
        assert body["error"]["fields"][0]["field"] == "conv_defaults" and key in body["error"]["message"]
    status, policy = await call(srv, "GET", f"{PREFIX}/policies", admin.token)
    assert status == 200 and policy["conv_defaults"] == {}


# ---- guests -------------------------------------------------------------------------------------


async def test_guests_get_short_tokens_cannot_create_and_send_under_a_stricter_limit(srv):
    admin, alice = await staff(srv, "admin"), await member(srv)
    status, reply = await call(srv, "POST", "/v1/auth/guest")
    assert status == 403 and "disabled" in reply["error"]["message"]
    await set_policy(srv, admin, guests=True, guest_ttl_s=900)
    try:
        status, guest = await call(srv, "POST", "/v1/auth/guest")
        assert status == 201 and guest["username"].startswith("guest-")
        claims = jwt.decode(guest["token"], options={"verify_signature": False})
        assert claims["guest"] is True and claims["exp"] - claims["iat"] == 900 and "roles" not in claims
        assert "refresh_token" not in guest  # a guest's session ends with its token
        g = await Client.connect(srv.base_url, guest["token"])
        for op, fields in [("conv.create", {"kind": "group", "members": []}),
                           ("conv.create", {"kind": "direct", "members": [alice.user_id]})]:
            with pytest.raises(ParleyError) as refused:
                await g.request(op, **fields)
            assert refused.value.code == "forbidden" and "guests" in refused.value.message
        a = await Client.connect(srv.base_url, alice.token)
        room = (await a.request("conv.create", kind="group", members=[], visibility="public"))["conv"]["id"]
        with pytest.raises(ParleyError) as closed:  # public, but not open to guests
            await g.request("conv.join", conv=room)
        assert (closed.value.code, closed.value.rule) == ("forbidden", "guests")
        await a.request("conv.update", conv=room, allow_guests=True)
        assert (await g.request("conv.join", conv=room))["conv"]["allow_guests"] is True
        for i in range(3):
            await g.send(room, f"hi {i}")
        with pytest.raises(ParleyError) as limited:
            await g.send(room, "one too many")
        assert limited.value.code == "rate_limited" and limited.value.retry_after_ms
        with pytest.raises(ParleyError):
            await login(srv.base_url, guest["username"], "")
        await asyncio.gather(g.close(), a.close())
    finally:
        await set_policy(srv, admin, guests=False, guest_ttl_s=3600)


# ---- privacy --------------------------------------------------------------------------------------


async def test_a_user_exports_their_data_and_deletes_the_account(srv):
    alice, bob = await member(srv), await member(srv)
    a = await Client.connect(srv.base_url, alice.token)
    b = await Client.connect(srv.base_url, bob.token)
    conv = (await b.request("conv.create", kind="group", members=[alice.user_id]))["conv"]["id"]
    await b.send(conv, "hello alice")
    for text in ("mine one", "mine two"):
        await a.send(conv, text)
    status, export = await call(srv, "GET", "/v1/me/export", alice.token)
    assert status == 200
    assert export["account"]["username"] == alice.username and "password_hash" not in json.dumps(export)
    assert [c["id"] for c in export["memberships"]] == [conv]
    assert [m["text"] for m in export["messages"]] == ["mine one", "mine two"]

    status, reply = await call(srv, "DELETE", "/v1/me", alice.token, {"password": "wrong password"})
    assert status == 403
    status, receipt = await call(srv, "DELETE", "/v1/me", alice.token, {"password": PASSWORD})
    assert status == 200, receipt
    assert (receipt["messages_deleted"], receipt["conversations_left"], receipt["messages_kept"]) == (2, 1, [])
    assert await a.wait_closed() == 4003
    history = (await b.request("history", conv=conv))["messages"]
    assert [(m["text"], m["deleted"]) for m in history] == [("hello alice", False), (None, True), (None, True)]
    await b.request("sync")
    assert (await call(srv, "GET", "/v1/me/export", alice.token))[0] == 401
    with pytest.raises(ParleyError):
        await login(srv.base_url, alice.username, PASSWORD)
    admin = await staff(srv, "admin")
    status, gone = await call(srv, "GET", f"{PREFIX}/users/{alice.user_id}", admin.token)
    assert gone["status"] == "deleted" and gone["username"] == f"deleted-{alice.user_id}"
    (entry,) = await audit(srv, admin.token, action="user.delete", target=alice.user_id)
    assert entry["actor"] == alice.user_id
    await b.close()


async def test_password_confirmations_of_a_deletion_count_with_the_logins_of_the_name(srv):
    alice = await member(srv)
    for _ in range(10):
        assert (await call(srv, "DELETE", "/v1/me", alice.token, {"password": "wrong password"}))[0] == 403
    # Over the limit nothing is hashed: the right password is refused too, and so is a login.
    status, body = await call(srv, "DELETE", "/v1/me", alice.token, {"password": PASSWORD})
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    with pytest.raises(ParleyError) as refused:
        await login(srv.base_url, alice.username, PASSWORD)
    assert refused.value.code == "rate_limited"


async def test_data_exports_are_rate_limited_per_user(fresh_server):
    srv = fresh_server(PARLEY_EXPORT_BURST="2", PARLEY_EXPORT_WINDOW_S="3600")
    alice = await register(srv.base_url, "alice", PASSWORD)
    statuses = [(await call(srv, "GET", "/v1/me/export", alice.token))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]


# ---- per-IP limits ----------------------------------------------------------------------------------


async def test_auth_requests_are_limited_per_ip(fresh_server):
    srv = fresh_server(PARLEY_IP_AUTH_BURST="3", PARLEY_IP_AUTH_WINDOW_S="60")
    await register(srv.base_url, "first", PASSWORD)
    await login(srv.base_url, "first", PASSWORD)
    await login(srv.base_url, "first", PASSWORD)
    async with aiohttp.ClientSession() as http:
        async with http.post(srv.base_url + "/v1/auth/register", json={"username": "second", "password": PASSWORD}) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "rate_limited"


def test_the_openapi_document_in_docs_is_current():
    from moderation.admin.openapi import DOC_PATH, render

    assert Path(DOC_PATH).read_text() == render(), "run: python -m moderation.admin.openapi"
