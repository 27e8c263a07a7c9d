"""Paging and key look-ups that survive lying lists and skewed clocks (client/paging.py).

Sans-IO first: the pager and the look-up are fed pages from a fake tenant that lies about
``total``, ignores ``from``, reorders page one, or gains or loses a case at the top of its list
after every page; and ``created`` stamps in every style, from a clock behind ours. Then the same
through the public hook, against the simulator's quirks, over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow_fixtures import connect
from hypothesis import given, settings
from hypothesis import strategies as st
from locations import ROOT

from emedgene_provider.cases.extra_data import IDEMPOTENCY_FIELD, with_idempotency_key
from emedgene_provider.client import errors
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.paging import (
    TENANT_CLOCK_ALLOWANCE,
    CasePager,
    KeyLookup,
    Stamp,
    parse_stamp,
    provably_older,
)
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.testing.quirks import CREATED_STYLES, LIST_TOTALS

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
ALL_TOTALS = ("exact", "missing", "negative", "zero", "page", "null", "string")
KEY = "key-1"


def render(epoch: float, style: str, *, skew: float = 0.0, zone_hours: float = 0.0) -> Any:
    """``created`` as a tenant whose clock is ``skew`` seconds off ours writes it, in ``style``."""
    when = datetime.fromtimestamp(epoch + skew, timezone.utc)
    local = when.astimezone(timezone(timedelta(hours=zone_hours))).replace(tzinfo=None)
    return {
        "iso": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "offset": when.astimezone(timezone(timedelta(hours=zone_hours))).isoformat(),
        "fraction": when.isoformat(timespec="microseconds"),
        "naive_local": local.isoformat(timespec="seconds"),
        "minutes": when.strftime("%Y-%m-%dT%H:%MZ"),
        "date": local.date().isoformat(),
        "epoch_s": int(epoch + skew),
        "epoch_ms": int((epoch + skew) * 1000),
        "garbage": "sometime last week",
        "missing": None,
    }[style]


STYLES = (
    "iso",
    "offset",
    "fraction",
    "naive_local",
    "minutes",
    "date",
    "epoch_s",
    "epoch_ms",
    "garbage",
    "missing",
)


class Tenant:
    """A case list that lies as told. ``cases`` newest first; ``order`` is how the list shows them."""

    def __init__(
        self,
        cases: list[dict[str, Any]],
        *,
        total: str = "exact",
        order: str = "newest_first",
        churn: str | None = None,
        ignore_from: bool = False,
        shuffle_first_page: bool = False,
        cap: int | None = None,
        seed: int = 0,
    ) -> None:
        self.cases = list(cases)
        self.total, self.order, self.churn, self.cap = total, order, churn, cap
        self.ignore_from, self.shuffle = ignore_from, shuffle_first_page
        self.random = random.Random(seed)
        self.deleted: set[str] = set()
        self.inserted = 0
        self.requests = 0

    def listed(self) -> list[dict[str, Any]]:
        return self.cases if self.order == "newest_first" else self.cases[::-1]

    def answer(self, call: ApiCall) -> dict[str, Any]:
        self.requests += 1
        params = dict(call.params)
        offset, size = int(params["from"]), int(params["size"])
        offset = 0 if self.ignore_from else offset
        size = min(size, self.cap or size)
        listed = self.listed()
        page = [dict(c) for c in listed[offset : offset + size]]
        if self.shuffle and offset == 0:
            self.random.shuffle(page)
        body: dict[str, Any] = {"hits": page}
        body.update(
            {
                "exact": {"total": len(listed)},
                "missing": {},
                "negative": {"total": -1},
                "zero": {"total": 0},
                "page": {"total": len(page)},
                "null": {"total": None},
                "string": {"total": str(len(listed))},
            }[self.total]
        )
        if self.churn == "insert":
            self.inserted += 1
            new = {"name": f"NEW{self.inserted:04d}", "created": render(NOW + self.inserted, "iso")}
            self.cases.insert(0, {**new, "extra_data": {}})
        elif self.churn == "delete" and self.cases:
            self.deleted.add(self.cases.pop(0)["name"])
        return body


def cases(
    n: int, *, key_at: int | None = None, style: str = "iso", step: float = 60.0
) -> list[dict[str, Any]]:
    """``n`` cases newest first, a minute apart, the newest made at NOW; the one at ``key_at``
    carries the key in its list entry."""
    made = []
    for i in range(n):
        case: dict[str, Any] = {"name": f"EMG{i:06d}", "created": render(NOW - i * step, style)}
        case["extra_data"] = {IDEMPOTENCY_FIELD: KEY if i == key_at else f"other-{i}"}
        made.append(case)
    return made


def listing(tenant: Tenant, page_size: int = 3, **options: Any) -> list[str]:
    pager = CasePager(page_size, **options)
    names: list[str] = []
    while (call := pager.next_call()) is not None:
        names += [hit["name"] for hit in pager.take(call, tenant.answer(call))]
    pager.check()
    return names


def look_up(tenant: Tenant, *, since: float | None = None, max_pages: int | None = None) -> KeyLookup:
    """The drivers' loop, with list entries that carry ``extra_data`` (no detail reads)."""
    lookup = KeyLookup(KEY, since=since, max_pages=max_pages)
    while (call := lookup.next_page()) is not None:
        lookup.take_page(call, tenant.answer(call))
    for hit in lookup.candidates():
        assert lookup.detail_call(hit) is None
        if lookup.match(hit) is not None:
            break
    return lookup


