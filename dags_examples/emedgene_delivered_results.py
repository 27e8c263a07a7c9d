"""Results on delivery (Airflow 3): a run for each batch of Emedgene case events, fetching the
export of every case just delivered. The other half of the pair is ``emedgene_clinical_batch``,
which creates the cases; with case events, a lab's creating DAG need not hold a wait of days.

The DAG is scheduled on the tenant's Asset, ``emedgene://<tenant host>``, where each status change
the tenant confirmed is an asset event (``case_name``, ``status``, ``previous_status``,
``delivered``). Two sources record them (README "Case events"):

- ``EMEDGENE_CASE_EVENTS=webhook`` (default): the provider's webhook receiver on the api-server,
  for a connection with a ``webhook_secret``, Emedgene sending status webhooks to
  ``/emedgene/webhooks/<conn_id>``;
- ``EMEDGENE_CASE_EVENTS=poll``: an ``AssetWatcher`` on the asset, whose trigger lists the
  tenant's cases every ``EMEDGENE_CASE_EVENTS_POLL`` seconds, for tenants without webhooks.

``fetch_delivered_results`` writes each delivered case's export to ``<results_dir>/<case>.json``
(once per case: ``delivered`` is true on the change into a delivered status only) and returns
the case names. Set ``EMEDGENE_TENANT`` to the connection's host (the demo's simulator by default).
On Airflow 2 the DAG parses, scheduled on a Dataset nothing records: case events are Airflow 3's.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Asset, ObjectStoragePath, Param, task
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

from emedgene_provider.case_events import tenant_asset_uri

DATA_DIR = os.environ.get("EMEDGENE_DATA_DIR", "/tmp/emedgene-demo")  # noqa: S108 - a demo default
CONN_ID = os.environ.get("EMEDGENE_CONN_ID", "emedgene_default")
TENANT = os.environ.get("EMEDGENE_TENANT", "127.0.0.1:8765")
SOURCE = os.environ.get("EMEDGENE_CASE_EVENTS", "webhook")

watchers: list[Any] = []
if AIRFLOW_V_3_0_PLUS and SOURCE == "poll":
    from airflow.sdk import AssetWatcher

    from emedgene_provider.triggers.case_events import EmedgeneCaseEventTrigger

    poll = float(os.environ.get("EMEDGENE_CASE_EVENTS_POLL", "300"))
    watchers = [
        AssetWatcher(name=f"{CONN_ID}_cases", trigger=EmedgeneCaseEventTrigger(CONN_ID, poll_interval=poll))
    ]
CASES = Asset(tenant_asset_uri(TENANT), watchers=watchers) if watchers else Asset(tenant_asset_uri(TENANT))

with DAG(
    dag_id="emedgene_delivered_results",
    description="Each Emedgene case delivered (a case event on the tenant's Asset) → its export",
    schedule=[CASES],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["emedgene", "example"],
    params={"results_dir": Param(f"file://{DATA_DIR}/results/", type="string")},
) as dag:

    @task
    def fetch_delivered_results(params: dict[str, Any] | None = None) -> list[str]:
        """The export of each case whose delivery started this run."""
        from airflow.providers.common.compat.sdk import get_current_context

        from emedgene_provider.case_events import triggering_case_events
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        results_dir = ObjectStoragePath((params or {})["results_dir"])
        results_dir.mkdir(parents=True, exist_ok=True)
        fetched = []
        for event in triggering_case_events(get_current_context()):
            if not event.get("delivered"):
                print(f"Emedgene case {event['case_name']}: {event['status']} (not a delivery)")
                continue
            hook = EmedgeneHook(event.get("conn_id") or CONN_ID)
            variants = hook.get_conn().export_case(event["case_name"])
            (results_dir / f"{event['case_name']}.json").write_text(json.dumps(variants))
            print(f"Emedgene case {event['case_name']} delivered: {len(variants)} variants fetched")
            fetched.append(event["case_name"])
        return fetched

    fetch_delivered_results()
