"""The cases view in a real Airflow 3 api-server over a real metadata DB, and in a real browser
(headless Chromium from Debian's packages, driven through Selenium).

The records come from real DAG runs (``airflow dags test``) against the simulator: the example
batch (three delivered cases, labelled by Family Id) and a DAG that creates a case and does not
wait for it (in flight, no status seen). The API must refuse anyone without a valid Airflow
token; the page, opened by a logged-in browser, must list the cases with their stage and
turnaround; the screenshot goes to docs/images/cases-view.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow_cli import AIRFLOW, EXAMPLE_DAGS, airflow_env
from airflow_fixtures import airflow_run, free_port, python_run
from locations import ROOT

from emedgene_provider.testing import EmedgeneSimulator

AIRFLOW_VERSION = tuple(int(part) for part in airflow.__version__.split(".")[:2])
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(AIRFLOW_VERSION < (3, 0), reason="the cases view is served by Airflow 3's api-server"),
]
FAMILIES = {"TRIO-2026-0007", "SOLO-2026-0311", "SOLO-2026-0312"}
#: The docs' screenshot, rewritten when EMEDGENE_UPDATE_SCREENSHOT=1 (else the test's own copy).
SCREENSHOT = ROOT / "docs" / "images" / "cases-view.png"
#: A DAG that creates a case and does not wait: the case stays in flight, no status seen.
INTAKE_DAG = """
from datetime import datetime
from airflow.providers.common.compat.sdk import DAG
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
with DAG("lab_intake", schedule=None, start_date=datetime(2026, 1, 1)):
    EmedgeneCreateCaseOperator(
        task_id="create_case", case="cases/trio-exome-vcf.json", wait_for_completion=False
    )