# -- timestamps ------------------------------------------------------------------------------------


class TestStamps:
    @pytest.mark.parametrize(
        ("value", "estimate", "latest", "exact"),
        [
            ("2026-03-01T12:00:00Z", NOW, NOW + 60, True),
            ("2026-03-01T14:00:00+02:00", NOW, NOW + 60, True),
            ("2026-03-01T12:00:00.250000+00:00", NOW + 0.25, NOW + 60.25, True),
            ("2026-03-01T12:00:00", NOW, NOW + 14 * 3600 + 60, False),  # no zone: up to UTC-12 away
            ("2026-03-01", NOW - 12 * 3600, NOW + 12 * 3600 + 14 * 3600, False),  # the day, any zone
            (int(NOW), NOW, NOW + 1, False),  # whole seconds
            (int(NOW * 1000), NOW, NOW * 1000 + 1, False),  # milliseconds: as seconds, far ahead
        ],
    )
    def test_each_style_reads_as_its_latest_possible_instant(self, value, estimate, latest, exact) -> None:
        assert parse_stamp(value) == Stamp(estimate, latest, exact)

    @pytest.mark.parametrize(
        "value", [None, "", "  ", "sometime last week", "12/03/2026", True, -5, float("nan"), [], {}]
    )
    def test_what_cannot_be_read_is_unknown_and_never_older(self, value) -> None:
        assert parse_stamp(value) is None
        assert provably_older(parse_stamp(value), NOW) is False

    @settings(max_examples=300, deadline=None)
    @given(
        made=st.floats(NOW - 30 * 24 * 3600, NOW + 30 * 24 * 3600),
        late=st.floats(0, 3 * 24 * 3600),
        skew=st.floats(-TENANT_CLOCK_ALLOWANCE, TENANT_CLOCK_ALLOWANCE),
        zone=st.sampled_from([-12, -5, 0, 5.5, 14]),
        style=st.sampled_from(STYLES),
    )
    def test_a_case_made_after_the_first_attempt_is_never_provably_older(
        self, made, late, skew, zone, style
    ) -> None:
        """Whatever the style, the zone, and a tenant clock up to the allowance behind or ahead."""
        created = render(made + late, style, skew=skew, zone_hours=zone)
        assert provably_older(parse_stamp(created), since=made) is False

    @pytest.mark.parametrize("style", ["iso", "offset", "naive_local", "date", "epoch_s"])
    def test_a_case_days_older_is_provably_older(self, style) -> None:
        """The filter still prunes: a week-old case is not read in full."""
        assert provably_older(parse_stamp(render(NOW - 7 * 24 * 3600, style)), since=NOW)

    @pytest.mark.parametrize("style", STYLES)
    def test_the_look_up_finds_the_case_of_a_tenant_an_hour_behind_in_any_style(self, style) -> None:
        """The case made after the first attempt, stamped by a clock an hour slow, is still a candidate."""
        listed = cases(5, style=style)
        listed[0] = {**listed[0], "created": render(NOW + 5, style, skew=-3600, zone_hours=-5)}
        listed[0]["extra_data"] = {IDEMPOTENCY_FIELD: KEY}
        lookup = look_up(Tenant(listed), since=NOW)
        assert lookup.outcome() == {"name": "EMG000000", "status": None, "created": listed[0]["created"]}
        assert lookup.consistent


