"""Parley's kernel: what every service shares (config, ids, auth, frames, ports, adapters, CLI)."""

__version__ = "0.1.0"
