"""The cases view's JSON API and pages (plugins/cases.py) through FastAPI's TestClient: no user,
no answer; a user sees the cases of the DAGs the auth manager lets them read, filtered, sorted
and paged as asked. Against a real api-server and metadata DB, and in a browser:
tests/e2e/test_cases_view.py."""

from __future__ import annotations

from typing import Any

import airflow
import pytest

pytestmark = pytest.mark.skipif(
    not airflow.__version__.startswith("3."), reason="the cases view is served by Airflow 3's api-server"
)

DAY = 86400.0


def _rows(user: Any, stuck_after: float) -> list[Any]:
    from emedgene_provider.client import status as st
    from emedgene_provider.plugins.case_rows import Observation, Origin, build_rows

    origins = [
        Origin("EMG1", 100.0, "batch", "r1", "create_case", 0, "FAM-1", "success", "lab.emedgene.com", None),
        Origin("EMG2", 200.0, "batch", "r1", "create_case", 1, "FAM-2", "deferred", "lab.emedgene.com", None),
        Origin(
            "EMG3", 300.0, "secret_dag", "r9", "create_case", -1, None, "success", "lab.emedgene.com", None
        ),
    ]
    seen = [
        Observation("EMG1", st.DELIVERED, 150.0, "webhook"),
        Observation("EMG2", st.IN_PROGRESS, 250.0, "poll"),
    ]
    rows = build_rows(origins, seen, now=3 * DAY, stuck_after=stuck_after)
    return [row for row in rows if row.dag_id in user["dags"]]


def _client(user: Any | None) -> Any:
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    from emedgene_provider.plugins.cases import router

    async def who(request: Any) -> Any:
        if user is None:
            raise HTTPException(status_code=401, detail="Not authenticated")
        return user

    app = FastAPI()
    app.include_router(router(user_dependency=who, rows_of=_rows))
    return TestClient(app)


def test_a_user_sees_only_cases_of_dags_they_may_read() -> None:
    answer = _client({"dags": {"batch"}}).get("/api/cases")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["total"], [c["case_name"] for c in body["cases"]]) == (2, ["EMG2", "EMG1"])
    assert body["dag_ids"] == ["batch"] and body["tenants"] == ["lab.emedgene.com"]
    assert "secret_dag" not in answer.text and "EMG3" not in answer.text
    assert _client({"dags": {"batch"}}).get("/api/cases/EMG3").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/cases",
        "/api/cases/EMG1",
        "/api/task-cases?dag_id=batch&run_id=r1&task_id=create_case",
        "/cases",
        "/cases/task",
    ],
)
def test_no_user_no_answer(path: str) -> None:
    answer = _client(None).get(path)
    assert answer.status_code == 401
    assert "EMG" not in answer.text


def test_filters_sort_and_paging_reach_the_rows() -> None:
    client = _client({"dags": {"batch", "secret_dag"}})
    body = client.get("/api/cases", params={"in_flight": "true", "stuck_after": DAY}).json()
    assert [(c["case_name"], c["stuck"]) for c in body["cases"]] == [("EMG3", True), ("EMG2", True)]
    body = client.get(
        "/api/cases", params={"sort": "case_name", "order": "asc", "limit": 1, "offset": 1}
    ).json()
    assert (body["total"], [c["case_name"] for c in body["cases"]]) == (3, ["EMG2"])
    assert client.get("/api/cases", params={"status": "delivered"}).json()["total"] == 1
    assert client.get("/api/cases", params={"search": "fam-2"}).json()["cases"][0]["label"] == "FAM-2"


@pytest.mark.parametrize(
    "params", [{"sort": "password"}, {"limit": 0}, {"limit": 10_000}, {"order": "sideways"}, {"offset": -1}]
)
def test_a_bad_query_is_a_400_or_422_naming_it(params: dict) -> None:
    answer = _client({"dags": {"batch"}}).get("/api/cases", params=params)
    assert answer.status_code in (400, 422)


def test_one_case_and_a_task_instances_cases_carry_the_timeline() -> None:
    client = _client({"dags": {"batch"}})
    one = client.get("/api/cases/EMG1").json()
    assert [step["status"] for step in one["timeline"]] == ["Delivered"] and one["turnaround"] == 50.0
    mine = client.get(
        "/api/task-cases",
        params={"dag_id": "batch", "run_id": "r1", "task_id": "create_case", "map_index": 1},
    )
    assert [c["case_name"] for c in mine.json()["cases"]] == ["EMG2"]


def test_the_pages_are_served_to_a_user_and_not_cached() -> None:
    client = _client({"dags": {"batch"}})
    for path, marker in (("/cases", "Emedgene cases"), ("/cases/task", "Emedgene case timeline")):
        answer = client.get(path)
        assert answer.status_code == 200 and marker in answer.text
        assert answer.headers["cache-control"] == "no-store"


def test_the_real_user_dependency_refuses_a_missing_or_forged_token() -> None:
    from airflow.api_fastapi.app import init_auth_manager
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from emedgene_provider.plugins.cases import router

    init_auth_manager()  # Airflow's configured one (the simple auth manager), as the api-server has
    app = FastAPI()
    app.include_router(router(rows_of=_rows))  # Airflow's own get_user
    client = TestClient(app)
    assert client.get("/api/cases").status_code == 401
    # Airflow answers a token it cannot verify with 403, as on /api/v2
    assert client.get("/api/cases", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 403
    client.cookies.set("_token", "forged")
    assert client.get("/api/cases").status_code == 403


def test_readable_dags_asks_the_auth_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.api_fastapi.app as api_app

    from emedgene_provider.plugins import cases

    asked = []

    class Manager:
        def get_authorized_dag_ids(self, *, user: Any, method: str) -> set[str]:
            asked.append((user, method))
            return {"batch"}

    monkeypatch.setattr(api_app, "get_auth_manager", lambda: Manager())
    assert cases.readable_dags("alice") == {"batch"}
    assert asked == [("alice", "GET")]
