"""Packaging, through the ``airflow`` CLI: it lists the provider and adds an ``emedgene`` connection."""

from __future__ import annotations

import json

import pytest


@pytest.mark.e2e
def test_airflow_cli_lists_provider_and_adds_connection(airflow_cli) -> None:
    listed = airflow_cli("providers", "list", "--output", "json")
    assert any(p["package_name"] == "airflow-provider-emedgene" for p in json.loads(listed))
    airflow_cli(
        "connections",
        "add",
        "emg_cli_test",
        "--conn-type",
        "emedgene",
        "--conn-host",
        "https://lab.emedgene.com",
        "--conn-login",
        "someone",
        "--conn-password",
        "not-shown",
    )
    shown = json.loads(airflow_cli("connections", "get", "emg_cli_test", "--output", "json"))
    assert shown[0]["conn_type"] == "emedgene"
    assert shown[0]["host"] == "https://lab.emedgene.com"
