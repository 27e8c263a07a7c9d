"""`make demo`: the example pipeline DAG end to end in a real Airflow, against the simulator.

Starts the bundled Emedgene simulator as a process, points ``emedgene_default`` at it, writes
the sequencing run's completion marker, migrates an SQLite metadata DB under ``.demo/``, runs
``airflow dags test emedgene_case_pipeline`` (the deferred wait runs its trigger inline), prints
where the export went, and stops the simulator whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("DEMO_HOME", ROOT / ".demo")).resolve()
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emedgene_provider.testing.simulator", "--port", "0", "--stage-seconds", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def main() -> int:
    data = DEMO / "data"
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("run complete\n")
    sim, url = start_simulator()
    print(f"Emedgene simulator at {url}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        PATH=f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(DEMO / "airflow_home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{DEMO / 'airflow_home' / 'airflow.db'}",
        AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(
            {"conn_type": "emedgene", "host": url, "login": "lab-user", "password": "lab-password"}
        ),
        EMEDGENE_DATA_DIR=str(data),
        EMEDGENE_POLL_INTERVAL="2",
    )
    try:
        (DEMO / "airflow_home").mkdir(parents=True, exist_ok=True)
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        run = subprocess.run([AIRFLOW, "dags", "test", "emedgene_case_pipeline"], env=env, check=False)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    exports = sorted((data / "exports").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if run.returncode != 0 or not exports:
        print(f"emedgene_case_pipeline failed (exit {run.returncode})", file=sys.stderr)
        return 1
    count = len(json.loads(exports[-1].read_text()))
    print(f"\nemedgene_case_pipeline succeeded: the export of case {exports[-1].stem} ({count} variants) is at")
    print(f"  {exports[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
