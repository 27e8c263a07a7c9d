"""The cases view (Airflow 3.1+ UI; the JSON API on any Airflow 3): ``GET /emedgene/api/cases``,
``GET /emedgene/api/cases/{case_name}``, and the pages ``/emedgene/cases`` (the "Emedgene cases"
navigation entry) and ``/emedgene/cases/task`` (the tab on a task instance).

A plugin's app gets no Airflow authentication of its own, so every route here depends on Airflow's
``get_user`` (the UI's session cookie or a bearer token, as ``/api/v2`` takes them): none or a bad
one is ``401``. A user sees only cases of DAGs the auth manager lets them read. The view reads
Airflow's records only (:mod:`.case_records`), never the tenant.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from emedgene_provider.plugins import case_rows

#: A page of rows at most; the page asks for 50.
LIMIT = Query(50, ge=1, le=case_rows.MAX_LIMIT)


def _bearer(request: Any) -> Any:
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None


def readable_dags(user: Any) -> set[str]:
    """The DAG ids the auth manager lets ``user`` read."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def load_rows(dag_ids: set[str], stuck_after: float) -> list[case_rows.CaseRow]:
    """Every row the user may see, from the metadata DB (one session, a few statements)."""
    from airflow.utils.session import create_session

    from emedgene_provider.plugins.case_records import read_records

    if not dag_ids:
        return []
    with create_session() as session:
        origins, observations = read_records(session, dag_ids)
    return case_rows.build_rows(origins, observations, now=time.time(), stuck_after=stuck_after)


def _page(name: str) -> HTMLResponse:
    html = resources.files("emedgene_provider.plugins").joinpath("static").joinpath(name).read_text()
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def router(user_dependency: Any = None, rows_of: Any = None) -> APIRouter:
    """The view's routes; the look-ups are parameters so tests can run them without a metadata DB."""

    async def authenticated(request: Request) -> Any:
        if user_dependency is not None:
            return await user_dependency(request)
        from airflow.api_fastapi.core_api.security import get_user

        return await get_user(request, None, _bearer(request))

    signed_in = Depends(authenticated)
    api = APIRouter()

    async def visible(user: Any, stuck_after: float) -> list[case_rows.CaseRow]:
        if rows_of is not None:
            return list(await run_in_threadpool(rows_of, user, stuck_after))
        dags = await run_in_threadpool(readable_dags, user)
        return await run_in_threadpool(load_rows, dags, stuck_after)

    @api.get("/api/cases")
    async def list_cases(
        user: Any = signed_in,
        status: str | None = None,
        dag_id: str | None = None,
        tenant: str | None = None,
        in_flight: bool | None = None,
        stuck: bool | None = None,
        search: str | None = None,
        stuck_after: float = Query(case_rows.DEFAULT_STUCK_AFTER, gt=0),
        sort: str = "created_at",
        order: str = Query("desc", pattern="^(asc|desc)$"),
        offset: int = Query(0, ge=0),
        limit: int = LIMIT,
    ) -> dict[str, Any]:
        try:
            query = case_rows.Query(
                status=status,
                dag_id=dag_id,
                tenant=tenant,
                in_flight=in_flight,
                stuck=stuck,
                search=search,
                sort=sort,
                descending=order == "desc",
                offset=offset,
                limit=limit,
            )
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        rows = await visible(user, stuck_after)
        total, page = case_rows.select(rows, query)
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "now": time.time(),
            "tenants": sorted({row.tenant for row in rows if row.tenant}),
            "dag_ids": sorted({row.dag_id for row in rows}),
            "cases": [row.as_json() for row in page],
        }

    @api.get("/api/cases/{case_name}")
    async def one_case(case_name: str, user: Any = signed_in) -> dict[str, Any]:
        for row in await visible(user, case_rows.DEFAULT_STUCK_AFTER):
            if row.case_name == case_name:
                return row.as_json(with_timeline=True)
        raise HTTPException(status_code=404, detail=f"No case {case_name} in the DAGs you may read")

    @api.get("/api/task-cases")
    async def task_cases(
        dag_id: str, run_id: str, task_id: str, map_index: int = -1, user: Any = signed_in
    ) -> dict[str, Any]:
        """The cases one task instance created or waited on, with their timelines (the tab)."""
        rows = await visible(user, case_rows.DEFAULT_STUCK_AFTER)
        task = (dag_id, run_id, task_id, map_index)
        mine = [row.as_json(with_timeline=True) for row in rows if task in row.tasks]
        return {"now": time.time(), "cases": mine}

    @api.get("/cases", response_class=HTMLResponse)
    async def cases_page(user: Any = signed_in) -> HTMLResponse:
        return _page("cases.html")

    @api.get("/cases/task", response_class=HTMLResponse)
    async def task_page(user: Any = signed_in) -> HTMLResponse:
        return _page("case_timeline.html")

    return api
