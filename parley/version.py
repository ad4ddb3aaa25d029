"""Build identity: version, commit and build time, shown by `parley --version` and at startup."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from parley import __version__

_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def commit() -> str:
    """The image build sets PARLEY_BUILD_COMMIT; a source checkout asks git."""
    return os.environ.get("PARLEY_BUILD_COMMIT") or _git("rev-parse", "--short=12", "HEAD") or "unknown"


def build_time() -> str:
    """The image build sets PARLEY_BUILD_TIME; a source checkout reports its last commit's time."""
    stamp = os.environ.get("PARLEY_BUILD_TIME") or _git("log", "-1", "--format=%cI")
    if stamp:
        return stamp
    mtime = Path(__file__).stat().st_mtime
    return datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds")


def describe() -> str:
    return f"parley {__version__} (commit {commit()}, built {build_time()})"
