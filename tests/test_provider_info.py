"""Packaging: Airflow finds the provider, its info validates, and the connection form is declared."""

from __future__ import annotations

import json
from importlib.metadata import distribution, entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

import emedgene_provider
from emedgene_provider.connection_fields import CONN_FIELDS


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = emedgene_provider.get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-emedgene"
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "emedgene"
    assert conn["hook-name"] == "Emedgene"
    assert conn["conn-fields"]["api_key"]["schema"]["format"] == "password"
    assert set(conn["conn-fields"]) == set(CONN_FIELDS)
    assert info["extra-links"] == ["emedgene_provider.links.emedgene.EmedgeneCaseLink"]
    for section in ("operators", "sensors", "hooks", "triggers"):
        for module in info[section][0]["python-modules"]:
            __import__(module)  # every module named there imports


def test_entry_point_points_at_get_provider_info_of_this_distribution() -> None:
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("emedgene_provider")
    ]
    assert ep.name == "provider_info"
    assert ep.load() is emedgene_provider.get_provider_info
    # Airflow crashes every `providers` command when these two differ.
    assert ep.dist is not None
    assert ep.dist.name == emedgene_provider.get_provider_info()["package-name"]
    assert distribution("airflow-provider-emedgene").version == emedgene_provider.__version__


def test_providers_manager_registers_hook_and_form_fields() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-emedgene" in manager.providers
    hook = manager.hooks["emedgene"]
    assert hook is not None
    assert hook.hook_class_name == "emedgene_provider.hooks.emedgene.EmedgeneHook"
    assert hook.connection_id_attribute_name == "emedgene_conn_id"
    widgets = manager.connection_form_widgets
    for name in CONN_FIELDS:
        assert f"extra__emedgene__{name}" in widgets, name
    assert widgets["extra__emedgene__api_key"].is_sensitive
    behaviour = manager.field_behaviours["emedgene"]
    assert "schema" in behaviour["hidden_fields"]
    assert behaviour["relabeling"]["host"] == "Tenant URL"
    assert "emedgene_provider.links.emedgene.EmedgeneCaseLink" in manager.extra_links_class_names


def test_hook_form_methods_match_the_declared_fields() -> None:
    """Airflow 2.11-3.1 read the hook's methods; they are built from the same table."""
    from emedgene_provider.hooks.emedgene import EmedgeneHook

    behaviour = EmedgeneHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["login"] == "Username"
    try:
        widgets = EmedgeneHook.get_connection_form_widgets()
    except ImportError as exc:  # Airflow 3 without the FAB provider: the 3.2+ path above applies
        assert airflow.__version__.startswith("3."), exc
        return
    assert set(widgets) == set(CONN_FIELDS)
    assert type(widgets["api_key"]).__name__ == "UnboundField"
    assert widgets["api_key"].field_class.__name__ == "PasswordField"


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
