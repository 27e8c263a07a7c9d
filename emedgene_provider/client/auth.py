"""Authentication: the three documented login flows, token parsing, and the process-wide token cache.

Request shapes follow the vendor's guide exactly [doc]: a JSON body for username/password, and for
Illumina API keys ``Authorization: Basic base64("emedgene:<key>")`` with the *query* parameters
``audience=emedgene&grant_type=api_key`` and no body, sent to the login host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from emedgene_provider.client.endpoints import API_KEY_TOKEN_PATH, LOGIN_PATH, ApiCall
from emedgene_provider.client.errors import EmedgeneConfigError, EmedgeneError

log = logging.getLogger(__name__)
AuthType = Literal["password", "api_key"]
ILLUMINA_TENANT_SUFFIX = ".emg.illumina.com"

#: Renew this long before expiry, at most; a tenth of a short lifetime otherwise.
MAX_RENEWAL_LEAD = 300.0
#: A lifetime claimed beyond this (a year) is not believed; the configured one is used instead.
MAX_LIFETIME = 365 * 24 * 3600.0


def derive_login_url(base_url: str) -> str | None:
    """``https://<x>.login.illumina.com/platform-services-manager/Token`` for an ``<x>.emg.illumina.com``
    tenant [doc]; None for any other host, where the connection must say where keys are exchanged."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host.endswith(ILLUMINA_TENANT_SUFFIX) and len(host) > len(ILLUMINA_TENANT_SUFFIX):
        tenant = host[: -len(ILLUMINA_TENANT_SUFFIX)]
        return f"https://{tenant}.login.illumina.com{API_KEY_TOKEN_PATH}"
    return None


@dataclass(frozen=True)
class Credentials:
    """Who logs in, where, and how. Secrets are kept out of ``repr``."""

    base_url: str
    auth_type: AuthType
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    login_url: str | None = None

    def __post_init__(self) -> None:
        if self.auth_type == "password" and not (self.username and self.password):
            raise EmedgeneConfigError(
                f"Emedgene connection to {self.base_url}: password auth needs both login and password."
            )
        if self.auth_type == "api_key":
            if not self.api_key:
                raise EmedgeneConfigError(
                    f"Emedgene connection to {self.base_url}: API-key auth needs the extra 'api_key'."
                )
            if not self.login_url:
                raise EmedgeneConfigError(
                    f"Emedgene connection to {self.base_url}: cannot derive where to exchange the API key "
                    "(only <tenant>.emg.illumina.com hosts have a known login host); set the extra "
                    "'login_url', e.g. https://<tenant>.login.illumina.com/platform-services-manager/Token."
                )

    @property
    def secret(self) -> str:
        return (self.password if self.auth_type == "password" else self.api_key) or ""

    def secrets(self) -> tuple[str, ...]:
        """Every string that must never be shown: the secret and its encoded forms on the wire."""
        found = [s for s in (self.password, self.api_key) if s]
        if self.api_key:
            found.append(basic_auth_value(self.api_key).split(" ", 1)[1])
        return tuple(found)

    def cache_key(self) -> tuple[str, ...]:
        """Identifies a token: same tenant, flow and credentials share one. The secret is hashed so
        the key itself holds nothing worth stealing."""
        digest = hashlib.sha256(self.secret.encode()).hexdigest()
        return (self.base_url, self.auth_type, self.username or "", self.login_url or "", digest)

    def describe(self) -> str:
        """For messages: which flow, as whom, never the secret."""
        if self.auth_type == "password":
            return f"login as {self.username!r} at {self.base_url}{LOGIN_PATH}"
        return f"API-key token exchange at {self.login_url}"


def basic_auth_value(api_key: str) -> str:
    """``Basic base64("emedgene:<key>")``, the guide's client id for API keys [doc]."""
    return "Basic " + base64.b64encode(f"emedgene:{api_key}".encode()).decode("ascii")


