"""The cases view at 5,000 cases (Airflow 3): the JSON API's answer time and the page's load time,
each against a baseline measured in the same run on the same records.

A fresh AIRFLOW_HOME (SQLite, ``airflow db migrate``) is seeded with what 5,000 creates and their
waits leave: one run of a mapped create task, 5,000 task instances, and per case the
``emedgene_case_name``, ``emedgene_case_url`` and ``emedgene_case_status`` XComs. Then, in one
child process on that DB:

- **records read** (``read_records``) against reading the same XCom rows with one plain ``SELECT``
  (the floor of any view over them);
- **API answer**: ``GET /api/cases`` (default sort, first page of 50) through the view's own
  router, served by uvicorn over loopback, against ``GET`` of a static JSON file of the same size
  from the same server;
- **page load** (headless Chromium, when installed): ``/cases`` until its 50 rows are drawn,
  against the same page's HTML with the rows already in it, from the same server.

Goals: the API under 2 s and the page under 3 s at 5,000 cases on this 2-core machine are what a
lab can use; the ratios say what the view costs over the floor.

    python bench/cases_view.py             # 5,000 cases
    python bench/cases_view.py --quick     # 500 cases, goals not enforced
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import Figure, base_parser, child_answer, report, run_child

BENCH = "cases_view"
FLOOR_SQL = "SELECT dag_id, run_id, task_id, map_index, key, value, timestamp FROM xcom"
ROUNDS = 5

SEED = """
import json, sys, uuid
from datetime import datetime, timedelta, timezone
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import insert

count = int(sys.argv[1])
now = datetime.now(timezone.utc)
with create_session() as session:
    run = DagRun(dag_id="bench_batch", run_id="bench_run", run_type="manual", state="running")
    session.add(run)
    session.flush()
    tis, xcoms = [], []
    for i in range(count):
        name = f"EMG{100000000 + i}"
        tis.append(dict(
            id=uuid.uuid4(), dag_id="bench_batch", run_id="bench_run", task_id="create_case", map_index=i,
            state="success", rendered_map_index=f"FAM-{i:05d}", try_number=1, max_tries=0,
            pool="default_pool", pool_slots=1, queue="default", priority_weight=1, hostname="",
            unixname="", operator="EmedgeneCreateCaseOperator",
        ))
        status = {"case_name": name, "status": "Delivered" if i % 3 else "In progress"}
        for key, value, after in (
            ("emedgene_case_name", name, 0),
            ("emedgene_case_url", f"https://lab.emedgene.com/case/{name}", 0),
            ("emedgene_case_status", status, 3600 + i),
        ):
            xcoms.append(dict(
                dag_run_id=run.id, dag_id="bench_batch", run_id="bench_run", task_id="create_case",
                map_index=i, key=key, value=json.dumps(value),
                timestamp=now - timedelta(days=1) + timedelta(seconds=after),
            ))
    session.execute(insert(TaskInstance.__table__), tis)
    session.execute(insert(XComModel.__table__), xcoms)
