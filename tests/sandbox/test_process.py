"""`python -m sandbox` as its own process: announced, answering, seeded, stopped."""

from __future__ import annotations

import httpx
import pytest

from sandbox.process import running_sandbox


def test_a_second_sandbox_runs_on_its_own_port_with_its_own_seed(sandbox_session: object) -> None:
    with running_sandbox(seed=99) as url:
        health = httpx.get(url + "/_sandbox/health").json()
        accounts = httpx.get(url + "/_sandbox/google/accounts").json()

    assert health == {"ok": True, "seed": 99}
    assert {(a["email"], a["contacts"]) for a in accounts} == {("ada@sandbox.test", 250), ("grace@sandbox.test", 40)}
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_sandbox/health")
