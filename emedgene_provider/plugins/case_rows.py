"""The cases view's rows, from what Airflow recorded: where each case came from (the task that
created it) and every status anything saw (waits' outcomes, webhook and watcher case events).

Airflow-free and pure, so the page, the JSON API and a lab's own dashboards get one answer and the
tests need no DB: :mod:`emedgene_provider.plugins.case_records` reads the records.

Times are epoch seconds. A case's stage is its latest status; it *entered* that stage at the first
of the latest run of observations of that status; its turnaround runs from its creation to the
first observation of a delivered status (or to now while it is not delivered).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from emedgene_provider.client import status as st

#: Time in stage after which an in-flight case is "stuck", by default (two days).
DEFAULT_STUCK_AFTER = 2 * 24 * 3600.0
MAX_LIMIT = 500
SORTABLE = (
    "case_name",
    "tenant",
    "status",
    "last_seen",
    "stage_entered",
    "time_in_stage",
    "created_at",
    "turnaround",
    "dag_id",
    "task_state",
)


@dataclass(frozen=True)
class Origin:
    """The task that created a case (its ``emedgene_case_name`` XCom)."""

    case_name: str
    created_at: float
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    label: str | None = None
    task_state: str | None = None
    tenant: str | None = None
    case_url: str | None = None


@dataclass(frozen=True)
class Observation:
    """A status seen at a time, and by what (``wait``, ``webhook``, ``poll``)."""

    case_name: str
    status: str
    at: float
    source: str
    tenant: str | None = None
    #: The task instance that saw it, for a wait: (dag_id, run_id, task_id, map_index).
    task: tuple[str, str, str, int] | None = None


@dataclass
class CaseRow:
    case_name: str
    tenant: str | None
    status: str | None
    last_seen: float | None
    stage_entered: float | None
    time_in_stage: float | None
    created_at: float
    turnaround: float
    delivered: bool
    delivered_at: float | None
    in_flight: bool
    stuck: bool
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    label: str | None
    task_state: str | None
    case_url: str | None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    #: The task instances that created or waited on the case (not in the JSON).
    tasks: set[tuple[str, str, str, int]] = field(default_factory=set)

    def as_json(self, with_timeline: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data.pop("tasks")
        if not with_timeline:
            data.pop("timeline")
        return data


def _stage(seen: Sequence[Observation]) -> tuple[str | None, float | None, float | None]:
    """(status, when its stage began, when last seen) from observations sorted by time."""
    if not seen:
        return None, None, None
    status = seen[-1].status
    entered = seen[-1].at
    for obs in reversed(seen):
        if st.normalise(obs.status) != st.normalise(status):
            break
        entered = obs.at
    return status, entered, seen[-1].at


def build_rows(
    origins: Iterable[Origin],
    observations: Iterable[Observation],
    *,
    now: float,
    custom: Iterable[str] = (),
    stuck_after: float = DEFAULT_STUCK_AFTER,
) -> list[CaseRow]:
    """One row per created case (the earliest origin of a name, per tenant when known)."""
    custom = tuple(custom)
    first: dict[str, Origin] = {}
    for origin in sorted(origins, key=lambda o: o.created_at):
        first.setdefault(origin.case_name, origin)
    by_case: dict[str, list[Observation]] = {}
    for obs in observations:
        if obs.case_name in first:
            by_case.setdefault(obs.case_name, []).append(obs)
    rows = []
    for name, origin in first.items():
        seen = sorted(by_case.get(name, []), key=lambda o: o.at)
        status, entered, last = _stage(seen)
        delivered_at = next((o.at for o in seen if st.is_delivered(o.status, custom)), None)
        failed = status is not None and st.is_failure(status)
        in_flight = delivered_at is None and not failed
        in_stage = None if entered is None else max(0.0, now - entered)
        rows.append(
            CaseRow(
                case_name=name,
                tenant=origin.tenant or next((o.tenant for o in seen if o.tenant), None),
                status=status,
                last_seen=last,
                stage_entered=entered,
                time_in_stage=in_stage,
                created_at=origin.created_at,
                turnaround=max(0.0, (delivered_at if delivered_at is not None else now) - origin.created_at),
                delivered=delivered_at is not None,
                delivered_at=delivered_at,
                in_flight=in_flight,
                stuck=in_flight
                and (now - (entered if entered is not None else origin.created_at)) > stuck_after,
                dag_id=origin.dag_id,
                run_id=origin.run_id,
                task_id=origin.task_id,
                map_index=origin.map_index,
                label=origin.label,
                task_state=origin.task_state,
                case_url=origin.case_url,
                timeline=[{"status": o.status, "at": o.at, "source": o.source} for o in seen],
                tasks={(origin.dag_id, origin.run_id, origin.task_id, origin.map_index)}
                | {o.task for o in seen if o.task is not None},
            )
        )
    return rows


@dataclass(frozen=True)
class Query:
    """The filters, sort and page of ``GET /emedgene/api/cases`` (and of the page)."""

    status: str | None = None
    dag_id: str | None = None
    tenant: str | None = None
    in_flight: bool | None = None
    stuck: bool | None = None
    search: str | None = None
    sort: str = "created_at"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTABLE:
            raise ValueError(f"sort must be one of {', '.join(SORTABLE)}, not {self.sort!r}")
        if self.offset < 0 or not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"offset must be 0 or more and limit from 1 to {MAX_LIMIT}")


def select(rows: Iterable[CaseRow], query: Query) -> tuple[int, list[CaseRow]]:
    """(how many rows match, the page of them) for ``query``."""
    wanted = st.normalise(query.status) if query.status else None
    needle = query.search.strip().lower() if query.search else None
    kept = [
        row
        for row in rows
        if (wanted is None or (row.status is not None and st.normalise(row.status) == wanted))
        and (query.dag_id is None or row.dag_id == query.dag_id)
        and (query.tenant is None or row.tenant == query.tenant)
        and (query.in_flight is None or row.in_flight is query.in_flight)
        and (query.stuck is None or row.stuck is query.stuck)
        and (needle is None or needle in row.case_name.lower() or needle in (row.label or "").lower())
    ]
    present = [row for row in kept if getattr(row, query.sort) is not None]
    absent = [row for row in kept if getattr(row, query.sort) is None]
    present.sort(key=lambda row: (getattr(row, query.sort), row.case_name), reverse=query.descending)
    ordered = present + absent  # rows without the value last, either way
    return len(ordered), ordered[query.offset : query.offset + query.limit]