print(json.dumps({"seeded": count}))
"""


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _serve(app: Any) -> tuple[Any, int]:
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, port


def _browser() -> Any:
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def measure() -> None:
    """The child: every timing on the seeded DB."""
    import urllib.request

    from airflow.utils.session import create_session
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, Response
    from sqlalchemy import text

    from emedgene_provider.plugins import case_rows
    from emedgene_provider.plugins.case_records import read_records
    from emedgene_provider.plugins.cases import load_rows, router

    dags = {"bench_batch"}
    floor, reads = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        with create_session() as session:
            raw = session.execute(
                text("SELECT dag_id, run_id, task_id, map_index, key, value, timestamp FROM xcom")
            ).all()
        floor.append(time.perf_counter() - started)
        started = time.perf_counter()
        with create_session() as session:
            origins, _ = read_records(session, dags)
        reads.append(time.perf_counter() - started)
    cases = len(origins)

    async def admin(request: Any) -> str:
        return "bench-admin"

    app = FastAPI()
    rows_of = lambda user, stuck: load_rows(dags, stuck)  # noqa: E731
    app.include_router(router(user_dependency=admin, rows_of=rows_of), prefix="/emedgene")
    page_body = json.dumps(
        {"cases": [r.as_json() for r in case_rows.build_rows(origins, [], now=time.time())[:50]]}
    )

    @app.get("/static.json")
    async def static_json() -> Response:
        return Response(page_body, media_type="application/json")

    server, port = _serve(app)
    base = f"http://127.0.0.1:{port}"
    api, static = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{base}/emedgene/api/cases") as answer:
            body = json.loads(answer.read())
        api.append(time.perf_counter() - started)
        started = time.perf_counter()
        with urllib.request.urlopen(f"{base}/static.json") as answer:
            answer.read()
        static.append(time.perf_counter() - started)
    assert body["total"] == cases and len(body["cases"]) == 50, body.get("total")

    result: dict[str, Any] = {
        "cases": cases,
        "xcom_rows": len(raw),
        "floor_ms": _median_ms(floor),
        "read_ms": _median_ms(reads),
        "api_ms": _median_ms(api),
        "static_ms": _median_ms(static),
    }
    browser = _browser()
    if browser is not None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        drawn = "".join(
            f"<tr><td>{c['case_name']}</td><td>{c['status']}</td><td>{c['dag_id']}</td></tr>"
            for c in body["cases"]
        )

        @app.get("/drawn")
        async def drawn_page() -> HTMLResponse:
            return HTMLResponse(f"<table><tbody id='rows'>{drawn}</tbody></table>")

        def fifty(b: Any) -> bool:
            return len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) == 50

        pages, baseline = [], []
        try:
            for _ in range(ROUNDS):
                started = time.perf_counter()
                browser.get(f"{base}/emedgene/cases")
                WebDriverWait(browser, 120).until(
                    lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) == 50
                )
                pages.append(time.perf_counter() - started)
                started = time.perf_counter()
                browser.get(f"{base}/drawn")
                WebDriverWait(browser, 120).until(
                    lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) == 50
                )
                baseline.append(time.perf_counter() - started)
        finally:
            browser.quit()
        result.update(page_ms=_median_ms(pages), drawn_ms=_median_ms(baseline))
    server.should_exit = True
    child_answer(result)


def main() -> int:
    parser = base_parser(__doc__ or BENCH)
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--child", action="store_true", help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        measure()
        return 0
    count = args.cases or (500 if args.quick else 5000)
    with tempfile.TemporaryDirectory(prefix="cases-view-") as home:
        env = dict(os.environ, AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run([sys.executable, "-c", SEED, str(count)], env=env, check=True, capture_output=True)
        got = run_child([__file__, "--child"], env=env)
    api, page = got["api_ms"], got.get("page_ms")
    figures = [
        Figure(BENCH, f"records read, {got['cases']:,} cases", got["read_ms"], "ms", got["floor_ms"],
               got["read_ms"] / got["floor_ms"], "", None),
        Figure(BENCH, "API answer (first page of 50)", api, "ms", got["static_ms"], api / got["static_ms"],
               "< 2,000 ms", api < 2000),
    ]  # fmt: skip
    if page is not None:
        figures.append(
            Figure(BENCH, "page load to 50 rows drawn", page, "ms", got["drawn_ms"], page / got["drawn_ms"],
                   "< 3,000 ms", page < 3000)
        )  # fmt: skip
    notes = [
        f"{got['cases']:,} cases, {got['xcom_rows']:,} XCom rows, SQLite; medians of {ROUNDS} rounds; "
        "baselines: one plain SELECT of the XCom rows, a static JSON of the same page, "
        "the page's rows as static HTML"
        + ("" if page is not None else "; no chromium here, so no page figure"),
    ]
    return report(figures, quick=args.quick, notes=notes)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
