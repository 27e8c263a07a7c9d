"""The flows both clients share (client/flows.py), run over both transports against the simulator.

Every scenario runs once with the blocking client (requests) and once with the async one
(aiohttp), asserting the same outcome, the same waits, the same requests and the same log lines:
a retried 503, a 429's ``Retry-After``, retries running out, a revoked or expired token renewed
and the call replayed, a login refused, and the key look-up finding its case or proving it absent.
Waits are recorded instead of slept, and backoff is drawn at the top of its jitter, so every wait
is exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from locations import ROOT

from emedgene_provider.cases.extra_data import with_idempotency_key
from emedgene_provider.client import retry as retry_module
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import ClientConfig, config_from_connection
from emedgene_provider.client.endpoints import LOGIN_PATH
from emedgene_provider.client.errors import (
    EmedgeneAuthError,
    EmedgeneRateLimitedError,
    EmedgeneUnavailableError,
)
from emedgene_provider.client.process import ProcessState
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator

CASE = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
STATUS_ROUTE = "GET /api/test/{name}"
LOGIN_ROUTE = f"POST {LOGIN_PATH}"


class Transport:
    """Clients of one kind for the simulator, their waits recorded in :attr:`sleeps`.

    :meth:`run` hands ``act`` a client and returns what it gives: the blocking client's answer, or
    the async client's awaited (a fresh client on a fresh event loop, as each trigger run has).
    """

    def __init__(self, kind: str, config: ClientConfig) -> None:
        self.kind = kind
        self.config = config
        self.sleeps: list[float] = []
        self._sync: EmedgeneClient | None = None

    def run(self, act: Callable[[Any], Any]) -> Any:
        if self.kind == "sync":
            if self._sync is None:
                self._sync = EmedgeneClient(self.config)
                self._sync.sleep = self.sleeps.append
            return act(self._sync)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        async def run_async() -> Any:
            async with AsyncEmedgeneClient(self.config) as client:
                client.sleep = sleep
                answer: Awaitable[Any] = act(client)
                return await answer

        return asyncio.run(run_async())

    def newest_with_key(self, key: str) -> dict[str, Any] | None:
        """The newest case stamped with ``key``: the first of the blocking client's look-up, or the
        async client's answer."""
        found: dict[str, Any] | None
        if self.kind == "sync":
            found = self.run(lambda client: next(client.cases_with_idempotency_key(key), None))
        else:
            found = self.run(lambda client: client.newest_case_with_idempotency_key(key))
        return found

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()


@pytest.fixture(params=["sync", "async"])
def transport_for(
    request: pytest.FixtureRequest, emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Call with connection extras (and ``password``): a :class:`Transport` of this run's kind."""
    sim = emedgene_simulator
    monkeypatch.setattr(retry_module.random, "uniform", lambda low, high: high)  # jitter at its top
    made: list[Transport] = []

    def make(password: str | None = None, **extra: Any) -> Transport:
        config = config_from_connection(
            host=sim.url, login=sim.username, password=password or sim.password, extra=extra or None
        )
        made.append(Transport(request.param, config))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def _case(sim: EmedgeneSimulator, case: dict[str, Any] | None = None) -> str:
    """A case created through a client of its own and its own token cache (set-up, not under test:
    the clients under test log in themselves)."""
    config = config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=None)
    client = EmedgeneClient(config, shared=ProcessState())
    try:
        return client.create_case(case or CASE)
    finally:
        client.close()


def _requests(sim: EmedgeneSimulator, route: str) -> int:
    return int(sim.counters()["requests"].get(route, 0))


def _messages(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if words in record.getMessage()]


