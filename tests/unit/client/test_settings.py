"""Each connection extra is declared once (client/settings.py); the known-extras check, the number
limits, both Airflow majors' forms and the docs' tables all follow it, and so does what a
connection left blank actually means."""

from __future__ import annotations

import re
from typing import Any

import pytest
from locations import ROOT

from emedgene_provider.client import config as config_module
from emedgene_provider.client import ratelimit
from emedgene_provider.client.config import (
    KNOWN_EXTRAS,
    NUMBER_LIMITS,
    RENAMED_EXTRAS,
    ClientConfig,
    config_from_connection,
)
from emedgene_provider.client.errors import EmedgeneConfigError
from emedgene_provider.client.settings import SETTINGS, doc_tables, extras_table, rewrite_doc
from emedgene_provider.connection_fields import CHOICES, CONN_FIELDS, UI_FIELD_BEHAVIOUR, conn_fields_schema

#: Each doc and whether its table carries the longer account (the README's does).
DOCS = {"README.md": True, "docs/connection.md": False}
BASE = "https://lab.emedgene.com"
NUMBERS = [name for name, setting in SETTINGS.items() if setting.bounds is not None]


@pytest.fixture
def real_rate_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest makes connections unlimited by default for the other tests; not here."""
    monkeypatch.setattr(config_module, "DEFAULT_REQUESTS_PER_SECOND", ratelimit.DEFAULT_REQUESTS_PER_SECOND)


def _config(**extra: object) -> ClientConfig:
    return config_from_connection(host=BASE, login="u", password="p", extra=extra)


def _blank_means(config: ClientConfig) -> dict[str, object]:
    """What each number extra left blank came out as, in the extra's own unit."""
    return {
        "timeout": config.timeout,
        "session_lifetime": config.session_lifetime,
        "max_retries": config.retry.max_attempts - 1,
        "retry_max_wait": config.retry.max_wait,
        "max_response_mb": config.max_response_bytes / (1024 * 1024),
        "reconcile_window": config.reconcile_window,
        "max_connections": config.max_connections,
        "requests_per_second": config.requests_per_second,
        "webhook_poll_interval": config.webhook_poll_interval,
    }


def _doc_rows(doc: str) -> dict[str, list[str]]:
    """The cells after the name of each row of a doc's extras table."""
    rows: dict[str, list[str]] = {}
    for line in (ROOT / doc).read_text().splitlines():
        found = re.match(r"^\| `(\w+)` \| (.*) \|$", line)
        if found and found[1] in SETTINGS:
            rows[found[1]] = found[2].split(" | ")
    return rows


# -- the docs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("doc", "details"), DOCS.items())
def test_each_doc_holds_the_table_the_declaration_renders(doc: str, details: bool) -> None:
    blocks = doc_tables((ROOT / doc).read_text())
    assert len(blocks) == 1, f"{doc}: one generated extras table"
    ((found, rendered),) = blocks
    assert rendered == "\n" + extras_table(details=details) + "\n"
    assert found == rendered, f"{doc} drifted: python -m emedgene_provider.client.settings {doc}"


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_defaults_are_what_a_blank_extra_means(doc: str, real_rate_default: None) -> None:
    """Read from the doc as a user would, checked against what the code does, not the declaration."""
    rows = _doc_rows(doc)
    assert list(rows) == list(KNOWN_EXTRAS)
    blank = _blank_means(_config())
    for name in NUMBERS:
        assert float(rows[name][0].strip("`")) == blank[name], name
    assert set(NUMBERS) == set(blank)
    assert rows["verify"][0] == "`true`" and _config().verify is True
    assert rows["allow_http"][0] == "`false`"
    with pytest.raises(EmedgeneConfigError, match="plain http"):
        config_from_connection(host="http://lab.example.org", login="u", password="p", extra={})
    template = rows["case_url_template"][0].strip("`")
    assert _config().case_url("EMG1") == template.format(base_url=BASE, case_name="EMG1")
    for name in ("api_key", "custom_statuses"):
        assert rows[name][0] == "none", name
    assert _config().credentials.api_key is None and _config().custom_statuses == ()


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_bounds_are_the_ones_enforced(doc: str) -> None:
    rows = _doc_rows(doc)
    for name in NUMBERS:
        low, high = NUMBER_LIMITS[name]
        allowed = rows[name][1]
        assert allowed.endswith(", whole") == (SETTINGS[name].kind == "integer"), name
        if "year" not in allowed and "day" not in allowed:
            assert allowed.startswith(f"{low:g}") and f" to {high:g}" in allowed, (name, allowed)
    assert rows["session_lifetime"][1] == "1 s to 1 year"
    assert NUMBER_LIMITS["session_lifetime"][1] == 365 * 86400
    assert rows["reconcile_window"][1] == "0 s to 7 days"
    assert NUMBER_LIMITS["reconcile_window"][1] == 7 * 86400
    assert rows["auth_type"][1] == ", ".join(f"`{value}`" for value, _ in CHOICES["auth_type"])


def test_a_drifted_table_is_caught_and_rewritten() -> None:
    text = (ROOT / "docs" / "connection.md").read_text()
    drifted = text.replace("| `timeout` | `30` |", "| `timeout` | `25` |")
    assert drifted != text
    ((found, rendered),) = doc_tables(drifted)
    assert found != rendered
    assert rewrite_doc(drifted) == rewrite_doc(text) == text


def test_the_readme_tells_the_burst_the_limiter_uses() -> None:
    readme = (ROOT / "README.md").read_text()
    assert ratelimit.RateLimiter(20.0).burst == ratelimit.default_burst(20.0) == 1.0
    assert "a burst of one" in readme and "rate / 10" not in readme


