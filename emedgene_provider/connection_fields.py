"""The Emedgene connection form, declared once.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider info; Airflow
2.11-3.1 call the hook's ``get_connection_form_widgets``/``get_ui_field_behaviour``. Both are
built from the tables here, so the two forms cannot drift apart. No Airflow import: the provider
info must stay cheap to load.

What each form can show (checked against what Airflow serves, tests/test_provider_info.py):

- A choice list (:data:`CHOICES`): Airflow 3 renders a field whose JSON schema has ``enum`` as a
  clearable dropdown (``values_display`` gives the labels); Airflow 2.11 accepts only
  String/Integer/Password/Boolean fields from a hook (any other class drops the whole hook), so
  there it is a ``StringField`` drawn as a ``<select>`` and validated with ``any_of``.
- Placeholders: Airflow 3's API serves ``ui-field-behaviour`` placeholders for the standard
  fields only (host, login, password, ...); an extra field shows its label, its description and,
  for a text field with ``examples`` (:data:`EXAMPLES`), a "Start typing to see options" hint with
  those values as suggestions; a password-format field shows none. So the extras' placeholders in
  :data:`UI_FIELD_BEHAVIOUR` serve Airflow 2.11's form, and each one's words are also in the
  field's description for Airflow 3.
"""

from __future__ import annotations

from typing import Any

#: Extra fields: name -> (label, description, JSON-schema type, secret?).
CONN_FIELDS: dict[str, tuple[str, str, str, bool]] = {
    "api_key": (
        "Illumina API key",
        "Illumina API key (API-key auth), instead of username and password.",
        "string",
        True,
    ),
    "token_url": (
        "API-key token URL",
        "Where the API key is exchanged for a token. Derived for <tenant>.emg.illumina.com hosts "
        "(https://<tenant>.login.illumina.com/platform-services-manager/Token); required otherwise.",
        "string",
        False,
    ),
    "auth_type": (
        "Auth type",
        "Password or API key; needed only when both a password and an API key are set.",
        "string",
        False,
    ),
    "verify": (
        "TLS verification",
        "true (default), false, or the path of a CA bundle file (a lab proxy, the simulator's --tls CA).",
        "string",
        False,
    ),
    "timeout": (
        "Request timeout (s)",
        "Seconds before a single request gives up. Default 30.",
        "number",
        False,
    ),
    "token_lifetime": (
        "Token lifetime (s)",
        "Used when the login answer carries neither expires_in nor a JWT exp. Default 3600.",
        "number",
        False,
    ),
    "max_retries": (
        "Max retries",
        "Retries of a transient failure (connection, timeout, 429, 502/503/504, 500 on reads). Default 5.",
        "integer",
        False,
    ),
    "retry_max_wait": (
        "Longest retry wait (s)",
        "Cap on one backoff wait and on a server's Retry-After. Default 60.",
        "number",
        False,
    ),
    "max_response_mb": (
        "Largest answer (MB)",
        "The largest JSON answer read into memory; a bigger one is an error. Default 256 (the "
        "largest real export is about 83 MB).",
        "number",
        False,
    ),
    "reconcile_window": (
        "Reconcile window (s)",
        "After an unclear create (answer lost, timeout, 5xx), how long its idempotency key must stay "
        "absent from the case list before the case is created again. Default 600.",
        "number",
        False,
    ),
    "requests_per_second": (
        "Requests per second",
        "The most requests per second this process (a worker, the triggerer) sends to this tenant, "
        "shared by every task and wait; 0 for no limit. Default 20.",
        "number",
        False,
    ),
    "max_connections": (
        "Max connections (triggerer)",
        "HTTP connections kept open at most by the one client every deferred wait on this tenant "
        "shares in a triggerer (1 to 1000). Default 100.",
        "integer",
        False,
    ),
    "case_url_template": (
        "Case page URL template",
        "The case link's target, with {base_url} and {case_name}. Default {base_url}/case/{case_name}.",
        "string",
        False,
    ),
    "custom_statuses": (
        "Custom statuses",
        "The lab's custom statuses (between Delivered and Finalized), comma-separated. Only declared "
        "ones count as delivered; an unknown status keeps a wait going.",
        "string",
        False,
    ),
    "allow_http": (
        "Allow plain http",
        "Allow http:// to a non-loopback host. Off: the real service is HTTPS only.",
        "boolean",
        False,
    ),
}

#: Fields offered as a choice list: name -> ((value, what the form shows), ...). Blank stays allowed.
CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "auth_type": (("password", "Username and password"), ("api_key", "Illumina API key")),
}

#: Suggestions for a free-text field (Airflow 3 lists them as the user types; any text is kept).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "verify": ("true", "false"),
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "Tenant URL", "login": "Username"},
    "placeholders": {
        "host": "https://lab.emedgene.com or lab.emg.illumina.com",
        "login": "user@lab.org (password auth)",
        "password": "password (password auth)",
        "api_key": "Illumina API key (API-key auth)",
        "verify": "true",
    },
}


def conn_fields_schema() -> dict[str, Any]:
    """``conn-fields`` for the provider info (Airflow 3.2+)."""
    fields: dict[str, Any] = {}
    for name, (label, description, kind, secret) in CONN_FIELDS.items():
        schema: dict[str, Any] = {"type": [kind, "null"]}
        if secret:
            schema["format"] = "password"
        if name in CHOICES:
            schema["enum"] = [value for value, _ in CHOICES[name]]
            schema["values_display"] = dict(CHOICES[name])
        if name in EXAMPLES:
            schema["examples"] = list(EXAMPLES[name])
        fields[name] = {"label": label, "description": description, "schema": schema}
    return fields


class ChoiceWidget:
    """Draws a text field of Airflow 2.11's connection form as a ``<select>`` of :data:`CHOICES`.

    A WTForms widget: called with the bound field, returns its HTML. The blank first option keeps
    the extra unset; a stored value that is not a choice is kept (shown as is) rather than lost.
    """

    def __init__(self, choices: tuple[tuple[str, str], ...]) -> None:
        self.choices = choices

    def __call__(self, field: Any, **kwargs: Any) -> Any:
        from markupsafe import Markup, escape
        from wtforms.widgets import html_params

        kwargs.setdefault("id", field.id)
        kwargs["class"] = f"form-control {kwargs.get('class', '')}".strip()
        current = field._value() or ""
        options = [("", ""), *self.choices]
        if current and current not in {value for value, _ in options}:
            options.append((current, current))
        html = [f"<select {html_params(name=field.name, **kwargs)}>"]
        for value, shown in options:
            selected = " selected" if value == current else ""
            html.append(f'<option value="{escape(value)}"{selected}>{escape(shown)}</option>')
        html.append("</select>")
        return Markup("".join(html))  # noqa: S704 - every value and label above is escaped
