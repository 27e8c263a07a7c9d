"""The Emedgene connection form, declared once.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider info; Airflow
2.11-3.1 call the hook's ``get_connection_form_widgets``/``get_ui_field_behaviour``. Both are
built from the tables here, so the two forms cannot drift apart. No Airflow import: the provider
info must stay cheap to load.
"""

from __future__ import annotations

from typing import Any

#: Extra fields: name -> (label, description, JSON-schema type, secret?).
CONN_FIELDS: dict[str, tuple[str, str, str, bool]] = {
    "api_key": (
        "Illumina API key",
        "Illumina API key, for API-key auth instead of login/password.",
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
        "password or api_key; needed only when both a password and an API key are set.",
        "string",
        False,
    ),
    "verify": (
        "TLS verification",
        "true (default), false, or the path of a CA bundle (a lab proxy, the simulator's --tls CA).",
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
        fields[name] = {"label": label, "description": description, "schema": schema}
    return fields
