"""The asyncio Emedgene client, for triggers: the same calls, policy, token cache and error mapping
as :mod:`emedgene_provider.client.sync`, over aiohttp.

Only the transport differs. Which answers mean what is decided in
:mod:`emedgene_provider.client.responses`; retries, login, the 401/403 replay and the key look-up
are the flows of :mod:`emedgene_provider.client.flows`, driven here with awaits; tokens are shared
with every other client of the process through its
:class:`~emedgene_provider.client.process.ProcessState` (one login for a triggerer's many waits).
"""

from __future__ import annotations

import asyncio

# Codecs are imported at their first use, which would be on the event loop: idna encodes the
# tenant's name at the first TLS handshake, utf-8-sig decodes answers (responses.py).
import encodings.idna
import encodings.utf_8_sig  # noqa: F401
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

import aiohttp

from emedgene_provider.client import endpoints, flows
from emedgene_provider.client.auth import Token
from emedgene_provider.client.config import ClientConfig, load_ca_bundle
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneError
from emedgene_provider.client.paging import CasePager, KeyLookup
from emedgene_provider.client.process import PROCESS, ProcessState
from emedgene_provider.client.ratelimit import RateLimiter
from emedgene_provider.client.responses import (
    field_of,
    not_built,
    status_field,
    tls_failed,
    transport_failure,
)
from emedgene_provider.client.secrets import Scrubber
from emedgene_provider.client.wire import (
    CHUNK_BYTES,
    CappedBody,
    connect_reason,
    deadline_passed,
    declared_length,
    is_redirect,
    no_tls,
    redirected,
    speaks_no_tls,
    unreachable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds an idle pooled connection is kept for the next request. Below the idle timeouts servers
#: and load balancers commonly use (AWS ALB 60 s, nginx 75 s), so the client closes first and never
#: sends on a connection the server is closing. Thousands of waits sharing a pool keep its
#: connections busy well within this; a lone wait polling every minute reconnects at each poll
#: (one TLS handshake a minute costs nothing) instead of holding a socket and its ~300 KB of TLS
#: buffers between polls.
KEEPALIVE_SECONDS = 30.0


def ssl_setting(verify: bool | str) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` for a connection's ``verify``: default checks, none, or a CA bundle.

    The connection's bundle was loaded once already (config.py); a file that went bad since is
    the same configuration error, not a bare ``ssl.SSLError``. With the default ``verify``, the
    bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is used, as requests does in the
    workers: a deferred wait must trust the same CAs as the task that deferred it.
    """
    if verify is True:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        return load_ca_bundle(bundle) if bundle else True
    if verify is False:
        return False
    return load_ca_bundle(verify)


class AsyncEmedgeneClient:
    """Async calls to one Emedgene tenant. Use as ``async with AsyncEmedgeneClient(config) as c``.

    :param config: where and how to connect.
    :param shared: what this client shares with others (tokens, rate limit); the process's
        :data:`~emedgene_provider.client.process.PROCESS` by default.
    :param session: an aiohttp session to share (not closed here); one is made otherwise.
    :param tls: :func:`ssl_setting` of ``config.verify``, when the caller made it already (off the
        event loop: a CA bundle is a file to read and parse); made here otherwise.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        shared: ProcessState = PROCESS,
        session: aiohttp.ClientSession | None = None,
        tls: ssl.SSLContext | bool | None = None,
    ) -> None:
        self.config = config
        self.shared = shared
        self._cache = shared.tokens
        self._key = config.credentials.cache_key()
        self.scrub = Scrubber(config.credentials.secrets(), on_secret=config.on_secret)
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl_setting(config.verify) if tls is None else tls
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it
        self._proxies: dict[str, tuple[Any, Any]] = {}  # by scheme and host: see _proxy_for()
        #: The tenant's request rate, shared by every client of the process, sync ones and other
        #: event loops included (ratelimit.py).
        self.limiter: RateLimiter = shared.rate_limits.for_tenant(config.base_url, config.requests_per_second)

    async def __aenter__(self) -> AsyncEmedgeneClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The given session, or the client's own: one pool of at most ``max_connections``
        connections, all over the client's one TLS context, idle ones closed after
        :data:`KEEPALIVE_SECONDS`."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections,
                limit_per_host=0,  # the tenant and its login host share the one limit
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=self._ssl,
            )
            # No trust_env: it makes aiohttp read .netrc and the proxy variables in a thread
            # for every request (two thread hops a poll, most of a poll's CPU at thousands of
            # waits); _proxy_for() reads the proxy variables once per host instead.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout())
        return self._session

    def _proxy_for(self, url: str) -> tuple[Any, Any]:
        """``(proxy, proxy_auth)`` for ``url`` from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, as
        requests reads them in the workers (a deferred wait must go the way its task went); read
        once per scheme and host of this client (the tenant, its login host)."""
        origin = "/".join(url.split("/", 3)[:3])
        found = self._proxies.get(origin)
        if found is None:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            try:
                found = get_env_proxy_for_url(URL(origin))
            except LookupError:  # no proxy for this host, or NO_PROXY names it
                found = (None, None)
            self._proxies[origin] = found
        return found

    def _timeout(self) -> aiohttp.ClientTimeout:
        """``timeout`` for each wait (connect, each read), the deadline for the whole attempt."""
        wait = self.config.timeout
        return aiohttp.ClientTimeout(total=self.config.deadline, sock_connect=wait, sock_read=wait)

    async def _send(self, send: flows.Send) -> flows.Answer:
        """One HTTP attempt: its status, headers and body (capped), within the call's deadline.

        Transport failures become a retry, an ambiguity, or a final error; a redirect is an error
        and is not followed; an answer larger than ``max_response_mb`` is an error, read no further.
        """
        call, url = send.call, send.url
        proxy, proxy_auth = self._proxy_for(url)
        try:
            async with self.session.request(
                call.method,
                url,
                params=list(send.params),
                json=send.json,
                headers=dict(send.headers),
                ssl=self._ssl,
                allow_redirects=False,
                timeout=self._timeout(),
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as response:
                status = response.status
                location = response.headers.get("Location")
                if is_redirect(status, location):
                    raise redirected(call, status, location, url)
                body = CappedBody(
                    call, status, self.config.max_response_bytes, declared_length(response.headers)
                )
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    if not body.feed(chunk):
                        response.close()  # an error page's first words are all we need
                        break
                return status, response.headers, body.body
        except EmedgeneError:
            raise  # a redirect or an oversized answer; EmedgeneConfigError is a ValueError too
        except aiohttp.ClientConnectorCertificateError as exc:
            raise tls_failed(call, self.config.base_url, self.scrub(str(exc))) from None
        except ValueError as exc:  # aiohttp refuses a header or URL before sending anything
            raise not_built(call, self.scrub(str(exc))) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if speaks_no_tls(exc):
                raise no_tls(call, url) from None
            if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, aiohttp.ServerTimeoutError):
                # aiohttp's total timeout: the deadline passed, however busy the socket was
                raise deadline_passed(call, self.config.deadline, self.config.timeout) from None
            never_sent = isinstance(exc, aiohttp.ClientConnectorError)
            reason = connect_reason(exc, self.config.timeout) if never_sent else None
            if reason is not None:
                raise transport_failure(call, unreachable(call, url, reason), never_sent=True) from None
            detail = f"{type(exc).__name__} on {call.method} {call.path}: {self.scrub(str(exc))[:200]}"
            raise transport_failure(call, detail, never_sent=never_sent) from None

    async def _drive(self, flow: flows.Flow[T]) -> T:
        """Run ``flow`` to its end: aiohttp for a send, ``self.sleep`` for a pause, the shared token
        cache for a login. A look-up ends at its first case (the newest), the rest not read."""
        run = flows.Run(flow)
        while (step := run.next()) is not None:
            try:
                if isinstance(step, flows.Send):
                    run.answer = await self._send(step)
                elif isinstance(step, flows.Sleep):
                    await self.sleep(step.seconds)
                elif isinstance(step, flows.Login):
                    run.answer = await self._renewed(step.refused)
                else:
                    run.close()
                    return cast(T, step.case)
            except Exception as exc:
                run.error = exc
        return run.result

    async def _login(self) -> Token:
        return await self._drive(flows.login(self))

    async def token(self) -> Token:
        """The tenant's token: cached, or from the one login in flight on this event loop, which
        every caller without a token shares (:meth:`TokenCache.obtain`)."""
        token = await self._cache.obtain(self._key, self._login)
        self.scrub.add(token.access_token)
        return token

    async def _renewed(self, refused: Token | None) -> Token:
        """:meth:`token`, after dropping ``refused`` from the cache (a token the server refused)."""
        if refused is not None:
            self._cache.invalidate(self._key, refused)
        return await self.token()

    async def call(self, call: ApiCall) -> Any:
        """Send ``call`` with retries; on 401/403 renew the token and replay once."""
        return await self._drive(flows.request(self, call))

    async def iter_cases(
        self, page_size: int = 100, *, max_pages: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every case once, a page at a time: the sync client's :meth:`iter_cases`, awaited."""
        pager = CasePager(page_size, max_pages=max_pages)
        while (call := pager.next_call()) is not None:
            for hit in pager.take(call, await self.call(call)):
                yield hit
        pager.check()

    async def get_case_status(self, case_name: str) -> str:
        call = endpoints.get_case_status(case_name)
        return status_field(call, await self.call(call))

    async def get_case(self, case_name: str, test_fields: list[str] | None = None) -> dict[str, Any]:
        call = endpoints.get_case(case_name, test_fields)
        body = await self.call(call)
        if not isinstance(body, dict):
            field_of(call, body, "name", kind=dict)
        return dict(body)

    async def newest_case_with_idempotency_key(
        self,
        key: str,
        *,
        since: float | None = None,
        max_pages: int | None = None,
        not_matching: set[str] | None = None,
    ) -> dict[str, Any] | None:
        """The newest case stamped with ``key`` (``name``, ``status``, ``created``), or None when the
        list, read consistently, lacks it; the same look-up as the sync client's
        ``cases_with_idempotency_key`` (:class:`KeyLookup`), raising as it does."""
        lookup = KeyLookup(key, since=since, max_pages=max_pages, not_matching=not_matching)
        return await self._drive(flows.key_lookup(self, lookup))


# -- one client per tenant per event loop -------------------------------------------------------


@dataclass
class SharedClient:
    """An event loop's client for one configuration and how many users hold it."""

    client: AsyncEmedgeneClient
    users: int = 0


@asynccontextmanager
async def shared_client(
    config: ClientConfig, shared: ProcessState = PROCESS
) -> AsyncIterator[AsyncEmedgeneClient]:
    """The running event loop's one client for ``config``, shared by every user inside it.

    A triggerer runs thousands of waits in one loop: each building its own client held a TLS
    connection (and its buffers) per wait and paid a handshake per poll. Here the first user
    creates the client (one ``aiohttp`` session, one pool of ``max_connections``, one TLS
    context), later users with an equal configuration reuse it, and the last one to leave closes
    it. The whole configuration is the key, so every setting the client reads (timeouts,
    retries, custom statuses...) is the one its user asked for; equal settings for one tenant
    and credentials, under any number of connection ids, share one client. Clients are never
    shared across event loops (an aiohttp session belongs to one loop).
    """
    clients = shared.async_clients.current()
    entry = clients.get(config)
    if entry is None:
        # The TLS context may parse a CA bundle (~25 ms for a system bundle of 140 CAs, once per
        # file): in a thread, not on the loop every other wait of the triggerer runs on.
        tls = await asyncio.to_thread(ssl_setting, config.verify)
        entry = clients.get(config)  # another user may have made it meanwhile
        if entry is None:  # no await between this look-up and the insert: one creator per loop
            entry = clients[config] = SharedClient(AsyncEmedgeneClient(config, shared=shared, tls=tls))
    entry.users += 1
    try:
        yield entry.client
    finally:
        entry.users -= 1
        if entry.users == 0:
            if clients.get(config) is entry:
                del clients[config]
            await entry.client.close()


def shared_clients(shared: ProcessState = PROCESS) -> list[AsyncEmedgeneClient]:
    """The running event loop's shared clients in use (for tests and diagnostics)."""
    return [entry.client for entry in shared.async_clients.current().values()]
