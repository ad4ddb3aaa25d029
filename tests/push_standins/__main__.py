"""Both stand-ins in a process of their own, for load runs (`loadtests.push_bench`):
`python -m tests.push_standins DIR` writes the credentials into DIR, prints one JSON line saying
where everything is, and serves until its standard input closes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.push_standins.apns import ApnsStandin
from tests.push_standins.fcm import FcmStandin
from tests.push_standins.keys import make_apns_key, make_rsa_key, make_tls


async def serve(directory: Path) -> None:
    tls = make_tls(directory)
    apns_key = make_apns_key(directory)
    fcm = FcmStandin(tls.server_context(), make_rsa_key())
    apns = ApnsStandin(tls.server_context(), apns_key.read_text())
    await fcm.start()
    await apns.start()
    print(json.dumps({"ca": str(tls.ca), "fcm_url": fcm.url,
                      "service_account": str(fcm.write_service_account(directory / "service-account.json")),
                      "apns_port": apns.port, "apns_key": str(apns_key)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent goes away
    await fcm.stop()
    await apns.stop()


def main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(Path(sys.argv[1])))
    else:
        uvloop.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
