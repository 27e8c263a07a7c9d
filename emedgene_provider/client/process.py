"""What every Emedgene client of a process shares, held in one object with one reset.

A worker or triggerer runs many hooks and thousands of waits against a few tenants, and sharing
across them is what keeps it cheap and polite (each share below was measured, see
``bench/RESULTS.md``). Every client takes a :class:`ProcessState` (``shared=``), the process's
:data:`PROCESS` by default, so what is shared, and the rules that follow from it, are in one place:

- ``tokens``: one login per credentials, renewed once for every caller (:class:`TokenCache`).
- ``rate_limits``: one limiter per tenant for every client, sync or async, any thread or loop; the
  lowest rate asked for a tenant wins until the process restarts (:class:`RateLimits`).
- ``async_clients``: per event loop, one async client (one aiohttp pool, one TLS context) per
  configuration, closed by its last user (:func:`~emedgene_provider.client.aio.shared_client`).
- ``connection_reads``: per event loop, one read of an Airflow connection serves every wait on it
  for 30 s (:meth:`~emedgene_provider.hooks.emedgene.EmedgeneHook.aget_config`).
- ``ca_contexts``: one TLS context per CA bundle file version, at most 64
  (:func:`~emedgene_provider.client.config.load_ca_bundle`).
- ``claims``: idempotency key claims, so two callers of one key in a process make one case
  (:class:`ProcessClaims`).
- ``poll_rng``: the one generator the poll schedules draw their jitter from (a Mersenne Twister per
  wait would cost ~5 KB apiece in a triggerer).
- ``watchdog``: the one thread that cuts the sockets of calls past their overall deadline.
- ``hint_watchers``: per event loop, one reader of each connection's webhook hint board for
  every wait on it (:class:`~emedgene_provider.hints.BoardWatcher`).
- ``webhook_hooks``: per connection id, the hook the webhook receiver confirms hints with, kept
  30 s: a burst of webhooks reads the connection and logs in once, not once each
  (:func:`~emedgene_provider.case_events.announce`).

:meth:`ProcessState.reset` forgets every cache (tests, a rotated secret); the watchdog holds only
the deadlines of calls in flight and is left running. Stdlib and light modules only: a DAG file's
import reaches this module, and requests, aiohttp and tenacity are imported when a call is made.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from emedgene_provider.client.auth import TokenCache
from emedgene_provider.client.claims import ProcessClaims
from emedgene_provider.client.ratelimit import RateLimits
from emedgene_provider.client.watchdog import Watchdog

if TYPE_CHECKING:
    from emedgene_provider.client.aio import SharedClient
    from emedgene_provider.client.config import ClientConfig

V = TypeVar("V")


class PerLoop(Generic[V]):
    """One value per running event loop, made by ``factory`` on first use.

    Weak on the loop: a loop that is gone takes its value with it. Each value belongs to its loop's
    thread; the map of loops is shared by threads, hence the lock.
    """

    def __init__(self, factory: Callable[[], V]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, V] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def current(self) -> V:
        """The running loop's value (call from inside a coroutine)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            value = self._values.get(loop)
            if value is None:
                value = self._values[loop] = self._factory()
            return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


@dataclass(eq=False)
class ProcessState:
    """Everything the clients of one process share; see the module docstring for each part."""

    tokens: TokenCache = field(default_factory=TokenCache)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    async_clients: PerLoop[dict[ClientConfig, SharedClient]] = field(default_factory=lambda: PerLoop(dict))
    connection_reads: PerLoop[dict[str, tuple[float, asyncio.Task[Any]]]] = field(
        default_factory=lambda: PerLoop(dict)
    )
    #: Loaded CA bundles by (path, mtime, size), at most :data:`MAX_CA_CONTEXTS`.
    ca_contexts: dict[tuple[str, int, int], ssl.SSLContext] = field(default_factory=dict)
    claims: ProcessClaims = field(default_factory=ProcessClaims)
    poll_rng: random.Random = field(default_factory=random.Random)  # spreading polls, not cryptography
    watchdog: Watchdog = field(default_factory=Watchdog)
    hint_watchers: PerLoop[dict[str, Any]] = field(default_factory=lambda: PerLoop(dict))
    webhook_hooks: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every token, limiter, shared client, connection read, CA context, claim and hint
        watcher."""
        self.tokens.clear()
        self.rate_limits.forget()
        self.async_clients.clear()
        self.connection_reads.clear()
        self.ca_contexts.clear()
        self.claims.clear()
        self.hint_watchers.clear()
        self.webhook_hooks.clear()


#: A few CA bundles per process; past this many the contexts are dropped and loaded again.
MAX_CA_CONTEXTS = 64

#: The process's shared state: every client uses it unless given another.
PROCESS = ProcessState()
