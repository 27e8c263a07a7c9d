"""The case lifecycle, as the Emedgene manual names it, and the one place a wait is decided.

The exact strings of the API's ``status`` field are not published [assumed]: every comparison
goes through :func:`normalise`, which folds case, ``_``/``-`` and repeated spaces, so
``"IN_PROGRESS"``, ``"in-progress"`` and ``"In progress"`` are one status.

Decisions fail closed. Only a status known to be at or past a target ends a wait: the manual's
lifecycle, the failure statuses, and the custom statuses a lab declares (connection extra
``custom_statuses``; they sit between Delivered and Finalized). Any other status - ``"Failed"``,
``"Cancelled"``, a typo, a status renamed by a new Emedgene version - is "not yet", never
"delivered", so an export can never run on a case that was not delivered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import Enum

PENDING_SEQUENCING = "Pending sequencing"
UPLOADING = "Uploading"
IN_PROGRESS = "In progress"
DELIVERED = "Delivered"
FINALIZED = "Finalized"
REANALYSIS = "Re-Analysis"
ISSUE_REPORTED = "Issue reported"
TRASH_BIN = "Trash bin"

#: Sub-stages the manual lists under "In progress".
IN_PROGRESS_STAGES = ("Queued", "Normalization", "Annotation", "Indexing", "Quality check")

#: Statuses that mean the case will not be delivered without a person acting on it.
#: "Move to trash" is the name "Trash bin" had up to V37.
FAILURE_STATUSES = (ISSUE_REPORTED, TRASH_BIN, "Move to trash")

#: The connection extra that declares a lab's custom statuses.
CUSTOM_STATUSES_EXTRA = "custom_statuses"

# Rank in the lifecycle. Sub-stages of In progress rank just above it, in the manual's order, so
# waiting for "In progress" is satisfied by "Queued" while waiting for "Indexing" is not satisfied
# by "Queued". Re-Analysis ranks as In progress: the case is being analysed again, not delivered.
_RANKS: dict[str, float] = {
    PENDING_SEQUENCING: 0,
    UPLOADING: 1,
    IN_PROGRESS: 2,
    REANALYSIS: 2,
    **{stage: 2 + (i + 1) / 10 for i, stage in enumerate(IN_PROGRESS_STAGES)},
    DELIVERED: 3,
    FINALIZED: 5,
}
#: Where a declared custom status ranks: past Delivered, before Finalized.
CUSTOM_RANK = 4.0
FAILURE_RANK = -1.0
_SPACES = re.compile(r"[\s_\-]+")

#: A list of status names, as the sensor, operators and trigger hold them.
Statuses = Sequence[str]


def normalise(status: str) -> str:
    """Fold a status string for comparison: lower case, ``_``/``-``/runs of blanks as one space."""
    return _SPACES.sub(" ", str(status)).strip().lower()


_NORMALISED_RANKS = {normalise(k): v for k, v in _RANKS.items()}
_NORMALISED_FAILURES = frozenset(normalise(s) for s in FAILURE_STATUSES)


def is_lifecycle_status(status: str) -> bool:
    """Whether ``status`` is one the manual names (lifecycle stage or failure), in any spelling."""
    key = normalise(status)
    return key in _NORMALISED_RANKS or key in _NORMALISED_FAILURES


def is_failure(status: str) -> bool:
    """Whether ``status`` is a side state that ends the analysis without delivery."""
    return normalise(status) in _NORMALISED_FAILURES


def _custom_keys(custom: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise(s) for s in custom)


def rank(status: str, custom: Iterable[str] = ()) -> float | None:
    """Position of ``status`` in the lifecycle: failures rank :data:`FAILURE_RANK`, declared custom
    statuses :data:`CUSTOM_RANK`, and a status nobody declared None (unknown: ranks nowhere)."""
    key = normalise(status)
    if key in _NORMALISED_FAILURES:
        return FAILURE_RANK
    if key in _NORMALISED_RANKS:
        return _NORMALISED_RANKS[key]
    return CUSTOM_RANK if key in _custom_keys(custom) else None


def is_known(status: str, custom: Iterable[str] = ()) -> bool:
    """Whether ``status`` is in the lifecycle, a failure, or one of the lab's ``custom`` statuses."""
    return rank(status, custom) is not None


def has_reached(status: str, target: str, custom: Iterable[str] = ()) -> bool:
    """Whether a case in ``status`` is known to be at or past ``target`` in the lifecycle.

    Equal strings (normalised) always count, so a wait for any status by name works. Otherwise a
    case counts as past a target when it ranks higher: Finalized or a declared custom status has
    reached Delivered, Queued has reached In progress. A status not in the lifecycle and not
    declared in ``custom`` reaches nothing but itself (fail closed), and neither does a failure
    status. Two different custom statuses are unordered: neither reaches the other.
    """
    if normalise(status) == normalise(target):
        return True
    current, wanted = rank(status, custom), rank(target, custom)
    if current is None or wanted is None or current < 0 or wanted < 0:
        return False
    return current > wanted or (current == wanted and wanted != CUSTOM_RANK)


