"""The per-tenant rate limit (emedgene_provider.client.ratelimit): its arithmetic on an injected
clock, its sharing across threads, event loops and clients, the shared pause of a ``Retry-After``,
and both clients pacing themselves through it against the simulator."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from airflow_fixtures import valid_case

from emedgene_provider.client import config as config_module
from emedgene_provider.client import ratelimit
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import ClientConfig, config_from_connection
from emedgene_provider.client.errors import EmedgeneConfigError, EmedgeneRateLimitedError
from emedgene_provider.client.process import PROCESS
from emedgene_provider.client.ratelimit import RateLimiter
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator

URL = "https://lab.emedgene.com"


@pytest.fixture(autouse=True)
def _the_real_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest makes connections unlimited by default for the other tests; not here."""
    monkeypatch.setattr(config_module, "DEFAULT_REQUESTS_PER_SECOND", ratelimit.DEFAULT_REQUESTS_PER_SECOND)


class Clock:
    """Monotonic seconds that move only when told, or when a client sleeps on them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


def _slots(rate: float, burst: float, n: int) -> list[float]:
    """The delays ``n`` requests asked for at one instant get: a burst at once, then 1/rate apart."""
    return [max(0.0, k / rate - (burst - 1) / rate) for k in range(n)]


# -- the arithmetic -------------------------------------------------------------------------------


def test_requests_at_one_instant_are_spaced_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    assert limiter.burst == 1
    assert [limiter.reserve() for _ in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_a_burst_goes_at_once_then_the_rate_holds() -> None:
    clock = Clock()
    limiter = RateLimiter(50, burst=5, clock=clock)
    assert limiter.burst == 5
    delays = [limiter.reserve() for _ in range(8)]
    assert delays == pytest.approx([0, 0, 0, 0, 0, 0.02, 0.04, 0.06])


def test_a_quiet_spell_refills_the_burst_but_no_more() -> None:
    clock = Clock()
    limiter = RateLimiter(50, burst=5, clock=clock)
    for _ in range(8):
        limiter.reserve()
    clock.now = 10.0  # long quiet
    assert [limiter.reserve() for _ in range(7)] == pytest.approx([0, 0, 0, 0, 0, 0.02, 0.04])


def test_no_second_window_holds_more_than_rate_plus_burst() -> None:
    """Requests arriving faster than the rate, sent at their slots: at most ``rate + burst`` in any
    one-second window (the benchmark's goal for 50/s is 55)."""
    clock = Clock()
    limiter = RateLimiter(50, clock=clock)
    sent: list[float] = []
    for i in range(2000):
        clock.now = i * 0.005  # 200 requests/s asked for
        sent.append(clock.now + limiter.reserve())
    worst = max(
        sum(1 for t in sent if start <= t < start + 1.0) for start in (x / 100 for x in range(0, 900))
    )
    assert worst <= 55
    assert worst >= 50  # and the rate is used, not undershot
    assert sent == sorted(sent)


def test_rate_zero_is_no_limit() -> None:
    limiter = RateLimiter(0, clock=Clock())
    assert limiter.unlimited
    assert {limiter.reserve() for _ in range(1000)} == {0.0}


@pytest.mark.parametrize("rate", [-1, math.nan, math.inf])
def test_bad_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="requests per second must be a finite number >= 0, not"):
        RateLimiter(rate)


@pytest.mark.parametrize("burst", [0, 0.5, math.nan])
def test_a_burst_below_one_request_is_refused(burst: float) -> None:
    with pytest.raises(ValueError, match="burst must be at least 1 request, not"):
        RateLimiter(10, burst=burst)


def test_an_explicit_burst() -> None:
    limiter = RateLimiter(10, burst=3, clock=Clock())
    assert [limiter.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])


# -- the pause --------------------------------------------------------------------------------------


def test_pause_holds_every_caller_then_resumes_at_the_rate_without_a_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(50, clock=clock)
    limiter.reserve()
    limiter.pause(3.0)
    assert limiter.delay() == pytest.approx(3.0)
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([3.0, 3.02, 3.04])
    clock.now = 1.0
    assert limiter.reserve() == pytest.approx(2.06)


def test_a_shorter_pause_does_not_shorten_a_longer_one() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    limiter.pause(5.0)
    limiter.pause(1.0)
    assert limiter.reserve() == pytest.approx(5.0)


@pytest.mark.parametrize("seconds", [0.0, -3.0, math.nan, math.inf])
def test_a_pause_of_nothing_or_nonsense_is_ignored(seconds: float) -> None:
    limiter = RateLimiter(10, clock=Clock())
    limiter.pause(seconds)
    assert limiter.reserve() == 0.0


def test_without_a_limit_nothing_is_paused() -> None:
    limiter = RateLimiter(0, clock=Clock())
    limiter.pause(30.0)
    assert limiter.reserve() == 0.0


# -- the registry -----------------------------------------------------------------------------------


