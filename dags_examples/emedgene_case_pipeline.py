"""A lab pipeline: sequencing run complete → Emedgene case → delivered → export stored → summary.

Defaults work against the bundled simulator (``make demo``); a lab sets the connection
``emedgene_default`` to its tenant and the params (or the ``EMEDGENE_*`` environment variables)
to its paths.

- ``wait_for_sequencing`` waits for the run's completion marker (``CopyComplete.txt``).
- ``create_case`` creates the case from ``cases/trio-exome-vcf.json`` (a Jinja template: the run id
  lands in ``test_data.extra_data``), checked locally first.
- ``wait_for_delivery`` waits for Delivered in the triggerer (deferrable): no worker slot for days.
- ``export_case`` writes the export as JSON to object storage (``file://``, ``s3://``, ``gs://``).
- ``summarize`` reads the export back and counts variants by ACMG classification.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath, Param, task

from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator, EmedgeneExportCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

DATA_DIR = os.environ.get("EMEDGENE_DATA_DIR", "/tmp/emedgene-demo")  # noqa: S108 - a demo default
POLL_SECONDS = float(os.environ.get("EMEDGENE_POLL_INTERVAL", "30"))
CONN_ID = os.environ.get("EMEDGENE_CONN_ID", "emedgene_default")

with DAG(
    dag_id="emedgene_case_pipeline",
    description="Sequencing run → Emedgene case → delivery → export → summary",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["emedgene", "example"],
    params={
        "sequencing_marker": Param(f"{DATA_DIR}/runs/latest/CopyComplete.txt", type="string"),
        "export_dir": Param(f"file://{DATA_DIR}/exports/", type="string"),
    },
) as dag:

    @task.sensor(poke_interval=POLL_SECONDS, timeout=24 * 3600, mode="reschedule")
    def wait_for_sequencing(params: dict[str, Any] | None = None) -> bool:
        """The sequencer writes the marker when the run is copied off the instrument."""
        marker = Path((params or {})["sequencing_marker"])
        print(f"waiting for {marker}: {'present' if marker.exists() else 'absent'}")
        return marker.exists()

    create_case = EmedgeneCreateCaseOperator(
        task_id="create_case",
        case="cases/trio-exome-vcf.json",
        wait_for_completion=False,  # returns once the case exists: wait_for_delivery waits
        emedgene_conn_id=CONN_ID,
    )

    wait_for_delivery = EmedgeneCaseStatusSensor(
        task_id="wait_for_delivery",
        case_name=create_case.output,
        target_statuses=["Delivered"],
        emedgene_conn_id=CONN_ID,
        deferrable=True,
        poke_interval=POLL_SECONDS,
        timeout=7 * 24 * 3600,
    )

    export_case = EmedgeneExportCaseOperator(
        task_id="export_case",
        case_name=create_case.output,
        output_path="{{ params.export_dir }}",
        emedgene_conn_id=CONN_ID,
    )

    @task
    def summarize(export: dict[str, Any]) -> dict[str, Any]:
        """Read the stored export back: what a lab's reporting step would consume."""
        variants = json.loads(ObjectStoragePath(export["path"]).read_text())
        by_class = Counter(str(v.get("acmg_classification", "unclassified")) for v in variants)
        summary = {"path": export["path"], "variants": len(variants), "by_acmg": dict(by_class)}
        print(f"Emedgene export at {export['path']}: {summary}")
        return summary

    wait_for_sequencing() >> create_case >> wait_for_delivery >> export_case
    summarize(export_case.output)
