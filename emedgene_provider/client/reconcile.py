"""Never a second case after an unclear create: the bookkeeping and decisions both clients share.

The tenant's case list is a search index: a case can appear in ``GET /api/test`` seconds or minutes
after its create. A gateway can answer 502/504 while the backend still applies the create, and a
create can outlast the client's timeout and still succeed. So "the key is not in the list right
after an unclear create" proves nothing. The rule kept here: after an unclear create (answer lost,
timed out, any 5xx) the key is looked up again, with backoff, until it has stayed absent for a
*reconcile window* counted from the last attempt that may have reached the server; only then may
a second POST go out.

Nothing in this module does I/O or knows Airflow. It holds:

- :class:`CasePager` and :class:`KeyLookup`: which page of the case list to read next, which cases
  to read in full, what matches a key, when to stop (cases older than the first attempt, a page
  limit) - driven by the sync client and the async client alike;
- :class:`CreateRecord` and :class:`Journal`: what is known about the POSTs made for one key, kept
  where it survives a task try (the operator adapts Airflow's task state store);
- :class:`Window`: when the next look-up is due and when the window is over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from emedgene_provider.client import endpoints
from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError
from emedgene_provider.client.payload import CLOCK_SKEW, idempotency_key_of, parse_created
from emedgene_provider.client.responses import field_of

#: Seconds a key must stay absent after an unclear create before the case is created again.
DEFAULT_RECONCILE_WINDOW = 600.0
#: Cases per page when looking a key up.
LOOKUP_PAGE_SIZE = 100
#: Pages a key look-up reads at most before it fails (100 000 cases at 100 a page).
DEFAULT_MAX_LOOKUP_PAGES = 1000
#: Backoff between look-ups inside a window: the first wait, doubling up to the cap.
LOOKUP_FIRST_WAIT = 1.0
LOOKUP_MAX_WAIT = 30.0


# -- paging and matching ---------------------------------------------------------------------------


class CasePager:
    """Which page of ``GET /api/test`` to read next, and whether the listing is over.

    Advances by what each page *held*, so a server that caps ``size`` loses nothing; stops on an
    empty page or at ``total``; fails on a page that repeats the previous one (a server ignoring
    ``from``) and, when ``max_pages`` is set, after that many pages (a list that never ends).
    ``describe`` names what the listing is for, in those errors.
    """

    def __init__(self, page_size: int = 100, *, max_pages: int | None = None, describe: str = "") -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.page_size = page_size
        self.max_pages = max_pages
        self.describe = describe or "iter_cases"
        self.offset = 0
        self.pages = 0
        self.done = False
        self._previous: list[Any] | None = None

    def next_call(self) -> ApiCall | None:
        """The next page to read, or None when the listing is over."""
        if self.done:
            return None
        if self.max_pages is not None and self.pages >= self.max_pages:
            raise EmedgeneUnexpectedResponseError(
                f"Emedgene {self.describe}: the case list did not end after {self.pages} page(s) "
                f"({self.offset} cases); stopped rather than page for ever. The server may be "
                "ignoring 'from' or reporting a 'total' it never reaches.",
                operation="iter_cases",
            )
        return endpoints.list_cases(self.offset, self.page_size)

    def take(self, call: ApiCall, body: Any) -> list[Any]:
        """The hits of the answer to ``call``; advances the pager."""
        hits = list(field_of(call, body, "hits"))
        self.pages += 1
        if not hits:
            self.done = True
            return []
        if hits == self._previous:
            raise EmedgeneUnexpectedResponseError(
                f"Emedgene {self.describe}: the page at from={self.offset} repeats the previous one; "
                "the server seems to ignore 'from'",
                operation="iter_cases",
            )
        self._previous = hits
        self.offset += len(hits)
        total = body.get("total") if isinstance(body, dict) else None
        if isinstance(total, int) and not isinstance(total, bool) and self.offset >= total:
            self.done = True
        return hits


@dataclass
class _Candidate:
    created: float | None
    order: int
    hit: dict[str, Any]


class KeyLookup:
    """Finds the cases stamped with ``key``, newest first, for either transport.

    There is no search by ``extra_data`` in the published API, so the cases are listed (a page per
    hundred) and ``extra_data`` is read for each candidate, newest first, so the caller usually
    stops after one or two reads. Cases whose list entry says they were ``created`` before
    ``since`` (epoch seconds) are never read in full. The list's order is not published
    [assumed]: when it shows itself newest first, paging stops at the first page wholly older than
    ``since``; otherwise every page is read, at most ``max_pages`` of them.

    Drive it as: ``while (call := lookup.next_page()): lookup.take_page(call, send(call))``, then
    for each ``hit`` of :meth:`candidates`: ``details = send(lookup.detail_call(hit))`` when that is
    not None (a 404 means "deleted meanwhile": skip), and ``lookup.match(hit, details)``.
    """

    def __init__(
        self,
        key: str,
        *,
        since: float | None = None,
        max_pages: int | None = None,
        not_matching: set[str] | None = None,
    ) -> None:
        self.key = key
        self.since = since
        #: Names read in full and found without the key: a case's key never changes, so the
        #: look-ups of one window share this set and read each case once, not once per look-up.
        self.not_matching = not_matching if not_matching is not None else set()
        self.pager = CasePager(
            LOOKUP_PAGE_SIZE,
            max_pages=DEFAULT_MAX_LOOKUP_PAGES if max_pages is None else max_pages,
            describe=f"look-up of idempotency key {key!r}",
        )
        self._candidates: list[_Candidate] = []
        self._newest_seen: float | None = None

    def next_page(self) -> ApiCall | None:
        return self.pager.next_call()

    def take_page(self, call: ApiCall, body: Any) -> None:
        hits = self.pager.take(call, body)
        dated: list[float] = []
        for hit in hits:
            if not isinstance(hit, dict) or not isinstance(hit.get("name"), str):
                continue
            created = parse_created(hit.get("created"))
            if created is not None:
                dated.append(created)
            if self.since is not None and created is not None and created < self.since:
                continue
            if hit["name"] in self.not_matching:
                continue
            self._candidates.append(_Candidate(created, len(self._candidates), hit))
        newest_before = self._newest_seen
        if dated:
            self._newest_seen = max(dated + ([newest_before] if newest_before is not None else []))
        if (
            self.since is not None
            and dated
            and len(dated) == len(hits)
            and max(dated) < self.since
            and newest_before is not None
            and newest_before > max(dated)  # the list runs newest first: the rest is older still
        ):
            self.pager.done = True

    def candidates(self) -> list[dict[str, Any]]:
        """Newest first; entries without a date keep list order, after the dated ones."""
        ordered = sorted(
            self._candidates, key=lambda c: (c.created is not None, c.created or 0.0, -c.order), reverse=True
        )
        return [c.hit for c in ordered]

    @staticmethod
    def detail_call(hit: dict[str, Any]) -> ApiCall | None:
        """The read that tells the key of ``hit``, or None when the list entry carries it already."""
        if idempotency_key_of(hit) is None and "extra_data" not in hit:
            return endpoints.get_case(str(hit["name"]), ["extra_data", "status", "created"])
        return None

    def match(self, hit: dict[str, Any], details: Any = None) -> dict[str, Any] | None:
        """``{"name", "status", "created"}`` when ``hit`` (or its details) carries the key."""
        source = details if isinstance(details, dict) else hit
        if idempotency_key_of(source) != self.key:
            self.not_matching.add(str(hit["name"]))
            return None
        return {
            "name": str(hit["name"]),
            "status": source.get("status", hit.get("status")),
            "created": source.get("created", hit.get("created")),
        }


# -- what is known about the POSTs of one key -----------------------------------------------------


@dataclass
class CreateRecord:
    """What is known about the creates sent for one idempotency key.

    :param key: the idempotency key.
    :param first_attempt: epoch seconds of the first POST that may have left; look-ups ignore
        cases created before it (less the clock allowance).
    :param in_flight_since: a POST was about to be sent then and its outcome was never recorded
        (a worker died mid-POST): it may reach the server at any moment, so the window counts from
        whenever this record is read again.
    :param unclear_at: when the last unclear create ended (answer lost, timeout, 5xx); the window
        counts from here.
    :param assumed: the unclear attempt is a guess (no durable record: Airflow 2.11, or a retry
        with nothing stored), not a fact.
    :param posts: POSTs sent for this key, as far as the record knows.
    :param case_name: the case the last POST created, once its answer came: kept here as well as
        by the operator, so that a worker that dies between the two writes loses nothing.
    """

    key: str
    first_attempt: float | None = None
    in_flight_since: float | None = None
    unclear_at: float | None = None
    assumed: bool = False
    posts: int = 0
    case_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "first_attempt": self.first_attempt,
            "in_flight_since": self.in_flight_since,
            "unclear_at": self.unclear_at,
            "assumed": self.assumed,
            "posts": self.posts,
            "case_name": self.case_name,
        }

    @classmethod
    def from_json(cls, data: Any, key: str) -> CreateRecord | None:
        """The record stored for ``key``; None for nothing, another key's record, or junk."""
        if not isinstance(data, dict) or data.get("key") != key:
            return None

        def when(name: str) -> float | None:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            return float(value)

        posts = data.get("posts")
        name = data.get("case_name")
        return cls(
            key=key,
            first_attempt=when("first_attempt"),
            in_flight_since=when("in_flight_since"),
            unclear_at=when("unclear_at"),
            assumed=data.get("assumed") is True,
            posts=posts if isinstance(posts, int) and not isinstance(posts, bool) else 0,
            case_name=name if isinstance(name, str) and name else None,
        )

    def unclear_since(self, now: float) -> float | None:
        """When the window starts for the pending unclear attempt; None when nothing is pending.
        A POST recorded as in flight with no outcome is assumed to have been sent just now."""
        if self.in_flight_since is not None:
            return now
        return self.unclear_at

    def settle_in_flight(self, now: float) -> bool:
        """A POST recorded as in flight with no outcome (a worker died mid-POST) is unclear from
        ``now``: record that once, so the window does not restart each time the record is read.
        True if the record changed (the caller saves it)."""
        if self.in_flight_since is None:
            return False
        self.unclear(now)
        return True

    def sending(self, now: float) -> None:
        """Before a POST: from now on it may reach the server."""
        if self.first_attempt is None:
            self.first_attempt = now
        self.in_flight_since = now
        self.posts += 1

    def answered(self, case_name: str | None = None) -> None:
        """The last POST got a definite answer (``case_name`` when it created one), or never left
        the machine, or a window passed without its case: nothing is pending."""
        if case_name is not None:
            self.case_name = case_name
        self.in_flight_since = None
        self.unclear_at = None
        self.assumed = False

    def unclear(self, now: float) -> None:
        """The last POST's outcome is unknown; it may have been applied up to now."""
        self.in_flight_since = None
        self.unclear_at = now
        self.assumed = False


