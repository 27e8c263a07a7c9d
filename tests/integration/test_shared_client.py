"""One async client per tenant per event loop, and one login per token in flight (issue 8).

Triggers in one triggerer share one client (one aiohttp session, one bounded pool, one TLS
context) through the hook; callers without a token await one shared login and are released
together; a failed login reaches every one of them. Against the simulator over real HTTPS.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import pytest
from airflow_fixtures import connect, status_gets, valid_case

from emedgene_provider.client import aio
from emedgene_provider.client.aio import AsyncEmedgeneClient, shared_client, shared_clients
from emedgene_provider.client.auth import Token, TokenCache
from emedgene_provider.client.config import (
    DEFAULT_MAX_CONNECTIONS,
    ClientConfig,
    config_from_connection,
)
from emedgene_provider.client.errors import EmedgeneAuthError, EmedgeneConfigError
from emedgene_provider.client.process import PROCESS
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

# -- helpers ----------------------------------------------------------------------------------------


@dataclass
class Sessions:
    """Every aiohttp session the async client made, and the TCP connections each one opened."""

    made: list[aiohttp.ClientSession] = field(default_factory=list)
    opened: dict[int, int] = field(default_factory=dict)

    def connections(self, session: aiohttp.ClientSession) -> int:
        return self.opened.get(id(session), 0)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Sessions:
    """Counts sessions and the connections they open, through aiohttp's public tracing hooks."""
    seen = Sessions()
    real = aiohttp.ClientSession

    def make(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()  # its hooks are frozen once a session holds it

        async def created(session: aiohttp.ClientSession, *_: Any) -> None:
            seen.opened[id(session)] = seen.opened.get(id(session), 0) + 1

        trace.on_connection_create_end.append(created)
        session = real(*args, trace_configs=[trace], **kwargs)
        seen.made.append(session)
        return session

    monkeypatch.setattr(aio.aiohttp, "ClientSession", make)
    return seen


#: Hundreds of requests per test: the client-side rate limit (its own tests) is lifted here.
UNLIMITED = {"requests_per_second": 0}


@pytest.fixture
def tls_sim(emedgene_simulator_factory: Callable[..., EmedgeneSimulator], monkeypatch) -> EmedgeneSimulator:
    """A simulator over HTTPS (its own CA), with ``emedgene_default`` pointing at it."""
    sim = emedgene_simulator_factory(tls=True)
    connect(monkeypatch, sim, _with_extra(sim))
    return sim


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _with_extra(
    sim: EmedgeneSimulator, auth_type: Literal["password", "api_key"] = "password", **extra: Any
) -> dict[str, Any]:
    conn = sim.connection_json(auth_type)
    conn["extra"].update(UNLIMITED, **extra)
    return conn


def _config(sim: EmedgeneSimulator, **extra: Any) -> ClientConfig:
    conn = _with_extra(sim, **extra)
    return config_from_connection(
        host=conn["host"], login=conn.get("login"), password=conn.get("password"), extra=conn["extra"]
    )


def _trigger(name: str, conn_id: str = "emedgene_default") -> EmedgeneCaseStatusTrigger:
    return EmedgeneCaseStatusTrigger(
        case_name=name,
        emedgene_conn_id=conn_id,
        target_statuses=["Delivered"],
        failure_statuses=None,
        poll_interval=0.05,
        end_time=time.time() + 120,
    )


async def _first_event(trigger: EmedgeneCaseStatusTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


async def _until(condition: Callable[[], bool], what: str, limit: float = 60) -> None:
    """Poll ``condition`` on the loop until true; fail (not hang) after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


# -- configuration ----------------------------------------------------------------------------------


def test_client_config_hashes_and_equal_connections_are_one_key(tls_sim) -> None:
    a, b = _config(tls_sim), _config(tls_sim)
    assert a == b and hash(a) == hash(b)
    assert a.max_connections == DEFAULT_MAX_CONNECTIONS == 100
    assert _config(tls_sim, timeout=5) != a  # any setting the client reads is part of the key


@pytest.mark.parametrize(("value", "expected"), [("7", 7), (1, 1), (1000, 1000), ("", 100)])
def test_max_connections_extra(tls_sim, value, expected) -> None:
    assert _config(tls_sim, max_connections=value).max_connections == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be at least 1"),
        (1001, "must be at most 1000"),
        (2.5, "must be a whole number"),
        ("many", "must be a number"),
    ],
)
def test_max_connections_extra_refuses_nonsense(tls_sim, value, message) -> None:
    with pytest.raises(EmedgeneConfigError, match=message) as info:
        _config(tls_sim, max_connections=value)
    assert "'max_connections'" in str(info.value)


# -- many triggers, one client ---------------------------------------------------------------------


async def test_200_triggers_share_one_client_one_pool_and_one_login(tls_sim, monkeypatch, sessions) -> None:
    pool = 5
    connect(monkeypatch, tls_sim, _with_extra(tls_sim, max_connections=pool))
    name = EmedgeneHook().client.create_case(valid_case())
    tls_sim.set_status(name, "In progress")
    PROCESS.tokens.clear()  # the triggers must log in themselves: once
    logins = tls_sim.counters()["logins"]

    waits = [asyncio.create_task(_first_event(_trigger(name))) for _ in range(200)]
    await _until(lambda: status_gets(tls_sim) >= 400, "every trigger to poll twice")
    assert len(shared_clients()) == 1
    (client,) = shared_clients()
    assert client.config.max_connections == pool
    tls_sim.set_status(name, "Delivered")
    events = await asyncio.wait_for(asyncio.gather(*waits), timeout=60)

    assert {(e["status"], e["case_status"]) for e in events} == {("success", "Delivered")}
    assert tls_sim.counters()["logins"] - logins == 1
    (session,) = sessions.made  # one session for 200 waits
    assert 1 <= sessions.connections(session) <= pool
    assert session.closed  # the last trigger to leave closed it
    assert shared_clients() == []


async def test_the_last_user_leaving_closes_the_client(tls_sim, sessions) -> None:
    name = EmedgeneHook().client.create_case(valid_case())
    tls_sim.set_status(name, "Delivered")
    config = _config(tls_sim)
    async with shared_client(config) as first:
        assert await first.get_case_status(name) == "Delivered"
        async with shared_client(_config(tls_sim)) as second:  # an equal config, not the same object
            assert second is first
            assert await second.get_case_status(name) == "Delivered"
        (session,) = sessions.made
        assert not session.closed  # one user is still inside
        assert shared_clients() == [first]
    assert session.closed
    assert shared_clients() == []
    async with shared_client(config) as again:  # a later user starts afresh
        assert again is not first
        assert await again.get_case_status(name) == "Delivered"
    assert len(sessions.made) == 2 and sessions.made[1].closed


async def test_a_user_that_fails_still_leaves(tls_sim, sessions) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with shared_client(_config(tls_sim)) as client:
            await client.token()
            raise RuntimeError("boom")
    assert shared_clients() == []
    (session,) = sessions.made
    assert session.closed


async def test_connections_with_equal_settings_share_and_different_ones_do_not(
    tls_sim, monkeypatch, sessions
) -> None:
    name = EmedgeneHook().client.create_case(valid_case())
    tls_sim.set_status(name, "Delivered")
    _set_conn(monkeypatch, "emedgene_twin", _with_extra(tls_sim))  # another id, same settings
    _set_conn(monkeypatch, "emedgene_keyed", _with_extra(tls_sim, "api_key"))
    _set_conn(monkeypatch, "emedgene_slow", _with_extra(tls_sim, timeout=7))
    seen: dict[str, AsyncEmedgeneClient] = {}
    inside = asyncio.Event()

    async def use(conn_id: str) -> None:
        async with EmedgeneHook(conn_id).async_client() as client:
            seen[conn_id] = client
            assert await client.get_case_status(name) == "Delivered"
            await inside.wait()  # all four inside at once

    users = [
        asyncio.create_task(use(c))
        for c in ("emedgene_default", "emedgene_twin", "emedgene_keyed", "emedgene_slow")
    ]
    await _until(lambda: len(seen) == 4, "all four connections to be read")
    assert len(shared_clients()) == 3
    inside.set()
    await asyncio.gather(*users)
    assert seen["emedgene_twin"] is seen["emedgene_default"]
    assert len({id(seen[c]) for c in ("emedgene_default", "emedgene_keyed", "emedgene_slow")}) == 3
    assert seen["emedgene_slow"].config.timeout == 7
    assert len(sessions.made) == 3 and all(s.closed for s in sessions.made)
    assert shared_clients() == []


async def test_hook_reads_the_connection_through_the_async_path(tls_sim) -> None:
    hook = EmedgeneHook()
    assert await hook.aget_config() == hook.config


def test_two_event_loops_never_share_a_session(tls_sim, sessions) -> None:
    name = EmedgeneHook().client.create_case(valid_case())
    tls_sim.set_status(name, "Delivered")
    config = _config(tls_sim)
    both_inside = threading.Barrier(2, timeout=60)
    found: dict[str, tuple[AsyncEmedgeneClient, aiohttp.ClientSession, str]] = {}
    failures: list[BaseException] = []

    async def use(label: str) -> None:
        async with shared_client(config) as client:
            status = await client.get_case_status(name)
            await asyncio.to_thread(both_inside.wait)  # both loops hold their client at once
            found[label] = (client, client.session, status)

    def thread(label: str) -> None:
        try:
            asyncio.run(use(label))
        except BaseException as exc:  # re-raised in the test's thread below
            failures.append(exc)

    threads = [threading.Thread(target=thread, args=(label,)) for label in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    (client_a, session_a, status_a), (client_b, session_b, status_b) = found["a"], found["b"]
    assert status_a == status_b == "Delivered"
    assert client_a is not client_b and session_a is not session_b
    assert len(sessions.made) == 2 and session_a.closed and session_b.closed


# -- one login for many callers ---------------------------------------------------------------------


async def test_expired_tokens_mean_one_login_for_every_concurrent_caller(tls_sim) -> None:
    name = EmedgeneHook().client.create_case(valid_case())
    tls_sim.set_status(name, "Delivered")
    async with shared_client(_config(tls_sim)) as client:
        PROCESS.tokens.clear()
        before = tls_sim.counters()["logins"]
        statuses = await asyncio.gather(*(client.get_case_status(name) for _ in range(200)))
        assert statuses == ["Delivered"] * 200
        assert tls_sim.counters()["logins"] - before == 1  # none cached: one login for all 200
        tls_sim.expire_tokens()  # every caller now meets a 403 with the token it holds
        statuses = await asyncio.gather(*(client.get_case_status(name) for _ in range(200)))
        assert statuses == ["Delivered"] * 200
        assert tls_sim.counters()["logins"] - before == 2  # one renewal, not one per caller


async def test_a_failed_login_reaches_every_caller(tls_sim, monkeypatch) -> None:
    conn = _with_extra(tls_sim)
    conn["password"] = "wrong"
    connect(monkeypatch, tls_sim, conn)
    async with EmedgeneHook().async_client() as client:
        results = await asyncio.gather(
            *(client.get_case_status("EMG000000001") for _ in range(50)), return_exceptions=True
        )
        assert all(isinstance(r, EmedgeneAuthError) for r in results), results
        assert len({str(r) for r in results}) == 1
        assert tls_sim.counters()["login_failures"] == 1  # one attempt, its refusal shared
        with pytest.raises(EmedgeneAuthError):  # the next caller tries again
            await client.get_case_status("EMG000000001")
        assert tls_sim.counters()["login_failures"] == 2


# -- TokenCache.obtain, without a server ------------------------------------------------------------


def _token(name: str, *, renew_in: float = 3000, expires_in: float = 3600) -> Token:
    now = time.time()
    return Token(name, f"Bearer {name}", expires_at=now + expires_in, renew_at=now + renew_in)


class Login:
    """A login that waits to be released, counting its calls."""

    def __init__(self, outcome: Callable[[int], Token]) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.outcome = outcome

    async def __call__(self) -> Token:
        self.calls += 1
        await self.release.wait()
        return self.outcome(self.calls)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_released_in_the_same_loop_turn() -> None:
    cache, key = TokenCache(), ("tenant",)
    login = Login(lambda n: _token(f"t{n}"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    async def waiter() -> tuple[Token, int]:
        token = await cache.obtain(key, login)
        return token, ticks

    counting = asyncio.create_task(ticker())
    waiters = [asyncio.create_task(waiter()) for _ in range(50)]
    await _settle()
    login.release.set()
    results = await asyncio.gather(*waiters)
    counting.cancel()
    assert login.calls == 1
    assert {token.access_token for token, _ in results} == {"t1"}
    released_at = [tick for _, tick in results]
    # An asyncio.Lock hands the token on one waiter per turn: 50 waiters over 50 turns.
    assert max(released_at) - min(released_at) <= 1
    assert cache.get(key) is results[0][0]


async def test_a_failed_login_raises_the_same_error_in_every_waiter_and_the_next_caller_retries() -> None:
    cache, key = TokenCache(), ("tenant",)

    def fail(calls: int) -> Token:
        if calls == 1:
            raise EmedgeneAuthError("Emedgene login refused")
        return _token("second")

    login = Login(fail)
    waiters = [asyncio.create_task(cache.obtain(key, login)) for _ in range(20)]
    await _settle()
    login.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert login.calls == 1
    assert all(isinstance(r, EmedgeneAuthError) for r in results)
    assert len({id(r) for r in results}) == 1  # the very same error, everywhere
    assert cache.get(key) is None
    assert (await cache.obtain(key, login)).access_token == "second"
    assert login.calls == 2


async def test_cancelling_one_waiter_does_not_cancel_the_login_the_others_await() -> None:
    cache, key = TokenCache(), ("tenant",)
    login = Login(lambda n: _token(f"t{n}"))
    first = asyncio.create_task(cache.obtain(key, login))
    second = asyncio.create_task(cache.obtain(key, login))
    await _settle()
    first.cancel()
    await _settle()
    login.release.set()
    assert (await second).access_token == "t1"
    assert first.cancelled() and login.calls == 1


async def test_a_token_due_for_renewal_is_used_while_one_renewal_runs() -> None:
    cache, key = TokenCache(), ("tenant",)
    old = _token("old", renew_in=-1, expires_in=60)  # due for renewal, still valid for a minute
    cache.put(key, old)
    login = Login(lambda n: _token(f"new{n}"))
    during = await asyncio.gather(*(cache.obtain(key, login) for _ in range(100)))
    assert all(token is old for token in during)  # nobody waits for the renewal
    await _settle()
    assert login.calls == 1
    login.release.set()
    await _settle()
    fresh = await cache.obtain(key, login)
    assert fresh.access_token == "new1" and login.calls == 1


async def test_an_expired_token_is_not_used_while_renewing() -> None:
    cache, key = TokenCache(), ("tenant",)
    cache.put(key, _token("old", renew_in=-10, expires_in=-1))
    login = Login(lambda n: _token(f"new{n}"))
    waiter = asyncio.create_task(cache.obtain(key, login))
    await _settle()
    assert not waiter.done()  # waits for the login rather than use a dead token
    login.release.set()
    assert (await waiter).access_token == "new1"


async def test_a_failed_background_renewal_is_logged_and_tried_again(caplog) -> None:
    cache, key = TokenCache(), ("tenant",)
    old = _token("old", renew_in=-1, expires_in=60)
    cache.put(key, old)
    outcomes: list[Callable[[], Awaitable[Token]]] = []

    async def refused() -> Token:
        outcomes.append(refused)
        raise EmedgeneAuthError("Emedgene login refused")

    assert await cache.obtain(key, refused) is old
    await _settle()
    assert "Emedgene: login failed: Emedgene login refused" in caplog.text
    assert await cache.obtain(key, refused) is old  # the next caller starts another renewal
    await _settle()
    assert len(outcomes) == 2


# -- one connection read for a triggerer's many waits --------------------------------------------


def test_waits_starting_together_read_their_connection_once(
    sim_conn: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat import connection as compat_connection

    reads: list[str] = []
    real = compat_connection.get_async_connection

    async def counting(conn_id: str) -> Any:
        reads.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(compat_connection, "get_async_connection", counting)

    async def run() -> list[ClientConfig]:
        return await asyncio.gather(*(EmedgeneHook("emedgene_default").aget_config() for _ in range(200)))

    configs = asyncio.run(run())
    assert reads == ["emedgene_default"]
    assert len(set(configs)) == 1
    assert configs[0].base_url == sim_conn.url


def test_a_failed_connection_read_reaches_every_waiter_and_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.common.compat import connection as compat_connection

    reads: list[str] = []

    async def failing(conn_id: str) -> Any:
        reads.append(conn_id)
        await asyncio.sleep(0)
        raise RuntimeError(f"The conn_id `{conn_id}` isn't defined")

    monkeypatch.setattr(compat_connection, "get_async_connection", failing)

    async def run() -> list[Any]:
        hooks = [EmedgeneHook("missing").aget_config() for _ in range(20)]
        first = await asyncio.gather(*hooks, return_exceptions=True)
        again = await asyncio.gather(EmedgeneHook("missing").aget_config(), return_exceptions=True)
        return [*first, *again]

    outcomes = asyncio.run(run())
    assert all(isinstance(o, RuntimeError) and "missing" in str(o) for o in outcomes)
    assert reads == ["missing", "missing"]  # one read for the 20 together, a new one after
