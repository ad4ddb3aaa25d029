"""The Locust suite's decisions, without Locust or a socket: send stamps, the delivery ledger
(acked but not delivered is caught), the master's fan-out tally, dealing accounts to workers
(a group never split), the scenarios and the workers' source addresses; and that the shared
frame module loads no asyncio (Locust runs on gevent)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loadtests.locust.fanout_tally import FanoutTally, percentile
from loadtests.locust.latency import Stamp, read_stamp, stamp_text
from loadtests.locust.ledger import DeliveryLedger
from loadtests.locust.plan import Account, Conv, Layout, Plan, deal, roles, units_of
from loadtests.locust.run import locust_users, scenario, server_env, source_ips, _args


def test_a_stamp_reads_back_and_other_text_is_not_one():
    assert read_stamp(stamp_text("mono", 123456789, "u1")) == Stamp("mono", 123456789)
    assert read_stamp(stamp_text("wall", 5)) == Stamp("wall", 5)
    for text in ("hello", "lt sundial 5", "lt mono x", None, 7, "lt mono"):
        assert read_stamp(text) is None


def test_a_message_acked_but_not_delivered_to_an_online_member_is_overdue_after_the_grace():
    ledger = DeliveryLedger()
    ledger.delivered("c", 1, "a", 3.0, now_s=0.0, sent_ns=1)  # a delivery may come before the ack
    ledger.acked("c", 1, frozenset({"a", "b"}), now_s=0.1)
    assert ledger.settle(now_s=5.0, grace_s=10.0).overdue == []
    settled = ledger.settle(now_s=10.2, grace_s=10.0)
    assert [(o.conv, o.seq, o.missing) for o in settled.overdue] == [("c", 1, frozenset({"b"}))]
    assert ledger.pending() == 0


def test_a_complete_message_retires_at_once_and_a_repeat_delivery_is_not_counted():
    ledger = DeliveryLedger()
    ledger.acked("c", 2, frozenset({"a", "b"}), now_s=0.0)
    assert ledger.delivered("c", 2, "a", 4.0, now_s=0.0, sent_ns=1)
    assert not ledger.delivered("c", 2, "a", 9.0, now_s=0.0, sent_ns=1)
    ledger.delivered("c", 2, "b", 7.0, now_s=0.0, sent_ns=1)
    assert ledger.settle(now_s=0.1, grace_s=10.0).overdue == []
    [spread] = ledger.take_spreads()
    assert (spread.deliveries, spread.first_ms, spread.last_ms) == (2, 4.0, 7.0)


def test_at_the_end_what_is_still_within_its_grace_is_unsettled_not_lost():
    ledger = DeliveryLedger()
    ledger.acked("c", 1, frozenset({"a"}), now_s=0.0)
    ledger.acked("c", 2, frozenset({"a"}), now_s=20.0)
    settled = ledger.settle(now_s=25.0, grace_s=10.0, final=True)
    assert [o.seq for o in settled.overdue] == [1] and settled.unsettled == 1


def test_the_master_adds_up_a_posts_deliveries_from_every_worker():
    tally = FanoutTally({"ch": 4})
    tally.add([("ch", 1, 2, 3.0, 10.0, 100), ("other", 1, 9, 1.0, 1.0, 100)])
    tally.add([("ch", 1, 2, 2.0, 40.0, 100), ("ch", 2, 3, 1.0, 5.0, 200), ("ch", 3, 1, 1.0, 1.0, 900)])
    report = tally.report(sent_before_ns=500)["ch"]  # post 3 was sent as the test stopped
    assert isinstance(report, dict)
    assert report["posts"] == 2 and report["posts_short_of_subscribers"] == 1 and report["posts_left_out_at_stop"] == 1
    assert report["short_posts"] == {2: 3}
    assert report["time_to_last_delivery_ms"] == {"p50": 5.0, "p99": 40.0, "max": 40.0}
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_a_group_goes_to_one_worker_and_the_workers_loads_stay_even():
    convs = [Conv("g1", "group", list(range(0, 5)), list(range(0, 5)), 1.0),
             Conv("g2", "group", list(range(5, 10)), list(range(5, 10)), 1.0)]
    dealt = deal(units_of(20, convs), 3)
    for conv in convs:
        assert sum(1 for w in dealt if set(conv.members) <= set(w)) == 1
    assert sorted(i for w in dealt for i in w) == list(range(20))
    assert max(map(len, dealt)) - min(map(len, dealt)) <= 1


def test_roles_come_from_the_conversations_and_everyone_else_holds():
    accounts = [Account(f"u{i}", f"n{i}", "t") for i in range(6)]
    plan = Plan("x", accounts, [Conv("g", "group", [0, 1], [0, 1], 1.0), Conv("ch", "channel", [2, 3, 4], [2], 1.0)])
    found = {i: role for i, (role, _) in roles(plan).items()}
    assert found == {0: "chat", 1: "chat", 2: "post", 3: "subscribe", 4: "subscribe"}


def test_the_chat_scenario_is_one_percent_in_groups_of_fifty_at_a_fifth_of_a_send_per_second_each():
    args = _args(["--scenario", "chat", "--users", "100000", "--spawn-rate", "500", "--duration", "600"])
    layout = scenario(args).layout
    assert layout.chatters == 1000 and len(layout.groups) == 20 and layout.chat_rate == pytest.approx(200)
    assert layout.chat_every_s() == pytest.approx(5.0)
    storm = scenario(_args(["--scenario", "storm", "--users", "2000", "--spawn-rate", "100", "--duration", "60"]))
    assert storm.fault == "kill"
    channel = scenario(_args(["--scenario", "channel", "--users", "300", "--spawn-rate", "100", "--duration", "9"]))
    assert len(channel.layout.channel) == 300 and channel.layout.needs() == 300
    offline = scenario(_args(["--scenario", "channel", "--users", "10", "--spawn-rate", "9", "--duration", "9",
                              "--channel-members", "100"]))
    assert offline.layout.needs() == 100
    assert Layout(chatters=1000, group_size=1000).groups == [list(range(1000))]


def test_a_server_started_for_a_channel_of_100000_may_take_its_owners_100_invites():
    channel = scenario(_args(["--scenario", "channel", "--users", "10", "--spawn-rate", "9", "--duration", "9",
                              "--channel-members", "100000"]))
    assert server_env(channel.layout) == {"PARLEY_MAX_HANDSHAKES_PER_IP": "0", "PARLEY_INVITE_BURST": "100"}
    small = scenario(_args(["--scenario", "channel", "--users", "10", "--spawn-rate", "9", "--duration", "9",
                            "--channel-members", "30001"]))
    assert server_env(small.layout) == {"PARLEY_MAX_HANDSHAKES_PER_IP": "0"}  # within the default 30


def test_workers_get_their_own_loopback_source_address_and_none_for_a_remote_target():
    assert source_ips("http://127.0.0.1:8080", 3) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert source_ips("https://chat.example.org", 2) == [None, None]


def test_the_shared_frame_module_and_the_catchup_load_no_asyncio():
    code = ("import sys, parley.sdk.wire, parley.sdk.catchup; "
            "print(sorted(m for m in ('asyncio', 'aiohttp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("users, workers", [(10_001, 5), (10_000, 5), (7, 3), (1, 1), (100_000, 34)])
def test_every_worker_gets_at_least_as_many_locust_users_as_the_plan_gives_it_accounts(users: int, workers: int):
    dealt = deal([[i] for i in range(users)], workers)
    total = locust_users(users, workers)
    assert total % workers == 0  # Locust's even split: each worker total / workers users
    assert all(len(accounts) <= total // workers for accounts in dealt)
    assert total - users < workers


def test_the_locustfile_tunes_locust_for_many_workers_on_few_cores():
    """Locust's own costs that broke a 25-worker run: missing after 3 s of a busy start, and the
    argument parser built ~60 times per spawn message (a subprocess: importing Locust patches
    the interpreter for gevent)."""
    code = ("import loadtests.locust.locustfile, locust.argument_parser as a, locust.runners as r\n"
            "assert a.default_args_dict() is a.default_args_dict()\n"
            "assert r.HEARTBEAT_LIVENESS >= 60\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
