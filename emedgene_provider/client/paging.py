"""Reading ``GET /api/test`` from a tenant that may lie, and finding the cases stamped with a key.

Nothing here does I/O: :class:`CasePager` says which page to read next and takes the answer;
:class:`KeyLookup` adds which cases to read in full and what matches. Both clients drive them.

**What a list read proves.** Paging is by offset (``from``), so the list may move under a reader:
a case inserted above the page being read pushes an entry already read onto the next page (a
duplicate, dropped by name); a case deleted above it pulls an unread entry onto a page already
read (a case silently skipped). A listing is *consistent* when every case listed during the whole
read was seen. Evidence that it was not: ``total`` went down between pages; the list ended before
its ``total``; a case seen again further down than the cases added since (by ``total``) can push
it. And for the look-up, unless every answer carried a ``total`` that never fell and ended where
the reading did, page one is read again at the end: a case first seen further down that is now on
it, or a page one holding none of the cases it first held, shows entries moved up (more than a page
of cases added at the top looks the same: unclear, never absent). Not seen: on a list without
``total``, more cases deleted than added above the page being read, below page one. A page holding
only page one's cases again means ``from`` is ignored. A ``total`` ends the listing only when it is
an integer that the entries read reach exactly and that is not merely the page's own length (a
server that reports the page length, zero, -1, null, a string or nothing is read to its empty
page). Every listing has a page limit. An inconsistent listing raises
:class:`~emedgene_provider.client.errors.EmedgeneListInconsistentError` at its end (an
*unavailable*, "look again" answer), except that a look-up which found the key reports it: a case
seen is a fact, an absence read from a moving list is not.

**What a timestamp proves.** The look-up skips a case only when its ``created`` shows it was made
before ``since`` (the first create attempt, on our clock). The tenant's clock is not ours and its
format is not published, so a stamp is read as the *latest* instant it can mean: an ISO date-time
with its zone, that instant plus a minute (stamps cut to the minute); without a zone, plus 14 h
(no zone is further east of UTC); a date alone, the end of that day plus 14 h; a number, epoch
seconds, plus one (read as milliseconds it would be earlier still); anything else, unknown. Then
:data:`TENANT_CLOCK_ALLOWANCE` is added for a tenant clock behind ours. The HTTP ``Date`` header is
not used to measure that offset: it comes from whichever web server or gateway answered, not from
the clock that stamped the case, so it would prove nothing about ``created``. Unknown and coarse
stamps are always "could be ours". Paging stops early, before the list's end, only when the list
has shown itself newest first on exact stamps (every entry so far dated with a zone, none newer
than the one before it) and a whole page is provably older.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from emedgene_provider.cases.extra_data import idempotency_key_of
from emedgene_provider.client import endpoints
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneListInconsistentError
from emedgene_provider.client.responses import field_of

#: Cases per page when looking a key up.
LOOKUP_PAGE_SIZE = 100
#: Pages a key look-up reads at most before it fails (100 000 cases at 100 a page).
DEFAULT_MAX_LOOKUP_PAGES = 1000
#: Pages a listing reads at most when its caller sets no limit: no list is read for ever.
DEFAULT_MAX_PAGES = 20_000
#: Pages in a row that bring no new case (not a repeat of page one, not the list's end) before a
#: listing gives up: the list is growing at its top as fast as it is read.
STALE_PAGES = 3
#: Seconds the tenant's clock may run behind ours and a case still be proved older than ``since``.
#: A day: a clock further off would break the tenant's own sign-out records; reading a day more of
#: cases in full costs a few requests, a case wrongly skipped costs a second case for a patient.
TENANT_CLOCK_ALLOWANCE = 24 * 3600.0
#: The widest offset of a local time zone from UTC (UTC+14; UTC-12 is nearer).
_ZONE_SPAN = 14 * 3600.0
#: An epoch number at least this large is read as milliseconds for ordering (as seconds it would
#: be after the year 5000).
_EPOCH_MS_FROM = 1e11
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Stamp:
    """What a list entry's ``created`` tells, in epoch seconds on the tenant's clock.

    :param estimate: the best reading, to order cases newest first.
    :param latest: the latest instant the stamp can mean; a case is provably older than ``since``
        only when this, plus the clock allowance, is before it.
    :param exact: a full date-time with its zone: the only kind that can show a list's order.
    """

    estimate: float
    latest: float
    exact: bool


def parse_stamp(value: Any) -> Stamp | None:
    """The :class:`Stamp` of a ``created`` value; None when nothing can be read from it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            return None
        number = float(value)
        return Stamp(number / 1000 if number >= _EPOCH_MS_FROM else number, number + 1, exact=False)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        return None
    if _DATE_ONLY.match(text):
        start = when.replace(tzinfo=timezone.utc).timestamp()
        return Stamp(start, start + 24 * 3600 + _ZONE_SPAN, exact=False)
    if when.tzinfo is None:
        naive = when.replace(tzinfo=timezone.utc).timestamp()
        return Stamp(naive, naive + _ZONE_SPAN + 60, exact=False)
    instant = when.timestamp()
    return Stamp(instant, (when + timedelta(minutes=1)).timestamp(), exact=True)


