"""Run by tests/integration/test_locust_session.py in its own interpreter (gevent patches the
standard library): two load-test sessions, a sender and a receiver, driven through stdin/stdout
while the test stops and starts the server under them."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402  (after patching, as Locust does)
import sys  # noqa: E402

import gevent  # noqa: E402

from loadtests.locust.wsclient import ProtocolSession  # noqa: E402

url, conv, sender_token, receiver_token = sys.argv[1:5]
records: list[tuple[str, bool, str]] = []
received: list[str] = []


def record(name: str, ms: float, exc: Exception | None) -> None:
    records.append((name, exc is None, repr(exc)))


def got(event: dict) -> None:  # type: ignore[type-arg]
    received.append(event["message"]["text"])


def wait_for(count: int) -> None:
    with gevent.Timeout(30):
        while len(received) < count:
            gevent.sleep(0.05)


sender = ProtocolSession(url, sender_token, record=record, on_message=lambda e: None, source_ip="127.0.1.7")
receiver = ProtocolSession(url, receiver_token, record=record, on_message=got)
sender.start()
receiver.start()
for n in range(3):
    sender.send(conv, f"before {n}")
wait_for(3)
print("delivered", flush=True)
assert sys.stdin.readline().strip() == "down"
# Sent while the server is down: each waits for the reconnect, then goes out (once: same cmid).
sends = [gevent.spawn(sender.send, conv, f"during {n}") for n in range(3)]
print("sending", flush=True)
gevent.joinall(sends, timeout=60, raise_error=True)
sender.send(conv, "after")
wait_for(7)
gevent.sleep(0.5)  # anything delivered twice would show now
print(json.dumps({"received": received, "records": records, "reconnects": [sender.reconnects, receiver.reconnects]}),
      flush=True)
sender.close()
receiver.close()
