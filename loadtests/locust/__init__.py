"""The Locust load tests: the protocol over WebSocket on gevent, for SREs who know Locust
(docs/loadtesting.md). `make loadtest` runs them; `loadtests.bench` stays the precise
open-loop tool.

    locustfile.py  the Locust user and the event hooks (request events, results to the master)
    wsclient.py    one protocol session on websocket-client: hello, heartbeats, resync, reconnect
    behaviours.py  what a user does with its session: hold, chat in a group, post or subscribe
    ledger.py      send -> delivery accounting: latencies, and messages acked but not delivered
    latency.py     the send timestamp a message carries, on a clock both ends read
    plan.py        who is who: accounts, conversations, and which accounts each worker runs
    prepare.py     makes a plan's conversations through the asyncio SDK
    run.py         `make loadtest`: system under test, accounts, plan, master and workers, results
    faults.py      kill -9 a gateway, or restart every gateway in turn, while the test runs
"""
