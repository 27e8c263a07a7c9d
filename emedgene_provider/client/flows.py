"""The request flows both clients share, written once and free of I/O: retries, the login, the
401/403 renewal with its one replay, and the key look-up.

A flow is a generator that yields what it needs done (an HTTP attempt, :class:`Send`; a pause,
:class:`Sleep`; a token, :class:`Login`) and is sent back the outcome, or has the failure thrown
in where it yielded. Each client drives flows with its own transport: the blocking one with
requests and ``time.sleep``, the async one with aiohttp and ``asyncio.sleep``. So which attempt
is retried, after what pause, when a token is renewed and how a look-up walks the case list are
decided here once, and cannot drift apart between the two; a client keeps its transport, how its
failures read (a :class:`~emedgene_provider.client.retry.TransientFailure`, an ambiguity, a final
error), and a loop of a few lines that performs the steps (:class:`Run`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from emedgene_provider.client.auth import Token, log_login, login_request
from emedgene_provider.client.config import ClientConfig
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneNotFoundError
from emedgene_provider.client.paging import KeyLookup
from emedgene_provider.client.ratelimit import RateLimiter, pause_for_answer
from emedgene_provider.client.records import OpenOutput, write_all
from emedgene_provider.client.responses import (
    AuthRejected,
    fresh_token_refused,
    interpret,
    interpret_login,
    records_of,
    retries_exhausted,
)
from emedgene_provider.client.retry import TransientFailure, first_failure, log_before_sleep
from emedgene_provider.client.secrets import Scrubber

log = logging.getLogger(__name__)

T = TypeVar("T")
#: What a :class:`Send` is answered with: the status, the headers, and the body as read.
Answer = tuple[int, Mapping[str, str], Any]


@dataclass(slots=True)  # not frozen: a frozen init costs twice as much, once per attempt
class Send:
    """One HTTP attempt. Answered with ``(status, headers, body)`` (the body capped at
    ``max_response_mb``), or the transport's failure raised as the client maps it."""

    call: ApiCall
    url: str
    headers: Mapping[str, str]
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None


@dataclass(slots=True, kw_only=True)
class Stream(Send):
    """:class:`Send`, a success's list (the first of ``keys`` present) written to
    ``open_output()`` as it arrives: the body is then the record count, and an error answer's
    bytes otherwise. Only the blocking client streams (exports to files)."""

    keys: tuple[str, ...]
    open_output: OpenOutput


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this long: a retry's backoff or ``Retry-After``, or the tenant's rate limit."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Login:
    """A valid token, from the shared cache or the one login in flight; ``refused``, a token the
    server has just refused, is dropped from the cache first (unless another caller renewed it)."""

    refused: Token | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A case the key look-up found, newest first. The blocking client hands each out as it comes;
    the async one wants only the newest and stops the look-up there."""

    case: dict[str, Any]


Step = Send | Sleep | Login | Match
_LOGIN = Login()
Flow = Generator[Step, Any, T]


class Client(Protocol):
    """What a flow reads of the client driving it."""

    config: ClientConfig
    scrub: Scrubber
    limiter: RateLimiter


class Run(Generic[T]):
    """A flow being driven. The driver loop is ``while (step := run.next()) is not None``, setting
    :attr:`answer` to what performing ``step`` gave or :attr:`error` to the exception it raised;
    the flow's value is then :attr:`result`, and what it raises comes out of :meth:`next`.

    Only ``Exception`` is handed back: a cancellation or an interrupt leaves the driver at once
    and the flow is closed, as it would leave a plain call stack.
    """

    __slots__ = ("_flow", "answer", "error", "result")
    result: T

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.answer: Any = None
        self.error: Exception | None = None

    def next(self) -> Step | None:
        """The flow's next step, given the outcome of the last; None once it has returned."""
        answer, error = self.answer, self.error
        self.answer = self.error = None
        try:
            return self._flow.send(answer) if error is None else self._flow.throw(error)
        except StopIteration as done:
            self.result = done.value
            return None

    def close(self) -> None:
        """Stop the flow where it is (a look-up that found what its caller wanted)."""
        self._flow.close()


def retried(call: ApiCall, client: Client, attempt: Callable[[], Flow[T]]) -> Flow[T]:
    """``attempt()`` until it gives something other than a :class:`TransientFailure`, under the
    client's retry policy. The first attempt runs plain and tenacity (its own decisions, read
    through ``Retrying.iter`` so that the pauses are yielded) takes over only after a failure:
    building a ``Retrying`` for every call cost more CPU than a poll (``first_failure``)."""
    policy = client.config.retry
    try:
        return (yield from attempt())
    except TransientFailure as failure:
        pause = first_failure(policy, call.describe(), failure, log)
        if pause is None:
            raise retries_exhausted(call, failure, policy.max_attempts) from None
    yield Sleep(pause)
    import tenacity

    retrying = tenacity.Retrying(
        before_sleep=log_before_sleep(call.describe(), policy.max_attempts, log, done=1),
        **policy.tenacity_kwargs(done=1),  # type: ignore[arg-type]
    )
    retrying.begin()
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    while True:
        try:
            do = retrying.iter(retry_state=state)
        except TransientFailure as failure:  # reraise=True: the last failure, once attempts ran out
            raise retries_exhausted(call, failure, policy.max_attempts) from None
        if isinstance(do, tenacity.DoAttempt):
            try:
                state.set_result((yield from attempt()))
            except TransientFailure:
                state.set_exception(sys.exc_info())  # type: ignore[arg-type]
        elif isinstance(do, tenacity.DoSleep):
            state.prepare_for_next_attempt()
            yield Sleep(float(do))
        else:
            return do


