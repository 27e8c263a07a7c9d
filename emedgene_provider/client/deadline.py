"""An overall deadline for a blocking ``requests`` call, and a session that never redirects.

requests has no total timeout: its ``timeout`` bounds each wait on the socket, so a server that
sends one byte a second, in the headers or in the body, holds the call (and the Airflow worker)
for as long as it likes. :class:`Deadline` is watched by the process's one watchdog thread
(:mod:`~emedgene_provider.client.watchdog`): when it fires
it shuts the call's socket down, the blocked read returns at once, and the caller, seeing
:attr:`Deadline.fired`, reports the deadline rather than whatever the HTTP library made of the cut.

The sockets are known through :class:`DeadlineAdapter`: its connections tell the deadline current
in their thread (a :class:`~contextvars.ContextVar`) about every socket they open or reuse. The
watchdog holds a duplicate of each socket's descriptor, so it can shut the connection down during
the TLS handshake too (the original socket object is replaced by its TLS wrapper) and never
touches a descriptor number the process may have reused. Behind a SOCKS proxy the sockets are not
seen; the deadline still ends the call at its next read.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.poolmanager
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from emedgene_provider.client.process import PROCESS

_CURRENT: ContextVar[Deadline | None] = ContextVar("emedgene_deadline", default=None)
_OWNER = "_emedgene_deadline"


def _duplicate(sock: socket.socket) -> socket.socket | None:
    """A second socket object on the same connection (a TLS socket cannot ``dup()`` itself)."""
    try:
        return socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    except (OSError, ValueError):
        return None


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Deadline:
    """Ends one HTTP call ``seconds`` after it starts, whatever the server is doing.

    Use as ``with Deadline(60) as deadline:`` around the request *and* the reading of its body;
    :meth:`finish` (also called on exit) stops the watch and says whether it had fired.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._watched: list[tuple[object, socket.socket]] = []
        self._fired = False
        self._done = False
        self.when = 0.0  # monotonic time it fires at, from __enter__
        self._token: Token[Deadline | None] | None = None

    def __enter__(self) -> Deadline:
        self._token = _CURRENT.set(self)
        self.when = time.monotonic() + self.seconds
        PROCESS.watchdog.watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None

    @property
    def fired(self) -> bool:
        return self._fired

    def finish(self) -> bool:
        """Stop watching (idempotent); True if the deadline passed before that."""
        PROCESS.watchdog.forget(self)
        with self._lock:
            self._done = True
            watched, self._watched = self._watched, []
        for _, duplicate in watched:
            duplicate.close()
        return self._fired

    def watch(self, owner: object, sock: Any) -> None:
        """Cut ``sock`` (used by ``owner``, a connection) when the deadline passes."""
        if not isinstance(sock, socket.socket):
            return
        duplicate = _duplicate(sock)
        if duplicate is None:
            return
        with self._lock:
            if not self._done:
                setattr(owner, _OWNER, self)
                self._watched.append((owner, duplicate))
                if self._fired:
                    _cut(duplicate)
                return
        duplicate.close()

    def fire(self) -> None:
        """The deadline passed: cut every socket the call still uses (the watchdog calls this)."""
        with self._lock:
            if self._done:
                return
            self._fired = True
            for owner, duplicate in self._watched:
                # A connection handed back to the pool and taken by another call is not ours to cut.
                if getattr(owner, _OWNER, None) is self:
                    _cut(duplicate)


def _watch(connection: object, sock: Any) -> None:
    deadline = _CURRENT.get()
    if deadline is not None and sock is not None:
        deadline.watch(connection, sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(self, sock)  # before any TLS handshake, so that a dripping handshake is cut too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self, self.sock)  # a kept-alive connection, reused
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(self, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self, self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _use_watched_pools(manager: Any) -> None:
    # Only urllib3's own pools are replaced; a SOCKS proxy manager keeps its pools.
    if getattr(manager, "pool_classes_by_scheme", None) is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections whose sockets a :class:`Deadline` can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_watched_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _use_watched_pools(manager)
        return manager


class BoundedSession(requests.Session):
    """A ``requests.Session`` whose calls a :class:`Deadline` can cut, and that never follows a
    redirect, even with ``allow_redirects=True``.

    Passing ``allow_redirects=False`` is not enough on its own: requests still works out the next
    hop of a 3xx, and reads the whole body of the redirect to do so (unbounded). Here no answer has
    a redirect target, so a 3xx reaches the client as it came, body unread.
    """

    def __init__(self) -> None:
        super().__init__()
        for prefix in ("https://", "http://"):
            self.mount(prefix, DeadlineAdapter())
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(  # type: ignore[override]  # requests' stubs: a TypedDict
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """requests' proxy and CA-bundle settings from the environment, read once per host.

        requests reads them on every call (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...),
        walking the whole of ``os.environ`` twice: in an Airflow worker, whose environment is
        large, that was a fifth of a status read on loopback (``bench/hook_overhead.py``). A session
        talks to one tenant and its login host, so the answer is kept per scheme and host; the
        environment is read when the session (one per hook) first calls a host.
        """
        if proxies or not isinstance(url, str):  # explicit proxies: requests' own merge, uncached
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        settings = self._environment.get(key)
        if settings is None:
            settings = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            self._environment[key] = settings
        return {name: dict(value) if isinstance(value, dict) else value for name, value in settings.items()}

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None