def provably_older(
    stamp: Stamp | None, since: float | None, allowance: float = TENANT_CLOCK_ALLOWANCE
) -> bool:
    """Whether a case stamped ``stamp`` was certainly created before ``since`` (our epoch seconds)."""
    return stamp is not None and since is not None and stamp.latest + allowance < since


def _total(body: Any) -> int | None:
    """The answer's ``total`` when it can count anything: a non-negative integer."""
    total = body.get("total") if isinstance(body, dict) else None
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    return None


def _name(hit: Any) -> str | None:
    return hit["name"] if isinstance(hit, dict) and isinstance(hit.get("name"), str) else None


class CasePager:
    """Which page of ``GET /api/test`` to read next, whether the listing is over and whether it was
    read consistently (the rules: this module's docstring).

    Advances by what each page *held*, so a server that caps ``size`` loses nothing; drops entries
    already listed (by name); fails on a page that repeats the ones before (a server ignoring
    ``from``) and after ``max_pages`` pages (:data:`DEFAULT_MAX_PAGES` when None). ``describe``
    names what the listing is for, in those errors.
    """

    def __init__(self, page_size: int = 100, *, max_pages: int | None = None, describe: str = "") -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.page_size = page_size
        self.max_pages = DEFAULT_MAX_PAGES if max_pages is None else max_pages
        self.describe = describe or "iter_cases"
        self.offset = 0
        self.pages = 0
        self.done = False
        #: Where each name was first listed (its offset): a name found higher up later means the
        #: list moved up under the reader.
        self.positions: dict[str, int] = {}
        #: The names of page one, as first read.
        self.first_page: list[str] = []
        #: Non-empty pages read.
        self.full_pages = 0
        #: Why the listing is not consistent, once something shows it.
        self.unsteady: str | None = None
        self._total: int | None = None
        self._previous: list[Any] | None = None
        self._first_length = 0
        self._longest = 0
        self._stale = 0  # pages in a row that brought nothing new
        self._reported: list[int | None] = []  # every answer's total, usable or not
        self._total_when: dict[str, int | None] = {}  # the total reported when a name was first listed
        #: The reader stopped before the list's end (a newest-first look-up past ``since``).
        self.stopped_early = False

    def error(self, message: str) -> EmedgeneListInconsistentError:
        return EmedgeneListInconsistentError(f"Emedgene {self.describe}: {message}", operation="iter_cases")

    def next_call(self) -> ApiCall | None:
        """The next page to read, or None when the listing is over."""
        if self.done:
            return None
        if self.pages >= self.max_pages:
            raise self.error(
                f"the case list did not end after {self.pages} page(s) ({self.offset} cases); stopped "
                "rather than page for ever. The server may be ignoring 'from' or reporting a 'total' "
                "it never reaches."
            )
        return endpoints.list_cases(self.offset, self.page_size)

    def take(self, call: ApiCall, body: Any) -> list[Any]:
        """The entries of the answer to ``call`` not listed before; advances the pager."""
        hits = list(field_of(call, body, "hits"))
        self.pages += 1
        total = _total(body)
        self._reported.append(total)
        if not hits:
            self.done = True
            if self._total is not None:
                if total is not None and total < self._total:
                    self.distrust(f"its total fell from {self._total} to {total} while it was read")
                elif self.offset < self._total:
                    self.distrust(f"it ended at {self.offset} cases, short of its total {self._total}")
            return []
        # A total that can count this list: more than the page's own length, and no fewer than listed.
        counts = total if total is not None and len(hits) != total >= self.offset + len(hits) else None
        fresh = []
        for index, hit in enumerate(hits):
            name = _name(hit)
            if name is None:
                fresh.append(hit)
            elif name not in self.positions:
                self.positions[name] = self.offset + index
                self._total_when[name] = counts
                fresh.append(hit)
            else:
                then, moved = self._total_when[name], self.offset + index - self.positions[name]
                if then is not None and counts is not None and moved > counts - then:
                    self.distrust(f"case {name} moved down {moved} places while {counts - then} were added")
        if not fresh:
            named = [name for name in map(_name, hits) if name is not None]
            if len(hits) == self._first_length and set(named) == set(self.first_page):
                again = "repeats the previous one" if hits == self._previous else "holds page one again"
                raise self.error(f"the page at from={self.offset} {again}; the server seems to ignore 'from'")
            if len(hits) < min(self.page_size, self._longest):
                # The list's end, holding only cases pushed down by cases added at its top.
                self.done = True
                return []
            self._stale += 1
            if self._stale >= STALE_PAGES:
                raise self.error(
                    f"{self._stale} pages up to from={self.offset} held only cases listed before; the "
                    "list grows at its top as fast as it is read"
                )
        else:
            self._stale = 0
        if self.pages == 1:
            self.first_page = [name for name in map(_name, hits) if name is not None]
            self._first_length = len(hits)
        self._longest = max(self._longest, len(hits))
        self.full_pages += 1
        self._previous = hits
        self.offset += len(hits)
        if total is not None:
            if self._total is not None and total < self._total:
                self.distrust(f"its total fell from {self._total} to {total} while it was read")
            elif total == len(hits) or total < self.offset:
                total = None  # the page's own count, or fewer than were listed: not the list's
        if total is not None:
            self._total = total
            if self.offset == total:
                self.done = True
        return fresh

    @property
    def counted(self) -> bool:
        """Every answer carried a ``total``, none lower than the one before, and the last one is
        where the reading ended: a list that lost an entry above the page being read would show it."""
        reported = self._reported
        if not reported or None in reported:
            return False
        steady = all(a <= b for a, b in itertools.pairwise(reported))  # type: ignore[operator]
        return steady and (reported[-1] == self.offset or self.stopped_early)

    def distrust(self, why: str) -> None:
        """Record why the listing cannot be called consistent (the first reason is kept)."""
        if self.unsteady is None:
            self.unsteady = why

    def check(self) -> None:
        """Raise when the listing, now over, was not read consistently."""
        if self.unsteady is not None:
            raise self.error(f"the case list moved while it was read ({self.unsteady}); cases may be missing")


