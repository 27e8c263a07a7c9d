"""Packaging: Airflow finds the provider, its info validates, and the connection form is declared.
The ``airflow`` CLI's view of it is tests/e2e/test_provider_cli.py."""

from __future__ import annotations

import json
from importlib.metadata import distribution, entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

import emedgene_provider
from emedgene_provider.connection_fields import CHOICES, CONN_FIELDS, UI_FIELD_BEHAVIOUR


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
    # Airflow 2.11 drops a hook whose form has a field of any other class than these four.
    allowed = {"StringField", "PasswordField", "BooleanField", "IntegerField"}
    assert {w.field_class.__name__ for w in widgets.values()} <= allowed


def _airflow3_hook_meta() -> dict:
    """The emedgene entry of what Airflow 3's UI API (``GET /ui/connections/hook_meta``) serves."""
    services = pytest.importorskip("airflow.api_fastapi.core_api.services.ui.connections")
    (meta,) = [m for m in services.HookMetaService.hook_meta_data() if m.connection_type == "emedgene"]
    return meta.model_dump(mode="json")


@pytest.mark.skipif(not airflow.__version__.startswith("3."), reason="Airflow 3's connection form")
def test_airflow3_form_as_the_ui_api_serves_it() -> None:
    """What Airflow 3.3's React form is drawn from, read where its API reads it.

    Its form draws a JSON-schema ``enum`` as a dropdown, a text field's ``examples`` as suggestions
    with a placeholder, and a ``password`` format as a masked input; placeholders of
    ``ui-field-behaviour`` reach it for the standard fields only.
    """
    meta = _airflow3_hook_meta()
    standard, extra = meta["standard_fields"], meta["extra_fields"]
    assert set(extra) == set(CONN_FIELDS)
    for name, (label, description, *_rest) in CONN_FIELDS.items():
        assert extra[name]["schema"]["title"] == label
        assert extra[name]["description"] == description
        assert extra[name]["value"] is None  # nothing written into the extra unless typed

    auth_type = extra["auth_type"]["schema"]
    assert auth_type["enum"] == ["password", "api_key"]  # a dropdown
    assert "null" in auth_type["type"]  # and it may stay blank
    assert auth_type["values_display"] == {"password": "Username and password", "api_key": "Illumina API key"}
    assert extra["api_key"]["schema"]["format"] == "password"
    assert extra["verify"]["schema"]["examples"] == ["true", "false"]

    placeholders = UI_FIELD_BEHAVIOUR["placeholders"]
    for name in ("host", "login", "password"):
        assert standard[name]["placeholder"] == placeholders[name]
    assert standard["host"]["title"] == "Tenant URL"
    assert standard["url_schema"]["hidden"] and standard["port"]["hidden"]
    # An extra's placeholder is not served: its words must be in what is (the description).
    extra_placeholders = {k: v for k, v in placeholders.items() if k in CONN_FIELDS}
    assert set(extra_placeholders) == {"api_key", "verify"}
    for name, text in extra_placeholders.items():
        assert text in extra[name]["description"], name


def test_airflow2_form_draws_auth_type_as_a_choice_list() -> None:
    """Airflow 2.11's form: the hook is registered, auth_type is a <select>, a typo is refused."""
    wtforms = pytest.importorskip("wtforms")
    from airflow.providers_manager import ProvidersManager
    from werkzeug.datastructures import MultiDict

    manager = ProvidersManager()
    assert manager.hooks["emedgene"] is not None  # not dropped for an unsupported field class
    key = "extra__emedgene__auth_type"
    form_class = type("Form", (wtforms.Form,), {key: manager.connection_form_widgets[key].field})

    html = str(form_class(MultiDict({key: "api_key"}))[key]())
    assert html.startswith(f'<select class="form-control" id="{key}" name="{key}">'), html
    assert '<option value=""></option>' in html
    for value, shown in CHOICES["auth_type"]:
        assert f'value="{value}"' in html and f">{shown}</option>" in html
    assert '<option value="api_key" selected>' in html
    for value, valid in (("", True), ("password", True), ("api_key", True), ("apikey", False)):
        assert form_class(MultiDict({key: value})).validate() is valid, value
    # A stored value that is not a choice is shown, not silently replaced by the first option.
    assert '<option value="apikey" selected>apikey</option>' in str(
        form_class(MultiDict({key: "apikey"}))[key]()
    )