class Journal(Protocol):
    """Where a :class:`CreateRecord` is kept between look-ups, POSTs and task tries."""

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


ADOPT = "adopt"
CREATE_ANEW = "create anew"
KEEP_WAITING = "keep waiting"
WINDOW_PASSED = "window passed"


def verdict(found: dict[str, Any] | None, record: CreateRecord, failures: Iterable[str] | None = None) -> str:
    """What a look-up's newest match means for a pending unclear create.

    A live case is adopted. A failed case is one in ``failures`` (the task's own
    ``failure_statuses``; None for the lifecycle's), as :func:`~emedgene_provider.client.status.evaluate`
    decides, so the operator's every path judges a case alike. A
    failed case answers the question only when the unclear attempt is a guess (a retry with
    nothing stored: the earlier try's case is that one, and it failed, so a new case is due, as
    before); when a real unclear POST is pending, the failed case may be an older one and the
    window keeps running.
    """
    if found is None:
        return KEEP_WAITING
    status = found.get("status")
    chosen = lifecycle.FAILURE_STATUSES if failures is None else tuple(failures)
    failed = isinstance(status, str) and lifecycle.normalise(status) in {
        lifecycle.normalise(s) for s in chosen
    }
    if not failed:
        return ADOPT
    return CREATE_ANEW if record.assumed else KEEP_WAITING


def describe_time(when: float, now: float) -> str:
    """``12 s ago`` for log lines a lab reads."""
    return f"{max(0.0, now - when):.0f} s ago"


def describe_lookup(key: str, window: Window, found: dict[str, Any] | None, decision: str, now: float) -> str:
    """One line per look-up of a key inside a window, for the task log."""
    head = f"look-up {window.lookups + 1} of idempotency key {key!r}"
    left = f"{max(0.0, window.end - now):.0f} s of the {window.length:g} s window left"
    if found is None:
        return f"{head}: not in the case list yet ({left})"
    case = f"case {found['name']} (status {found.get('status')!r})"
    if decision == ADOPT:
        return f"{head}: found {case}"
    if decision == CREATE_ANEW:
        return f"{head}: found {case}, in a failure status"
    return (
        f"{head}: found only {case}, in a failure status and possibly older than the unclear create ({left})"
    )


def lookup_since(record: CreateRecord, since: float | None) -> float | None:
    """The oldest creation time a look-up considers: the record's first attempt less the clock
    allowance when it is known, else the caller's bound (the run's start)."""
    if record.first_attempt is not None:
        return record.first_attempt - CLOCK_SKEW
    return since