# -- lists that lie --------------------------------------------------------------------------------


class TestListsThatLie:
    @pytest.mark.parametrize("total", ALL_TOTALS)
    @pytest.mark.parametrize("cap", [None, 2])
    @pytest.mark.parametrize("n", [0, 1, 3, 7])
    def test_every_total_reads_every_case_once_and_ends(self, total, cap, n) -> None:
        tenant = Tenant(cases(n), total=total, cap=cap)
        assert listing(tenant) == [f"EMG{i:06d}" for i in range(n)]
        assert tenant.requests <= n + 2  # one page at least per case plus the last, never more

    def test_a_total_equal_to_the_page_length_is_not_the_end(self) -> None:
        tenant = Tenant(cases(7), total="page")
        assert len(listing(tenant, page_size=3)) == 7

    @pytest.mark.parametrize("shuffle", [False, True])
    @pytest.mark.parametrize("total", ["exact", "missing"])
    def test_a_server_that_ignores_from_is_an_inconsistent_list(self, shuffle, total) -> None:
        tenant = Tenant(cases(5), ignore_from=True, shuffle_first_page=shuffle, total=total, seed=3)
        with pytest.raises(errors.EmedgeneListInconsistentError, match="ignore 'from'") as info:
            listing(tenant, page_size=3)
        assert isinstance(info.value, errors.EmedgeneUnavailableError)  # "look again", never absence
        assert isinstance(info.value, errors.EmedgeneUnexpectedResponseError)
        assert tenant.requests == 2

    def test_a_reordered_first_page_loses_nothing(self) -> None:
        tenant = Tenant(cases(8), shuffle_first_page=True, total="missing", seed=1)
        assert sorted(listing(tenant, page_size=3)) == [f"EMG{i:06d}" for i in range(8)]

    @pytest.mark.parametrize("total", ALL_TOTALS)
    def test_cases_inserted_at_the_top_while_listing_are_never_listed_twice(self, total) -> None:
        tenant = Tenant(cases(7), churn="insert", total=total)
        names = listing(tenant, page_size=3)
        assert len(names) == len(set(names))
        assert set(names) >= {f"EMG{i:06d}" for i in range(7)}

    def test_a_case_deleted_at_the_top_while_listing_is_an_error_not_a_short_list(self) -> None:
        tenant = Tenant(cases(7), churn="delete")
        with pytest.raises(errors.EmedgeneListInconsistentError) as info:
            listing(tenant, page_size=3)
        assert str(info.value) == (
            "Emedgene iter_cases: the case list moved while it was read (its total fell from 7 to 6 "
            "while it was read); cases may be missing"
        )

    def test_an_endless_list_stops_at_the_page_limit(self) -> None:
        class Endless(Tenant):
            def answer(self, call: ApiCall) -> dict[str, Any]:
                offset = int(dict(call.params)["from"])
                return {"hits": [{"name": f"E{offset + i}"} for i in range(3)], "total": offset + 6}

        with pytest.raises(errors.EmedgeneListInconsistentError, match="did not end after 4 page"):
            listing(Endless([]), page_size=3, max_pages=4)