@pytest.mark.parametrize("route", [STATUS_ROUTE, LOGIN_ROUTE])
def test_a_503_is_retried_after_backoff_then_the_call_succeeds(
    emedgene_simulator: EmedgeneSimulator, transport_for: Any, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    """Two 503s, on the call or on its login: the first retry decided without tenacity, the second
    by it, waiting 1 s then 2 s (full jitter at its top)."""
    sim = emedgene_simulator
    name = _case(sim)
    transport = transport_for()
    path = LOGIN_PATH if route == LOGIN_ROUTE else f"/api/test/{name}"
    sim.inject("503", times=2, method=route.split()[0], path=path)
    caplog.set_level(logging.WARNING, logger="emedgene_provider")
    sim.reset_counters()

    assert transport.run(lambda client: client.get_case_status(name)) == "Uploading"

    assert transport.sleeps == [1.0, 2.0]
    assert _requests(sim, route) == 3
    assert _requests(sim, STATUS_ROUTE if route == LOGIN_ROUTE else LOGIN_ROUTE) == 1
    retries = _messages(caplog, "retrying in")
    assert [message.split("; ", 1)[1] for message in retries] == [
        "attempt 1 of 6, retrying in 1.0 s",
        "attempt 2 of 6, retrying in 2.0 s",
    ]
    assert all("HTTP 503" in message for message in retries)


def test_a_429_waits_its_retry_after_not_the_backoff(
    emedgene_simulator: EmedgeneSimulator, transport_for: Any
) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    transport = transport_for()
    sim.inject("429", times=1, method="GET", path=f"/api/test/{name}", retry_after=7)

    assert transport.run(lambda client: client.get_case_status(name)) == "Uploading"

    assert transport.sleeps == [7.0]
    assert _requests(sim, STATUS_ROUTE) == 2


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("503", EmedgeneUnavailableError, "HTTP 503"),
        ("429", EmedgeneRateLimitedError, "HTTP 429"),
    ],
)
def test_retries_run_out_after_max_attempts_with_the_last_failure_named(
    emedgene_simulator: EmedgeneSimulator, transport_for: Any, kind: str, error: type[Exception], words: str
) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    transport = transport_for(max_retries=2)
    transport.run(lambda client: client.token())  # the login is not what is counted
    sim.inject(kind, times=3, method="GET", path=f"/api/test/{name}", retry_after=5)

    with pytest.raises(error) as raised:
        transport.run(lambda client: client.get_case_status(name))

    assert type(raised.value) is error
    message = str(raised.value)
    assert message.startswith(f"Emedgene get_case_status({name}): still failing after 3 attempt(s): ")
    assert words in message
    assert transport.sleeps == ([5.0, 5.0] if kind == "429" else [1.0, 2.0])
    assert _requests(sim, STATUS_ROUTE) == 3
    assert sim.counters()["faults_injected"] == 3


@pytest.mark.parametrize("spoil", ["revoke_tokens", "expire_tokens"], ids=["401", "403"])
def test_a_refused_token_is_renewed_and_the_call_replayed_once(
    emedgene_simulator: EmedgeneSimulator,
    transport_for: Any,
    caplog: pytest.LogCaptureFixture,
    spoil: str,
) -> None:
    """A token revoked (401) or expired early (403) on the server while the cache trusts it: one
    new login, the call sent again with the new token, and the caller sees only the answer."""
    sim = emedgene_simulator
    name = _case(sim)
    transport = transport_for()
    assert transport.run(lambda client: client.get_case_status(name)) == "Uploading"
    sim.reset_counters()
    getattr(sim, spoil)()
    caplog.set_level(logging.INFO, logger="emedgene_provider")
    caplog.clear()

    assert transport.run(lambda client: client.get_case_status(name)) == "Uploading"

    assert _requests(sim, LOGIN_ROUTE) == 1
    assert _requests(sim, STATUS_ROUTE) == 2
    assert transport.sleeps == []
    assert _messages(caplog, "token refused") == [
        f"Emedgene get_case_status({name}): token refused, logging in again and replaying once"
    ]
    assert len(_messages(caplog, "logged in")) == 1


def test_a_refused_login_is_a_final_error_not_retried(
    emedgene_simulator: EmedgeneSimulator, transport_for: Any
) -> None:
    sim = emedgene_simulator
    transport = transport_for(password="not-the-password")

    with pytest.raises(EmedgeneAuthError) as raised:
        transport.run(lambda client: client.get_case_status("EMG107903188"))

    assert str(raised.value) == (
        f"Emedgene login as {sim.username!r} at {sim.url}{LOGIN_PATH} failed: HTTP 401: "
        "Invalid username or password"
    )
    assert "not-the-password" not in str(raised.value)
    assert _requests(sim, LOGIN_ROUTE) == 1
    assert _requests(sim, STATUS_ROUTE) == 0
    assert transport.sleeps == []


def test_the_key_look_up_finds_the_stamped_case_and_proves_another_key_absent(
    emedgene_simulator: EmedgeneSimulator, transport_for: Any
) -> None:
    sim = emedgene_simulator
    plain = [_case(sim) for _ in range(2)]
    stamped = _case(sim, with_idempotency_key(CASE, "key-both"))
    transport = transport_for()

    found = transport.newest_with_key("key-both")
    absent = transport.newest_with_key("key-none")

    assert found is not None
    assert found["name"] == stamped and found["name"] not in plain
    assert isinstance(found["status"], str)
    assert absent is None
    assert transport.sleeps == []
