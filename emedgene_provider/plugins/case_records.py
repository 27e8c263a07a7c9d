"""What the cases view reads from Airflow's metadata DB (api-server side, Airflow 3): never the tenant.

- **Origins**: the ``emedgene_case_name`` XCom each create pushes as soon as it knows the name
  (before any wait, so a failed wait still shows), with its task instance (state, mapped index
  and label) and the ``emedgene_case_url`` XCom beside it (the tenant's host, the case's link).
- **Observations**: the ``emedgene_case_status`` XCom a wait pushes when it ends (``wait``), and
  the case events on ``emedgene://`` assets (``webhook``, ``poll``).

Only DAGs in ``dag_ids`` are read (the ones the user may see); each query is one statement.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from emedgene_provider.links.emedgene import XCOM_CASE_NAME, XCOM_CASE_STATUS, XCOM_CASE_URL
from emedgene_provider.plugins.case_rows import Observation, Origin


def _value(raw: Any) -> Any:
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode()
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _epoch(moment: Any) -> float:
    return float(moment.timestamp()) if moment is not None else 0.0


def read_records(session: Any, dag_ids: Collection[str] | None) -> tuple[list[Origin], list[Observation]]:
    """Origins and observations of the DAGs ``dag_ids`` (None: every DAG)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    keys = (XCOM_CASE_NAME, XCOM_CASE_URL, XCOM_CASE_STATUS)
    columns: list[Any] = [
        XComModel.dag_id,
        XComModel.run_id,
        XComModel.task_id,
        XComModel.map_index,
        XComModel.key,
        XComModel.value,
        XComModel.timestamp,
    ]
    xcoms = select(*columns).where(XComModel.key.in_(keys))
    if dag_ids is not None:
        xcoms = xcoms.where(XComModel.dag_id.in_(list(dag_ids)))
    by_task: dict[tuple[str, str, str, int], dict[str, tuple[Any, float]]] = {}
    for dag_id, run_id, task_id, map_index, key, value, stamp in session.execute(xcoms):
        by_task.setdefault((dag_id, run_id, task_id, map_index), {})[key] = (_value(value), _epoch(stamp))

    named = [task for task, found in by_task.items() if XCOM_CASE_NAME in found]
    tis: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
    if named:
        ti_columns: list[Any] = [
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            TaskInstance.rendered_map_index,
        ]
        wanted = select(*ti_columns).where(
            TaskInstance.dag_id.in_({task[0] for task in named}),
            TaskInstance.task_id.in_({task[2] for task in named}),
        )
        for dag_id, run_id, task_id, map_index, state, label in session.execute(wanted):
            tis[(dag_id, run_id, task_id, map_index)] = (state, label)

    origins, observations = [], []
    for task, found in by_task.items():
        url = found.get(XCOM_CASE_URL, (None, 0.0))[0]
        tenant = urlsplit(url).netloc.lower() if isinstance(url, str) and "://" in url else None
        if XCOM_CASE_NAME in found and isinstance(found[XCOM_CASE_NAME][0], str):
            name, stamp = found[XCOM_CASE_NAME]
            state, label = tis.get(task, (None, None))
            origins.append(
                Origin(
                    case_name=name,
                    created_at=stamp,
                    dag_id=task[0],
                    run_id=task[1],
                    task_id=task[2],
                    map_index=int(task[3]),
                    label=label,
                    task_state=None if state is None else str(state),
                    tenant=tenant,
                    case_url=url if isinstance(url, str) else None,
                )
            )
        seen = found.get(XCOM_CASE_STATUS)
        if seen is not None and isinstance(seen[0], dict):
            name, status = seen[0].get("case_name"), seen[0].get("status")
            if isinstance(name, str) and isinstance(status, str):
                observations.append(Observation(name, status, seen[1], "wait", tenant, task))

    events = select(AssetModel.uri, AssetEvent.extra, AssetEvent.timestamp).join(
        AssetModel, and_(AssetModel.id == AssetEvent.asset_id, AssetModel.uri.startswith("emedgene://"))
    )
    for uri, extra, stamp in session.execute(events):
        fields = _value(extra) or {}
        if isinstance(fields, dict) and isinstance(fields.get("payload"), dict):
            fields = fields["payload"]
        name, status = fields.get("case_name"), fields.get("status")
        if isinstance(name, str) and isinstance(status, str):
            source = str(fields.get("source") or "event")
            observations.append(Observation(name, status, _epoch(stamp), source, urlsplit(uri).netloc))
    return origins, observations
