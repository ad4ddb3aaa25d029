"""Adapters: the embedded (in-process, SQLite) and scale-out implementations of the ports."""