"""


def _get(url: str, token: str | None = None, cookie: str | None = None) -> tuple[int, Any]:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = f"_token={cookie}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode(errors="replace")


def _token(base: str, home: Path) -> str:
    passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    body = json.dumps({"username": "admin", "password": passwords["admin"]}).encode()
    request = urllib.request.Request(
        f"{base}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.loads(answer.read())["access_token"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An AIRFLOW_HOME holding two DAGs' records, and its api-server."""
    home = tmp_path_factory.mktemp("cases_view_home")
    data = tmp_path_factory.mktemp("cases_view_data")
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("run complete\n")
    port = free_port()
    env = airflow_env(home, AIRFLOW__API__PORT=str(port), EMEDGENE_DATA_DIR=str(data))
    assert airflow_run(env, "db", "migrate", timeout=600).returncode == 0
    with EmedgeneSimulator(stage_seconds=0.2) as sim:
        env["AIRFLOW_CONN_EMEDGENE_DEFAULT"] = json.dumps(sim.connection_json())
        env["EMEDGENE_POLL_INTERVAL"] = "0.2"
        done = airflow_run(env, "dags", "test", "emedgene_clinical_batch", timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    intake = tmp_path_factory.mktemp("intake_dags")
    (intake / "cases").mkdir()
    shutil.copy(EXAMPLE_DAGS / "cases" / "trio-exome-vcf.json", intake / "cases")
    (intake / "lab_intake.py").write_text(INTAKE_DAG)
    with EmedgeneSimulator(stage_seconds=3600) as slow:  # this case stays in progress
        env["AIRFLOW_CONN_EMEDGENE_DEFAULT"] = json.dumps(slow.connection_json())
        done = airflow_run({**env, "AIRFLOW__CORE__DAGS_FOLDER": str(intake)}, "dags", "test", "lab_intake")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (home / "api-server.out").open("wb")
    server = subprocess.Popen(
        [AIRFLOW, "api-server", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (home / "api-server.out").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the api-server did not start"
                time.sleep(1)
        yield {"base": base, "home": home, "token": _token(base, home), "env": env}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_the_api_refuses_anyone_without_a_valid_token(deployment: dict[str, Any]) -> None:
    base = deployment["base"]
    for path in ("/emedgene/api/cases", "/emedgene/api/cases/EMG000000001", "/emedgene/cases"):
        assert _get(base + path)[0] == 401
        assert _get(base + path, token="not.a.token")[0] == 403  # Airflow's answer to a bad token
        assert _get(base + path, cookie="forged")[0] == 403


def test_the_api_lists_every_case_with_its_stage_and_turnaround(deployment: dict[str, Any]) -> None:
    base, token = deployment["base"], deployment["token"]
    started = time.monotonic()
    code, body = _get(f"{base}/emedgene/api/cases?sort=created_at&order=asc", token=token)
    took = time.monotonic() - started
    assert code == 200, body
    print(f"\n/emedgene/api/cases with {body['total']} cases: {took * 1000:.0f} ms")
    cases = body["cases"]
    batch = [c for c in cases if c["dag_id"] == "emedgene_clinical_batch"]
    assert {c["label"] for c in batch} == FAMILIES
    for case in batch:
        assert case["status"] == "Delivered" and case["delivered"] and not case["in_flight"]
        assert 0 < case["turnaround"] < 600 and case["task_state"] == "success"
        assert case["case_url"].endswith(case["case_name"]) and case["tenant"].startswith("127.0.0.1:")
    (waiting,) = [c for c in cases if c["dag_id"] == "lab_intake"]
    assert (waiting["delivered"], waiting["in_flight"], waiting["status"]) == (False, True, None)
    code, stuck = _get(f"{base}/emedgene/api/cases?stuck=true&stuck_after=1", token=token)
    assert [c["case_name"] for c in stuck["cases"]] == [waiting["case_name"]]
    code, one = _get(f"{base}/emedgene/api/cases/{batch[0]['case_name']}", token=token)
    assert (
        code == 200
        and one["timeline"][-1]["status"] == "Delivered"
        and one["timeline"][-1]["source"] == "wait"
    )
    assert "password" not in json.dumps(body).lower()


def _browser() -> Any:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium and chromium-driver (make test does): not found")
        pytest.skip("no chromium/chromedriver here: `apt-get install chromium chromium-driver`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _until(browser: Any, what: str, condition: Any, seconds: float = 60) -> None:
    """Wait in the page for ``condition``; the page's own words when it does not come."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, seconds).until(condition)
    except TimeoutException:
        logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
        pytest.fail(f"{what}: not after {seconds} s; the page shows:\n{browser.page_source[:3000]}\n{logs}")


def test_the_page_in_a_real_browser_lists_the_cases(deployment: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base = deployment["base"]
    browser = _browser()
    try:
        browser.get(f"{base}/emedgene/cases")  # no session cookie: refused
        assert "Not authenticated" in browser.page_source
        browser.add_cookie({"name": "_token", "value": deployment["token"], "path": "/"})
        started = time.monotonic()
        browser.get(f"{base}/emedgene/cases")
        _until(browser, "four rows", lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) >= 4)
        print(f"\nthe cases page drew its rows in {(time.monotonic() - started) * 1000:.0f} ms")
        text = browser.find_element(By.ID, "rows").text
        for family in FAMILIES:
            assert family in text
        assert "Delivered" in text and "not seen yet" in text
        in_flight = Select(browser.find_element(By.CSS_SELECTOR, "select[name=in_flight]"))
        in_flight.select_by_value("true")
        _until(browser, "one in flight", lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) == 1)
        in_flight.select_by_value("")
        _until(browser, "all again", lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) >= 4)
        browser.find_element(By.CSS_SELECTOR, "button[data-sort=case_name]").click()
        _until(
            browser,
            "sorted by case, descending",
            lambda b: (
                b.find_element(By.CSS_SELECTOR, "button[data-sort=case_name]").get_attribute("aria-sort")
                == "descending"
            ),
        )
        shot = (
            SCREENSHOT
            if os.environ.get("EMEDGENE_UPDATE_SCREENSHOT") == "1"
            else deployment["home"] / "cases.png"
        )
        assert browser.save_screenshot(str(shot))
        if AIRFLOW_VERSION >= (3, 1):  # the navigation entry the UI draws from the plugin
            _, plugins = _get(f"{base}/api/v2/plugins", token=deployment["token"])
            views = [v for p in plugins["plugins"] if p["name"] == "emedgene" for v in p["external_views"]]
            assert {(v["name"], v["destination"]) for v in views} == {
                ("Emedgene cases", "nav"),
                ("Emedgene case", "task_instance"),
            }
    finally:
        browser.quit()


@pytest.mark.skipif(AIRFLOW_VERSION < (3, 1), reason="the UI draws plugin views from Airflow 3.1")
def test_the_ui_shows_the_page_in_its_navigation_and_a_task_instance_tab(deployment: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    base, token = deployment["base"], deployment["token"]
    _, body = _get(f"{base}/emedgene/api/cases?dag_id=emedgene_clinical_batch&limit=1", token=token)
    (case,) = body["cases"]
    browser = _browser()
    try:
        browser.get(f"{base}/emedgene/cases")
        browser.add_cookie({"name": "_token", "value": token, "path": "/"})
        browser.get(f"{base}/")  # the entry in the UI's Browse menu
        _until(browser, "the Browse menu", lambda b: b.find_elements(By.XPATH, "//*[text()='Browse']"))
        browser.find_element(By.XPATH, "//*[text()='Browse']").click()
        _until(
            browser, "its Emedgene entry", lambda b: b.find_elements(By.XPATH, "//*[text()='Emedgene cases']")
        )
        browser.get(f"{base}/plugin/emedgene-cases")  # the UI's own page, our view in its frame
        _until(browser, "the UI's frame", lambda b: b.find_elements(By.CSS_SELECTOR, "iframe"))
        browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe"))
        _until(browser, "rows in the frame", lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rows tr")) >= 4)
        browser.switch_to.default_content()
        if os.environ.get("EMEDGENE_UPDATE_SCREENSHOT") == "1":
            assert browser.save_screenshot(str(SCREENSHOT.with_name("cases-view-in-airflow.png")))
        tab = (
            f"{base}/dags/{case['dag_id']}/runs/{case['run_id']}/tasks/{case['task_id']}"
            f"/mapped/{case['map_index']}/plugin/emedgene-case"
        )
        browser.get(tab)
        _until(browser, "the tab's frame", lambda b: b.find_elements(By.CSS_SELECTOR, "iframe"))
        browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe"))
        _until(browser, "the case's timeline", lambda b: b.find_elements(By.CSS_SELECTOR, "tr.step"))
        text = browser.find_element(By.ID, "cases").text
        assert case["case_name"] in text and "Delivered" in text and "wait" in text
    finally:
        browser.quit()
    # the wait's own task instance shows the same case
    task = {**case, "task_id": "wait_for_delivery"}
    query = urllib.parse.urlencode({k: task[k] for k in ("dag_id", "run_id", "task_id", "map_index")})
    _, mine = _get(f"{base}/emedgene/api/task-cases?{query}", token=token)
    assert [c["case_name"] for c in mine["cases"]] == [case["case_name"]]


READ_SUBSET = """
import json
from airflow.utils.session import create_session
from emedgene_provider.plugins.case_records import read_records
from emedgene_provider.plugins.cases import load_rows
with create_session() as session:
    origins, observations = read_records(session, {"lab_intake"})
rows = load_rows({"lab_intake"}, 3600.0)
none = load_rows(set(), 3600.0)
print(json.dumps({
    "origins": sorted({o.dag_id for o in origins}),
    "waits": [o.source for o in observations if o.source == "wait"],
    "rows": sorted({r.dag_id for r in rows}),
    "none": len(none),
}))
"""


def test_only_the_readable_dags_records_are_read(deployment: dict[str, Any]) -> None:
    """What the auth manager allows is what the DB is asked for: the batch's records stay unread."""
    got = python_run(deployment["env"], READ_SUBSET)
    assert got == {"origins": ["lab_intake"], "waits": [], "rows": ["lab_intake"], "none": 0}
