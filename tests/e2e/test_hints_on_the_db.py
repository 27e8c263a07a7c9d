"""The hint board written to a real metadata DB, as the api-server's webhook receiver writes it."""

from __future__ import annotations

import json

import pytest
from airflow_fixtures import AirflowHome, python_run

from emedgene_provider.hints import case_key, parse_board, variable_key

RECORD_SCRIPT = """
import json
from airflow.models.variable import Variable
from emedgene_provider.hints import record_hints, variable_key
record_hints("emedgene_default", ["EMG1", "EMG2"], 1000.0)
record_hints("emedgene_default", ["EMG2", "EMG3"], 1005.0)
print(json.dumps(Variable.get(variable_key("emedgene_default"))))
"""


@pytest.mark.e2e
def test_the_receiver_side_writes_the_board_to_the_metadata_db(airflow_home: AirflowHome) -> None:
    raw = python_run(airflow_home.env, RECORD_SCRIPT)
    assert "EMG" not in raw  # no case name in the metadata DB
    board = parse_board(raw)
    assert board == {
        case_key("emedgene_default", "EMG1"): 1000.0,
        case_key("emedgene_default", "EMG2"): 1005.0,
        case_key("emedgene_default", "EMG3"): 1005.0,
    }
    assert variable_key("emedgene_default") == "emedgene_hints.emedgene_default"
    assert json.loads(raw)["v"] == 1