@dataclass
class _Candidate:
    stamp: Stamp | None
    order: int
    hit: dict[str, Any]


class KeyLookup:
    """Finds the cases stamped with ``key``, newest first, for either transport.

    There is no search by ``extra_data`` in the published API, so the cases are listed (a page per
    hundred) and ``extra_data`` is read for each candidate, newest first, so the caller usually
    stops after one or two reads. A case provably created before ``since`` (our epoch seconds; see
    the module docstring) is never read in full. When the look-up cannot show that the list held
    still it reads page one once more at the end, to see whether it moved.

    Drive it as: ``while (call := lookup.next_page()): lookup.take_page(call, send(call))``, then
    for each ``hit`` of :meth:`candidates`: ``details = send(lookup.detail_call(hit))`` when that is
    not None (a 404 means "deleted meanwhile": skip), and ``lookup.match(hit, details)``, stopping
    at the first match; then :meth:`outcome` is the answer: the newest match, None for a key
    proved absent, or :class:`~emedgene_provider.client.errors.EmedgeneListInconsistentError`.
    """

    def __init__(
        self,
        key: str,
        *,
        since: float | None = None,
        max_pages: int | None = None,
        not_matching: set[str] | None = None,
        allowance: float = TENANT_CLOCK_ALLOWANCE,
    ) -> None:
        self.key = key
        self.since = since
        self.allowance = allowance
        #: Names read in full and found without the key: a case's key never changes, so the
        #: look-ups of one window share this set and read each case once, not once per look-up.
        self.not_matching = not_matching if not_matching is not None else set()
        self.pager = CasePager(
            LOOKUP_PAGE_SIZE,
            max_pages=DEFAULT_MAX_LOOKUP_PAGES if max_pages is None else max_pages,
            describe=f"look-up of idempotency key {key!r}",
        )
        #: The newest case found with the key, once :meth:`match` found one.
        self.found: dict[str, Any] | None = None
        self._candidates: list[_Candidate] = []
        self._newest_first = True  # so far: every entry exactly dated, none newer than the one before
        self._last: float | None = None
        self._recheck: ApiCall | None = None
        self._rechecked = False

    @property
    def consistent(self) -> bool:
        """Whether every case listed during the whole look-up was seen (valid once paging is over)."""
        return self.pager.unsteady is None

    def next_page(self) -> ApiCall | None:
        call = self.pager.next_call()
        if call is not None:
            return call
        if self._rechecked or self.pager.pages < 2 or self.pager.counted:
            return None  # one answer cannot skip anything; steady totals show a list that held still
        self._rechecked = True
        self._recheck = endpoints.list_cases(0, self.pager.page_size)
        return self._recheck

    def take_page(self, call: ApiCall, body: Any) -> None:
        if call is self._recheck:
            self._take_recheck(call, body)
            return
        hits = self.pager.take(call, body)
        old = 0
        for hit in hits:
            name = _name(hit)
            if name is None:
                continue
            stamp = parse_stamp(hit.get("created"))
            if stamp is None or not stamp.exact or (self._last is not None and stamp.estimate > self._last):
                self._newest_first = False
            if stamp is not None:
                self._last = stamp.estimate
            if provably_older(stamp, self.since, self.allowance):
                old += 1
                continue
            self._add(hit, stamp)
        if hits and old == len(hits) and self._newest_first and self.pager.full_pages >= 2:
            self.pager.done = self.pager.stopped_early = True  # newest first: the rest is older still

    def _take_recheck(self, call: ApiCall, body: Any) -> None:
        """Page one read again: an entry first listed further down has moved up, so something above
        it left the list while it was read and an entry may have been skipped."""
        page = self.pager.first_page
        names = [_name(hit) for hit in field_of(call, body, "hits")]
        if page and not set(page) & set(names):
            self.pager.distrust("page one was wholly replaced while it was read")
        for index, (hit, name) in enumerate(zip(field_of(call, body, "hits"), names, strict=True)):
            if name is None:
                continue
            first = self.pager.positions.get(name)
            if first is None:  # created since: as good a candidate as any
                stamp = parse_stamp(hit.get("created"))
                if not provably_older(stamp, self.since, self.allowance):
                    self.pager.positions[name] = index
                    self._add(hit, stamp)
            elif first >= len(page) and first > index:
                self.pager.distrust(f"case {name}, first listed at {first}, is now at {index}")

    def _add(self, hit: dict[str, Any], stamp: Stamp | None) -> None:
        if hit["name"] not in self.not_matching:
            self._candidates.append(_Candidate(stamp, len(self._candidates), hit))

    def candidates(self) -> list[dict[str, Any]]:
        """Newest first; entries without a date keep list order, after the dated ones."""
        ordered = sorted(
            self._candidates,
            key=lambda c: (c.stamp is not None, c.stamp.estimate if c.stamp else 0.0, -c.order),
            reverse=True,
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
        found = {
            "name": str(hit["name"]),
            "status": source.get("status", hit.get("status")),
            "created": source.get("created", hit.get("created")),
        }
        if self.found is None:
            self.found = found
        return found

    def outcome(self) -> dict[str, Any] | None:
        """The newest case found with the key; None only when the list was read consistently."""
        if self.found is None:
            self.pager.check()
        return self.found