def test_one_limiter_per_tenant_and_the_lowest_rate_wins() -> None:
    first = PROCESS.rate_limits.for_tenant(URL, 20)
    assert PROCESS.rate_limits.for_tenant(URL + "/", 50) is first  # the same tenant, however written
    assert PROCESS.rate_limits.for_tenant("HTTPS://LAB.emedgene.com", 0) is first
    assert first.rate == 20  # neither a higher rate nor "no limit" loosens it
    assert PROCESS.rate_limits.for_tenant(URL, 5) is first
    assert first.rate == 5
    other = PROCESS.rate_limits.for_tenant("https://other.emedgene.com", 20)
    assert other is not first
    assert other.rate == 20


def test_a_limit_from_one_connection_holds_for_an_unlimited_one() -> None:
    unlimited = PROCESS.rate_limits.for_tenant(URL, 0)
    assert unlimited.unlimited
    assert PROCESS.rate_limits.for_tenant(URL, 10) is unlimited
    assert unlimited.rate == 10


def test_clients_of_one_tenant_share_the_limiter_across_transports() -> None:
    config = _config(URL, requests_per_second=7)
    sync_a, sync_b = EmedgeneClient(config), EmedgeneClient(config)
    aio = AsyncEmedgeneClient(config)
    assert sync_a.limiter is sync_b.limiter is aio.limiter
    assert sync_a.limiter.rate == 7


# -- the extra --------------------------------------------------------------------------------------


def _config(host: str, **extra: Any) -> ClientConfig:
    return config_from_connection(host=host, login="u", password="p", extra=extra)


def test_requests_per_second_defaults_to_20() -> None:
    assert _config(URL).requests_per_second == 20.0
    assert _config(URL, requests_per_second="2.5").requests_per_second == 2.5
    assert _config(URL, requests_per_second=0).requests_per_second == 0.0


@pytest.mark.parametrize("value", [-1, 10_001, "fast", "nan", "inf", True])
def test_requests_per_second_refuses_nonsense(value: Any) -> None:
    with pytest.raises(EmedgeneConfigError, match="requests_per_second"):
        _config(URL, requests_per_second=value)


# -- threads and event loops ------------------------------------------------------------------------


def test_two_threads_share_one_schedule() -> None:
    """Two threads taking slots at the same instant get every slot once: none twice, none lost."""
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    got: list[float] = []
    guard = threading.Lock()
    start = threading.Barrier(2)

    def take() -> None:
        start.wait()
        mine = [limiter.reserve() for _ in range(500)]
        with guard:
            got.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == pytest.approx(_slots(100, 1, 1000))


def test_two_event_loops_share_one_schedule() -> None:
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    got: list[list[float]] = [[], []]

    async def take(into: list[float]) -> None:
        for _ in range(300):
            into.append(limiter.reserve())
            await asyncio.sleep(0)  # interleave with the loop's other task

    async def both(into: list[float]) -> None:
        await asyncio.gather(take(into), take(into))

    threads = [threading.Thread(target=asyncio.run, args=(both(into),)) for into in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got[0] + got[1]) == pytest.approx(_slots(100, 1, 1200))


# -- the clients against the simulator ---------------------------------------------------------------


def _sim_config(sim: EmedgeneSimulator, **extra: Any) -> ClientConfig:
    conn = sim.connection_json()
    return config_from_connection(
        host=conn["host"], login=conn["login"], password=conn["password"], extra={**conn["extra"], **extra}
    )


def _case(sim: EmedgeneSimulator) -> str:
    name = EmedgeneClient(_sim_config(sim, requests_per_second=0)).create_case(valid_case())
    PROCESS.tokens.clear()  # the test's own clients log in, and their login is paced too
    PROCESS.rate_limits.forget()  # nor does the test inherit this unlimited limiter
    return name


def test_sync_client_paces_its_calls(emedgene_simulator: EmedgeneSimulator) -> None:
    """N calls at R/s: the first burst at once, then one every 1/R s, slept with the client's sleep
    (here a clock that moves when slept on, so the pacing is exact however fast the machine)."""
    sim = emedgene_simulator
    name = _case(sim)
    clock = Clock()
    PROCESS.rate_limits.for_tenant(
        sim.url, 1000, clock=clock
    )  # the limiter exists first, on the test's clock
    client = EmedgeneClient(_sim_config(sim, requests_per_second=4))
    assert client.limiter.rate == 4  # the connection's rate, lower, won
    client.sleep = clock.sleep
    for _ in range(12):
        assert client.get_case_status(name)
    # 13 requests (a login, then 12 reads), burst 1: each 0.25 s after the one before.
    assert clock.sleeps == pytest.approx([0.25] * 12)
    assert sum(clock.sleeps) == pytest.approx(3.0)


