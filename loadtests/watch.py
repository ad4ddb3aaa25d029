"""What the server did during a measured window: CPU per process and per role (the load
generator's apart), RSS samples, the machine's busy time, and every process's hop histograms and
refused requests from /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from typing import Any

from loadtests import hopstats, hoptable, usage
from loadtests.runtime import NS, log
from loadtests.server import ServerUnderTest

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None


def bench_snapshot() -> list[usage.ProcSample]:
    """This process and its load processes (not the server it started)."""
    if psutil is None:
        return []
    out = []
    for pid in [os.getpid(), *(p.pid for p in multiprocessing.active_children() if p.pid)]:
        with contextlib.suppress(psutil.Error):
            one = usage.sample(psutil.Process(pid), usage.Member(f"bench-{pid}", usage.BENCH_ROLE, pid))
            if one is not None:
                out.append(one)
    return out


async def scrape_hops(server: ServerUnderTest) -> dict[str, hopstats.Scrape] | None:
    """Every process's hop histograms (blocking urllib: in a thread); None if one did not answer."""
    try:
        return await asyncio.to_thread(hopstats.scrape_all, server.url, server.processes())
    except (OSError, TimeoutError, ValueError) as exc:
        log(f"hop scrape failed: {exc!r}")
        return None


class ServerWatch:
    """Server CPU over a window (per process, summed per role), RSS samples during it, and
    what every process observed of the hops."""

    def __init__(self, server: ServerUnderTest) -> None:
        self._server = server
        self.cpu_pct: float | None = None
        self.loop_cpu_pct: float | None = None
        self.rss_max: int | None = None
        self.rss_end: int | None = None
        #: Busy CPU of the whole machine (% of one core): the rest is other people's load.
        self.machine_busy_pct: float | None = None
        self.roles: list[usage.RoleUsage] = []
        self.wall_s = 0.0
        self.hops: list[hoptable.HopRow] | None = None
        #: Requests the servers answered with an error in the window, by code and cause.
        self.refused: dict[str, int] | None = None

    async def watch(self, start_ns: int, end_ns: int) -> None:
        await _sleep_until(start_ns)
        begin, wall0 = self._server.snapshot() + bench_snapshot(), time.monotonic()
        busy0 = _machine_busy_s()
        hops0 = await scrape_hops(self._server)
        rss: list[int] = []
        while time.monotonic_ns() < end_ns:
            value = self._server.rss()
            if value is not None:
                rss.append(value)
            await asyncio.sleep(min(1.0, max(0.0, (end_ns - time.monotonic_ns()) / NS)))
        finish, wall = self._server.snapshot() + bench_snapshot(), time.monotonic() - wall0
        busy1 = _machine_busy_s()
        hops1 = await scrape_hops(self._server)
        if busy0 is not None and busy1 is not None and wall > 0:
            self.machine_busy_pct = 100 * (busy1 - busy0) / wall
        self.wall_s = wall
        self.roles = usage.role_usage(begin, finish, wall)
        server = usage.total(self.roles)
        if server.processes and wall > 0:
            self.cpu_pct = server.cpu_pct
            if server.loop_cpu_s is not None:
                self.loop_cpu_pct = 100 * server.loop_cpu_s / wall
        if rss:
            self.rss_max, self.rss_end = max(rss), rss[-1]
        if hops0 is not None and hops1 is not None:
            self.hops = hoptable.hop_rows(hopstats.merged_window(hops0, hops1))
            self.refused = hopstats.refused_in_window(hops0, hops1)

    def report(self, sends_per_s: float | None) -> dict[str, Any]:
        """The roles' and hops' numbers for --json."""
        return {"window_s": self.wall_s, "roles": usage.usage_json(self.roles, self.wall_s, sends_per_s),
                "hops": hoptable.hops_json(self.hops) if self.hops is not None else None,
                "refused": self.refused}

    def lines(self, sends_per_s: float | None, roles: bool) -> list[str]:
        """The per-role table (`roles`: a topology's; one server has its own line) and the hops."""
        out = []
        if roles:
            out.append(f"roles      : CPU in % of one core over the {self.wall_s:.1f} s window, RSS at its end")
            out += usage.role_lines(self.roles, self.wall_s, sends_per_s)
        if self.hops is None:
            out.append("hops       : not scraped (see the log)")
        else:
            out.append("hops       : observed in the window by every process, merged "
                       "(histogram buckets, read as histogram_quantile)")
            out += hoptable.hop_lines(self.hops)
        if self.refused:  # the servers' side of `errors`, with what was behind each
            out.append("refused    : " + ", ".join(f"{key} {n}" for key, n in sorted(self.refused.items())))
        return out


def _machine_busy_s() -> float | None:
    if psutil is None:
        return None
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


async def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / NS
    if delay > 0:
        await asyncio.sleep(delay)
