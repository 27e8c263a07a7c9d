"""A client-side rate limit per Emedgene tenant, shared by every client of the process.

The tenant throttles a client that hammers it (429), and one Airflow worker or triggerer may run
hundreds of hooks and thousands of waits against the same tenant. Every HTTP attempt of every
client, sync or async, in any thread or event loop, first asks the tenant's :class:`RateLimiter`
how long to wait, and sleeps that long with its own (injectable) sleep.

The limiter is a virtual schedule (GCRA): under a ``threading.Lock`` it keeps the next free slot
on the timeline; each request takes one (``slot = max(now, next_free) - tolerance``,
``next_free += 1 / rate``) and is told how far away its slot is. It never blocks itself: the
caller sleeps, ``time.sleep`` in a worker thread, ``asyncio.sleep`` in an event loop. That is why it
is written here and not taken from a library: per-loop limiters such as ``aiolimiter`` hold asyncio
primitives bound to one event loop and cannot be shared with threads or with a second loop, and
none offers the global pause below. A burst (one request by default) goes at once, so a single
call is never slowed, while over any second no more than ``rate + burst`` go out.

:meth:`RateLimiter.pause`: a ``Retry-After`` on one request (429, 503) pushes the next free slot
to the end of the pause for *every* caller of the tenant, so one throttled request slows them all,
and after the pause they resume at the rate, not in a burst. Requests already given an earlier
slot (sleeping towards it) still go at that slot: at most a burst and what was queued.

The limit is per process: :class:`RateLimits` (in the process's
:class:`~emedgene_provider.client.process.ProcessState`) keeps one limiter per tenant base URL. If two
connections to one tenant ask for different rates, the lowest wins, and keeps winning until the
process ends (a triggerer keeps a lowered rate until it restarts). Rate 0 turns the limiter off
for a connection: no pacing and no shared pause (each call still waits out its own ``Retry-After``
in its retry); a tenant that another connection limits stays limited.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from emedgene_provider.client.retry import parse_retry_after
from emedgene_provider.client.settings import SETTINGS

#: Requests per second when the connection does not say (extra ``requests_per_second``).
DEFAULT_REQUESTS_PER_SECOND = SETTINGS["requests_per_second"].number_default


def default_burst(rate: float) -> float:
    """Requests let through at once: one. A burst of a tenth of a second's worth let a tenant see
    ``rate + rate / 10`` in a second, and more once pooled connections bunched them (57 at 50/s
    in ``bench/trigger_scale.py``); a single call is not slowed by a burst of one either."""
    return 1.0


class RateLimiter:
    """One tenant's request schedule.

    :param rate: requests per second; 0 for no limit.
    :param burst: requests that may go at once after a quiet spell; 1 if None.
    :param clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._burst_override = burst
        self._next_free = -math.inf  # theoretical arrival time of the next request
        self._set_rate(rate)

    def _set_rate(self, rate: float) -> None:
        rate = float(rate)
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"requests per second must be a finite number >= 0, not {rate!r}")
        self.rate = rate
        self.interval = 1.0 / rate if rate else 0.0
        burst = default_burst(rate) if self._burst_override is None else float(self._burst_override)
        if not burst >= 1:
            raise ValueError(f"burst must be at least 1 request, not {burst!r}")
        self.burst = burst
        self._tolerance = (burst - 1.0) * self.interval

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def lower_rate(self, rate: float) -> None:
        """Apply ``rate`` if it is lower than the current one (0, unlimited, is the highest)."""
        rate = float(rate)
        with self._lock:
            if rate > 0 and (self.unlimited or rate < self.rate):
                self._set_rate(rate)

    def reserve(self) -> float:
        """Take the next slot: the seconds to sleep before sending (0.0 for at once)."""
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            arrival = max(now, self._next_free)
            self._next_free = arrival + self.interval
            return max(0.0, arrival - self._tolerance - now)

    def pause(self, seconds: float) -> None:
        """Nobody's next slot before ``seconds`` from now (a server's ``Retry-After``). Without a
        limit (rate 0) nothing is paused: only the call that got the answer waits, in its retry."""
        if self.unlimited or not seconds > 0 or not math.isfinite(seconds):
            return
        with self._lock:
            # Slots resume at the rate after the pause (no burst): the tolerance is added back.
            self._next_free = max(self._next_free, self._clock() + seconds + self._tolerance)

    def delay(self) -> float:
        """Seconds the next request would wait if it asked now, without taking a slot."""
        if self.unlimited:
            return 0.0
        with self._lock:
            return max(0.0, self._next_free - self._tolerance - self._clock())


#: Answers whose ``Retry-After`` pauses the whole tenant: throttled (429) or overloaded (503).
PAUSING_STATUSES = frozenset({429, 503})


def pause_for_answer(limiter: RateLimiter, status: int, headers: Mapping[str, str], max_wait: float) -> None:
    """After an answer: a 429/503 with ``Retry-After`` pauses every caller of the tenant, for at
    most ``max_wait`` seconds (the connection's ``retry_max_wait``, as for the retry itself)."""
    if status not in PAUSING_STATUSES:
        return
    seconds = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    if seconds:
        limiter.pause(min(seconds, max_wait))


class RateLimits:
    """The process's limiter per tenant, by base URL (held by
    :class:`~emedgene_provider.client.process.ProcessState`).

    The lowest rate asked for a tenant wins until the process restarts (or :meth:`forget`): a
    connection that asks for less slows every client of that tenant, and one that asks for more
    does not speed them up.
    """

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def for_tenant(
        self, base_url: str, rate: float, *, clock: Callable[[], float] | None = None
    ) -> RateLimiter:
        """The limiter for the tenant at ``base_url``; ``rate`` lowers it if lower.

        ``clock`` is used only when this call creates the limiter (tests).
        """
        key = base_url.rstrip("/").lower()
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = RateLimiter(rate, clock=clock or time.monotonic)
                self._limiters[key] = limiter
                return limiter
        limiter.lower_rate(rate)
        return limiter

    def forget(self, base_url: str | None = None) -> None:
        """Drop one tenant's limiter, or all of them (tests; a process otherwise keeps them)."""
        with self._lock:
            if base_url is None:
                self._limiters.clear()
            else:
                self._limiters.pop(base_url.rstrip("/").lower(), None)
