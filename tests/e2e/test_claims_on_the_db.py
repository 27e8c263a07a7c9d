"""Key claims in a deployment: :class:`AirflowClaims` in real task runs (``airflow dags test``, two
DAG runs with one key) on the session's metadata DB, and the Airflow 2.11 DB store raced by 8
processes. The rules themselves, in a process, are in tests/unit/test_claims.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import AirflowHome, airflow_run, python_run

from emedgene_provider.client.claims import cell_name

KEY = "LIMS-ACC-2024-000123"  # a lab's accession: may identify a patient, so never stored

# -- a deployment: real task runs on the metadata DB ---------------------------------------------

PROBE_DAG = """
from __future__ import annotations
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from airflow.providers.common.compat.sdk import DAG, task
from emedgene_provider.claims import AirflowClaims

KEY = {key!r}

with DAG("emedgene_claims_probe", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):

    @task
    def probe(**context):
        step, owner = context["params"]["step"], "run:" + context["run_id"]
        claims, now, out = AirflowClaims(settle_seconds=0.05), 1_000_000.0, {{"owner": owner}}
        if step == "first":
            out["claim"] = asdict(claims.claim(KEY, owner, now))
            out["again"] = asdict(claims.claim(KEY, owner, now + 1))
            claims.record(KEY, owner, "EMG000000001")
            out["before_release"] = asdict(claims.claim(KEY + "-released", owner, now))
            claims.release(KEY + "-released", owner)
            claims.claim(KEY + "-dead", "dead-task", now - 900)
        else:
            out["claim"] = asdict(claims.claim(KEY, owner, now, take_over_before=now + 1000))
            out["released"] = asdict(claims.claim(KEY + "-released", owner, now))
            out["dead_kept"] = asdict(claims.claim(KEY + "-dead", owner, now, take_over_before=now - 901))
            out["dead_taken"] = asdict(claims.claim(KEY + "-dead", owner, now, take_over_before=now - 600))
        Path(__file__).with_name(step + ".json").write_text(json.dumps(out))

    probe()
"""

#: Every claim Variable in the metadata DB, decrypted: {name: value}.
VARIABLES_SCRIPT = """
import json
from airflow.models.variable import Variable
from airflow.utils.session import create_session
with create_session() as session:
    rows = session.query(Variable).filter(Variable.key.startswith("emedgene_claim:")).all()
    print(json.dumps({row.key: row.val for row in rows}))
"""

#: 8 processes claim one key at the same moment through the DB store (an INSERT on a unique key).
RACE_SCRIPT = """
import json, multiprocessing as mp, sys
from dataclasses import asdict

def claim(barrier, i, answers):
    from emedgene_provider.claims import _DatabaseVariables
    from emedgene_provider.client.claims import CellClaims
    claims = CellClaims(_DatabaseVariables())
    barrier.wait()
    answers.put(asdict(claims.claim(sys.argv[1], f"process-{i}", 1000.0 + i)))

if __name__ == "__main__":
    barrier, answers = mp.Barrier(8), mp.Queue()
    workers = [mp.Process(target=claim, args=(barrier, i, answers)) for i in range(8)]
    for w in workers:
        w.start()
    out = [answers.get(timeout=120) for _ in workers]
    for w in workers:
        w.join()
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe_runs(airflow_home: AirflowHome, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two DAG runs with one key, each its own ``airflow dags test`` process."""
    folder = tmp_path_factory.mktemp("claims_dags")
    (folder / "claims_probe.py").write_text(PROBE_DAG.format(key=KEY))
    env = airflow_home.with_env(AIRFLOW__CORE__DAGS_FOLDER=str(folder))
    runs: dict[str, Any] = {}
    for step in ("first", "second"):
        done = airflow_run(env, "dags", "test", "emedgene_claims_probe", "-c", json.dumps({"step": step}))
        result = folder / f"{step}.json"
        assert done.returncode == 0 and result.exists(), (
            f"{step} run:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
        runs[step] = json.loads(result.read_text())
    runs["variables"] = python_run(env, VARIABLES_SCRIPT)
    return runs


@pytest.mark.e2e
def test_a_second_dag_run_with_the_key_adopts_the_first_runs_case(probe_runs: dict[str, Any]) -> None:
    first, second = probe_runs["first"], probe_runs["second"]
    assert first["claim"] == {"granted": True, "holder": first["owner"], "case_name": None, "claimed_at": 1e6}
    assert first["again"]["granted"], "the holder's own second claim"
    assert first["owner"] != second["owner"]
    assert second["claim"] == {
        "granted": False,
        "holder": first["owner"],
        "case_name": "EMG000000001",
        "claimed_at": 1e6,
    }, "a recorded case is adopted, even past any take-over time"


@pytest.mark.e2e
def test_a_released_claim_and_a_dead_holder_across_dag_runs(probe_runs: dict[str, Any]) -> None:
    first, second = probe_runs["first"], probe_runs["second"]
    assert first["before_release"]["granted"] and second["released"]["granted"]
    assert second["dead_kept"] == {
        "granted": False,
        "holder": "dead-task",
        "case_name": None,
        "claimed_at": 1e6 - 900,
    }
    assert second["dead_taken"]["granted"] and second["dead_taken"]["holder"] == second["owner"]


@pytest.mark.e2e
def test_the_metadata_db_holds_claims_under_hashes_only(probe_runs: dict[str, Any]) -> None:
    variables = probe_runs["variables"]
    assert set(variables) == {cell_name(KEY), cell_name(KEY + "-released"), cell_name(KEY + "-dead")}
    assert not any(KEY in name or KEY in value for name, value in variables.items())
    assert json.loads(variables[cell_name(KEY)])["case_name"] == "EMG000000001"


@pytest.mark.e2e
def test_eight_processes_racing_on_the_db_store_one_is_granted(
    airflow_home: AirflowHome, tmp_path: Path
) -> None:
    """The Airflow 2.11 store (a plain script may use the DB on both majors): an INSERT on the
    unique ``variable.key`` lets exactly one of 8 simultaneous claimants in."""
    key = f"race-{tmp_path.name}"
    answers = python_run(airflow_home.env, RACE_SCRIPT, key, timeout=300)
    granted = [a for a in answers if a["granted"]]
    assert len(answers) == 8 and len(granted) == 1, answers
    assert {a["holder"] for a in answers} == {granted[0]["holder"]}
