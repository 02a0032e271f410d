from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.caldav.servers import SERVERS, CalDAVServer, running


@pytest.fixture(scope="module", params=sorted(SERVERS))
def caldav_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    """Each test that takes it runs against Radicale and against Xandikos behind Basic auth."""
    folder: Path = tmp_path_factory.mktemp(request.param)
    with running(request.param, folder) as server:
        yield server
