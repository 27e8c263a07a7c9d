"""A scheduled clinical workflow: every day, one Emedgene case per sample of the day's manifest.

- ``read_manifest`` reads the day's CSV (``manifest`` param; ``{ds}`` is replaced by the run's
  date) and builds one case JSON per sample. A missing manifest skips the run: no samples that day.
- ``create_case`` is mapped over the cases (dynamic task mapping), one task per sample, so a
  retry re-creates nothing but its own sample's case.
- ``wait_for_delivery`` waits for each case in the triggerer.
- ``export_case`` writes each export to ``<export_dir>/<case name>.json``.
- ``collect`` gathers the results into the day's report.

Manifest columns: sample_id, sex, case_type, sample_type, storage_id, file_path, phenotypes
(HPO terms separated by ``;``). Defaults work against the bundled simulator.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, AirflowSkipException, Param, task

from emedgene_provider.client.payload import phenotype_id
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator, EmedgeneExportCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

HERE = Path(__file__).resolve().parent
DATA_DIR = os.environ.get("EMEDGENE_DATA_DIR", "/tmp/emedgene-demo")  # noqa: S108 - a demo default
POLL_SECONDS = float(os.environ.get("EMEDGENE_POLL_INTERVAL", "60"))
CONN_ID = os.environ.get("EMEDGENE_CONN_ID", "emedgene_default")


def case_for_sample(row: dict[str, str]) -> dict[str, Any]:
    """A singleton case for one manifest row, in the shape of ``POST /api/cases/v2/cases``."""
    sample = row["sample_id"].strip()
    return {
        "sharing_level": 0,
        "should_upload": False,
        "test_data": {
            "type": row["case_type"].strip(),
            "sample_type": row["sample_type"].strip(),
            "gene_list": {"id": 1, "type": "all"},
            "labels": [],
            "selected_preset_set": "Default",
            "extra_data": {"manifest_sample": sample},
            "patients": {
                "proband": {
                    "id": "proband",
                    "fastq_sample": sample,
                    "gender": row["sex"].strip(),
                    "relationship": "Test Subject",
                    "healthy": False,
                    "phenotypes": [
                        {"id": phenotype_id(term)} for term in row["phenotypes"].split(";") if term.strip()
                    ],
                },
                "other": [],
            },
            "samples": [
                {
                    "fastq": sample,
                    "status": "uploaded",
                    "sampleFiles": [
                        {
                            "path": row["file_path"].strip(),
                            "filename": Path(row["file_path"].strip()).name,
                            "size": 0,
                            "status": "uploaded",
                            "storage_id": int(row["storage_id"]),
                        }
                    ],
                }
            ],
        },
    }


with DAG(
    dag_id="emedgene_clinical_batch",
    description="Daily manifest → one Emedgene case per sample → delivered → exports collected",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["emedgene", "example"],
    params={
        "manifest": Param(str(HERE / "manifests" / "example-manifest.csv"), type="string"),
        "export_dir": Param(f"file://{DATA_DIR}/batch-exports/", type="string"),
    },
) as dag:

    @task
    def read_manifest(ds: str | None = None, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        path = Path(str((params or {})["manifest"]).format(ds=ds))
        if not path.exists():
            raise AirflowSkipException(f"No manifest for {ds} at {path}: no samples today")
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise AirflowSkipException(f"Manifest {path} lists no samples")
        print(f"{len(rows)} sample(s) in {path}")
        return [case_for_sample(row) for row in rows]

    created = EmedgeneCreateCaseOperator.partial(task_id="create_case", emedgene_conn_id=CONN_ID).expand(
        case=read_manifest()
    )

    delivered = EmedgeneCaseStatusSensor.partial(
        task_id="wait_for_delivery",
        emedgene_conn_id=CONN_ID,
        deferrable=True,
        poke_interval=POLL_SECONDS,
        timeout=7 * 24 * 3600,
    ).expand(case_name=created.output)

    exported = EmedgeneExportCaseOperator.partial(
        task_id="export_case", emedgene_conn_id=CONN_ID, output_path="{{ params.export_dir }}"
    ).expand(case_name=created.output)

    @task
    def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
        files = list(results)  # a lazy XCom sequence: materialise it once
        report = {"cases": len(files), "variants": sum(r["count"] for r in files), "files": files}
        print(f"Emedgene batch report: {report}")
        return report

    delivered >> exported
    collect(exported.output)
