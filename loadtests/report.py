"""How the report writes its figures (milliseconds, MiB, percentages) and what it says of the run
itself: the commit under test and the machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None


def ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f}" if v < 100 else f"{v:.0f}")


def mib(v: int | None) -> str:
    return "?" if v is None else f"{v / 2**20:.1f} MiB"


def pct_line(p: dict[str, float | None]) -> str:
    return (f"p50 {ms(p['p50'])}  p95 {ms(p['p95'])}  p99 {ms(p['p99'])}  "
            f"p99.9 {ms(p['p999'])}  max {ms(p['max'])}")


def pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}%"


def code_version() -> str:
    """The commit under test, and whether the tree differs from it (numbers move with the code)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "") if head else "unknown"


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total if psutil is not None else None
    return {"nproc": os.cpu_count(), "cpu": model, "ram_bytes": ram,
            "python": platform.python_version(), "platform": platform.platform()}
