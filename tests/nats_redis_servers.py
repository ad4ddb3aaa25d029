"""Session fixtures: a real nats-server and a real redis-server on free loopback ports, from
PyPI packages installed into the venv (see parley/localservers.py). Tests import them
explicitly:

    from tests.nats_redis_servers import nats_server, redis_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parley.app import localservers
from parley.app.localservers import ServerProcess

__all__ = ["ServerProcess", "nats_server", "redis_server"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = localservers.nats_server(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = localservers.redis_server(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
