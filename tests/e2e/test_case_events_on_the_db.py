"""The receiver's confirmation (case_events.announce) against a real metadata DB: only a change
the tenant confirms records an asset event on ``emedgene://<tenant>``, once, with the case and its
status in the extra and no secret; a repeated, forged or stale hint records nothing."""

from __future__ import annotations

import json

import airflow
import pytest
from airflow_fixtures import AirflowHome, python_run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not airflow.__version__.startswith("3."), reason="case events are Airflow 3's"),
]

PASSWORD = "db-test-password-31c9"

SCRIPT = """
import json, sys
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session
from sqlalchemy import select
from emedgene_provider.case_events import announce
from emedgene_provider.client.errors import EmedgeneNotFoundError
from emedgene_provider.hooks.emedgene import EmedgeneHook

reads = []
_get_connection = EmedgeneHook.get_connection.__func__

def counted(cls, conn_id):
    reads.append(conn_id)
    return _get_connection(cls, conn_id)

EmedgeneHook.get_connection = classmethod(counted)

URI = "emedgene://lab.emedgene.com"
with create_session() as session:
    if session.scalar(select(AssetModel).where(AssetModel.uri == URI)) is None:
        session.add(AssetModel(name=URI, uri=URI, group="asset"))

tenant = {"EMG1": "In progress", "EMG2": "Delivered"}

def read(name):
    if name not in tenant:
        raise EmedgeneNotFoundError(f"Emedgene get_case_status: case {name} not found")
    return tenant[name]

rounds = []
# a hint naming a case twice, one the tenant does not know, and a new delivered case
rounds.append(announce("emedgene_lab", ["EMG1", "EMG1", "EMG404", "EMG2"], read_status=read))
rounds.append(announce("emedgene_lab", ["EMG1", "EMG2"], read_status=read))  # replayed: no change
tenant["EMG1"] = "Delivered"
rounds.append(announce("emedgene_lab", ["EMG1"], read_status=read))
tenant["EMG1"] = "Finalized"
rounds.append(announce("emedgene_lab", ["EMG1"], read_status=read))
partitioned = announce("emedgene_part", ["EMG1"], read_status=read)  # its own record: a first sight
with create_session() as session:
    asset = session.scalar(select(AssetModel).where(AssetModel.uri == URI))
    events = list(session.scalars(
        select(AssetEvent).where(AssetEvent.asset_id == asset.id).order_by(AssetEvent.id)
    ))
    recorded = [event.extra for event in events[:-1]]
    keys = [getattr(event, "partition_key", None) for event in events]  # none before Airflow 3.2
out = {"rounds": rounds, "recorded": recorded, "partitioned": partitioned, "keys": keys, "reads": reads}
print(json.dumps(out))
"""


@pytest.mark.e2e
def test_confirmed_changes_become_asset_events_once_each(airflow_home: AirflowHome) -> None:
    conn = {
        "conn_type": "emedgene",
        "host": "https://lab.emedgene.com",
        "login": "lab-user",
        "password": PASSWORD,
        "extra": {"webhook_secret": "whsec-db-test"},
    }
    partitions = {**conn, "extra": {"case_event_partitions": True}}
    env = airflow_home.with_env(
        AIRFLOW_CONN_EMEDGENE_LAB=json.dumps(conn), AIRFLOW_CONN_EMEDGENE_PART=json.dumps(partitions)
    )
    out = python_run(env, SCRIPT)
    rounds, recorded = out["rounds"], out["recorded"]
    assert out["reads"] == ["emedgene_lab", "emedgene_part"]  # one hook per connection for the burst
    assert [len(r) for r in rounds] == [2, 0, 1, 1]
    assert recorded == [event for r in rounds for event in r]  # every announced change is in the DB
    first, second = rounds[0]
    assert (first["case_name"], first["status"], first["previous_status"], first["delivered"]) == (
        "EMG1",
        "In progress",
        None,
        False,
    )
    assert (second["case_name"], second["delivered"]) == ("EMG2", True)
    delivered = rounds[2][0]
    assert (delivered["previous_status"], delivered["status"], delivered["delivered"]) == (
        "In progress",
        "Delivered",
        True,
    )
    assert rounds[3][0]["delivered"] is False  # Finalized after Delivered: not a second delivery
    assert {e["source"] for e in recorded} == {"webhook"}
    # the case as partition_key only where the connection asks for it (Airflow 3.2+)
    expect_key = "EMG1" if tuple(map(int, airflow.__version__.split(".")[:2])) >= (3, 2) else None
    assert out["keys"] == [None] * len(recorded) + [expect_key]
    assert [e["conn_id"] for e in out["partitioned"]] == ["emedgene_part"]
    text = json.dumps(out)
    assert PASSWORD not in text and "whsec-db-test" not in text