class TestLookUpOnListsThatLie:
    @pytest.mark.parametrize("total", ALL_TOTALS)
    @pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
    def test_absent_only_from_a_list_read_consistently(self, total, order) -> None:
        lookup = look_up(Tenant(cases(7), total=total, order=order), since=NOW - 3600)
        assert lookup.consistent and lookup.outcome() is None

    @pytest.mark.parametrize("total", ["exact", "missing", "page"])
    def test_a_deletion_at_the_top_makes_absence_unclear(self, total) -> None:
        tenant = Tenant(cases(250), churn="delete", total=total)
        lookup = look_up(tenant)
        assert not lookup.consistent
        with pytest.raises(errors.EmedgeneListInconsistentError, match="moved while it was read"):
            lookup.outcome()

    def test_a_case_found_on_a_moving_list_is_still_found(self) -> None:
        lookup = look_up(Tenant(cases(250, key_at=120), churn="delete", total="missing"))
        assert not lookup.consistent
        assert lookup.outcome() is not None and lookup.outcome()["name"] == "EMG000120"  # type: ignore[index]

    @pytest.mark.parametrize("total", ALL_TOTALS)
    def test_inserts_at_the_top_leave_the_look_up_consistent(self, total) -> None:
        tenant = Tenant(cases(250, key_at=249), churn="insert", total=total)
        lookup = look_up(tenant)
        assert lookup.outcome() is not None and lookup.consistent
        names = [hit["name"] for hit in lookup.candidates()]
        assert len(names) == len(set(names))

    def test_newest_first_stops_early_only_on_exact_stamps(self) -> None:
        day = 24 * 3600.0
        since = NOW - 3 * day  # pages of 100 a minute apart; page 3 onwards is weeks older
        exact = Tenant(cases(1000, step=600.0))
        lookup = look_up(exact, since=since)
        assert exact.requests < 10 and lookup.consistent and lookup.outcome() is None
        for style in ("naive_local", "date", "epoch_ms", "garbage"):
            coarse = Tenant(cases(1000, step=600.0, style=style))
            assert look_up(coarse, since=since).outcome() is None
            assert coarse.requests == 10, style  # every page and the empty one: nothing proves the order

    def test_a_shuffled_first_page_never_stops_the_look_up_early(self) -> None:
        """Pages of 100 cases an hour apart: from page two on they are days older than ``since``."""
        since = NOW - 2 * 24 * 3600
        ordered = Tenant(cases(300, step=3600.0))
        assert look_up(ordered, since=since).outcome() is None
        shuffled = Tenant(cases(300, step=3600.0), shuffle_first_page=True, seed=5)
        assert look_up(shuffled, since=since).outcome() is None
        assert (ordered.requests, shuffled.requests) == (2, 3)

    @settings(max_examples=200, deadline=None)
    @given(
        n=st.integers(0, 40),
        key_at=st.one_of(st.none(), st.integers(0, 39)),
        total=st.sampled_from(ALL_TOTALS),
        order=st.sampled_from(["newest_first", "oldest_first"]),
        churn=st.sampled_from([None, "insert", "delete"]),
        shuffle=st.booleans(),
        ignore_from=st.booleans(),
        cap=st.sampled_from([None, 3, 7]),
        page_size=st.integers(1, 9),
        seed=st.integers(0, 99),
    )
    def test_never_absent_while_the_case_was_listed_throughout(
        self, n, key_at, total, order, churn, shuffle, ignore_from, cap, page_size, seed
    ) -> None:
        """Whatever the list does: the look-up ends; it never reads a case twice; and it ends with
        "absent" only when the key's case was not listed for the whole look-up."""
        key_at = key_at if key_at is not None and key_at < n else None
        tenant = Tenant(
            cases(n, key_at=key_at),
            total=total,
            order=order,
            churn=churn,
            shuffle_first_page=shuffle,
            ignore_from=ignore_from,
            cap=cap,
            seed=seed,
        )
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("emedgene_provider.client.paging.LOOKUP_PAGE_SIZE", page_size)
                lookup = look_up(tenant, max_pages=200)
            names = [hit["name"] for hit in lookup.candidates()]
            assert len(names) == len(set(names))
            found = lookup.outcome()
        except errors.EmedgeneListInconsistentError:
            return  # unclear: the caller looks again
        listed_throughout = key_at is not None and f"EMG{key_at:06d}" not in tenant.deleted
        if listed_throughout:
            assert found is not None and found["name"] == f"EMG{key_at:06d}"


# -- through the public hook, against the simulator's quirks ---------------------------------------

CASE = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())