@dataclass(frozen=True)
class LoginRequest:
    """How to ask for a token. Only :func:`login_request` makes one."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    params: tuple[tuple[str, str], ...] = ()
    json: dict[str, str] | None = field(default=None, repr=False)

    def call(self, base_url: str) -> ApiCall:
        """The login as a call, for retries and messages. A login changes nothing on the server,
        so it is safe to repeat after any failure."""
        path = self.url[len(base_url) :] if self.url.startswith(base_url) else self.url
        return ApiCall("login", self.method, path, safe_to_repeat=True)


def login_request(creds: Credentials) -> LoginRequest:
    """The exact request of the flow ``creds`` names."""
    if creds.auth_type == "api_key":
        return LoginRequest(
            "POST",
            str(creds.login_url),
            {"Authorization": basic_auth_value(str(creds.api_key))},
            (("audience", "emedgene"), ("grant_type", "api_key")),
        )
    return LoginRequest(
        "POST",
        creds.base_url + LOGIN_PATH,
        {},
        json={"username": str(creds.username), "password": str(creds.password)},
    )


@dataclass(frozen=True)
class Token:
    """A bearer token and when to stop using it (wall-clock seconds, as a JWT ``exp`` is)."""

    access_token: str = field(repr=False)
    header_value: str = field(repr=False)
    expires_at: float
    renew_at: float

    def needs_renewal(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.renew_at


def _jwt_exp(token: str) -> float | None:
    """The ``exp`` claim of a JWT, if ``token`` is one; None for an opaque token [assumed]."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return _finite(exp)


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans, strings, 10**400, NaN and infinities)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


#: What may stand in an ``Authorization`` header: visible ASCII, no spaces. A token with CR/LF
#: or other control characters would be refused (or worse, split into another header).
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def parse_token(body: Any, *, default_lifetime: float, now: float | None = None) -> Token | None:
    """Read a login answer, or None if it holds no token.

    Accepts the documented ``{"access_token", "token_type"}`` [doc] and the legacy
    ``{"Authorization": "Bearer ..."}`` [py]. The lifetime comes from ``expires_in``, else the JWT
    ``exp`` claim, else ``default_lifetime`` (both [assumed]-possible; neither is documented).
    """
    if not isinstance(body, dict):
        return None
    now = time.time() if now is None else now
    access = body.get("access_token")
    if isinstance(access, str) and access:
        token_type = body.get("token_type") or "bearer"
        scheme = str(token_type).capitalize()
    elif isinstance(body.get("Authorization"), str) and " " in body["Authorization"]:
        scheme, access = body["Authorization"].split(" ", 1)
    else:
        return None
    if not (_TOKEN_CHARS.fullmatch(access) and _TOKEN_CHARS.fullmatch(scheme)):
        return None
    header = f"{scheme} {access}"
    expires_in = _finite(body.get("expires_in"))
    if expires_in is not None and 0 < expires_in < MAX_LIFETIME:
        expires_at = now + expires_in
    else:
        exp = _jwt_exp(access)
        expires_at = exp if exp is not None and 0 < exp - now < MAX_LIFETIME else now + default_lifetime
    lifetime = max(expires_at - now, 0.0)
    renew_at = expires_at - min(MAX_RENEWAL_LEAD, lifetime * 0.1)
    return Token(access_token=access, header_value=header, expires_at=expires_at, renew_at=renew_at)


