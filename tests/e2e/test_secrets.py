"""No secret anywhere: the example DAGs run in real Airflow, then every byte they left is scanned.

Task logs of `airflow dags test` go to its output, which is scanned; the real scheduler and
triggerer run of tests/e2e/test_triggerer.py scans the log files workers write. The pipeline runs
with password auth, the batch with an API key, and a third run with a wrong
password fails on purpose (an exception path). Short token lifetimes make the simulator issue
several tokens per run: a case is delivered only after its token has expired, so every
successful run renews at least once. Afterwards task logs, the metadata DB (XComs, rendered template fields,
serialized triggers, task states), every other file under AIRFLOW_HOME and the runs' own output
are searched for the password, the wrong password, the API key (raw and as its Basic header) and
every token the simulator issued: zero occurrences.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path

import pytest
from airflow_cli import AIRFLOW, airflow_env

from emedgene_provider.testing import EmedgeneSimulator


def _env(home: Path, data: Path, conn: dict[str, object]) -> dict[str, str]:
    return airflow_env(
        home,
        # Airflow's default level. At DEBUG, Airflow 3.3's in-process supervisor of `dags test`
        # logs every MaskSecret message with its value (supervisor.py "Sending request"): an Airflow
        # leak that no provider can prevent, so this test does not claim DEBUG.
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(conn),
        EMEDGENE_DATA_DIR=str(data),
        EMEDGENE_POLL_INTERVAL="0.5",
    )


@pytest.mark.e2e
def test_no_secret_in_logs_db_xcoms_rendered_fields_or_errors(tmp_path: Path) -> None:
    password = f"Pw-{secrets.token_hex(8)}"
    api_key = f"Key-{secrets.token_hex(8)}"
    wrong = f"Wrong-{secrets.token_hex(8)}"
    home, data = tmp_path / "airflow_home", tmp_path / "data"
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("done\n")
    outputs: list[str] = []
    # Delivered two stages (2.0 s) after creation, and a run logs in before it creates: whatever
    # reads a delivered case (the wait's last poll, the export) does so with a token older than
    # its 1.5 s lifetime, or with a newer one issued meanwhile. Either way each successful run
    # gets >= 2 tokens, however the polls fall and however slow the machine is.
    token_ttl, stage_seconds = 1.5, 1.0
    assert 2 * stage_seconds > token_ttl
    with EmedgeneSimulator(
        password=password, api_key=api_key, stage_seconds=stage_seconds, token_ttl=token_ttl
    ) as sim:
        runs = [
            ("emedgene_case_pipeline", sim.connection_json(), 0),
            ("emedgene_clinical_batch", sim.connection_json(auth_type="api_key"), 0),
            ("emedgene_case_pipeline", {**sim.connection_json(), "password": wrong}, 1),
        ]
        home.mkdir()
        env = _env(home, data, runs[0][1])
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
        for dag_id, conn, expected_rc in runs:
            done = subprocess.run(
                [AIRFLOW, "dags", "test", dag_id],
                env=_env(home, data, conn),
                capture_output=True,
                text=True,
                timeout=600,
            )
            outputs.append(done.stdout + done.stderr)
            failed = done.returncode != 0
            assert failed == bool(expected_rc), f"{dag_id} exit {done.returncode}:\n{outputs[-1][-4000:]}"
        tokens = sim.issued_tokens()
        logins = sim.counters()["logins"]

    assert len(tokens) >= 4, f"each successful run should have renewed its token: {len(tokens)} tokens"
    assert logins == len(tokens)
    assert "Invalid username or password" in outputs[2]  # the failure was reported, in the server's words
    basic = base64.b64encode(f"emedgene:{api_key}".encode()).decode()
    needles = {"password": password, "wrong password": wrong, "api key": api_key, "basic header": basic}
    needles |= {f"token {i}": token for i, token in enumerate(tokens)}

    haystacks: dict[str, bytes] = {f"run {i} output": out.encode() for i, out in enumerate(outputs)}
    files = [p for p in home.rglob("*") if p.is_file()]
    # `dags test` writes the task logs to its output: make sure they are there to be scanned.
    assert "Created Emedgene case EMG" in outputs[0]
    assert "Wrote" in outputs[1] and "exported variants" in outputs[1]
    assert (home / "airflow.db") in files
    haystacks |= {str(p.relative_to(home)): p.read_bytes() for p in files}
    found = [
        f"{what} in {where}"
        for where, blob in haystacks.items()
        for what, secret in needles.items()
        if secret.encode() in blob
    ]
    assert found == []
