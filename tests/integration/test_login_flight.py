"""One login in flight per tenant for the blocking client's threads: its token or its error is the
answer of every thread that came while it flew (issue 14), and both clients log a login the same way.

The threads are released into the login only once all of them are waiting for it (counted where
they wait), so what is asserted never depends on how fast threads start: it holds beside a CPU hog.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from emedgene_provider.client import auth
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.auth import Token
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.errors import EmedgeneError
from emedgene_provider.client.process import PROCESS
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator, Quirks

THREADS = 50
LOGIN = "POST /api/auth/v2/api_login/"
#: Bounds a wait that only a bug makes long (it fails the test rather than hang it).
STUCK = 120.0


def _client(sim: EmedgeneSimulator, **extra: Any) -> EmedgeneClient:
    config = config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=extra)
    client = EmedgeneClient(config)
    client.sleep = lambda seconds: None  # retry backoff: not what is under test
    return client


def _logins(sim: EmedgeneSimulator) -> int:
    return int(sim.counters()["requests"].get(LOGIN, 0))


class _Gate:
    """Counts the threads waiting for a login in flight, and holds the login until all are."""

    def __init__(self, waiters: int) -> None:
        self.waiters = waiters
        self.waiting = 0
        self.logins_held = 0
        self.holding = True  # False once the threads are done: later logins pass straight on
        self.changed = threading.Condition()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        gate = self

        class CountedFuture(Future[Token]):
            def result(self, timeout: float | None = None) -> Any:
                with gate.changed:
                    gate.waiting += 1
                    gate.changed.notify_all()
                return super().result(timeout)

        monkeypatch.setattr(auth, "Future", CountedFuture)
        real_login = EmedgeneClient._login

        def held_login(client: EmedgeneClient) -> Token:
            with gate.changed:
                if gate.holding:
                    # A second login while threads wait: the flight was not shared. Fail, not wait.
                    assert gate.logins_held == 0, "a second login started while threads were waiting"
                    gate.logins_held += 1
                    assert gate.changed.wait_for(lambda: gate.waiting == gate.waiters, timeout=STUCK), (
                        f"only {gate.waiting} of {gate.waiters} threads joined the login in flight"
                    )
            return real_login(client)

        monkeypatch.setattr(EmedgeneClient, "_login", held_login)


def _in_threads(clients: list[EmedgeneClient]) -> list[Token | BaseException]:
    """``client.token()`` in a thread per client, all started together; each thread's answer."""
    answers: list[Token | BaseException | None] = [None] * len(clients)
    start = threading.Barrier(len(clients))

    def run(index: int) -> None:
        start.wait(STUCK)
        try:
            answers[index] = clients[index].token()
        except BaseException as exc:  # the error is the answer under test
            answers[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STUCK)
    assert not any(thread.is_alive() for thread in threads), "a thread never got its token"
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def test_fifty_threads_share_one_slow_login_and_its_token(
    emedgene_simulator_factory: Callable[..., EmedgeneSimulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(login_delay=0.5))
    gate = _Gate(THREADS - 1)
    gate.install(monkeypatch)
    answers = _in_threads([_client(sim) for _ in range(THREADS)])

    assert _logins(sim) == 1
    assert all(isinstance(answer, Token) for answer in answers)
    assert len({id(answer) for answer in answers}) == 1  # the very token the one login got
    assert gate.waiting == THREADS - 1  # everyone else waited for it, none logged in after


def test_a_login_slower_than_the_timeout_fails_once_for_all_fifty_and_the_next_caller_retries(
    emedgene_simulator_factory: Callable[..., EmedgeneSimulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(login_delay=3.0))
    gate = _Gate(THREADS - 1)
    gate.install(monkeypatch)
    clients = [_client(sim, timeout=0.5, max_retries=1) for _ in range(THREADS)]
    answers = _in_threads(clients)

    attempts = clients[0].config.retry.max_attempts
    assert _logins(sim) == attempts  # one login's tries, not fifty logins' tries one after another
    assert all(isinstance(answer, EmedgeneError) for answer in answers)
    assert len({id(answer) for answer in answers}) == 1  # the same error, in every thread
    error = answers[0]
    assert "login" in str(error) and "timeout 0.5 s" in str(error)
    assert sim.password not in str(error)

    sim.set_quirks(login_delay=0.0)
    gate.holding = False
    assert isinstance(clients[0].token(), Token)  # a caller after the failure starts a new login
    assert _logins(sim) == attempts + 1


def test_both_clients_log_a_login_in_the_same_words(
    emedgene_simulator: EmedgeneSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim = emedgene_simulator
    config = config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=None)
    expected = (
        f"Emedgene: logged in (login as {sim.username!r} at {sim.url}/api/auth/v2/api_login/); "
        "token valid for 3600 s"
    )
    caplog.set_level(logging.INFO, logger="emedgene_provider")

    EmedgeneClient(config).token()
    PROCESS.tokens.clear()

    async def log_in() -> None:
        async with AsyncEmedgeneClient(config) as client:
            await client.token()

    asyncio.run(log_in())
    logged = [record.getMessage() for record in caplog.records if "logged in" in record.getMessage()]
    assert logged == [expected, expected]
    assert _logins(sim) == 2
