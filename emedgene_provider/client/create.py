"""Create a case at most once per idempotency key: one sans-IO state machine for every driver.

A tenant's case list is a search index (a case appears there seconds or minutes after its create),
a case just created can answer 404 for a while (a replica behind the write), a gateway can answer
502/504 while the backend still applies the create, and a create can outlast the client's timeout
and still succeed. So neither "the key is not listed" nor "the case answers 404" right after a
create proves anything. The rules kept here:

- after an *unclear* create (answer lost, timed out, any 5xx) the key is looked up again, with
  backoff, until it has stayed absent for a *reconcile window* counted from the last attempt that
  may have reached the server; only then may a second POST go out, and a case that shows up
  meanwhile is adopted;
- a look-up that could not read the list (an outage, a list that changed under the scan) is never
  absence: the window passes only on a look-up that succeeded after its end;
- a case this key created (by this call or an earlier try) is "not visible yet", never "gone",
  for a reconcile window after its create answered;
- with a claim store, a key one owner is creating under is an unclear create by that owner: the
  others wait its window out, or adopt the case it records.

:class:`CreateOnce` holds those rules and the :class:`CreateRecord` a journal keeps; it does no
I/O and knows no Airflow. A driver asks it for the next :data:`Step`, performs it and hands back the
:data:`Answer`, saving ``machine.record`` whenever :meth:`CreateOnce.changed` says so (before a
POST, the record says one may be in flight)::

    machine = CreateOnce(key, record, window=600)
    while not isinstance(step := machine.next_step(clock()), Done):
        save_if_changed(machine)
        machine.take(perform(step), clock())

The sync client drives it with blocking calls, the reconcile trigger with ``await`` (and stops at
the :class:`Post`, which the task sends), the create operator by blocking or deferring on
:class:`Pending`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.claims import Claim
from emedgene_provider.client.errors import EmedgeneError, EmedgeneUnavailableError
from emedgene_provider.client.settings import SETTINGS

#: Allowance, in seconds, for the server's clock running behind ours when a look-up starts from a
#: time we measured (the first attempt, the run's start).
CLOCK_SKEW = 600.0
#: Seconds a key must stay absent after an unclear create before the case is created again (the
#: extra ``reconcile_window``).
DEFAULT_RECONCILE_WINDOW = SETTINGS["reconcile_window"].number_default
#: Backoff between look-ups inside a window: the first wait, doubling up to the cap.
LOOKUP_FIRST_WAIT = 1.0
LOOKUP_MAX_WAIT = 30.0
#: How long past its window a reconcile wait keeps trying through a tenant outage, at least.
OUTAGE_GRACE = 600.0


# -- what is known about the POSTs of one key -----------------------------------------------------


def _when(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class CreateRecord:
    """What is known about the creates sent for one idempotency key; what a journal keeps.

    :param key: the idempotency key.
    :param first_attempt: epoch seconds of the first POST that may have left; look-ups ignore
        cases provably created before it.
    :param in_flight_since: a POST was about to be sent then and its outcome was never recorded
        (a worker died mid-POST): it may reach the server at any moment, so the window counts from
        whenever this record is read again.
    :param unclear_at: when the last unclear create ended; the window counts from here.
    :param assumed: the unclear attempt is a guess (a retry with nothing durable, or another
        owner's claim), not a POST this record saw.
    :param posts: POSTs sent for this key, as far as the record knows.
    :param case_name: the case the key's create made (or that was adopted for it).
    :param case_at: when that case's create answered: until a window after it, a 404 for the case
        is the tenant lagging, not the case gone.
    """

    key: str
    first_attempt: float | None = None
    in_flight_since: float | None = None
    unclear_at: float | None = None
    assumed: bool = False
    posts: int = 0
    case_name: str | None = None
    case_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "first_attempt": self.first_attempt,
            "in_flight_since": self.in_flight_since,
            "unclear_at": self.unclear_at,
            "assumed": self.assumed,
            "posts": self.posts,
            "case_name": self.case_name,
            "case_at": self.case_at,
        }

    @classmethod
    def from_json(cls, data: Any, key: str) -> CreateRecord | None:
        """The record stored for ``key``; None for nothing, another key's record, or junk."""
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        posts = data.get("posts")
        name = data.get("case_name")
        return cls(
            key=key,
            first_attempt=_when(data, "first_attempt"),
            in_flight_since=_when(data, "in_flight_since"),
            unclear_at=_when(data, "unclear_at"),
            assumed=data.get("assumed") is True,
            posts=posts if isinstance(posts, int) and not isinstance(posts, bool) else 0,
            case_name=name if isinstance(name, str) and name else None,
            case_at=_when(data, "case_at"),
        )

    def unclear_since(self, now: float) -> float | None:
        """When the window starts for the pending unclear attempt; None when nothing is pending.
        A POST recorded as in flight with no outcome is assumed to have been sent just now."""
        if self.in_flight_since is not None:
            return now
        return self.unclear_at

    def sending(self, now: float) -> None:
        """Before a POST: from now on it may reach the server."""
        if self.first_attempt is None:
            self.first_attempt = now
        self.in_flight_since = now
        self.posts += 1

    def settled(self, case_name: str | None = None, at: float | None = None) -> None:
        """Nothing is pending: the last POST was answered (``case_name`` when it made one, or a case
        was adopted), never left, or a window passed without its case."""
        if case_name is not None:
            self.case_name, self.case_at = case_name, at
        self.in_flight_since = None
        self.unclear_at = None
        self.assumed = False

    def unclear(self, now: float, *, assumed: bool = False) -> None:
        """The last POST's outcome is unknown; it may have been applied up to ``now``."""
        self.in_flight_since = None
        self.unclear_at = now
        self.assumed = assumed

    def forget_case(self) -> None:
        """The recorded case failed or is gone: the next create is due."""
        self.case_name = self.case_at = None

    def lookup_since(self, since: float | None) -> float | None:
        """The oldest creation time a look-up considers: the first attempt less the clock
        allowance when known, else the caller's bound (the run's start)."""
        return self.first_attempt - CLOCK_SKEW if self.first_attempt is not None else since


class Journal(Protocol):
    """Where a :class:`CreateRecord` is kept between steps and task tries."""

    def load(self) -> Any: ...

    def save(self, data: dict[str, Any]) -> None: ...


@dataclass
class MemoryJournal:
    """A journal that lives as long as the caller: enough for one call of ``create_case_once``."""

    data: dict[str, Any] | None = None

    def load(self) -> Any:
        return self.data

    def save(self, data: dict[str, Any]) -> None:
        self.data = dict(data)


# -- the window ---------------------------------------------------------------------------------


@dataclass
class Window:
    """One reconcile window: it ends ``length`` seconds after ``start``; look-ups come at once,
    then with doubling waits (``LOOKUP_FIRST_WAIT`` up to ``LOOKUP_MAX_WAIT``), and the last one at
    the end of the window, so a case that shows up after 20 s is adopted at about that time."""

    start: float
    length: float
    lookups: int = 0

    @property
    def end(self) -> float:
        return self.start + self.length

    def next_wait(self, now: float) -> float | None:
        """Seconds until the next look-up, or None when the window is over (after a last look)."""
        self.lookups += 1
        remaining = self.end - now
        if remaining <= 0:
            return None
        return min(LOOKUP_MAX_WAIT, LOOKUP_FIRST_WAIT * 2 ** (self.lookups - 1), remaining)


class Verdict(str, Enum):
    """What a look-up's newest match means for a pending unclear create."""

    ADOPT = "adopt"
    CREATE_ANEW = "create anew"
    KEEP_WAITING = "keep waiting"


def failure_rule(failures: list[str] | tuple[str, ...] | None) -> Callable[[str], bool]:
    """``status -> failed?`` for a found case: the task's own ``failure_statuses``, or the
    lifecycle's, compared as :func:`~emedgene_provider.client.status.evaluate` compares them."""
    chosen = {lifecycle.normalise(s) for s in (lifecycle.FAILURE_STATUSES if failures is None else failures)}
    return lambda status: lifecycle.normalise(status) in chosen


def verdict(found: dict[str, Any] | None, record: CreateRecord, failed: Callable[[str], bool]) -> Verdict:
    """A live case is adopted. A failed case answers the question only when the unclear attempt is
    a guess (the earlier try's case is that one, and it failed, so a new case is due); when a real
    unclear POST is pending, the failed case may be an older one and the window keeps running."""
    if found is None:
        return Verdict.KEEP_WAITING
    status = found.get("status")
    if not (isinstance(status, str) and failed(status)):
        return Verdict.ADOPT
    return Verdict.CREATE_ANEW if record.assumed else Verdict.KEEP_WAITING


def describe_time(when: float, now: float) -> str:
    """``12 s ago`` for log lines a lab reads."""
    return f"{max(0.0, now - when):.0f} s ago"


# -- steps and answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TakeClaim:
    """Claim the key in the claim store (``take_over_before``: a holder older than this that
    recorded no case may be displaced). Answer: the store's
    :class:`~emedgene_provider.client.claims.Claim`."""

    take_over_before: float | None = None


@dataclass(frozen=True)
class CheckCase:
    """Read the status of ``case_name`` (made for this key earlier). Answer: :class:`Status` or
    :class:`NotFound`; any other error is the driver's to raise."""

    case_name: str


@dataclass(frozen=True)
class LookUp:
    """Look the key up: the newest case stamped with it. Answer: :class:`Found`, :class:`Absent`,
    or :class:`Unclear` (the list could not be read: never absence). ``not_matching`` is the set of
    names read and found without the key; the driver passes it to the look-up, which adds to it."""

    key: str
    since: float | None
    not_matching: set[str] = field(default_factory=set, compare=False)


@dataclass(frozen=True)
class Post:
    """Send the create. Answer: :class:`Answered`, :class:`Unclear` (it may have applied) or
    :class:`Refused` (it certainly did not)."""


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``, then ask for the next step. Answer: None."""

    seconds: float


@dataclass(frozen=True)
class Pending:
    """Only when the machine may not wait: the window is open until ``window_end``; the driver
    waits elsewhere (the operator defers to the reconcile trigger) and resumes with the record."""

    window_end: float


@dataclass(frozen=True)
class Done:
    """The key's case: ``created`` is True only when this machine's POST made it."""

    case_name: str
    created: bool


@dataclass(frozen=True)
class Recorded:
    """Tell the claim store the case made under the claim (or None: a refused create, release it).
    Answer: None."""

    case_name: str | None


Step = TakeClaim | CheckCase | LookUp | Post | Sleep | Pending | Recorded | Done


@dataclass(frozen=True)
class Status:
    status: str


@dataclass(frozen=True)
class NotFound:
    pass


@dataclass(frozen=True)
class Found:
    case: dict[str, Any]  # {"name", "status", "created"}


@dataclass(frozen=True)
class Absent:
    pass


@dataclass(frozen=True)
class Answered:
    case_name: str


@dataclass(frozen=True)
class Unclear:
    error: EmedgeneError


@dataclass(frozen=True)
class Refused:
    error: EmedgeneError


Answer = Claim | Status | NotFound | Found | Absent | Answered | Unclear | Refused | None


class Phase(str, Enum):
    START = "start"
    CLAIM = "claim"
    CHECK = "check"
    REATTACH = "reattach"
    WINDOW = "window"
    POST = "post"
    RECORD = "record"
    DONE = "done"


# -- the machine ----------------------------------------------------------------------------------


class CreateOnce:
    """Create-at-most-once for one key: which step comes next, and what each answer means.

    :param key: the idempotency key stamped into the case.
    :param record: what the journal holds for the key (None: nothing).
    :param window: the reconcile window, in seconds.
    :param since: the oldest creation time a look-up considers while the record knows no first
        attempt (the run's start).
    :param failed: ``status -> failed?`` for a case found or recorded for the key (default: the
        lifecycle's failure statuses). A failed recorded case is created anew; a failed found case
        answers only a guessed unclear create.
    :param wait: may the machine ask its driver to sleep through a window? False: :class:`Pending`.
    :param retry: an earlier try of the same task may have sent a create.
    :param durable: the record survives task tries; with ``retry`` and no record, nothing was sent
        (every POST is recorded first), and one look-up by key covers a record the store lost.
    :param claims: a claim store answers :class:`TakeClaim` and :class:`Recorded` steps (a key
        shared by callers that keep no common record: threads, tasks, DAG runs).
    :param max_posts: POSTs this machine may send, each after the previous one's window passed;
        an unclear last one raises its error (the record says unclear: a later try reconciles).
    """

    def __init__(
        self,
        key: str,
        record: CreateRecord | None = None,
        *,
        window: float = DEFAULT_RECONCILE_WINDOW,
        since: float | None = None,
        failed: Callable[[str], bool] | None = None,
        wait: bool = True,
        retry: bool = False,
        durable: bool = False,
        claims: bool = False,
        max_posts: int = 1,
    ) -> None:
        self.key = key
        self.fresh = record is None
        self.record = record if record is not None else CreateRecord(key)
        self.length = float(window)
        self.since = since
        self.failed = failed or failure_rule(None)
        self.wait = wait
        self.retry = retry
        self.durable = durable
        self.claims = claims
        self.max_posts = max(1, max_posts)
        self.phase = Phase.START
        self.notes: list[tuple[int, str]] = []  # what happened, for the driver's log (take_notes())
        self._posted = 0
        self._window: Window | None = None
        self._checked: set[str] = set()  # names read without the key: each read once per window
        self._step: Step | None = None
        self._queued: Step | None = None  # a Sleep or Pending decided by the last answer
        self._take_over_before: float | None = None
        self._asked_at = 0.0  # when the pending look-up began
        self._refused: EmedgeneError | None = None
        self._changed = False
        self._done: Done | None = None

    # -- the driver's side --

    def changed(self) -> bool:
        """Whether the record changed since the last call: the driver saves it now."""
        changed, self._changed = self._changed, False
        return changed

    def take_notes(self) -> list[tuple[int, str]]:
        """What happened since the last call, as ``(logging level, line)`` for the driver's log."""
        notes, self.notes = self.notes, []
        return notes

    def next_step(self, now: float) -> Step:
        """What to do now. Raises what ends the create with an error (a refusal, the last unclear
        POST once its window passed, an outage that outlasted the window)."""
        self._step = self._next(now)
        return self._step

    def take(self, answer: Answer, now: float) -> None:
        """The answer to the last step (None for :class:`Sleep`, :class:`Pending`, :class:`Recorded`)."""
        step, self._step = self._step, None
        if isinstance(step, TakeClaim):
            self._take_claim(answer, now)
        elif isinstance(step, CheckCase):
            self._take_check(step, answer, now)
        elif isinstance(step, LookUp):
            self._take_reattach(answer) if self.phase is Phase.REATTACH else self._take_lookup(answer, now)
        elif isinstance(step, Post):
            self._take_post(answer, now)
        elif isinstance(step, Recorded):
            self.phase = Phase.DONE
            if self._refused is not None:
                raise self._refused
        elif step is None:
            raise RuntimeError(f"CreateOnce: an answer ({answer!r}) without a step to answer")

    # -- deciding --

    def _note(self, message: str, level: int = logging.WARNING) -> None:
        self.notes.append((level, message))

    def _next(self, now: float) -> Step:
        record = self.record
        if self._queued is not None:
            step, self._queued = self._queued, None
            return step
        if self.phase is Phase.START:
            if record.in_flight_since is not None:  # a worker died mid-POST: unclear from now, once
                record.unclear(now)
                self._changed = True
            self.phase = Phase.CLAIM if self.claims else self._first_phase(now)
        if self.phase is Phase.CLAIM:
            return TakeClaim(self._take_over_before)
        if self.phase is Phase.CHECK:
            assert record.case_name is not None
            return CheckCase(record.case_name)
        if self.phase is Phase.REATTACH:
            return LookUp(self.key, record.lookup_since(self.since), self._checked)
        if self.phase is Phase.WINDOW:
            self._asked_at = now  # a look-up proves absence as of when it *began* reading
            if self._window is None:
                start = record.unclear_since(now)
                assert start is not None
                self._window = Window(start, self.length)
                self._checked = set()
                self._note(
                    f"the create for idempotency key {self.key!r} is unclear (last attempt "
                    f"{describe_time(start, now)}{', assumed' if record.assumed else ''}): not creating "
                    f"it again until the key has stayed absent from the tenant for {self.length:g} s"
                )
            return LookUp(self.key, record.lookup_since(self.since), self._checked)
        if self.phase is Phase.POST:
            record.sending(now)
            self._posted += 1
            self._changed = True
            return Post()
        if self.phase is Phase.RECORD:
            return Recorded(self._done.case_name if self._done is not None and self._done.created else None)
        assert self._done is not None
        return self._done

    def _first_phase(self, now: float) -> Phase:
        record = self.record
        if record.unclear_since(now) is not None:
            return Phase.WINDOW
        if record.case_name is not None:
            return Phase.CHECK
        if self.fresh and self.retry and self.durable:
            return Phase.REATTACH
        if self.fresh and self.retry:
            self._note(
                f"this is a retry and nothing durable says whether an earlier try sent a create for "
                f"idempotency key {self.key!r}: treating it as an unclear create made just now"
            )
            record.unclear(now, assumed=True)
            self._changed = True
            return Phase.WINDOW
        return Phase.POST

    def _finish(self, case_name: str, created: bool, *, record_claim: bool = True) -> None:
        self._done = Done(case_name, created)
        self.phase = Phase.RECORD if self.claims and record_claim else Phase.DONE

    def _adopt(self, case_name: str, now: float | None) -> None:
        self.record.settled(case_name, now)
        self._changed = True
        self._finish(case_name, False)

    def _post_again(self) -> None:
        """The window passed (or the case found failed): a POST is due, if one is left."""
        self.record.settled()
        self._changed = True
        window, self._window = self._window, None
        if self.claims and window is not None:
            # Take the claim over from a holder that recorded nothing within the window.
            self._take_over_before = window.start + 1e-3
            self.phase = Phase.CLAIM
        else:
            self.phase = Phase.POST

    # -- answers --

    def _take_claim(self, answer: Answer, now: float) -> None:
        if not isinstance(answer, Claim):
            raise TypeError(f"CreateOnce: a claim step answered with {answer!r}")
        record = self.record
        holder = answer.holder or "another caller"
        if answer.granted:
            if self._take_over_before is not None:
                self.phase = Phase.POST
                return
            if answer.case_name and record.case_name is None and record.unclear_since(now) is None:
                record.settled(answer.case_name, None)  # this owner's case, kept by the claim store
                self._changed = True
            self.phase = self._first_phase(now)
            return
        if answer.case_name is not None:
            self._note(
                f"idempotency key {self.key!r} is claimed by {holder}, which recorded case "
                f"{answer.case_name}: adopting it, not creating another"
            )
            record.settled(answer.case_name, None)
            self._changed = True
            self._finish(answer.case_name, False, record_claim=False)
            return
        # Another owner is creating under the key, or died doing so: its create is unclear.
        since = answer.claimed_at if answer.claimed_at is not None else now
        self._note(
            f"idempotency key {self.key!r} is claimed by {holder} since {describe_time(since, now)}, "
            "with no case recorded yet: waiting for its case"
        )
        record.unclear(max(since, record.unclear_at or since), assumed=True)
        self._changed = True
        self._window = None
        self.phase = Phase.WINDOW

    def _take_check(self, step: CheckCase, answer: Answer, now: float) -> None:
        record = self.record
        if isinstance(answer, Status):
            if self.failed(answer.status):
                self._note(
                    f"case {step.case_name} from an earlier try is in failure status {answer.status!r} "
                    f"(idempotency key {self.key!r}): creating a new case"
                )
                record.forget_case()
                self._changed = True
                self.phase = Phase.POST
            else:
                self._note(
                    f"reattaching to case {step.case_name} (status {answer.status!r}) of idempotency "
                    f"key {self.key!r}: not creating another"
                )
                self._finish(step.case_name, False)
            return
        if not isinstance(answer, NotFound):
            raise TypeError(f"CreateOnce: a case check answered with {answer!r}")
        if record.case_at is not None and now < record.case_at + self.length:
            self._note(
                f"case {step.case_name} of idempotency key {self.key!r} answers 404 "
                f"{describe_time(record.case_at, now)} after its create: the tenant has not caught up "
                "yet; it is not gone"
            )
            self._finish(step.case_name, False)
            return
        self._note(
            f"case {step.case_name} of idempotency key {self.key!r} no longer exists: creating a new case"
        )
        record.forget_case()
        self._changed = True
        self.phase = Phase.POST

    def _take_reattach(self, answer: Answer) -> None:
        if isinstance(answer, Unclear):
            raise answer.error
        if not isinstance(answer, Found):
            self.phase = Phase.POST
            return
        name, status = str(answer.case["name"]), answer.case.get("status")
        if not isinstance(status, str):  # the look-up's entry had no status: read it
            self.record.settled(name, None)
            self.phase = Phase.CHECK
        elif self.failed(status):
            self._note(
                f"case {name} from an earlier try is in failure status {status!r}: creating a new case"
            )
            self.phase = Phase.POST
        else:
            self._note(
                f"reattaching to case {name} (status {status!r}), found by idempotency key {self.key!r}: "
                "not creating another"
            )
            self._adopt(name, None)

    def _take_lookup(self, answer: Answer, now: float) -> None:
        window = self._window
        assert window is not None
        if isinstance(answer, Unclear):
            # Not absence: nothing proves the key is missing. Not for ever either.
            if now > window.end + max(window.length, OUTAGE_GRACE):
                raise EmedgeneUnavailableError(
                    f"Emedgene create (idempotency key {self.key!r}): the tenant stayed unavailable past "
                    f"the end of the {window.length:g} s reconcile window ({answer.error}); the case "
                    "was not created again",
                    operation="create_case",
                )
            self._note(f"look-up of idempotency key {self.key!r}: {answer.error}; trying again", logging.INFO)
            self._queued = Sleep(min(LOOKUP_MAX_WAIT, max(LOOKUP_FIRST_WAIT, window.length / 20)))
            return
        found = answer.case if isinstance(answer, Found) else None
        decision = verdict(found, self.record, self.failed)
        head = f"look-up {window.lookups + 1} of idempotency key {self.key!r}"
        if decision is Verdict.ADOPT and found is not None:
            self._note(
                f"{head}: adopted case {found['name']} (status {found.get('status')!r}): the unclear "
                "create did apply; not creating another"
            )
            self._window = None
            self._adopt(str(found["name"]), now)
            return
        if decision is Verdict.CREATE_ANEW and found is not None:
            self._note(
                f"{head}: case {found['name']} from an earlier try is in failure status "
                f"{found.get('status')!r}: creating a new case"
            )
            self._post_again()
            return
        asked = self._asked_at
        left = f"{max(0.0, window.end - asked):.0f} s of the {window.length:g} s window left"
        if found is None:
            self._note(f"{head}: not in the case list yet ({left})", logging.INFO)
        else:
            self._note(
                f"{head}: found only case {found['name']} (status {found.get('status')!r}), in a failure "
                f"status and possibly older than the unclear create ({left})"
            )
        if not self.wait and asked < window.end:
            window.lookups += 1
            self._queued = Pending(window.end)
            return
        # A scan that began inside the window proves nothing about the time after it began: the window
        # passes only on a look-up that began after its end (a long scan of a moving list once
        # outlasted the window and let a second POST out while the first case was listed meanwhile).
        pause = window.next_wait(asked)
        if pause is None:
            self._note(
                f"no case with idempotency key {self.key!r} appeared within the {window.length:g} s "
                "reconcile window after the unclear create: it did not apply; sending it again"
            )
            self._post_again()
            return
        self._queued = Sleep(pause)

    def _take_post(self, answer: Answer, now: float) -> None:
        record = self.record
        if isinstance(answer, Answered):
            record.settled(answer.case_name, now)
            self._changed = True
            self._finish(answer.case_name, True)
        elif isinstance(answer, Unclear):
            record.unclear(now)
            self._changed = True
            self._note(f"create with idempotency key {self.key!r}: {answer.error}")
            if self._posted >= self.max_posts:
                raise answer.error  # the record says unclear: the next try reconciles it
            self.phase = Phase.WINDOW
        elif isinstance(answer, Refused):
            record.settled()
            self._changed = True
            if not self.claims:
                raise answer.error
            self._refused = answer.error  # raised once the claim is released
            self._done = None
            self.phase = Phase.RECORD
        else:
            raise TypeError(f"CreateOnce: a POST answered with {answer!r}")
