"""The chaos benchmark's extra waits (bench/cluster.py --chaos), beside the example batch DAG.

A triggerer must hold at least 200 deferred waits when it is killed, and the example batch has one
wait per family (50). This DAG adds a deferred wait on each of the cases in its run's conf
(``{"cases": [...]}``, cases the bench creates on the simulator first): Emedgene case status
sensors as a lab's results consumers would run them, deferring at once. Not an example: the
bench's DAG folder holds it and a link to ``dags_examples/emedgene_clinical_batch.py``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

with DAG(
    dag_id="emedgene_bench_watchers",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["emedgene", "bench"],
) as dag:

    @task
    def watched(**context: Any) -> list[str]:
        return list(context["dag_run"].conf.get("cases", []))

    EmedgeneCaseStatusSensor.partial(
        task_id="wait",
        emedgene_conn_id="emedgene_default",
        deferrable=True,
        check_before_deferring=False,
        poke_interval=float(os.environ.get("EMEDGENE_POLL_INTERVAL", "30")),
        timeout=24 * 3600,
        retries=int(os.environ.get("EMEDGENE_RETRIES", "0")),
    ).expand(case_name=watched())
