"""The `parley` command: `parley dev` runs the whole platform in one process; `parley run ROLE`
one role of the scale-out topology; `parley up` that topology on one machine; `parley admin`
grants and revokes instance roles."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from parley import logs, tracing
from parley.config import Settings
from parley.errors import ParleyError
from parley.version import describe

log = logging.getLogger("parley")
#: The default of every command's --log-level.
LOG_LEVEL = os.environ.get("PARLEY_LOG_LEVEL", "INFO")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description="Parley chat platform")
    parser.add_argument("--version", action="version", version=describe())
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run every stage in one process (SQLite, no external services)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--data-dir", type=Path, default=Path(".parley"))
    dev.add_argument("--log-level", default=LOG_LEVEL)
    dev.add_argument("--trace", metavar="FILE", help="trace every request and message: each span as a JSON line "
                                                     "in FILE (no collector needed; OTEL_* variables otherwise)")
    run = sub.add_parser("run", help="run one role of the scale-out topology (configured by PARLEY_* variables)")
    run.add_argument("role", choices=["gateway", "chat-core", "delivery", "calls", "push"])
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080, help="clients (gateway) or /healthz and /readyz (workers)")
    run.add_argument("--data-dir", type=Path, default=Path(".parley"))
    run.add_argument("--log-level", default=LOG_LEVEL)
    up = sub.add_parser("up", help="run the scale-out topology on this machine: brokers, 2 of every role")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", type=Path, default=Path(".parley-up"))
    up.add_argument("--log-level", default=LOG_LEVEL)
    up.add_argument("--gateways", type=_positive, default=None,
                    help="gateway processes on the shared port (default 2): each holds at most its open-files limit of sessions")
    _add_migrate(sub)
    _add_admin_parser(sub)
    return parser




def _positive(text: str) -> int:
    """argparse type: a count of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value

#: `parley migrate`'s exit codes (2 is argparse's, for a bad command line).
EXIT_OK = 0
EXIT_FAILED = 1  # Cassandra unreachable, an applied migration edited, the lock lost mid-run
EXIT_SCHEMA_BEHIND = 3  # --check / --wait: packaged migrations not applied (yet)
EXIT_LOCKED = 4  # another runner held the schema lock past --lock-timeout


def _add_migrate(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from parley.adapters.cassandra.lease import LOCK_WAIT_S

    mig = sub.add_parser("migrate", help="create the Cassandra keyspace if needed and apply the packaged CQL "
                                         "migrations (PARLEY_CASSANDRA_*); SQLite migrates itself on start")
    mode = mig.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help=f"change nothing: exit 0 if every migration is applied, {EXIT_SCHEMA_BEHIND} if some "
                           "are missing")
    mode.add_argument("--wait", action="store_true",
                      help="change nothing: wait until every migration is applied (e.g. an init container)")
    mig.add_argument("--timeout", type=float, default=600.0, metavar="S", help="how long --wait waits")
    mig.add_argument("--lock-timeout", type=float, default=LOCK_WAIT_S, metavar="S",
                     help="how long to wait for another `parley migrate` to finish")
    mig.add_argument("--log-level", default=LOG_LEVEL)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    """`parley migrate`: the schema step of a Cassandra deployment (run once, e.g. as a Job);
    with --check or --wait, only whether it has been done."""
    from parley.adapters.cassandra.lease import LeaseSettings
    from parley.adapters.cassandra.migrate import check, migrate, wait_until_current
    from parley.adapters.cassandra.migration_errors import MigrationError, SchemaBehind, SchemaLocked
    from parley.adapters.cassandra.session import connect_for_check, connect_for_migrations
    from parley.app.stores import cluster_settings

    if settings.store != "cassandra":
        log.info("PARLEY_STORE=%s: nothing to migrate (SQLite migrates itself when it opens)", settings.store)
        return EXIT_OK
    cfg = cluster_settings(settings)
    if args.wait or args.check:
        # The driver logs a traceback for every failed connection, at every poll: our one line
        # per failure names the error already.
        logging.getLogger("cassandra").setLevel(logging.CRITICAL)

    async def run() -> None:
        if args.wait:
            await wait_until_current(lambda: connect_for_check(cfg), args.timeout, say=log.info)
        elif args.check:
            session = await connect_for_check(cfg)
            try:
                await check(session)
            finally:
                if session is not None:
                    await session.close()
        else:
            runner = await connect_for_migrations(cfg)
            try:
                done = await migrate(runner, say=log.info, lock=LeaseSettings(wait_s=args.lock_timeout))
                log.info("keyspace %s is at the latest schema (%d applied now)", cfg.keyspace, len(done))
                return
            finally:
                await runner.close()
        log.info("keyspace %s is at the latest schema", cfg.keyspace)

    step = "--wait" if args.wait else "--check" if args.check else "migration"
    try:
        asyncio.run(run())
    except SchemaBehind as err:
        log.error("keyspace %s is behind: %s", cfg.keyspace, err.message)
        return EXIT_SCHEMA_BEHIND
    except SchemaLocked as err:
        log.error("migration not started: %s", err.message)
        return EXIT_LOCKED
    except (MigrationError, ParleyError) as err:
        log.error("%s failed: %s", step, err.message)
        return EXIT_FAILED
    return EXIT_OK


