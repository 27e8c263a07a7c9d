"""The asyncio Emedgene client, for triggers: the same calls, policy, token cache and error mapping
as :mod:`emedgene_provider.client.sync`, over aiohttp.

Only the transport differs. Which answers mean what is decided in
:mod:`emedgene_provider.client.responses`, retry and backoff in :mod:`emedgene_provider.client.retry`,
tokens are shared with every other client of the process through
:data:`~emedgene_provider.client.auth.TOKEN_CACHE` (one login for a triggerer's many waits).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import tenacity

from emedgene_provider.client import endpoints
from emedgene_provider.client.auth import TOKEN_CACHE, Token, TokenCache, login_request
from emedgene_provider.client.config import ClientConfig, load_ca_bundle
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneError, EmedgeneNotFoundError
from emedgene_provider.client.reconcile import KeyLookup
from emedgene_provider.client.responses import (
    AuthRejected,
    field_of,
    fresh_token_refused,
    interpret,
    interpret_login,
    not_built,
    retries_exhausted,
    status_field,
    tls_failed,
    transport_failure,
)
from emedgene_provider.client.retry import TransientFailure, log_before_sleep
from emedgene_provider.client.secrets import Scrubber
from emedgene_provider.client.wire import (
    CHUNK_BYTES,
    CappedBody,
    deadline_passed,
    declared_length,
    is_redirect,
    no_tls,
    redirected,
    speaks_no_tls,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def ssl_setting(verify: bool | str) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` for a connection's ``verify``: default checks, none, or a CA bundle.

    The connection's bundle was loaded once already (config.py); a file that went bad since is
    the same configuration error, not a bare ``ssl.SSLError``.
    """
    if verify is True:
        return True
    if verify is False:
        return False
    return load_ca_bundle(verify)


class AsyncEmedgeneClient:
    """Async calls to one Emedgene tenant. Use as ``async with AsyncEmedgeneClient(config) as c``.

    :param config: where and how to connect.
    :param token_cache: where tokens are shared; the process-wide cache by default.
    :param session: an aiohttp session to share (not closed here); one is made otherwise.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        token_cache: TokenCache | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self._cache = token_cache or TOKEN_CACHE
        self._key = config.credentials.cache_key()
        self.scrub = Scrubber(config.credentials.secrets(), on_secret=config.on_secret)
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl_setting(config.verify)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it

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
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout())
        return self._session

    async def _with_retries(self, call: ApiCall, attempt: Callable[[], Awaitable[T]]) -> T:
        policy = self.config.retry
        retrying = tenacity.AsyncRetrying(
            sleep=self.sleep,
            before_sleep=log_before_sleep(call.describe(), policy.max_attempts, log),
            **policy.tenacity_kwargs(),  # type: ignore[arg-type]
        )
        try:
            return await retrying(attempt)
        except TransientFailure as failure:
            raise retries_exhausted(call, failure, policy.max_attempts) from None

    def _timeout(self) -> aiohttp.ClientTimeout:
        """``timeout`` for each wait (connect, each read), the deadline for the whole attempt."""
        wait = self.config.timeout
        return aiohttp.ClientTimeout(total=self.config.deadline, sock_connect=wait, sock_read=wait)

    async def _send(
        self,
        call: ApiCall,
        url: str,
        *,
        headers: Mapping[str, str],
        params: tuple[tuple[str, str], ...] = (),
        json: Any = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP attempt: its status, headers and body (capped), within the call's deadline.

        Transport failures become a retry, an ambiguity, or a final error; a redirect is an error
        and is not followed; an answer larger than ``max_response_mb`` is an error, read no further.
        """
        try:
            async with self.session.request(
                call.method,
                url,
                params=list(params),
                json=json,
                headers=dict(headers),
                ssl=self._ssl,
                allow_redirects=False,
                timeout=self._timeout(),
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
            detail = f"{type(exc).__name__} on {call.method} {call.path}: {self.scrub(str(exc))[:200]}"
            never_sent = isinstance(exc, aiohttp.ClientConnectorError)
            raise transport_failure(call, detail, never_sent=never_sent) from None

    async def _login(self) -> Token:
        creds = self.config.credentials
        request = login_request(creds)
        login_call = request.call(creds.base_url)

        async def attempt() -> Token:
            status, headers, body = await self._send(
                login_call, request.url, headers=request.headers, params=request.params, json=request.json
            )
            return interpret_login(
                creds, status, headers, body, self.scrub, default_lifetime=self.config.token_lifetime
            )

        token = await self._with_retries(login_call, attempt)
        log.info("Emedgene: logged in (%s)", creds.describe())
        return token

    async def token(self) -> Token:
        token = self._cache.get(self._key)
        if token is None:
            async with self._cache.async_lock(self._key):
                token = self._cache.get(self._key)
                if token is None:
                    token = await self._login()
                    self._cache.put(self._key, token)
        self.scrub.add(token.access_token)
        return token

    async def _attempt(self, call: ApiCall, token: Token) -> Any:
        status, headers, body = await self._send(
            call,
            self.config.base_url + call.path,
            headers={"Authorization": token.header_value, "Accept": "application/json"},
            params=call.params,
            json=call.json,
        )
        return interpret(call, status, headers, body, self.scrub)

    async def call(self, call: ApiCall) -> Any:
        """Send ``call`` with retries; on 401/403 renew the token and replay once."""
        token = await self.token()

        async def attempt() -> Any:  # tenacity awaits coroutine functions, not lambdas
            return await self._attempt(call, token)

        try:
            return await self._with_retries(call, attempt)
        except AuthRejected:
            log.info("Emedgene %s: token refused, logging in again and replaying once", call.describe())
            self._cache.invalidate(self._key, token)
        token = await self.token()
        try:
            return await self._with_retries(call, attempt)
        except AuthRejected as again:
            raise fresh_token_refused(call, again) from None

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
        """The newest case stamped with ``key`` (``name``, ``status``, ``created``), or None; the same
        look-up as the sync client's ``cases_with_idempotency_key`` (:class:`KeyLookup`)."""
        lookup = KeyLookup(key, since=since, max_pages=max_pages, not_matching=not_matching)
        while (call := lookup.next_page()) is not None:
            lookup.take_page(call, await self.call(call))
        for hit in lookup.candidates():
            details: Any = None
            detail_call = lookup.detail_call(hit)
            if detail_call is not None:
                try:
                    details = await self.call(detail_call)
                except EmedgeneNotFoundError:  # deleted between the list and the read
                    continue
            found = lookup.match(hit, details)
            if found is not None:
                return found
        return None