def exchange(client: Client, send: Send) -> Flow[Answer]:
    """``send`` under the tenant's rate limit: the pause it asks for comes before the attempt (and
    its deadline), and an answer's ``Retry-After`` then slows every caller of the tenant, not just
    this call's retry."""
    pace = client.limiter.reserve()
    if pace > 0:
        yield Sleep(pace)
    answer: Answer = yield send
    pause_for_answer(client.limiter, answer[0], answer[1], client.config.retry.max_wait)
    return answer


def login(client: Client) -> Flow[Token]:
    """Exchange the credentials for a token, with retries, and log the login the same way for both
    transports (which flow, as whom, how long the token lasts)."""
    config = client.config
    creds = config.credentials
    request = login_request(creds)
    login_call = request.call(creds.base_url)

    def attempt() -> Flow[Token]:
        sent = Send(login_call, request.url, request.headers, request.params, request.json)
        status, headers, body = yield from exchange(client, sent)
        return interpret_login(
            creds, status, headers, body, client.scrub, default_lifetime=config.session_lifetime
        )

    token = yield from retried(login_call, client, attempt)
    log_login(creds, token)
    return token


def authorized(call: ApiCall, client: Client, attempt: Callable[[Token], Flow[T]]) -> Flow[T]:
    """``attempt(token)`` with retries; on 401/403 the token is renewed and the call replayed once,
    since a token can be revoked or expire early on the server's side while the cache trusts it.
    A fresh token refused too is a final error: logging in again would not change the answer."""
    token = yield _LOGIN
    try:
        return (yield from retried(call, client, lambda: attempt(token)))
    except AuthRejected:
        log.info("Emedgene %s: token refused, logging in again and replaying once", call.describe())
    token = yield Login(refused=token)
    try:
        return (yield from retried(call, client, lambda: attempt(token)))
    except AuthRejected as again:
        raise fresh_token_refused(call, again) from None


def _bearer(token: Token) -> dict[str, str]:
    return {"Authorization": token.header_value, "Accept": "application/json"}


def request(client: Client, call: ApiCall) -> Flow[Any]:
    """``call`` sent with the tenant's token, retried and replayed (:func:`authorized`): the
    meaning of its answer (:func:`~emedgene_provider.client.responses.interpret`)."""
    url = client.config.base_url + call.path

    def attempt(token: Token) -> Flow[Any]:
        sent = Send(call, url, _bearer(token), call.params, call.json)
        status, headers, body = yield from exchange(client, sent)
        return interpret(call, status, headers, body, client.scrub)

    return authorized(call, client, attempt)


def stream(client: Client, call: ApiCall, keys: tuple[str, ...], open_output: OpenOutput) -> Flow[int]:
    """:func:`request`, a success's list streamed to ``open_output()``: the records written. An
    error answer is interpreted as for :func:`request` (raising what it means)."""
    url = client.config.base_url + call.path

    def attempt(token: Token) -> Flow[int]:
        sent = Stream(call, url, _bearer(token), call.params, call.json, keys=keys, open_output=open_output)
        status, headers, body = yield from exchange(client, sent)
        if isinstance(body, int):
            return body
        return write_all(
            open_output, records_of(call, interpret(call, status, headers, body, client.scrub), *keys)
        )

    return authorized(call, client, attempt)


def key_lookup(client: Client, lookup: KeyLookup) -> Flow[dict[str, Any] | None]:
    """``lookup`` driven with real calls (the rules are :class:`KeyLookup`'s): the pages, then each
    candidate's details newest first, a :class:`Match` for every case with the key. Its value, at
    the end, is :meth:`KeyLookup.outcome` (which raises for a list that moved while nothing matched).
    A candidate deleted between the list and its read (404) is skipped."""
    while (call := lookup.next_page()) is not None:
        lookup.take_page(call, (yield from request(client, call)))
    for hit in lookup.candidates():
        details: Any = None
        detail_call = lookup.detail_call(hit)
        if detail_call is not None:
            try:
                details = yield from request(client, detail_call)
            except EmedgeneNotFoundError:
                continue
        found = lookup.match(hit, details)
        if found is not None:
            yield Match(found)
    return lookup.outcome()