def _add_admin_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    admin = sub.add_parser("admin", help="instance staff: grant or revoke the admin/moderator role")
    admin.add_argument("--data-dir", type=Path, default=Path(".parley"))
    admin.add_argument("--log-level", default="WARNING")
    acts = admin.add_subparsers(dest="admin_command", required=True)
    grant = acts.add_parser("grant", help="make USERNAME instance staff (their next login carries the role)")
    grant.add_argument("username")
    grant.add_argument("role", choices=["admin", "moderator"])
    revoke = acts.add_parser("revoke", help="take USERNAME's instance role away (their tokens stop working)")
    revoke.add_argument("username")
    revoke.add_argument("role", nargs="?", choices=["admin", "moderator"],
                        help="only if they hold this role")
    bulk = acts.add_parser("loadtest-users", help="create N load-test accounts without passwords and write their "
                                                  "tokens to FILE (only with PARLEY_ALLOW_LOADTEST_USERS=1)")
    bulk.add_argument("--count", type=_positive, required=True)
    bulk.add_argument("--out", type=Path, required=True,
                      help="JSON list of {user_id, username, token, refresh_token}")
    bulk.add_argument("--prefix", default="lt", help="usernames are PREFIX-<run>-<n>")
    bulk.add_argument("--ttl-s", type=int, default=None, help="access token lifetime (default: a day)")


async def _admin(settings: Settings, action: str, username: str, role: str | None) -> int:
    """Writes the users table of the configured store directly (SQLite: safe while `parley dev`
    runs, WAL) and audits it as actor "cli". A revoke bumps the token generation, so tokens that
    carry the role are refused from the next request on, and writes the revocation log, which
    the gateways read within seconds to close the user's live sessions; a grant takes effect at
    the next login (or refresh)."""
    from parley.accounts import now_ms
    from parley.records import AccountPatch, AuditEntry
    from parley.app.stores import open_store
    from parley.session_families import Revoker

    store = await open_store(settings)
    try:
        account = await store.account_by_name(username.strip().lower())
        if account is None or account.status == "deleted":
            print(f"parley admin: no user named {username!r} in {settings.data_dir}", file=sys.stderr)
            return 1
        if action == "grant":
            await store.update_account(account.id, AccountPatch(role=role))
        else:
            if account.role is None or (role is not None and account.role != role):
                print(f"parley admin: {account.username} is not {role or 'instance staff'}", file=sys.stderr)
                return 1
            role = account.role
            # No bus here: the gateways learn of it from the revocation log.
            await Revoker(store).cut_account(store, account.id, AccountPatch(role=None), "role revoked")
        await store.append_audit([AuditEntry(at=now_ms(), actor="cli", action=f"role.{action}", target=account.id,
                                             details={"role": role, "username": account.username})])
        print(f"{action} {role}: {account.username} ({account.id})")
        return 0
    finally:
        await store.close()


async def _serve(settings: Settings, role: str | None) -> None:
    if role is None:
        from parley.app.embedded import build_app
        app = await build_app(settings)
    else:
        from parley.app.roles import build_role
        app = await build_role(role, settings)
    if _access_log(role):
        # Inside the tracing middleware (first when tracing is on), so each line carries its
        # request's trace ids; outside everything else, so it logs the status the client got.
        app.middlewares.insert(1 if tracing.enabled() else 0, logs.access_log)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=settings.shutdown_timeout_s, access_log=None)
    await runner.setup()
    # "*": every interface, IPv4 and IPv6 alike (a socket per family), for dual-stack clusters.
    host = None if settings.host == "*" else settings.host
    site = web.TCPSite(runner, host, settings.port, backlog=4096, reuse_port=settings.reuse_port or None)
    await site.start()
    if settings.metrics_port:
        await web.TCPSite(runner, host, settings.metrics_port).start()
    log.info("%s %s serving http://%s:%d (data in %s)", describe(), role or "dev", settings.host, settings.port,
             settings.data_dir.resolve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: telling clients to reconnect, draining")
    await runner.cleanup()
    log.info("stopped")


def _access_log(role: str | None) -> bool:
    """On by default for a role of the topology, off for `parley dev` (`PARLEY_ACCESS_LOG`)."""
    wanted = os.environ.get("PARLEY_ACCESS_LOG", "").strip().lower()
    return wanted in ("1", "true", "yes", "on") if wanted else role is not None


def _run(coro: "asyncio.Future[None] | object") -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    role = args.role if args.command == "run" else args.command
    instance = f"{socket.gethostname()}-{os.getpid()}"
    logs.configure(role, instance, args.log_level, os.environ.get("PARLEY_LOG_FORMAT", "json"))
    if args.command == "migrate":
        return _migrate(Settings.from_env(), args)
    if args.command == "admin":
        settings = Settings.from_env(data_dir=args.data_dir)
        if args.admin_command == "loadtest-users":
            from parley.app.loadtest_users import loadtest_users
            return asyncio.run(loadtest_users(settings, args.count, args.out, args.prefix, args.ttl_s))
        return asyncio.run(_admin(settings, args.admin_command, args.username, args.role))
    if args.command == "up":
        from parley.app.up import up
        up(args.host, args.port, args.data_dir, args.gateways)
        return 0
    settings = Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir)
    tracing.configure(role, instance, getattr(args, "trace", None), clients=settings.trace_clients)
    try:
        _run(_serve(settings, args.role if args.command == "run" else None))
    finally:
        tracing.shutdown()
    return 0