def test_a_connection_without_the_extra_is_paced_at_20_per_second(
    emedgene_simulator: EmedgeneSimulator,
) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    clock = Clock()
    PROCESS.rate_limits.for_tenant(sim.url, 1000, clock=clock)
    client = EmedgeneClient(_sim_config(sim))
    assert client.limiter.rate == 20
    client.sleep = clock.sleep
    for _ in range(6):
        client.get_case_status(name)
    # 7 requests (a login, then 6 reads): the first at once, then one every 0.05 s.
    assert clock.sleeps == pytest.approx([0.05] * 6)


def test_sync_client_without_a_limit_never_sleeps(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    client = EmedgeneClient(_sim_config(sim, requests_per_second=0))
    slept: list[float] = []
    client.sleep = slept.append
    for _ in range(50):
        client.get_case_status(name)
    assert slept == []


def test_async_client_paces_its_calls(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    clock = Clock()
    PROCESS.rate_limits.for_tenant(sim.url, 1000, clock=clock)

    async def run() -> None:
        async with AsyncEmedgeneClient(_sim_config(sim, requests_per_second=10)) as client:
            client.sleep = clock.async_sleep
            for _ in range(5):
                await client.get_case_status(name)

    asyncio.run(run())
    assert clock.sleeps == pytest.approx([0.1] * 5)  # a login, then 5 reads, burst 1: 0.1 s apart


def test_a_retry_after_pauses_a_second_client_of_the_tenant(emedgene_simulator: EmedgeneSimulator) -> None:
    """One request throttled with ``Retry-After: 3``: another client (another hook, another task in
    the process) waits out the same 3 s before its next request, not just the throttled call."""
    sim = emedgene_simulator
    name = _case(sim)
    clock = Clock()
    PROCESS.rate_limits.for_tenant(sim.url, 1000, clock=clock)
    throttled = EmedgeneClient(_sim_config(sim, requests_per_second=50, max_retries=0))
    throttled.sleep = clock.sleep
    throttled.get_case_status(name)  # logs in: the token is the process's
    clock.now += 1.0  # a quiet second: the set-up's pacing is spent, only the pause remains
    clock.sleeps.clear()
    sim.inject("429", times=1, method="GET", path=f"/api/test/{name}", retry_after=3)
    with pytest.raises(EmedgeneRateLimitedError):
        throttled.get_case_status(name)
    assert clock.sleeps == []

    other = EmedgeneClient(_sim_config(sim, requests_per_second=50))
    other.sleep = clock.sleep
    assert other.get_case_status(name)
    assert clock.sleeps == pytest.approx([3.0])


def test_a_retry_after_to_a_sync_client_pauses_an_async_one(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    clock = Clock()
    PROCESS.rate_limits.for_tenant(sim.url, 1000, clock=clock)
    throttled = EmedgeneClient(_sim_config(sim, requests_per_second=50, max_retries=0, retry_max_wait=2))
    throttled.sleep = clock.sleep
    throttled.get_case_status(name)
    clock.now += 1.0  # a quiet second: the set-up's pacing is spent, only the pause remains
    clock.sleeps.clear()
    sim.inject("429", times=1, method="GET", path=f"/api/test/{name}", retry_after=30)
    with pytest.raises(EmedgeneRateLimitedError):
        throttled.get_case_status(name)

    async def run() -> str:
        async with AsyncEmedgeneClient(_sim_config(sim, requests_per_second=50)) as client:
            client.sleep = clock.async_sleep
            return await client.get_case_status(name)

    assert asyncio.run(run())
    assert clock.sleeps == pytest.approx([2.0])  # 30 s asked, held to retry_max_wait


def test_the_throttled_call_itself_waits_once_not_twice(emedgene_simulator: EmedgeneSimulator) -> None:
    """The retry of the throttled call waits the ``Retry-After`` (tenacity); the pause it set has
    passed by then, so the limiter adds nothing."""
    sim = emedgene_simulator
    name = _case(sim)
    clock = Clock()
    PROCESS.rate_limits.for_tenant(sim.url, 1000, clock=clock)
    client = EmedgeneClient(_sim_config(sim, requests_per_second=50))
    client.sleep = clock.sleep
    client.get_case_status(name)
    clock.now += 1.0  # a quiet second: the set-up's pacing is spent, only the pause remains
    clock.sleeps.clear()
    sim.inject("429", times=1, method="GET", path=f"/api/test/{name}", retry_after=4)
    assert client.get_case_status(name)
    assert clock.sleeps == pytest.approx([4.0])


def test_without_a_limit_a_retry_after_does_not_pause_others(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    name = _case(sim)
    throttled = EmedgeneClient(_sim_config(sim, requests_per_second=0, max_retries=0))
    throttled.get_case_status(name)
    sim.inject("429", times=1, method="GET", path=f"/api/test/{name}", retry_after=30)
    with pytest.raises(EmedgeneRateLimitedError):
        throttled.get_case_status(name)
    other = EmedgeneClient(_sim_config(sim, requests_per_second=0))
    slept: list[float] = []
    other.sleep = slept.append
    assert other.get_case_status(name)
    assert slept == []
