"""Downstream of delivery: runs on each Emedgene export written anywhere, and reports on it.

The export operator (``EmedgeneExportCaseOperator`` with ``output_path``) records the file it wrote
as an Airflow Asset (a Dataset on Airflow 2), attached to the asset alias ``emedgene-exports``.
This DAG is scheduled on that alias, so the scheduler starts it when an export is delivered, by
``emedgene_case_pipeline``, ``emedgene_clinical_batch`` or any DAG of the lab's, whatever path it
was written to. No sensor polls a folder.

- ``report_exports`` reads each triggering export back (the event's ``extra["path"]``, through
  the same connection it was written with), counts its variants by ACMG classification, and
  writes one report per case to ``params.report_dir``: a stand-in for a lab's report generation
  or LIMS update. It returns the reports.

A lab keeps the schedule and replaces the body. To react to candidates instead, schedule on
``AssetAlias("emedgene-candidates")``; to react to one fixed file only, on ``Asset("<its URI>")``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, AssetAlias, ObjectStoragePath, Param, task

from emedgene_provider.operators.emedgene import EXPORTS_ASSET_ALIAS

DATA_DIR = os.environ.get("EMEDGENE_DATA_DIR", "/tmp/emedgene-demo")  # noqa: S108 - a demo default


def triggering_events(context: Any) -> list[Any]:
    """The asset events that started this run, each once, oldest first.

    Airflow 3 lists them under ``triggering_asset_events`` (an event reached through an alias
    appears under the alias and under its asset); Airflow 2 under ``triggering_dataset_events``,
    by dataset URI. A manual run has none.
    """
    by_asset = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
    unique: dict[tuple[str, str], Any] = {}
    for events in by_asset.values():
        for event in events:
            unique.setdefault((str(event.timestamp), json.dumps(event.extra or {}, sort_keys=True)), event)
    return sorted(unique.values(), key=lambda event: event.timestamp)


with DAG(
    dag_id="emedgene_results_consumer",
    description="Each delivered Emedgene export → a per-case report (LIMS update stub)",
    schedule=[AssetAlias(EXPORTS_ASSET_ALIAS)],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["emedgene", "example"],
    params={"report_dir": Param(f"file://{DATA_DIR}/reports/", type="string")},
) as dag:

    @task
    def report_exports(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One report per export that triggered this run."""
        from airflow.providers.common.compat.sdk import get_current_context

        report_dir = ObjectStoragePath((params or {})["report_dir"])
        report_dir.mkdir(parents=True, exist_ok=True)
        reports = []
        for event in triggering_events(get_current_context()):
            extra = dict(event.extra or {})
            if extra.get("kind") != "export":
                continue
            variants = json.loads(ObjectStoragePath(extra["path"]).read_text())
            by_class = Counter(str(v.get("acmg_classification", "unclassified")) for v in variants)
            report = {
                "case_name": extra["case_name"],
                "export": extra["path"],
                "variants": len(variants),
                "by_acmg": dict(sorted(by_class.items())),
            }
            # A lab's LIMS update goes here; the example writes what it would send.
            (report_dir / f"{report['case_name']}.json").write_text(json.dumps(report, indent=2))
            print(f"Emedgene export of case {report['case_name']}: {report}")
            reports.append(report)
        return reports

    report_exports()
