from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import SeaweedS3


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3().start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
