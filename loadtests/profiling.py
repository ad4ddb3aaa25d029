"""Optional: py-spy on the server over the first measured window, and a summary of its collapsed
stacks for the report.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from loadtests.runtime import log


class Profiler:
    """py-spy on the server over the measured window of the first step (groups only)."""

    def __init__(self, path: str, pid: int, proc: subprocess.Popen[bytes]) -> None:
        self.path = path
        self._pid = pid
        self._proc = proc

    @classmethod
    def start(cls, args: argparse.Namespace, pid: int | None, topology: bool) -> Profiler | None:
        """None unless --profile asks for it and py-spy can sample the one server process."""
        path: str | None = args.profile
        if not path or pid is None:
            return None
        if topology:
            log("--profile samples one server process: not with --topology up; running without it")
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            log("--profile needs py-spy (pip install py-spy); running without it")
            return None
        fmt = "raw" if path.endswith(".txt") else "speedscope" if path.endswith(".json") else "flamegraph"
        delay = 1.0 + args.warmup
        cmd = [spy, "record", "--pid", str(pid), "--rate", "200", "--duration",
               str(int(args.duration)), "--format", fmt, "--output", path, "--nonblocking"]
        cmd += shlex.split(args.profile_args or "")
        # Start when the window starts, as a shell-free delayed launch.
        return cls(path, pid, subprocess.Popen(["sh", "-c", f"sleep {delay}; exec \"$@\"", "sh", *cmd],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

    async def finish(self) -> list[str]:
        """The report's lines on the profile, once py-spy is done; none if it failed."""
        _, err = await asyncio.get_running_loop().run_in_executor(None, self._proc.communicate)
        if self._proc.returncode != 0:
            log(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
            return []
        lines = [f"profile    : {self.path} (py-spy, server pid {self._pid}, first step's window)"]
        if self.path.endswith(".txt"):
            lines += ["  " + line for line in summarize_collapsed(Path(self.path))]
        return lines


def summarize_collapsed(path: Path, top: int = 15) -> list[str]:
    """Top functions by own and by total samples, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        parts = stack.split(";")
        thread = next((f.split(": ", 1)[-1] for f in parts if f.startswith("thread ")), "")
        frames = [f for f in parts if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        threads[thread] += count
        own[frames[-1]] += count
        for f in set(frames):
            total[f] += count
    if not samples:
        return []
    out = [f"{samples} samples"]
    if len(threads) > 1:
        out.append("by thread: " + ", ".join(f"{t or '?'} {100 * c / samples:.0f}%" for t, c in threads.most_common()))
    out.append("top by own time:")
    out += [f"{100 * c / samples:5.1f}%  {f}" for f, c in own.most_common(top)]
    out.append("top by total (inclusive) time:")
    out += [f"{100 * c / samples:5.1f}%  {f}" for f, c in total.most_common(top)]
    return out
