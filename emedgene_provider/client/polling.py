"""How long a wait on a case sleeps between two status polls: lifecycle-aware backoff with jitter.

A case can sit in "Pending sequencing" for days and then pass Uploading and In progress in hours.
Polling every stage at the same ``poll_interval`` spends most requests where nothing can happen
soon; polling everything slower delays the moment a delivered case is noticed. The rule here does
neither:

* **Steps.** ``steps`` is how many whole lifecycle stages lie between the case's status and the
  nearest target: ``floor(rank(target)) - floor(rank(status))`` with the ranks of
  :func:`emedgene_provider.client.status.rank`. Waiting for Delivered, "Pending sequencing" is 3
  steps away, Uploading 2, In progress and its sub-stages (Queued, Normalization, ...) 1. A status
  with no rank (a status nobody declared, a failure status the wait does not stop on, or None: no
  answer yet, when the first poll met a tenant outage; the waits keep the stage last seen through
  later outages) or one already at or past the target's stage counts as 1 step.
* **Backoff.** The wait is ``poll_interval * 2 ** (steps - 1)``, capped at ``max_poll_interval``.
  So the stage right before the target is polled exactly as often as a fixed poke (the same
  detection delay for the transition that ends the wait) and only earlier stages are polled less:
  a case waiting for its sequencer costs a quarter of the requests. Every poll re-reads the
  status, so a case that moves on is polled faster at once.
* **Jitter.** The wait is then multiplied by ``uniform(1 - jitter, 1 + jitter)``: the mean is
  unchanged, but a thousand waits started together (a batch DAG, a triggerer restart) drift apart
  within a few polls instead of hitting the tenant in lockstep bursts for ever.

Default ``max_poll_interval``: ``max(poll_interval, min(8 * poll_interval, 3600))``. Eight times
(three doublings) is past the 4x that "Pending sequencing" -> Delivered reaches, so the default
target never meets the cap and only far targets (Finalized, a custom status: up to 16x) are held
to it; one hour bounds how late a stage change is seen however long ``poll_interval`` is scaled
up; and the cap is never below ``poll_interval``, which is never polled faster than asked.

Airflow-free: the trigger, the blocking wait (:mod:`emedgene_provider.waiting`) and scripts share it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.process import PROCESS

#: The default jitter: each wait is drawn within +-10 % of its nominal length.
DEFAULT_JITTER = 0.1
#: The default cap's multiple of ``poll_interval`` (three doublings) and its ceiling in seconds.
DEFAULT_CAP_FACTOR = 8.0
DEFAULT_CAP_SECONDS = 3600.0


def default_max_poll_interval(poll_interval: float) -> float:
    """``max(poll_interval, min(8 * poll_interval, 3600))``: see the module docstring for why."""
    return max(poll_interval, min(DEFAULT_CAP_FACTOR * poll_interval, DEFAULT_CAP_SECONDS))


def _positive(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number of seconds above 0, not {value!r}")
    return number


def steps_to_target(status: str | None, targets: Sequence[str], custom: Iterable[str] = ()) -> int:
    """Whole lifecycle stages between ``status`` and the nearest of ``targets`` (at least 1).

    1 for a status without a rank (None, undeclared, a failure) or already at or past a target's
    stage; targets without a lifecycle rank (undeclared, failure statuses) are not "near" anything
    and are left out, and if none is left the answer is 1.
    """
    if status is None:
        return 1
    custom = tuple(custom)
    current = lifecycle.rank(status, custom)
    if current is None or current < 0:
        return 1
    distances = []
    for target in targets:
        wanted = lifecycle.rank(target, custom)
        if wanted is None or wanted < 0:
            continue
        distances.append(max(1, math.floor(wanted) - math.floor(current)))
    return min(distances, default=1)


class PollSchedule:
    """The waits of one case wait; see the module docstring for the rule.

    :param poll_interval: seconds between polls in the stage right before the target (> 0).
    :param max_poll_interval: the longest wait before jitter; None for
        :func:`default_max_poll_interval`. Must not be below ``poll_interval``.
    :param jitter: the spread, 0 (none) up to but excluding 1; None for :data:`DEFAULT_JITTER`.
    :param rng: where the jitter is drawn (a seeded ``random.Random`` in tests); the process's
        shared generator by default.
    """

    def __init__(
        self,
        poll_interval: float,
        max_poll_interval: float | None = None,
        jitter: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.poll_interval = _positive("poll_interval", poll_interval)
        if max_poll_interval is None:
            self.max_poll_interval = default_max_poll_interval(self.poll_interval)
        else:
            self.max_poll_interval = _positive("max_poll_interval", max_poll_interval)
            if self.max_poll_interval < self.poll_interval:
                raise ValueError(
                    f"max_poll_interval ({max_poll_interval!r}) must not be below poll_interval "
                    f"({poll_interval!r}): it caps the backoff, it cannot poll faster than asked"
                )
        spread = DEFAULT_JITTER if jitter is None else jitter
        try:
            spread = float(spread)
        except (TypeError, ValueError):
            spread = math.nan
        if not 0 <= spread < 1:  # also refuses nan
            raise ValueError(f"jitter must be a number from 0 up to (not including) 1, not {jitter!r}")
        self.jitter = spread
        # One generator for the process by default: a triggerer holds thousands of schedules, and a
        # Mersenne Twister each would cost ~5 KB apiece.
        self._rng = rng or PROCESS.poll_rng

    def nominal_wait(self, status: str | None, targets: Sequence[str], custom: Iterable[str] = ()) -> float:
        """The wait before jitter: ``poll_interval * 2 ** (steps - 1)``, capped."""
        steps = steps_to_target(status, targets, custom)
        return min(self.max_poll_interval, self.poll_interval * 2.0 ** (steps - 1))

    def next_wait(self, status: str | None, targets: Sequence[str], custom: Iterable[str] = ()) -> float:
        """Seconds to sleep after a poll that saw ``status`` (None: no answer) before the next one."""
        return self.spread(self.nominal_wait(status, targets, custom))

    def spread(self, seconds: float) -> float:
        """``seconds`` times a random factor in ``[1 - jitter, 1 + jitter]``: waits started together
        (a batch, a triggerer restart) drift apart instead of polling in lockstep."""
        if self.jitter:
            seconds *= self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        return seconds