@pytest.fixture
def tenant(emedgene_simulator_factory, monkeypatch):
    """A simulator with ``quirks``, pages of at most four cases, and ``n`` cases (the newest
    stamped with ``key`` when given), with ``emedgene_default`` pointing at it."""

    def make(n: int, *, key: str | None = None, **quirks: Any) -> tuple[EmedgeneSimulator, list[str]]:
        sim = emedgene_simulator_factory(page_size_cap=4)
        connect(monkeypatch, sim)
        hook = EmedgeneHook()
        names = [hook.client.create_case(CASE) for _ in range(n - (key is not None))]
        if key is not None:
            names.append(hook.client.create_case(with_idempotency_key(CASE, key)))
        sim.set_quirks(**quirks)
        return sim, names

    return make


@pytest.mark.parametrize("total", LIST_TOTALS)
@pytest.mark.parametrize("order", ["oldest_first", "newest_first"])
def test_iter_cases_lists_every_case_once_whatever_the_total(tenant, total, order) -> None:
    _, names = tenant(10, list_total=total, list_order=order, shuffle_first_page=True)
    listed = [case["name"] for case in EmedgeneHook().client.iter_cases()]
    assert sorted(listed) == sorted(names)


@pytest.mark.parametrize("total", ["exact", "missing"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_iter_cases_refuses_a_tenant_that_ignores_from(tenant, total, shuffle) -> None:
    sim, _ = tenant(6, ignore_from=True, shuffle_first_page=shuffle, list_total=total)
    with pytest.raises(errors.EmedgeneListInconsistentError, match="the server seems to ignore 'from'"):
        list(EmedgeneHook().client.iter_cases())
    assert sim.counters()["requests"]["GET /api/test"] == 2


def test_iter_cases_under_inserts_lists_no_case_twice(tenant) -> None:
    _, names = tenant(10, list_order="newest_first", list_churn="insert")
    listed = [case["name"] for case in EmedgeneHook().client.iter_cases()]
    assert len(listed) == len(set(listed)) and set(listed) >= set(names)


def test_iter_cases_under_deletions_is_an_error_not_a_short_list(tenant) -> None:
    tenant(10, list_order="newest_first", list_churn="delete")
    with pytest.raises(errors.EmedgeneListInconsistentError, match="moved while it was read"):
        list(EmedgeneHook().client.iter_cases())


@pytest.mark.parametrize("style", CREATED_STYLES)
def test_the_look_up_finds_the_case_of_a_tenant_an_hour_behind(tenant, style) -> None:
    """A first attempt just before the create; the tenant's clock an hour slow, in every style."""
    since = time.time() - 1
    _, names = tenant(9, key="key-skew", created_style=style, clock_skew=-3600.0, list_order="newest_first")
    found = list(EmedgeneHook().client.cases_with_idempotency_key("key-skew", since=since))
    assert [case["name"] for case in found] == [names[-1]]


@pytest.mark.parametrize("total", LIST_TOTALS)
def test_the_look_up_is_never_absent_on_a_list_losing_its_top(tenant, total) -> None:
    tenant(10, list_order="newest_first", list_churn="delete", list_total=total)
    with pytest.raises(errors.EmedgeneListInconsistentError, match="look-up of idempotency key 'key-none'"):
        list(EmedgeneHook().client.cases_with_idempotency_key("key-none"))


@pytest.mark.parametrize("total", ["exact", "missing"])
def test_the_look_up_finds_its_case_on_a_list_gaining_cases(tenant, total) -> None:
    """Absence is proved by a total that only grew; without one, a page one wholly replaced by
    new cases (pages of four, a case added after each) cannot be told from deletions."""
    _, names = tenant(10, key="key-ins", list_order="newest_first", list_churn="insert", list_total=total)
    hook = EmedgeneHook()
    assert [case["name"] for case in hook.client.cases_with_idempotency_key("key-ins")] == [names[-1]]
    if total == "exact":
        assert list(hook.client.cases_with_idempotency_key("key-none")) == []
    else:
        with pytest.raises(errors.EmedgeneListInconsistentError, match="page one was wholly replaced"):
            list(hook.client.cases_with_idempotency_key("key-none"))


def test_the_async_look_up_raises_as_the_sync_one_does(tenant) -> None:
    tenant(10, list_order="newest_first", list_churn="delete", list_total="missing")

    async def look() -> Any:
        async with EmedgeneHook().async_client() as client:
            return await client.newest_case_with_idempotency_key("key-none")

    with pytest.raises(errors.EmedgeneListInconsistentError, match="moved while it was read"):
        asyncio.run(look())
