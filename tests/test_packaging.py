"""Installation traps from library-notes: caldav must not replace urllib3 for the whole environment."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path


def test_urllib3_is_the_real_one_not_urllib3_future() -> None:
    import urllib3

    assert urllib3.__version__ == importlib.metadata.version("urllib3")
    assert not urllib3.__version__.startswith("2.2"), "urllib3-future (2.2x.y) has taken over the urllib3 name"
    site = Path(urllib3.__file__).resolve().parent.parent
    assert not list(site.glob("urllib3_future*.pth")), "urllib3-future's .pth takeover is installed"


def test_requests_still_uses_real_urllib3_after_caldav_is_imported() -> None:
    import caldav  # noqa: F401
    import requests.adapters

    pool_module = sys.modules[requests.adapters.PoolManager.__module__]
    assert Path(pool_module.__file__ or "").resolve().parent.name == "urllib3"
    assert sys.modules["urllib3"].__version__ == importlib.metadata.version("urllib3")
