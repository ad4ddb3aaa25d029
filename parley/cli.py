"""The `parley` command: `parley dev` runs the whole platform in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from parley.config import Settings
from parley.version import describe

log = logging.getLogger("parley")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description="Parley chat platform")
    parser.add_argument("--version", action="version", version=describe())
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run every stage in one process (SQLite, no external services)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--data-dir", type=Path, default=Path(".parley"))
    dev.add_argument("--log-level", default="INFO")
    return parser


async def _serve(settings: Settings) -> None:
    from parley.embedded import build_app

    app = await build_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096)
    await site.start()
    log.info("%s serving http://%s:%d (data in %s)", describe(), settings.host, settings.port,
             settings.data_dir.resolve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: telling clients to reconnect, draining")
    await runner.cleanup()
    log.info("stopped")


def _run(coro: "asyncio.Future[None] | object") -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "dev":
        settings = Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir)
        _run(_serve(settings))
    return 0
