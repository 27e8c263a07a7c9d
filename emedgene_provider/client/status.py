"""The case lifecycle, as the Emedgene manual names it.

The exact strings of the API's ``status`` field are not published [assumed]: every comparison
goes through :func:`normalise`, which folds case, ``_``/``-`` and repeated spaces, so
``"IN_PROGRESS"``, ``"in-progress"`` and ``"In progress"`` are one status.
"""

from __future__ import annotations

import re

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

# Rank in the lifecycle. Custom statuses (lab-defined, unknown to us) sit between Delivered and
# Finalized, so an unrecognised status ranks as CUSTOM_RANK: "delivered and beyond".
# Sub-stages of In progress rank just above it, in the manual's order, so waiting for "In progress"
# is satisfied by "Queued" while waiting for "Indexing" is not satisfied by "Queued".
_RANKS: dict[str, float] = {
    PENDING_SEQUENCING: 0,
    UPLOADING: 1,
    IN_PROGRESS: 2,
    REANALYSIS: 2,
    **{stage: 2 + (i + 1) / 10 for i, stage in enumerate(IN_PROGRESS_STAGES)},
    DELIVERED: 3,
    FINALIZED: 5,
}
CUSTOM_RANK = 4.0
_SPACES = re.compile(r"[\s_\-]+")


def normalise(status: str) -> str:
    """Fold a status string for comparison: lower case, ``_``/``-``/runs of blanks as one space."""
    return _SPACES.sub(" ", str(status)).strip().lower()


_NORMALISED_RANKS = {normalise(k): v for k, v in _RANKS.items()}
_NORMALISED_FAILURES = frozenset(normalise(s) for s in FAILURE_STATUSES)


def is_failure(status: str) -> bool:
    """Whether ``status`` is a side state that ends the analysis without delivery."""
    return normalise(status) in _NORMALISED_FAILURES


def rank(status: str) -> float:
    """Position of ``status`` in the lifecycle; failures rank -1, unknown statuses as custom."""
    key = normalise(status)
    if key in _NORMALISED_FAILURES:
        return -1
    return _NORMALISED_RANKS.get(key, CUSTOM_RANK)


def has_reached(status: str, target: str) -> bool:
    """Whether a case in ``status`` is at or past ``target`` in the lifecycle.

    Equal strings (normalised) always count. Otherwise a case counts as past a target when it
    ranks higher, so a case already Finalized, or in a lab's custom status, has reached Delivered,
    and a case Queued has reached In progress; Re-Analysis counts as In progress. Two different
    custom statuses are unordered: neither reaches the other. A failure status reaches nothing
    but itself.
    """
    if normalise(status) == normalise(target):
        return True
    current, wanted = rank(status), rank(target)
    if current < 0 or wanted < 0:
        return False
    return current > wanted or (current == wanted and wanted != CUSTOM_RANK)


SUCCESS = "success"
FAILED = "failed"
WAITING = "waiting"


def evaluate(
    status: str, targets: tuple[str, ...] | list[str], failures: tuple[str, ...] | list[str] | None
) -> str:
    """Where a wait stands: :data:`SUCCESS` (a target reached or passed), :data:`FAILED` (a failure
    status, checked first so a failed case never counts as done) or :data:`WAITING`.

    ``failures`` None means :data:`FAILURE_STATUSES`. Sensor, operators and trigger all decide here.
    """
    failure_set = {normalise(s) for s in (FAILURE_STATUSES if failures is None else failures)}
    if normalise(status) in failure_set:
        return FAILED
    if any(has_reached(status, target) for target in targets):
        return SUCCESS
    return WAITING
