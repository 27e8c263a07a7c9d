"""The blocking Emedgene client: one ``requests.Session`` (keep-alive), a timeout on every call,
and the flows both clients share (:mod:`~emedgene_provider.client.flows`: retries, login, the
401/403 replay, the key look-up) performed with blocking calls.

Airflow-free on purpose: the hook builds one from a connection; scripts and tests may too.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import requests

from emedgene_provider.cases.extra_data import with_idempotency_key
from emedgene_provider.client import endpoints, flows
from emedgene_provider.client.auth import Token
from emedgene_provider.client.claims import KeyClaims
from emedgene_provider.client.config import ClientConfig
from emedgene_provider.client.create import (
    Absent,
    Answer,
    Answered,
    CheckCase,
    CreateOnce,
    CreateRecord,
    Done,
    Found,
    Journal,
    LookUp,
    MemoryJournal,
    NotFound,
    Pending,
    Post,
    Recorded,
    Refused,
    Sleep,
    Status,
    Step,
    TakeClaim,
    Unclear,
    failure_rule,
)
from emedgene_provider.client.deadline import BoundedSession, Deadline
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneCreatePendingError,
    EmedgeneError,
    EmedgeneNotFoundError,
    EmedgeneUnavailableError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.paging import CasePager, KeyLookup
from emedgene_provider.client.process import PROCESS, ProcessState
from emedgene_provider.client.ratelimit import RateLimiter
from emedgene_provider.client.records import OpenOutput, RecordStream
from emedgene_provider.client.responses import (
    ambiguous_create,
    field_of,
    not_built,
    records_of,
    status_field,
    tls_failed,
    transport_failure,
)
from emedgene_provider.client.secrets import Scrubber
from emedgene_provider.client.wire import (
    CHUNK_BYTES,
    CappedBody,
    causes,
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
#: The export's list: ``hits`` in the guide's answer [doc], ``variants`` in one lab's script [py].
EXPORT_KEYS = ("hits", "variants")
#: Bytes asked of the HTTP library per read of a streamed list (fewer, larger reads: the bulk of
#: the answer passes through).
STREAM_CHUNK_BYTES = 256 * 1024
_CONNECT_FAILURES = ("NewConnectionError", "ConnectTimeoutError", "NameResolutionError")


def _certificate_refused(exc: BaseException) -> bool:
    """Whether TLS failed on the server's certificate: in the handshake, before anything was sent."""
    return any(isinstance(c, ssl.SSLCertVerificationError) for c in causes(exc))


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request certainly did not reach the server (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(type(c).__name__ in _CONNECT_FAILURES for c in causes(exc))


class EmedgeneClient:
    """Calls the Emedgene API for one tenant and set of credentials.

    :param config: where and how to connect (see ``config_from_connection``).
    :param shared: what this client shares with others (tokens, rate limit, key claims); the
        process's :data:`~emedgene_provider.client.process.PROCESS` by default.
    """

    def __init__(self, config: ClientConfig, *, shared: ProcessState = PROCESS) -> None:
        self.config = config
        self.shared = shared
        self._cache = shared.tokens
        self._key = config.credentials.cache_key()
        self.scrub = Scrubber(config.credentials.secrets(), on_secret=config.on_secret)
        self.session: requests.Session = BoundedSession()  # never redirects; deadlines can cut it
        self.sleep: Callable[[float], None] = time.sleep  # tests replace it to skip waits
        self.clock: Callable[[], float] = time.time  # epoch seconds; tests replace it with sleep
        #: The tenant's request rate, shared by every client of the process (ratelimit.py).
        self.limiter: RateLimiter = shared.rate_limits.for_tenant(config.base_url, config.requests_per_second)

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()

    # -- the driver: the shared flows (flows.py) performed with blocking I/O ---------------------

    def _drive(self, flow: flows.Flow[T]) -> T:
        """Run ``flow`` to its end: the value it returns, or what it raises."""
        run = flows.Run(flow)
        while (step := run.next()) is not None:
            self._perform_step(run, step)
        return run.result

    def _steps(self, flow: flows.Flow[T]) -> Generator[dict[str, Any], None, T]:
        """:meth:`_drive` for a look-up: each case it finds is handed out as it is found."""
        run = flows.Run(flow)
        while (step := run.next()) is not None:
            if isinstance(step, flows.Match):
                yield step.case
            else:
                self._perform_step(run, step)
        return run.result

    def _perform_step(self, run: flows.Run[T], step: flows.Step) -> None:
        """Perform ``step`` (requests for a send, ``self.sleep`` for a pause, the shared token cache
        for a login) and hand ``run`` its answer, or the exception it raised."""
        if isinstance(step, flows.Match):
            raise TypeError(f"a case found ({step!r}) is handed out by _steps(), not _drive()")
        try:
            if isinstance(step, flows.Send):
                run.answer = self._exchange(step)
            elif isinstance(step, flows.Sleep):
                self.sleep(step.seconds)
            else:
                run.answer = self._renewed(step.refused)
        except Exception as exc:
            run.error = exc

    # -- the transport ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session_for(self, call: ApiCall) -> Iterator[requests.Session]:
        """The pooled session for a call that may be repeated; for one that may not (a create), a
        session of its own, closed after it. A pooled connection may be one the server has just
        closed: a read lost on it is retried at once, but a create lost on it is unclear and costs
        the whole reconcile window. A new connection cannot be stale, and one per create is cheap:
        on loopback a create took 1.9 ms on its own connection against 1.1 ms pooled (6.0 against
        2.0 ms over TLS), where a window lasts minutes."""
        if call.idempotent:
            yield self.session
            return
        with BoundedSession() as once:
            yield once

    def _exchange(self, send: flows.Send) -> flows.Answer:
        """One HTTP attempt within the call's deadline, its answer read whole and capped, or, for a
        :class:`~emedgene_provider.client.flows.Stream`, streamed to its output.

        Transport failures become a retry, an ambiguity, or a final error; a redirect is an error
        and is not followed; an answer larger than ``max_response_mb`` is an error, read no further.
        """
        config, call, url = self.config, send.call, send.url
        with Deadline(config.deadline) as deadline, self._session_for(call) as session:
            try:
                response = session.request(
                    call.method,
                    url,
                    params=send.params,
                    json=send.json,
                    headers=send.headers,
                    timeout=config.timeout,  # each wait; the deadline bounds the whole
                    # Per request: with REQUESTS_CA_BUNDLE set, requests ignores ``Session.verify``.
                    verify=config.verify,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    if isinstance(send, flows.Stream):
                        answer = self._read_records(send, response)
                    else:
                        answer = self._read(call, url, response)
            except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL) as exc:
                # Refused while preparing, before anything was sent: not retried, never ambiguous.
                raise not_built(call, self.scrub(str(exc))) from None
            except requests.RequestException as exc:
                if deadline.finish():
                    raise deadline_passed(call, deadline.seconds, config.timeout) from None
                if speaks_no_tls(exc):
                    raise no_tls(call, url) from None
                if isinstance(exc, requests.exceptions.SSLError) and (
                    call.idempotent or _never_sent(exc) or _certificate_refused(exc)
                ):
                    # A create is a settings error only when it certainly never left: a TLS
                    # failure while reading its answer leaves it unclear (transport_failure).
                    raise tls_failed(call, config.base_url, self.scrub(str(exc))) from None
                reason = connect_reason(exc, config.timeout) if _never_sent(exc) else None
                if reason is not None:
                    raise transport_failure(call, unreachable(call, url, reason), never_sent=True) from None
                timed_out = f" (timeout {config.timeout:g} s)" if isinstance(exc, requests.Timeout) else ""
                detail = (
                    f"{type(exc).__name__}{timed_out} on {call.method} {call.path}: "
                    f"{self.scrub(str(exc))[:200]}"
                )
                raise transport_failure(call, detail, never_sent=_never_sent(exc)) from None
            except EmedgeneUnexpectedResponseError:
                if deadline.finish():  # a streamed answer cut short by the deadline reads as broken
                    raise deadline_passed(call, deadline.seconds, config.timeout) from None
                raise
            if deadline.finish():  # cut while reading a body that ends at the close: not all of it
                raise deadline_passed(call, deadline.seconds, config.timeout)
        return answer

    def _read(
        self, call: ApiCall, url: str, response: requests.Response
    ) -> tuple[int, Mapping[str, str], bytes]:
        """The status, headers and body of a streamed answer; a redirect's body is never read."""
        status = response.status_code
        location = response.headers.get("Location")
        if is_redirect(status, location):
            raise redirected(call, status, location, url)
        body = CappedBody(call, status, self.config.max_response_bytes, declared_length(response.headers))
        for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
            if not body.feed(chunk):
                break  # an error page's first words are all we need; the connection is dropped
        return status, response.headers, body.body

    def _read_records(
        self, send: flows.Stream, response: requests.Response
    ) -> tuple[int, Mapping[str, str], int | bytes]:
        """A success's list streamed to the output: its record count. Any other answer is read as
        :meth:`_read` reads it (capped, a redirect refused): its bytes, to be interpreted."""
        status = response.status_code
        if not 200 <= status < 300:
            return self._read(send.call, send.url, response)
        cap, declared = self.config.max_response_bytes, declared_length(response.headers)
        keys, open_output = send.keys, send.open_output
        with RecordStream(
            send.call, status, response.headers, keys, open_output, self.scrub, cap=cap, declared=declared
        ) as stream:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK_BYTES):
                stream.feed(chunk)
            return status, response.headers, stream.finish()

    # -- tokens -----------------------------------------------------------------------------

    def _login(self) -> Token:
        return self._drive(flows.login(self))

    def token(self) -> Token:
        """A valid token, from the shared cache or from the one login in flight among the process's
        threads, whose token or error every thread waiting for it shares
        (:meth:`TokenCache.obtain_blocking`)."""
        token = self._cache.obtain_blocking(self._key, self._login)
        self.scrub.add(token.access_token)
        return token

    def _renewed(self, refused: Token | None) -> Token:
        """:meth:`token`, after dropping ``refused`` from the cache (a token the server refused)."""
        if refused is not None:
            self._cache.invalidate(self._key, refused)
        return self.token()

    def call(self, call: ApiCall) -> Any:
        """Send ``call`` with retries; on 401/403 with a cached token, renew it and replay once."""
        return self._drive(flows.request(self, call))

    def stream_records(self, call: ApiCall, keys: tuple[str, ...], open_output: OpenOutput) -> int:
        """Send ``call`` as :meth:`call` does (token, 401/403 replay, retries, deadline, no redirect,
        the same errors) and write the records of its answer's list, the first of ``keys`` present
        (``field_of``'s rule), to ``open_output()`` as a JSON array, streamed from the socket: never
        the whole answer in memory (:mod:`~emedgene_provider.client.records`). Returns how many
        records were written.

        The output is opened afresh for each attempt, only once a success's list begins: an error
        answer writes nothing, and an attempt retried after a failure mid-answer rewrites the output
        from the start rather than append to it. On an error the output may hold a partial list:
        the caller removes it. ``max_response_mb`` caps the answer, as for :meth:`call`.
        """
        return self._drive(flows.stream(self, call, keys, open_output))

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

    def iter_cases(self, page_size: int = 100, *, max_pages: int | None = None) -> Iterator[dict[str, Any]]:
        """Every case once, lazily, a page at a time (paging rules: :class:`CasePager`); an error
        after ``max_pages`` pages rather than paging for ever, and at the end when the list moved
        while it was read (a case may be missing)."""
        pager = CasePager(page_size, max_pages=max_pages)
        while (call := pager.next_call()) is not None:
            yield from pager.take(call, self.call(call))
        pager.check()

    def list_storage_providers(self) -> list[dict[str, Any]]:
        call = endpoints.list_storage_providers()
        return list(field_of(call, self.call(call), "hits"))

    def create_case(self, case: dict[str, Any]) -> str:
        """Create a case and return its name. Never re-sent after it may have reached the server."""
        call = endpoints.create_case(case)
        try:
            name = field_of(call, self.call(call), "name", kind=str)
        except EmedgeneUnexpectedResponseError as exc:
            if exc.operation != call.operation:  # the login's answer, before anything was created
                raise
            # A success we cannot read (not JSON, no name): the case may well exist.
            raise ambiguous_create(call, str(exc)) from None
        if not name:
            raise ambiguous_create(call, "the server answered success with an empty case name")
        if not endpoints.CASE_NAME_PATTERN.fullmatch(name) or ".." in name:
            # Never handed on (XCom, a path, a URL): the case may exist, under a name we cannot use.
            raise ambiguous_create(
                call, f"the server answered success with an invalid case name {name[:60]!r}"
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
        return status_field(call, self.call(call))

    def get_candidates(self, case_name: str) -> list[dict[str, Any]]:
        call = endpoints.get_candidates(case_name)
        return records_of(call, self.call(call), "hits")

    def export_case(self, case_name: str) -> list[dict[str, Any]]:
        """The case's export; the guide's answer holds ``hits`` [doc], one lab reads ``variants`` [py]."""
        call = endpoints.export_case(case_name)
        return records_of(call, self.call(call), *EXPORT_KEYS)

    def export_case_to(self, case_name: str, open_output: OpenOutput) -> int:
        """The case's export streamed to ``open_output()`` as a JSON array of its variants; returns
        how many (:meth:`stream_records`)."""
        return self.stream_records(endpoints.export_case(case_name), EXPORT_KEYS, open_output)

    def get_candidates_to(self, case_name: str, open_output: OpenOutput) -> int:
        """The case's candidates streamed to ``open_output()`` as a JSON array; returns how many
        (:meth:`stream_records`)."""
        return self.stream_records(endpoints.get_candidates(case_name), ("hits",), open_output)

    # -- idempotent creation ----------------------------------------------------------------

    def cases_with_idempotency_key(
        self,
        key: str,
        *,
        since: float | None = None,
        max_pages: int | None = None,
        not_matching: set[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The cases stamped with ``key`` (``name``, ``status``, ``created``), newest first, lazily.

        Lists the cases and reads ``extra_data`` of each candidate newest first (see
        :class:`KeyLookup`); ``since`` (epoch seconds) drops cases provably created earlier, and
        after ``max_pages`` pages (default 1000) it fails naming the key. When no case matched and
        the list could not be read consistently it raises
        :class:`~emedgene_provider.client.errors.EmedgeneListInconsistentError`
        rather than end as if the key were absent. ``not_matching``: names known not to carry the
        key, skipped and added to. Paid only on the rare paths that need it: a retried task, an
        unclear create.
        """
        lookup = KeyLookup(key, since=since, max_pages=max_pages, not_matching=not_matching)
        yield from self._steps(flows.key_lookup(self, lookup))

    def create_case_once(
        self,
        case: dict[str, Any],
        key: str,
        *,
        since: float | None = None,
        journal: Journal | None = None,
        wait: bool = True,
        failures: Sequence[str] | None = None,
        retry: bool = False,
        durable: bool = False,
        claims: KeyClaims | None = None,
        owner: str | None = None,
    ) -> CreateResult:
        """Create ``case`` stamped with ``key`` so that one key makes one case on this tenant.

        Drives :class:`~emedgene_provider.client.create.CreateOnce` (the rules are there) with
        blocking calls, saving its record to ``journal`` after every step. ``claims`` (the
        process's store by default) shares the key with every other caller: a second call with the
        same key, in this thread or another, adopts the first one's case; ``owner`` names the caller
        (one per call by default; a task passes one that is the same for all its tries).
        ``since`` bounds look-ups while the journal knows no first attempt. ``wait=False`` raises
        :class:`~emedgene_provider.client.errors.EmedgeneCreatePendingError` instead of sleeping
        through a reconcile window. ``failures``: the statuses (the lifecycle's when None) that make
        a case found or recorded for the key a failed one. ``retry``/``durable``: an earlier try may
        have sent a create, and whether the journal would know. Returns ``(case name, created by
        this call)``.
        """
        journal = journal if journal is not None else MemoryJournal()
        store = claims if claims is not None else self.shared.claims
        caller = owner or f"call:{uuid.uuid4()}"
        claim_key = f"{self.config.base_url} {key}"  # one case per key *per tenant*
        with self.shared.claims.lock(claim_key):  # threads with one key take turns; the second adopts
            machine = CreateOnce(
                key,
                CreateRecord.from_json(journal.load(), key),
                window=self.config.reconcile_window,
                since=since,
                failed=failure_rule(None if failures is None else list(failures)),
                wait=wait,
                retry=retry,
                durable=durable,
                claims=True,
                max_posts=self.config.retry.max_attempts,
            )
            stamped = with_idempotency_key(case, key)
            step = self._advance(machine, journal)
            while not isinstance(step, Done):
                if isinstance(step, Pending):
                    now = self.clock()
                    raise EmedgeneCreatePendingError(
                        f"Emedgene create_case: the create for idempotency key {key!r} is unclear and the "
                        f"key is not in the case list yet; it must stay absent until "
                        f"{step.window_end - now:.0f} s from now before the case is created again.",
                        key=key,
                        window_end=step.window_end,
                        since=machine.record.lookup_since(since),
                        operation="create_case",
                    )
                step = self._advance(machine, journal, self._perform(step, stamped, store, claim_key, caller))
            return CreateResult(step.case_name, step.created)

    def _advance(self, machine: CreateOnce, journal: Journal, *answer: Answer) -> Step:
        """Hand the machine the answer to its last step (none at the start), then take the next
        step; log what it noted and save its record if it changed, whatever happens."""
        try:
            if answer:
                machine.take(answer[0], self.clock())
            return machine.next_step(self.clock())
        finally:
            for level, note in machine.take_notes():
                log.log(level, "Emedgene create_case: %s", note)
            if machine.changed():
                journal.save(machine.record.to_json())

    def _perform(
        self, step: Step, case: dict[str, Any], claims: KeyClaims, claim_key: str, owner: str
    ) -> Answer:
        """One step of the create machine, blocking."""
        if isinstance(step, TakeClaim):
            return claims.claim(claim_key, owner, self.clock(), take_over_before=step.take_over_before)
        if isinstance(step, CheckCase):
            try:
                return Status(self.get_case_status(step.case_name))
            except EmedgeneNotFoundError:
                return NotFound()
        if isinstance(step, LookUp):
            try:
                lookup = self.cases_with_idempotency_key(
                    step.key, since=step.since, not_matching=step.not_matching
                )
                found = next(lookup, None)
            except EmedgeneUnavailableError as exc:  # an outage, a list that moved: not absence
                return Unclear(exc)
            return Absent() if found is None else Found(found)
        if isinstance(step, Post):
            try:
                return Answered(self.create_case(case))
            except EmedgeneAmbiguousCreateError as exc:  # a lost answer, a 5xx: it may have applied
                return Unclear(exc)
            except EmedgeneError as exc:  # a definite refusal, or nothing was sent
                return Refused(exc)
        if isinstance(step, Sleep):
            self.sleep(step.seconds)
            return None
        if isinstance(step, Recorded):
            if step.case_name is None:
                claims.release(claim_key, owner)
            else:
                claims.record(claim_key, owner, step.case_name)
            return None
        raise TypeError(f"no way to perform {step!r}")


class CreateResult(NamedTuple):
    """What ``create_case_once`` returns: the key's case, and whether this call's POST made it."""

    case_name: str
    created: bool
