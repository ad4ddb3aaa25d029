"""What the processes under test cost over a measured window: CPU and RSS per process, summed
per role (gateway, chat-core, delivery, the brokers; `dev` for the one-process server; `bench`
for the load generator), and CPU cores per 1,000 sends/s.

`sample` reads one process with psutil; everything else takes values and returns values.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None

#: Report order: the pipeline's roles, the brokers, the one-process server, then the load.
ROLE_ORDER = ("gateway", "chat-core", "delivery", "push", "kafka", "nats", "redis", "dev")
BROKER_ROLES = frozenset({"kafka", "nats", "redis"})
#: The load generator's own processes: reported, never part of the server's total.
BENCH_ROLE = "bench"


class Member(msgspec.Struct, frozen=True):
    """One process of the server under test, as topology.json names it."""

    name: str
    role: str
    pid: int


class ProcSample(Member, frozen=True):
    """One process at one moment."""

    cpu_s: float  # user + system since the process started
    rss: int
    main_cpu_s: float | None = None  # the main thread: the event loop of a parley process


class RoleUsage(msgspec.Struct):
    """A role's processes over one window (or the total of several roles)."""

    role: str
    processes: int
    cpu_s: float  # CPU seconds used in the window
    cpu_pct: float  # % of one core
    rss_end: int  # at the end of the window
    #: Processes seen only at the end (a restarted child): all their CPU counts, since they
    #: started inside the window. Processes seen only at the start are not counted at all.
    new: int = 0
    gone: int = 0
    loop_cpu_s: float | None = None  # main threads, where known


def members_of(doc: Mapping[str, Any]) -> list[Member]:
    """Every process `parley up`'s topology.json names: the brokers and the parley roles."""
    out = [Member(name, name, int(b["pid"])) for name, b in doc.get("brokers", {}).items() if b.get("pid")]
    out += [Member(p["name"], p["role"], int(p["pid"])) for p in doc.get("processes", []) if p.get("pid")]
    return out


def sample(proc: Any, member: Member) -> ProcSample | None:
    """`proc` is the member's psutil.Process; None when it is gone."""
    if psutil is None:
        return None
    try:
        with proc.oneshot():
            times = proc.cpu_times()
            rss = int(proc.memory_info().rss)
            main_s: float | None = None
            if member.role not in BROKER_ROLES:
                main = next((t for t in proc.threads() if t.id == member.pid), None)
                main_s = (main.user_time + main.system_time) if main is not None else None
    except psutil.Error:
        return None
    return ProcSample(member.name, member.role, member.pid, times.user + times.system, rss, main_s)


def _role_key(role: str) -> tuple[int, str]:
    with contextlib.suppress(ValueError):
        return ROLE_ORDER.index(role), role
    return (len(ROLE_ORDER) + (1 if role == BENCH_ROLE else 0), role)


def role_usage(before: Iterable[ProcSample], after: Iterable[ProcSample], wall_s: float) -> list[RoleUsage]:
    """Per role, in report order: CPU used between the two samples of each process (matched by
    pid and role), RSS at the end."""
    start = {(s.pid, s.role): s for s in before}
    end = {(s.pid, s.role): s for s in after}
    roles: dict[str, RoleUsage] = {}
    for key, last in end.items():
        usage = roles.setdefault(last.role, RoleUsage(last.role, 0, 0.0, 0.0, 0))
        first = start.get(key)
        usage.processes += 1
        usage.rss_end += last.rss
        usage.cpu_s += last.cpu_s - (first.cpu_s if first is not None else 0.0)
        if first is None:
            usage.new += 1
        if last.main_cpu_s is not None and (first is None or first.main_cpu_s is not None):
            loop = last.main_cpu_s - (first.main_cpu_s if first is not None and first.main_cpu_s is not None else 0.0)
            usage.loop_cpu_s = (usage.loop_cpu_s or 0.0) + loop
    for key, first in start.items():
        if key not in end:
            roles.setdefault(first.role, RoleUsage(first.role, 0, 0.0, 0.0, 0)).gone += 1
    for usage in roles.values():
        usage.cpu_pct = 100 * usage.cpu_s / wall_s if wall_s > 0 else math.nan
    return [roles[r] for r in sorted(roles, key=_role_key)]


def total(roles: Sequence[RoleUsage]) -> RoleUsage:
    """The server under test: every role but the load generator's."""
    server = [r for r in roles if r.role != BENCH_ROLE]
    loops = [r.loop_cpu_s for r in server if r.loop_cpu_s is not None]
    return RoleUsage("total", sum(r.processes for r in server), sum(r.cpu_s for r in server),
                     sum(r.cpu_pct for r in server), sum(r.rss_end for r in server),
                     sum(r.new for r in server), sum(r.gone for r in server),
                     sum(loops) if loops else None)


def cores_per_1000(cpu_s: float, wall_s: float, sends_per_s: float) -> float | None:
    """CPU cores busy per 1,000 sends/s: (CPU seconds / window seconds) / (sends/s / 1000)."""
    if wall_s <= 0 or sends_per_s <= 0:
        return None
    return (cpu_s / wall_s) / (sends_per_s / 1000)


def usage_json(roles: Sequence[RoleUsage], wall_s: float, sends_per_s: float | None) -> dict[str, Any]:
    """role -> its numbers, the total included, for --json."""
    out: dict[str, Any] = {}
    for usage in [*roles, total(roles)]:
        entry = msgspec.structs.asdict(usage)
        del entry["role"]
        if sends_per_s is not None:
            entry["cores_per_1000_sends_per_s"] = cores_per_1000(usage.cpu_s, wall_s, sends_per_s)
        out[usage.role] = entry
    return out


def _mib(v: int) -> str:
    return f"{v / 2**20:.1f} MiB"


def role_lines(roles: Sequence[RoleUsage], wall_s: float, sends_per_s: float | None) -> list[str]:
    """The per-role table: processes, CPU (% of one core), cores per 1,000 sends/s, RSS at the end."""
    per_k = sends_per_s is not None
    head = f"  {'role':<10} {'procs':>5} {'CPU':>6} {'loop':>6}" + (f" {'cores/1k sends/s':>16}" if per_k else "") + f" {'RSS':>11}"
    lines = [head]
    server = [r for r in roles if r.role != BENCH_ROLE]
    bench = [r for r in roles if r.role == BENCH_ROLE]
    for usage in [*server, total(roles), *bench]:
        loop = "-" if usage.loop_cpu_s is None or wall_s <= 0 else f"{100 * usage.loop_cpu_s / wall_s:.0f}%"
        line = f"  {usage.role:<10} {usage.processes:>5} {usage.cpu_pct:>5.0f}% {loop:>6}"
        if sends_per_s is not None:
            k = cores_per_1000(usage.cpu_s, wall_s, sends_per_s)
            line += f" {'-' if k is None else f'{k:.3f}':>16}"
        line += f" {_mib(usage.rss_end):>11}"
        notes = []
        if usage.new:
            notes.append(f"{usage.new} started during the window")
        if usage.gone:
            notes.append(f"{usage.gone} gone during the window (its CPU not counted)")
        if notes:
            line += "  (" + "; ".join(notes) + ")"
        lines.append(line)
    return lines
