"""The real deferral path: emedgene_case_pipeline under a real scheduler and a separate triggerer.

`airflow dags test` runs triggers inline, in the task's own process; this test shows the wait
crossing the metadata DB: the sensor's task instance goes to ``deferred``, a trigger row of
EmedgeneCaseStatusTrigger is picked up by the triggerer process, and the task resumes on a
worker and succeeds. Components are started separately (Airflow 3: api-server, dag-processor,
scheduler with LocalExecutor, triggerer; Airflow 2.11: scheduler and triggerer, with the
SequentialExecutor that 2.x requires on SQLite), parallelism 2, and all are stopped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import airflow
import pytest
from airflow_cli import AIRFLOW, airflow_env

from emedgene_provider.testing import EmedgeneSimulator

AIRFLOW_3 = airflow.__version__.startswith("3.")
DAG_ID = "emedgene_case_pipeline"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    for _ in range(20):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return list(conn.execute(sql, args))
        except sqlite3.OperationalError as exc:  # locked, or the table is not there yet
            last = exc
            time.sleep(0.2)
    raise last


class Components:
    """Airflow processes in their own sessions, stopped children-first at the end."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, *args: str) -> None:
        log = (self.home / f"{args[0]}.out").open("wb")
        proc = subprocess.Popen(
            [AIRFLOW, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((args[0], proc))

    def cli(self, *args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def alive(self) -> None:
        for name, proc in self.procs:
            assert proc.poll() is None, f"airflow {name} exited early:\n{self.output(name)[-3000:]}"

    def output(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text(errors="replace")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def airflow_components(tmp_path: Path) -> Iterator[tuple[Components, EmedgeneSimulator, Path]]:
    home = tmp_path / "airflow_home"
    home.mkdir()
    data = tmp_path / "data"
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("done\n")
    with EmedgeneSimulator(stage_seconds=4.0) as sim:
        port = _free_port()
        env = airflow_env(
            home,
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__PARALLELISM="2",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(sim.connection_json()),
            EMEDGENE_DATA_DIR=str(data),
            EMEDGENE_POLL_INTERVAL="1",
        )
        components = Components(home, env)
        try:
            components.cli("db", "migrate")
            if AIRFLOW_3:
                components.start("api-server", "--port", str(port))
                components.start("dag-processor")
            components.start("scheduler")
            components.start("triggerer")
            yield components, sim, data
        finally:
            components.stop()


@pytest.mark.e2e
def test_pipeline_wait_is_deferred_to_a_separate_triggerer(airflow_components) -> None:
    components, sim, data = airflow_components
    db = components.home / "airflow.db"

    deadline = time.monotonic() + 240
    while not _query(db, "SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID):
        components.alive()
        assert time.monotonic() < deadline, "the DAG was never parsed"
        time.sleep(1)
    components.cli("dags", "unpause", DAG_ID)  # only this DAG: the batch example stays paused
    components.cli("dags", "trigger", DAG_ID)

    sensor_states: set[str] = set()
    trigger_rows: set[tuple[object, ...]] = set()
    run_state = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        components.alive()
        sensor_states |= {
            str(row[0])
            for row in _query(
                db,
                "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ?",
                DAG_ID,
                "wait_for_delivery",
            )
        }
        trigger_rows |= set(_query(db, "SELECT classpath, triggerer_id FROM trigger"))
        states = _query(db, "SELECT state FROM dag_run WHERE dag_id = ?", DAG_ID)
        run_state = str(states[0][0]) if states else None
        if run_state in ("success", "failed"):
            break
        time.sleep(0.5)

    assert run_state == "success", (
        f"run ended {run_state}; scheduler said:\n{components.output('scheduler')[-4000:]}"
    )
    assert "deferred" in sensor_states, sensor_states
    classpaths = {row[0] for row in trigger_rows}
    assert "emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger" in classpaths
    assert any(row[1] is not None for row in trigger_rows), "no triggerer ever claimed the trigger"
    (case_name,) = [
        row[0]
        for row in _query(
            db,
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'create_case' AND key = 'return_value'",
            DAG_ID,
        )
    ]
    name = json.loads(case_name) if isinstance(case_name, (str, bytes)) else case_name
    exports = list((data / "exports").glob("*.json"))
    assert [p.stem for p in exports] == [name]
    assert sim.counters()["cases_created"] == 1

    # The task log files of workers and triggerer, and every process's output, hold no secret.
    logs = [p for p in components.home.rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".json")]
    assert any("wait_for_delivery" in str(p) for p in logs), [str(p) for p in logs]
    secrets_ = [sim.password, *sim.issued_tokens()]
    leaks = [f"{p.name}" for p in logs for s in secrets_ if s.encode() in p.read_bytes()]
    assert leaks == []
