"""The DAG tests/e2e/test_lineage_events.py runs with OpenLineage's file transport: a create that defers
until delivery (so its COMPLETE event comes from the resumed task), then an export and the
candidates written to files, and the candidates once more through XCom (no file written).

The case is the JSON in ``EMEDGENE_LINEAGE_CASE`` and the files go under ``EMEDGENE_DATA_DIR``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from emedgene_provider.operators.emedgene import (
    EmedgeneCreateCaseOperator,
    EmedgeneExportCaseOperator,
    EmedgeneGetCandidatesOperator,
)

DATA_DIR = os.environ.get("EMEDGENE_DATA_DIR", "/tmp/emedgene-lineage")
POLL_SECONDS = float(os.environ.get("EMEDGENE_POLL_INTERVAL", "0.2"))

with DAG(dag_id="emedgene_lineage", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    create_case = EmedgeneCreateCaseOperator(
        task_id="create_case",
        case=json.loads(os.environ.get("EMEDGENE_LINEAGE_CASE", "{}")),
        deferrable=True,
        poll_interval=POLL_SECONDS,
    )
    export_case = EmedgeneExportCaseOperator(
        task_id="export_case", case_name=create_case.output, output_path=f"file://{DATA_DIR}/exports/"
    )
    candidates = EmedgeneGetCandidatesOperator(
        task_id="get_candidates", case_name=create_case.output, output_path=f"file://{DATA_DIR}/candidates/"
    )
    candidates_xcom = EmedgeneGetCandidatesOperator(task_id="candidates_xcom", case_name=create_case.output)
    create_case >> [export_case, candidates, candidates_xcom]
