"""The blocking Emedgene client: one ``requests.Session`` (keep-alive), a timeout on every call,
tenacity retries under the shared policy, and the process-wide token cache.

Airflow-free on purpose: the hook builds one from a connection; scripts and tests may too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
import tenacity

from emedgene_provider.client import endpoints
from emedgene_provider.client.auth import TOKEN_CACHE, Token, TokenCache, login_request
from emedgene_provider.client.config import ClientConfig
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneError,
    EmedgeneNotFoundError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.payload import (
    CLOCK_SKEW,
    idempotency_key_of,
    parse_created,
    with_idempotency_key,
)
from emedgene_provider.client.responses import (
    AuthRejected,
    field_of,
    fresh_token_refused,
    interpret,
    interpret_login,
    not_built,
    retries_exhausted,
    tls_failed,
    transport_failure,
)
from emedgene_provider.client.retry import TransientFailure, log_before_sleep
from emedgene_provider.client.secrets import Scrubber

log = logging.getLogger(__name__)

T = TypeVar("T")
_CONNECT_FAILURES = ("NewConnectionError", "ConnectTimeoutError", "NameResolutionError")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: requests nests urllib3's errors in args and ``reason``."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(n for n in nested if isinstance(n, BaseException))


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request certainly did not reach the server (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(type(c).__name__ in _CONNECT_FAILURES for c in _causes(exc))


class EmedgeneClient:
    """Calls the Emedgene API for one tenant and set of credentials.

    :param config: where and how to connect (see ``config_from_connection``).
    :param token_cache: where tokens are shared; the process-wide cache by default.
    """

    def __init__(self, config: ClientConfig, *, token_cache: TokenCache | None = None) -> None:
        self.config = config
        self._cache = token_cache or TOKEN_CACHE
        self._key = config.credentials.cache_key()
        self.scrub = Scrubber(config.credentials.secrets(), on_secret=config.on_secret)
        self.session = requests.Session()
        self.sleep: Callable[[float], None] = time.sleep  # tests replace it to skip waits

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()

    def _with_retries(self, call: ApiCall, attempt: Callable[[], T]) -> T:
        policy = self.config.retry
        before_sleep = log_before_sleep(call.describe(), policy.max_attempts, log)
        retrying = tenacity.Retrying(
            sleep=self.sleep,
            before_sleep=before_sleep,
            **policy.tenacity_kwargs(),  # type: ignore[arg-type]
        )
        try:
            return retrying(attempt)
        except TransientFailure as failure:
            raise retries_exhausted(call, failure, policy.max_attempts) from None

    def _send(
        self,
        call: ApiCall,
        url: str,
        *,
        headers: dict[str, str],
        params: tuple[tuple[str, str], ...] = (),
        json: Any = None,
    ) -> requests.Response:
        """One HTTP attempt; transport failures become a retry, an ambiguity, or a final error."""
        try:
            return self.session.request(
                call.method,
                url,
                params=params,
                json=json,
                headers=headers,
                timeout=self.config.timeout,
                # Per request: with REQUESTS_CA_BUNDLE set, requests ignores ``Session.verify``.
                verify=self.config.verify,
            )
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL) as exc:
            # Refused while preparing, before anything was sent: not retried, never ambiguous.
            raise not_built(call, self.scrub(str(exc))) from None
        except requests.exceptions.SSLError as exc:
            raise tls_failed(call, self.config.base_url, self.scrub(str(exc))) from None
        except requests.RequestException as exc:
            timed_out = f" (timeout {self.config.timeout:g} s)" if isinstance(exc, requests.Timeout) else ""
            detail = (
                f"{type(exc).__name__}{timed_out} on {call.method} {call.path}: {self.scrub(str(exc))[:200]}"
            )
            raise transport_failure(call, detail, never_sent=_never_sent(exc)) from None

    def _attempt(self, call: ApiCall, token: Token) -> Any:
        response = self._send(
            call,
            self.config.base_url + call.path,
            headers={"Authorization": token.header_value, "Accept": "application/json"},
            params=call.params,
            json=call.json,
        )
        return interpret(call, response.status_code, response.headers, response.content, self.scrub)

    # -- tokens -----------------------------------------------------------------------------

    def _login(self) -> Token:
        creds = self.config.credentials
        request = login_request(creds)
        login_call = request.call(creds.base_url)

        def attempt() -> Token:
            response = self._send(
                login_call, request.url, headers=request.headers, params=request.params, json=request.json
            )
            return interpret_login(
                creds,
                response.status_code,
                response.headers,
                response.content,
                self.scrub,
                default_lifetime=self.config.token_lifetime,
            )

        token = self._with_retries(login_call, attempt)
        log.info(
            "Emedgene: logged in (%s); token valid for %.0f s",
            creds.describe(),
            token.expires_at - time.time(),
        )
        return token

    def token(self) -> Token:
        """A valid token, from the shared cache or a new login; one login per key at a time."""
        token = self._cache.get(self._key)
        if token is None:
            with self._cache.lock(self._key):
                token = self._cache.get(self._key)
                if token is None:
                    token = self._login()
                    self._cache.put(self._key, token)
        self.scrub.add(token.access_token)
        return token

    def call(self, call: ApiCall) -> Any:
        """Send ``call`` with retries; on 401/403 with a cached token, renew it and replay once."""
        token = self.token()
        try:
            return self._with_retries(call, lambda: self._attempt(call, token))
        except AuthRejected:
            log.info("Emedgene %s: token refused, logging in again and replaying once", call.describe())
            self._cache.invalidate(self._key, token)
        token = self.token()
        try:
            return self._with_retries(call, lambda: self._attempt(call, token))
        except AuthRejected as again:
            raise fresh_token_refused(call, again) from None

    # -- the API ----------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Log in and read one page of cases: ``(True, what was seen)`` or ``(False, why not)``."""
        try:
            body = self.call(endpoints.list_cases(0, 1))
        except EmedgeneError as exc:
            return False, str(exc)
        total = body.get("total") if isinstance(body, dict) else None
        seen = f"{total} case(s) visible" if isinstance(total, int) else "the case list is readable"
        return True, f"Connected to Emedgene at {self.config.base_url}: {seen}."

    def iter_cases(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every case, lazily, a page at a time. Advances by what each page *held*, so a server that
        caps ``size`` below ``page_size`` loses nothing; stops on an empty page or at ``total``."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        offset = 0
        previous: list[Any] | None = None
        while True:
            call = endpoints.list_cases(offset, page_size)
            body = self.call(call)
            hits = field_of(call, body, "hits")
            if not hits:
                return
            if hits == previous:  # a server that ignores `from` would page forever
                raise EmedgeneUnexpectedResponseError(
                    f"Emedgene iter_cases: the page at from={offset} repeats the previous one; the "
                    "server seems to ignore 'from'",
                    operation="iter_cases",
                )
            previous = hits
            yield from hits
            offset += len(hits)
            total = body.get("total")
            if isinstance(total, int) and not isinstance(total, bool) and offset >= total:
                return

    def list_storage_providers(self) -> list[dict[str, Any]]:
        call = endpoints.list_storage_providers()
        return list(field_of(call, self.call(call), "hits"))

    def create_case(self, case: dict[str, Any]) -> str:
        """Create a case and return its name. Never re-sent after it may have reached the server."""
        call = endpoints.create_case(case)
        name = field_of(call, self.call(call), "name", kind=str)
        if not name:
            raise EmedgeneUnexpectedResponseError(
                "Emedgene create_case: the server answered success with an empty case name",
                operation="create_case",
            )
        return str(name)

    def validate_case(self, case: dict[str, Any]) -> None:
        """Ask the server to validate ``case`` without creating it (``?dry_run=true``)."""
        self.call(endpoints.create_case(case, dry_run=True))

    def get_case(
        self, case_name: str, test_fields: list[str] | tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        call = endpoints.get_case(case_name, test_fields)
        body = self.call(call)
        if not isinstance(body, dict):
            field_of(call, body, "name", kind=dict)  # raises, naming what came instead
        return dict(body)

    def get_case_status(self, case_name: str) -> str:
        call = endpoints.get_case_status(case_name)
        return str(field_of(call, self.call(call), "status", kind=str))

    def get_candidates(self, case_name: str) -> list[dict[str, Any]]:
        call = endpoints.get_candidates(case_name)
        return list(field_of(call, self.call(call), "hits"))

    def export_case(self, case_name: str) -> list[dict[str, Any]]:
        """The case's export; the guide's answer holds ``hits`` [doc], one lab reads ``variants`` [py]."""
        call = endpoints.export_case(case_name)
        return list(field_of(call, self.call(call), "hits", "variants"))

    # -- idempotent creation ----------------------------------------------------------------

    def cases_with_idempotency_key(self, key: str, *, since: float | None = None) -> Iterator[dict[str, Any]]:
        """The cases stamped with ``key`` (``name``, ``status``), newest first, lazily.

        There is no search by ``extra_data`` in the published API, so this lists the cases (cheap:
        a page per hundred) and reads ``extra_data`` of each candidate, newest first, so the caller
        usually stops after one or two reads. ``since`` (epoch seconds) drops cases whose list entry
        says they were ``created`` earlier. Paid only on the rare paths that need it: a retried
        task, a lost answer.
        """
        candidates: list[tuple[float | None, int, dict[str, Any]]] = []
        for hit in self.iter_cases(page_size=100):
            if not isinstance(hit, dict) or not isinstance(hit.get("name"), str):
                continue
            created = parse_created(hit.get("created"))
            if since is not None and created is not None and created < since:
                continue
            candidates.append((created, len(candidates), hit))
        # Newest first; entries without a date keep list order, after the dated ones.
        candidates.sort(key=lambda c: (c[0] is not None, c[0] or 0.0, -c[1]), reverse=True)
        for _, _, hit in candidates:
            name = hit["name"]
            stamped = idempotency_key_of(hit)
            status = hit.get("status")
            if stamped is None and "extra_data" not in hit:
                try:
                    details = self.get_case(name, ["extra_data", "status"])
                except EmedgeneNotFoundError:  # deleted between the list and the read
                    continue
                stamped, status = idempotency_key_of(details), details.get("status", status)
            if stamped == key:
                yield {"name": name, "status": status}

    def create_case_once(self, case: dict[str, Any], key: str) -> tuple[str, bool]:
        """Create ``case`` stamped with ``key`` so that it is created at most once.

        When a create's answer is lost (:class:`EmedgeneAmbiguousCreateError`), the case is looked
        up by its key before any second POST: found, it is returned; not found, the server never
        applied it and the POST is sent again, up to the retry policy's attempts. Returns the case
        name and whether this call created it (False: found after a lost answer).
        """
        stamped = with_idempotency_key(case, key)
        since = time.time() - CLOCK_SKEW
        attempts = max(1, self.config.retry.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return self.create_case(stamped), True
            except EmedgeneAmbiguousCreateError as exc:
                log.warning("Emedgene create_case: %s Looking the case up by its key %r.", exc, key)
                if attempt == attempts:
                    raise
                found = next(self.cases_with_idempotency_key(key, since=since), None)
                if found:
                    log.warning("Emedgene create_case: the lost create did apply: case %s", found["name"])
                    return str(found["name"]), False
                self.sleep(self.config.retry.backoff(attempt))
        raise AssertionError("unreachable")