def is_delivered(status: str, custom: Iterable[str] = ()) -> bool:
    """Whether results can be read: Delivered, a declared custom status, or Finalized."""
    return has_reached(status, DELIVERED, custom)


class WaitOutcome(str, Enum):
    """Where a wait on a case stands, or how it ended: the one vocabulary of the status model
    (:func:`evaluate`), the trigger's events, the sensor and the operators.

    The value is the string a trigger event carries under ``"status"`` (the event is plain JSON).
    A ``str`` subclass, so it serializes and logs as its value; compare members by identity
    (``is``), since a case status string never is one.
    """

    #: Not yet: no target reached and no failure (also a status nobody declared: fail closed).
    WAITING = "waiting"
    #: A target reached, or a status known to be past one.
    SUCCESS = "success"
    #: A failure status (Issue reported, Trash bin, ...; or the wait's own ``failure_statuses``).
    FAILED = "failed"
    #: The wait's deadline passed first.
    TIMEOUT = "timeout"
    #: A permanent error ended the wait (no connection, 404, refused credentials).
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """Whether the wait is over (every outcome but :attr:`WAITING`)."""
        return self in TERMINAL_OUTCOMES

    @classmethod
    def parse(cls, value: object) -> WaitOutcome | None:
        """The outcome a trigger event's ``"status"`` names (a member, or its value in any letter
        case), or None for anything else."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            return None


#: Outcomes that end a wait.
TERMINAL_OUTCOMES = frozenset(
    {WaitOutcome.SUCCESS, WaitOutcome.FAILED, WaitOutcome.TIMEOUT, WaitOutcome.ERROR}
)
#: Outcomes an :class:`~emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger` event carries.
TRIGGER_EVENT_OUTCOMES = frozenset(
    {WaitOutcome.SUCCESS, WaitOutcome.FAILED, WaitOutcome.TIMEOUT, WaitOutcome.ERROR}
)


def evaluate(
    status: str,
    targets: Statuses,
    failures: Statuses | None,
    custom: Iterable[str] = (),
) -> WaitOutcome:
    """Where a wait stands: :attr:`WaitOutcome.SUCCESS` (a target reached or known to be passed),
    :attr:`WaitOutcome.FAILED` (a failure status, checked first so a failed case never counts as
    done) or :attr:`WaitOutcome.WAITING` (not yet; also for a status nobody declared - see
    :func:`is_unrecognised`).

    ``failures`` None means :data:`FAILURE_STATUSES`; ``custom`` are the lab's declared custom
    statuses. Sensor, operators and trigger all decide here.
    """
    failure_set = {normalise(s) for s in (FAILURE_STATUSES if failures is None else failures)}
    if normalise(status) in failure_set:
        return WaitOutcome.FAILED
    custom = tuple(custom)
    if any(has_reached(status, target, custom) for target in targets):
        return WaitOutcome.SUCCESS
    return WaitOutcome.WAITING


def not_visible_yet(not_found_until: float | None, now: float) -> bool:
    """Whether a 404 for a case is the tenant lagging behind its create (a replica or an index
    behind the write) rather than the case gone: until ``not_found_until``, set by whoever knows
    when the case was created (the create operator), or for a sensor from when its wait began."""
    return not_found_until is not None and now < not_found_until


def is_unrecognised(status: str, custom: Iterable[str] = ()) -> bool:
    """A wait goes on for this status only because nobody declared it: worth a warning."""
    return not is_known(status, custom)


def unrecognised_message(case_name: str, status: str, targets: Statuses) -> str:
    """The warning for :func:`is_unrecognised`: what was seen, what it means, what to do."""
    return (
        f"Emedgene case {case_name} is in status {status!r}, which is neither in the Emedgene "
        f"lifecycle nor a declared custom status: treating it as not yet {' or '.join(targets)} and "
        f"waiting on. If it is a lab custom status (between Delivered and Finalized), declare it in "
        f"the connection extra {CUSTOM_STATUSES_EXTRA!r}; if it means the case failed, add it to "
        "failure_statuses."
    )


class UnrecognisedStatusNotice:
    """Warns once per wait for each status nobody declared, so a wait of days on a status such as
    ``"Analysis failed"`` says why it goes on without flooding the log at every poll."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def check(self, case_name: str, status: str, targets: Statuses, custom: Iterable[str] = ()) -> str | None:
        """The warning to log now, or None (a known status, or one already warned about)."""
        if not is_unrecognised(status, custom) or normalise(status) in self._seen:
            return None
        self._seen.add(normalise(status))
        return unrecognised_message(case_name, status, targets)