# -- the known-extras check and the number limits ---------------------------------------------------


def test_known_extras_and_limits_are_the_declaration() -> None:
    assert tuple(SETTINGS) == KNOWN_EXTRAS
    assert {name: SETTINGS[name].bounds for name in NUMBERS} == NUMBER_LIMITS
    assert set(NUMBERS) == {n for n, s in SETTINGS.items() if s.kind in ("number", "integer")}
    with pytest.raises(EmedgeneConfigError, match=r"unknown extra\(s\) 'verfy' .*; known extras: api_key, "):
        _config(verfy="false")


@pytest.mark.parametrize("name", NUMBERS)
def test_each_number_extra_is_held_to_its_declared_bounds(name: str) -> None:
    low, high = SETTINGS[name].minimum, SETTINGS[name].maximum
    assert low is not None and high is not None
    assert _blank_means(_config(**{name: high}))[name] == high
    assert _blank_means(_config(**{name: low}))[name] == low
    for beyond, words in ((high + 1, f"at most {high:g}"), (low - 1, f"at least {low:g}")):
        with pytest.raises(EmedgeneConfigError, match=re.escape(f"extra '{name}' must be {words}.") + "$"):
            _config(**{name: beyond})
    if SETTINGS[name].kind == "integer":
        with pytest.raises(EmedgeneConfigError, match="must be a whole number"):
            _config(**{name: low + 0.5})


def test_auth_type_accepts_exactly_its_declared_choices() -> None:
    values = [value for value, _ in SETTINGS["auth_type"].choices]
    for value in values:
        config = config_from_connection(
            host="lab.emg.illumina.com", login="u", password="p", extra={"api_key": "k", "auth_type": value}
        )
        assert config.credentials.auth_type == value
    with pytest.raises(EmedgeneConfigError, match="must be 'password' or 'api_key', not 'apikey'"):
        _config(auth_type="apikey")


# -- both Airflow majors' forms ---------------------------------------------------------------------


def test_airflow3_fields_are_the_declaration() -> None:
    fields = conn_fields_schema()
    assert list(fields) == list(SETTINGS) == list(CONN_FIELDS)
    for name, setting in SETTINGS.items():
        field = fields[name]
        declared = (setting.label, setting.description())
        assert (field["label"], field["description"]) == CONN_FIELDS[name][:2] == declared
        assert field["schema"]["type"] == [setting.kind, "null"]
        assert (field["schema"].get("format") == "password") == setting.secret
        assert field["schema"].get("enum", []) == [value for value, _ in setting.choices]
        assert "`" not in field["description"], name  # Markdown is for the docs


@pytest.mark.parametrize("name", NUMBERS)
def test_the_form_tells_each_numbers_default_and_range(name: str) -> None:
    """The form shows no default and no range otherwise; a user types into it blind."""
    setting = SETTINGS[name]
    description = setting.description()
    assert description.endswith(f" Default {setting.number_default:g}."), description
    assert f"{setting.minimum:g}" in description


def test_extra_placeholders_come_from_the_declaration() -> None:
    placeholders = UI_FIELD_BEHAVIOUR["placeholders"]
    declared = {name: s.placeholder for name, s in SETTINGS.items() if s.placeholder}
    assert {k: v for k, v in placeholders.items() if k in SETTINGS} == declared
    for name, text in declared.items():
        assert text in SETTINGS[name].description()


def test_airflow2_widgets_follow_the_declaration() -> None:
    pytest.importorskip("wtforms")
    pytest.importorskip("flask_appbuilder")
    from emedgene_provider.hooks.emedgene import EmedgeneHook

    widgets = EmedgeneHook.get_connection_form_widgets()
    assert list(widgets) == list(SETTINGS)
    for name, setting in SETTINGS.items():
        kind = widgets[name].field_class.__name__
        expected = "PasswordField" if setting.secret else "StringField"
        if setting.kind == "boolean":
            expected = "BooleanField"
        assert kind == expected, name
        assert widgets[name].kwargs["description"] == setting.description()


# -- names Airflow masks ---------------------------------------------------------------------------

#: Where Airflow decides from a key's name that its value is secret: the API server's and the task
#: SDK's copies (Airflow 3), the one module of Airflow 2.
_MASKERS = (
    "airflow._shared.secrets_masker.secrets_masker",
    "airflow.sdk._shared.secrets_masker.secrets_masker",
    "airflow.utils.log.secrets_masker",
)


def _hiders() -> list[Any]:
    import importlib

    found = []
    for module in _MASKERS:
        try:
            found.append(importlib.import_module(module).should_hide_value_for_key)
        except ImportError:
            continue
    return found


def test_airflow_masks_the_secret_extras_and_no_other() -> None:
    """Airflow masks every extra whose name holds a sensitive word ("token", "proxy", "dsn"...):
    a setting that is not a secret must not have such a name, or its value turns into *** in
    logs, the UI and the REST API, and so does any other text equal to it."""
    hiders = _hiders()
    assert hiders, "no Airflow secrets masker found"
    for hide in hiders:
        assert {name for name in SETTINGS if hide(name)} == {n for n, s in SETTINGS.items() if s.secret}


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_EXTRAS.items()))
def test_a_renamed_extra_is_refused_naming_its_new_name(old: str, new: str) -> None:
    assert new in SETTINGS and old not in SETTINGS
    assert any(hide(old) for hide in _hiders())  # why it was renamed
    with pytest.raises(EmedgeneConfigError, match=f"'{old}' \\(renamed '{new}'"):
        _config(**{old: "1"})