class TokenCache:
    """Tokens shared by every client in the process, one per tenant and set of credentials.

    Many hooks in many threads, and thousands of waits in one triggerer, must make one login, not
    one each: one login per key is in flight at a time, and its outcome, token or error, is the
    answer of every caller that came while it flew. Threads: :meth:`obtain_blocking`, the login
    run by the first caller's thread. Event loops: :meth:`obtain`, the login a task on the loop
    that every caller awaits, so they are all released in the same turn of the loop when it lands
    (an ``asyncio.Lock`` would wake them one per turn: at 5,000 waits the last one got its first
    poll half a minute late). The two kinds of flight are kept apart because neither side can wait
    for the other's: a thread cannot await a task bound to a loop it does not run, and a loop must
    not block on a thread's login (its aiohttp session belongs to it; a requests session would
    stall every wait of the triggerer). Invalidation names the token it saw rejected, so a token
    another caller has just renewed is not thrown away.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], Token] = {}
        self._flights: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Task[Token]]
        ] = weakref.WeakKeyDictionary()
        #: Logins in flight in threads, and the process they fly in: a forked child (Airflow's
        #: executors fork) has none of its parent's threads, so it must not wait for their logins.
        self._thread_flights: dict[tuple[str, ...], Future[Token]] = {}
        self._pid = os.getpid()
        self._guard = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Token | None:
        token = self._tokens.get(key)
        return None if token is None or token.needs_renewal() else token

    def put(self, key: tuple[str, ...], token: Token) -> None:
        self._tokens[key] = token

    def invalidate(self, key: tuple[str, ...], token: Token) -> None:
        with self._guard:
            if self._tokens.get(key) is token:
                del self._tokens[key]

    def obtain_blocking(self, key: tuple[str, ...], login: Callable[[], Token]) -> Token:
        """A valid token for ``key``, from the cache or from the one login in flight among threads.

        A caller without a token runs ``login`` in its own thread if no login for the key is in
        flight, and otherwise waits for that one: a login slower than the timeout costs its retries
        once, not once per thread, and a failed login raises its error in every caller that waited
        for it. The next caller after a failure starts a new login. No lock is held while logging in.
        """
        token = self.get(key)
        if token is not None:
            return token
        with self._guard:
            token = self.get(key)
            if token is not None:
                return token
            if self._pid != os.getpid():
                self._thread_flights, self._pid = {}, os.getpid()
            flight = self._thread_flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._thread_flights[key] = Future()
        if not leading:
            return flight.result()
        try:
            token = login()
            self.put(key, token)  # stored before the flight lands: no caller sees neither
            flight.set_result(token)
            return token
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        finally:
            with self._guard:
                if self._thread_flights.get(key) is flight:
                    del self._thread_flights[key]

    async def obtain(self, key: tuple[str, ...], login: Callable[[], Awaitable[Token]]) -> Token:
        """A valid token for ``key``, from the cache or from the one login in flight on this loop.

        With no token, the caller awaits the key's flight, starting it with ``login`` if there is
        none; a failed login raises its error in every caller that awaited it, and the next caller
        starts a new one. A token due for renewal but not yet expired is still handed out while a
        flight renews it in the background: no wait stops polling for a renewal, and a renewal
        that fails leaves the token in use until it expires (each later caller then tries again,
        one flight at a time). Cancelling a caller never cancels the flight others await.
        """
        now = time.time()
        token = self._tokens.get(key)
        if token is not None and not token.needs_renewal(now):
            return token
        flight = self._flight(key, login)
        if token is not None and now < token.expires_at:
            return token
        return await asyncio.shield(flight)

    def _flight(self, key: tuple[str, ...], login: Callable[[], Awaitable[Token]]) -> asyncio.Task[Token]:
        """The key's login in flight on the running loop; started with ``login`` if there is none."""
        loop = asyncio.get_running_loop()
        with self._guard:
            flights = self._flights.setdefault(loop, {})
            flight = flights.get(key)
            if flight is None:
                flight = loop.create_task(self._fly(key, login, flights))
                flight.add_done_callback(_report_failed_login)
                flights[key] = flight
            return flight

    async def _fly(
        self,
        key: tuple[str, ...],
        login: Callable[[], Awaitable[Token]],
        flights: dict[tuple[str, ...], asyncio.Task[Token]],
    ) -> Token:
        try:
            token = await login()
            self.put(key, token)  # stored and landed in one step: no caller sees neither
            return token
        finally:
            with self._guard:
                if flights.get(key) is asyncio.current_task():
                    del flights[key]

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()


def log_login(creds: Credentials, token: Token) -> None:
    """The line both clients log for a login: which flow, as whom, and how long the token lasts."""
    log.info(
        "Emedgene: logged in (%s); token valid for %.0f s", creds.describe(), token.expires_at - time.time()
    )


def _report_failed_login(flight: asyncio.Task[Token]) -> None:
    """Log a login that failed: a background renewal has no caller to raise in. Retrieving the
    error here also keeps asyncio from reporting it as never retrieved; callers still get it."""
    if not flight.cancelled() and (error := flight.exception()) is not None:
        # The client's own errors are scrubbed of secrets; of anything else, only its kind is shown.
        reason = str(error) if isinstance(error, EmedgeneError) else type(error).__name__
        log.warning("Emedgene: login failed: %s", reason)
