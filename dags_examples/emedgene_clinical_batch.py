"""A scheduled clinical workflow: every day, the day's Emedgene batch CSV becomes delivered cases.

The manifest is the CSV a lab already uploads to Emedgene's batch case creation (the platform's
batch format: ``[Data]``, then ``Family Id``, ``Case Type``, ``Files Names``, ... one row per
sample; see ``docs/batch-csv.md``). Defaults work against the bundled simulator.

- ``read_batch_csv`` reads the ``manifest`` param (``{ds}`` in it is replaced by the run's date)
  into one case per Family Id, and has the tenant validate every case (``dry_run=true``) first:
  if it refuses any, the task fails listing each refused family and **no** case is created. A
  missing manifest skips the run: no samples that day.
- ``create_case`` is mapped over the cases, one task per family, labelled with its Family Id, so
  a retry re-creates nothing but its own family's case. Retrying it is safe (a retry adopts the
  case an earlier try made, by its idempotency key).
- ``wait_for_delivery`` waits for each case in the triggerer (deferring at once: a case created
  just upstream cannot be delivered yet, so the worker needs no login for it); ``export_case``
  writes each export to ``<export_dir>/<case name>.json``; both are labelled with the case name.
- Every task is safe to retry: ``EMEDGENE_RETRIES`` (default 0) sets the retries of each, 10 s
  apart and doubling (at most 5 minutes), e.g. 6 to ride out a worker killed halfway through a
  create or a tenant down for minutes; ``EMEDGENE_POOL`` puts them in an Airflow pool, to bound
  how many run against the tenant at once across the whole cluster (the README, "Running many
  waits").
- ``batch_summary`` returns ``{family: {case_name, status}}``, and ``collect`` the day's report.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, BaseOperator, Param, task

from emedgene_provider.operators.batch import batch_summary, cases_from_batch_csv, read_all
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator, EmedgeneExportCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

HERE = Path(__file__).resolve().parent
DATA_DIR = os.environ.get("EMEDGENE_DATA_DIR", "/tmp/emedgene-demo")  # noqa: S108 - a demo default
POLL_SECONDS = float(os.environ.get("EMEDGENE_POLL_INTERVAL", "60"))
CONN_ID = os.environ.get("EMEDGENE_CONN_ID", "emedgene_default")
RETRIES = int(os.environ.get("EMEDGENE_RETRIES", "0"))
POOL = os.environ.get("EMEDGENE_POOL", "default_pool")
#: Retry delays that double: a switch (True) until Airflow made it a multiplier (2.0; its default
#: is then the number 0, and True would mean a multiplier of 1, no backoff).
DOUBLING: Any = True if isinstance(getattr(BaseOperator, "retry_exponential_backoff", False), bool) else 2.0

with DAG(
    dag_id="emedgene_clinical_batch",
    description="Daily batch CSV → every case dry-run → one Emedgene case per family → delivered → exports",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": RETRIES,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": DOUBLING,
        "max_retry_delay": timedelta(minutes=5),
        "pool": POOL,
    },
    tags=["emedgene", "example"],
    params={
        "manifest": Param(str(HERE / "manifests" / "example-batch.csv"), type="string"),
        "export_dir": Param(f"file://{DATA_DIR}/batch-exports/", type="string"),
    },
) as dag:
    cases = cases_from_batch_csv(
        "{{ params.manifest | replace('{ds}', ds | default('')) }}",
        validate_on_server=True,
        skip_if_missing=True,
        emedgene_conn_id=CONN_ID,
    )

    created = EmedgeneCreateCaseOperator.partial(
        task_id="create_case",
        wait_for_completion=False,  # returns once the case exists: wait_for_delivery waits
        emedgene_conn_id=CONN_ID,
    ).expand(case=cases)

    delivered = EmedgeneCaseStatusSensor.partial(
        task_id="wait_for_delivery",
        emedgene_conn_id=CONN_ID,
        deferrable=True,
        check_before_deferring=False,
        poke_interval=POLL_SECONDS,
        timeout=7 * 24 * 3600,
    ).expand(case_name=created.output)

    exported = EmedgeneExportCaseOperator.partial(
        task_id="export_case",
        emedgene_conn_id=CONN_ID,
        output_path="{{ params.export_dir }}",
    ).expand(case_name=created.output)

    # After the waits, whatever their outcome: a family whose case failed is listed too.
    summary = batch_summary(created.output, cases=cases, emedgene_conn_id=CONN_ID, trigger_rule="all_done")

    @task
    def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
        files = read_all(results)  # the mapped exports' output, in one read
        report = {"cases": len(files), "variants": sum(r["count"] for r in files), "files": files}
        print(f"Emedgene batch report: {report}")
        return report

    delivered >> exported
    delivered >> summary
    collect(exported.output)
