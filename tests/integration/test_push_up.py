"""The push role on `parley up` (Kafka, NATS, Redis, the push worker a process of its own) with
the FCM stand-in as the provider (pointed at by environment variables): a kill -9 of the push
worker in the middle of a batch loses no push, and a push sent again shows once on the phone; a
kill -9 of the push role while a call rings still cancels the ring and pushes the missed call."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from parley.adapters.kafka_log import POLL_MS
from parley.sdk import Client, register
from tests.conftest import ParleyProcess
from tests.integration.test_push_pipeline import eventually
from tests.push_standins.fcm import FcmStandin
from tests.integration.test_topology_faults import restarted
from tests.livekit_standin import StandInThread
from tests.push_standins.fixtures import PushKeys, fcm_standin, fcm_token, push_keys  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 12


async def add_device(base_url: str, token: str, device_token: str) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url + "/v1/devices", headers={"Authorization": f"Bearer {token}"},
                             json={"platform": "fcm", "token": device_token, "app_id": "chat.parley.android"}) as r:
            assert r.status == 201, await r.text()


def topology(tmp_path: Path, fcm_standin: FcmStandin, **env: str) -> ParleyProcess:
    """`parley up` with the FCM stand-in as its push provider."""
    credentials = fcm_standin.write_service_account(tmp_path / "service-account.json")
    return ParleyProcess(tmp_path / "data", mode="up", env={
        "PARLEY_FCM_CREDENTIALS": str(credentials), "PARLEY_FCM_ENDPOINT": fcm_standin.url,
        "SSL_CERT_FILE": os.environ["SSL_CERT_FILE"], "PARLEY_PUSH_SEND_TIMEOUT_S": "4",
        "PARLEY_IP_AUTH_BURST": "100000", **env})


async def test_a_kill_9_of_the_push_worker_mid_batch_loses_no_push(tmp_path: Path, fcm_standin: FcmStandin):
    srv = topology(tmp_path, fcm_standin)
    await asyncio.to_thread(srv.start)  # the stand-in answers meanwhile (this loop is free)
    try:
        alice = await register(srv.base_url, "alice", "correct horse")
        members = [await register(srv.base_url, f"member{i}", "correct horse") for i in range(MEMBERS)]
        for i, member in enumerate(members):
            await add_device(srv.base_url, member.token, fcm_token(i))
        # One device's first send hangs: its batch stays in flight for seconds, long enough to
        # kill the worker in the middle of it (the others' pushes are answered by then).
        fcm_standin.script.hang(fcm_token(0), times=1)
        async with await Client.connect(srv.base_url, alice) as a:
            conv = (await a.request("conv.create", kind="group", title="Kill",
                                    members=[m.user_id for m in members]))["conv"]["id"]
            seq = (await a.send(conv, "are you there?"))["seq"]
        await eventually(lambda: len(fcm_standin.received) >= MEMBERS - 1, timeout=30)
        [worker] = [p for p in srv.topology()["processes"] if p["role"] == "push"]
        os.kill(worker["pid"], signal.SIGKILL)  # mid-batch: the hung send is still waiting

        def delivered() -> Counter[str]:
            return Counter(r.message["token"] for r in fcm_standin.received
                           if r.status == 200 and r.message["data"]["seq"] == str(seq))
        await eventually(lambda: len(delivered()) == MEMBERS, timeout=60)  # restarted, the batch came again
        await asyncio.sleep(2)
    finally:
        await asyncio.to_thread(srv.stop)
    # The hung device's push was never answered before the kill: it arrives only because the
    # batch was not committed before it was settled, and came again to the restarted worker.
    assert set(delivered()) == {fcm_token(i) for i in range(MEMBERS)}, "no push is lost"
    # Answered before the kill but not yet marked: sent again after the restart, with the same
    # collapse key and tag, so the phone replaces the first and shows one notification.
    for token in delivered():
        copies = [r.message["android"] for r in fcm_standin.received
                  if r.message["token"] == token and r.message["data"]["seq"] == str(seq)]
        assert {(c["collapse_key"], c["notification"]["tag"]) for c in copies} == {(conv, conv)}
        assert len(copies) <= 2, "at most the one before the kill, and the one after"


async def test_a_kill_9_of_the_push_role_while_a_call_rings_still_cancels_it_and_pushes_the_missed_call(
        tmp_path: Path, fcm_standin: FcmStandin, livekit: StandInThread):
    srv = topology(tmp_path, fcm_standin, **livekit.env)
    await asyncio.to_thread(srv.start)

    def pushes(kind: str) -> list[str | None]:
        """The call ids of the pushes of `kind` the stand-in accepted for bob's phone."""
        return [r.message["data"].get("call_id") for r in fcm_standin.received
                if r.status == 200 and r.message["token"] == fcm_token("bob") and r.message["data"]["kind"] == kind]
    try:
        alice, bob = [await register(srv.base_url, n, "correct horse") for n in ("alice", "bob")]
        await add_device(srv.base_url, bob.token, fcm_token("bob"))
        async with await Client.connect(srv.base_url, alice) as a:
            conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
            call = (await a.call_start(conv))["call"]["id"]
            await eventually(lambda: pushes("call") == [call], timeout=30)
            # Idle, the decision commits past the ring: the one started again reads on from there.
            await asyncio.sleep(4 * POLL_MS / 1000)
            # The decision that rang bob's phone is gone; the one started again did not see it ring.
            [role] = [p for p in srv.topology()["processes"] if p["role"] == "push"]
            os.kill(role["pid"], signal.SIGKILL)
            await restarted(srv, role["name"], role["pid"], timeout=60)
            await a.call_leave(call)
            await eventually(lambda: pushes("call_cancel") == [call] and pushes("message") == [call], timeout=60)
            await asyncio.sleep(2)
    finally:
        await asyncio.to_thread(srv.stop)
    assert pushes("call") == [call], "not rung again"
    assert pushes("call_cancel") == [call] and pushes("message") == [call], "one cancel, one missed-call push"
