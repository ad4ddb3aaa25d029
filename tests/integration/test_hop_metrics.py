"""Every process serves its hop histograms on /metrics, and a message's trip through the whole
topology shows up in them: each hop of parley.hops observed somewhere, in `dev` and in `up`."""

from __future__ import annotations

import asyncio

import pytest

from loadtests import hopstats
from parley import hops
from tests.conftest import ParleyProcess
from tests.integration.test_messaging import MakeUser, close_all, collect, group_of

pytestmark = pytest.mark.integration

HOPS = [*hops.HOP_TO.values(), "pipeline", "gateway_publish_ack", "relay_publish_ack"]


def scrape_all(server: ParleyProcess) -> dict[str, hopstats.Scrape]:
    return hopstats.scrape_all(server.base_url, server.topology()["processes"] if server.mode == "up" else ())


async def test_a_message_trip_is_observed_on_every_hop(server: ParleyProcess, make_user: MakeUser) -> None:
    before = scrape_all(server)
    users = [await make_user() for _ in range(3)]
    clients, conv = await group_of(server, users)
    for i in range(5):
        await clients[i % 3].send(conv, f"hop {i}")
    for client in clients:
        await collect(client, conv, 5)
    await close_all(*clients)
    await asyncio.sleep(0.2)  # the relay's ack is observed just after the publish returns
    after = scrape_all(server)
    roles = {s.role for s in after.values()}
    if server.mode == "dev":
        assert roles == {"dev"}
    else:  # every process of the topology answered (the calls role too, when a LiveKit is configured)
        assert roles == {p["role"] for p in server.topology()["processes"]}
        assert {"gateway", "chat-core", "delivery"} <= roles
    merged = hopstats.merged_window(before, after)
    for hop in HOPS:
        # Other tests share the server, so at least: 5 sends, each pushed to 3 members' gateways.
        assert hopstats.count(merged.get(hop, {})) >= 5, f"{hop} not observed: {merged.get(hop)}"
    assert hopstats.count(merged["pipeline"]) >= 5
    p50 = hopstats.quantile(0.5, merged["pipeline"])
    assert p50 is not None and 0 < p50 < 5
