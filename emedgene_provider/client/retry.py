"""Which failures are retried, how long to wait, and when a POST must never be sent again.

One policy for the sync client and the async trigger: both classify a failed attempt into a
:class:`TransientFailure` (worth another attempt) or a final error, and the one retry flow they
share (:func:`emedgene_provider.client.flows.retried`) hands tenacity this ``wait``. Backoff is
exponential with full jitter, so that a thousand waits that failed together do not come back
together; a server's ``Retry-After`` wins, capped by ``max_wait``.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a call is made: DAG files parsed every few seconds need none of it
    import tenacity


class TransientFailure(Exception):
    """An attempt failed in a way another attempt may not (internal: never escapes the client).

    :param detail: what happened, for the final error and the retry log line.
    :param status_code: the HTTP status, if an answer came.
    :param retry_after: seconds the server asked us to wait, if it did.
    :param server_message: the server's words, scrubbed.
    """

    def __init__(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.retry_after = retry_after
        self.server_message = server_message


#: Statuses retried on every call: rate limits and the gateway errors a load balancer answers.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Also retried, but only on reads: a 500 on a create may have created the case.
RETRY_STATUSES_READ_ONLY = frozenset({500})


def is_retryable_status(status: int, *, idempotent: bool) -> bool:
    """Whether an HTTP status is worth another attempt for this kind of call.

    429 is retried for writes too, since a rate-limited request was refused before it was
    processed; every other 5xx after a POST is ambiguous and goes to the caller instead.
    """
    if status == 429:
        return True
    if not idempotent:
        return False
    return status in RETRY_STATUSES or status in RETRY_STATUSES_READ_ONLY


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and how long between them.

    :param max_attempts: attempts in all, the first included (``max_retries`` + 1).
    :param initial_wait: the base of the exponential backoff, in seconds.
    :param max_wait: the longest single wait, whether backoff or ``Retry-After``.
    """

    max_attempts: int = 6
    initial_wait: float = 1.0
    max_wait: float = 60.0

    def backoff(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff for the wait after ``attempt`` (1-based)."""
        ceiling = min(self.max_wait, self.initial_wait * (2 ** max(attempt - 1, 0)))
        return (rng or random).uniform(0, ceiling)

    def wait_seconds(self, failure: BaseException | None, attempt: int) -> float:
        retry_after = getattr(failure, "retry_after", None)
        if isinstance(retry_after, (int, float)):
            return min(float(retry_after), self.max_wait)
        return self.backoff(attempt)

    def tenacity_kwargs(self, *, done: int = 0) -> dict[str, object]:
        """Arguments for ``tenacity.Retrying`` (the retry flow's, for both transports);
        ``done``: attempts already made before tenacity takes over (see :func:`first_failure`)."""
        import tenacity

        def wait(state: tenacity.RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(failure, state.attempt_number + done)

        return {
            "stop": tenacity.stop_after_attempt(max(1, self.max_attempts - done)),
            "wait": wait,
            "retry": tenacity.retry_if_exception_type(TransientFailure),
            "reraise": True,
        }


def _log_retry(
    log: logging.Logger, call_name: str, failure: object, attempt: int, max_attempts: int, pause: float
) -> None:
    log.warning(
        "Emedgene %s: %s; attempt %d of %d, retrying in %.1f s",
        call_name,
        getattr(failure, "detail", failure),
        attempt,
        max_attempts,
        pause,
    )


def first_failure(
    policy: RetryPolicy, call_name: str, failure: TransientFailure, log: logging.Logger
) -> float | None:
    """After a first attempt failed transiently: the pause before the second (logged as every retry
    is), or None if the policy allows no second attempt.

    The retry flow makes the first attempt without tenacity and hands the rest to it (``done=1``):
    building a ``Retrying`` per call cost ~0.4 ms of CPU per poll, more than the poll itself, at
    a triggerer's thousands of waits (``bench/trigger_scale.py``), for the rare call that fails.
    """
    if policy.max_attempts <= 1:
        return None
    pause = policy.wait_seconds(failure, 1)
    _log_retry(log, call_name, failure, 1, policy.max_attempts, pause)
    return pause


def log_before_sleep(
    call_name: str, max_attempts: int, log: logging.Logger, *, done: int = 0
) -> Callable[[tenacity.RetryCallState], None]:
    """tenacity's ``before_sleep`` for the retry flow: one warning per retry, naming the call,
    what failed (already scrubbed), the attempt and the wait."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        _log_retry(log, call_name, failure, state.attempt_number + done, max_attempts, state.upcoming_sleep)

    return before_sleep
