"""The cases view's rows (plugins/case_rows.py): stage, time in stage, turnaround, stuck, and the
filters, sort and paging the page and the JSON API share."""

from __future__ import annotations

import pytest

from emedgene_provider.client import status as st
from emedgene_provider.plugins.case_rows import Observation, Origin, Query, build_rows, select

DAY = 86400.0


def _origin(name: str, at: float, dag: str = "batch", tenant: str | None = "lab.emedgene.com") -> Origin:
    return Origin(name, at, dag, "run1", "create_case", 0, f"FAM-{name[-1]}", "success", tenant, None)


def test_stage_entered_is_the_first_of_the_latest_run_of_one_status() -> None:
    seen = [
        Observation("EMG1", st.UPLOADING, 110.0, "webhook"),
        Observation("EMG1", st.IN_PROGRESS, 200.0, "webhook"),
        Observation("EMG1", "IN_PROGRESS", 300.0, "poll"),  # the same stage, spelled otherwise
    ]
    (row,) = build_rows([_origin("EMG1", 100.0)], seen, now=1000.0)
    assert (row.status, row.stage_entered, row.last_seen, row.time_in_stage) == (
        "IN_PROGRESS",
        200.0,
        300.0,
        800.0,
    )
    assert (row.turnaround, row.delivered, row.in_flight) == (900.0, False, True)
    assert [step["source"] for step in row.timeline] == ["webhook", "webhook", "poll"]


def test_turnaround_stops_at_the_first_delivered_status() -> None:
    seen = [
        Observation("EMG1", st.DELIVERED, 500.0, "wait"),
        Observation("EMG1", st.FINALIZED, 900.0, "webhook"),
        Observation("EMG1", st.IN_PROGRESS, 50.0, "webhook"),  # out of order: sorted by time
    ]
    (row,) = build_rows([_origin("EMG1", 100.0)], seen, now=5000.0)
    assert (row.status, row.delivered_at, row.turnaround, row.in_flight) == (
        st.FINALIZED,
        500.0,
        400.0,
        False,
    )


def test_a_failed_case_is_not_in_flight_and_never_stuck() -> None:
    seen = [Observation("EMG1", st.ISSUE_REPORTED, 200.0, "webhook")]
    (row,) = build_rows([_origin("EMG1", 100.0)], seen, now=10 * DAY)
    assert (row.in_flight, row.stuck, row.delivered) == (False, False, False)


def test_stuck_is_time_in_stage_over_the_threshold_even_before_any_status() -> None:
    origins = [_origin("EMG1", 0.0), _origin("EMG2", 0.0)]
    seen = [Observation("EMG1", st.IN_PROGRESS, 2.5 * DAY, "poll")]
    rows = {row.case_name: row for row in build_rows(origins, seen, now=3 * DAY, stuck_after=DAY)}
    assert rows["EMG1"].stuck is False  # half a day in stage
    assert rows["EMG2"].stuck is True and rows["EMG2"].status is None  # never seen, created 3 days ago


def test_one_row_per_case_from_its_first_creator_and_no_row_for_a_stranger() -> None:
    origins = [_origin("EMG1", 200.0, dag="retry"), _origin("EMG1", 100.0, dag="first")]
    seen = [Observation("EMG9", st.DELIVERED, 300.0, "webhook", "lab.emedgene.com")]
    (row,) = build_rows(origins, seen, now=400.0)
    assert (row.case_name, row.dag_id, row.created_at) == ("EMG1", "first", 100.0)


@pytest.fixture
def rows() -> list:
    origins = [
        _origin("EMG1", 100.0, "batch", "a.emedgene.com"),
        _origin("EMG2", 200.0, "batch", "b.emedgene.com"),
        _origin("EMG3", 300.0, "pipeline", "a.emedgene.com"),
        _origin("EMG4", 400.0, "pipeline", None),
    ]
    seen = [
        Observation("EMG1", st.DELIVERED, 150.0, "webhook"),
        Observation("EMG2", st.IN_PROGRESS, 250.0, "poll"),
        Observation("EMG3", st.IN_PROGRESS, 350.0, "wait"),
    ]
    return build_rows(origins, seen, now=3 * DAY, stuck_after=DAY)


def test_filters_combine(rows: list) -> None:
    def names(**kw: object) -> list[str]:
        return sorted(r.case_name for r in select(rows, Query(**kw))[1])  # type: ignore[arg-type]

    assert names(status="in-progress") == ["EMG2", "EMG3"]
    assert names(dag_id="pipeline") == ["EMG3", "EMG4"]
    assert names(tenant="a.emedgene.com") == ["EMG1", "EMG3"]
    assert names(in_flight=False) == ["EMG1"]
    assert names(stuck=True, dag_id="batch") == ["EMG2"]
    assert names(search="fam-4") == ["EMG4"]
    assert names(status="Delivered", dag_id="pipeline") == []


def test_sort_both_ways_with_missing_values_last_and_paging(rows: list) -> None:
    total, page = select(rows, Query(sort="status", descending=False))
    assert total == 4 and [r.case_name for r in page] == ["EMG1", "EMG2", "EMG3", "EMG4"]
    _, page = select(rows, Query(sort="last_seen", descending=True))
    assert [r.case_name for r in page] == ["EMG3", "EMG2", "EMG1", "EMG4"]
    total, page = select(rows, Query(sort="created_at", offset=1, limit=2))
    assert total == 4 and [r.case_name for r in page] == ["EMG3", "EMG2"]


@pytest.mark.parametrize("bad", [{"sort": "password"}, {"limit": 0}, {"limit": 501}, {"offset": -1}])
def test_a_bad_query_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Query(**bad)


def test_a_row_knows_the_task_instances_that_created_and_waited_on_it() -> None:
    wait = ("batch", "run1", "wait_for_delivery", 0)
    seen = [Observation("EMG1", st.DELIVERED, 200.0, "wait", None, wait)]
    (row,) = build_rows([_origin("EMG1", 100.0)], seen, now=300.0)
    assert row.tasks == {("batch", "run1", "create_case", 0), wait}
    assert "tasks" not in row.as_json(with_timeline=True)  # sets are not JSON; the API filters on them
