"""EmedgeneHook: an Airflow connection in, an :class:`~emedgene_provider.client.sync.EmedgeneClient` out.

Everything about talking to Emedgene (auth, token renewal, retries, error mapping) lives in the
Airflow-free client; the hook reads the connection, registers its secrets with Airflow's masker
before anything can fail, and exposes the client's calls as the hook's public methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from emedgene_provider.client.config import ClientConfig, config_from_conn
from emedgene_provider.connection_fields import CONN_FIELDS, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:  # the HTTP client (requests, tenacity) is imported when a call is made, not when a
    # DAG file that uses the operators is parsed
    from emedgene_provider.client.reconcile import Journal
    from emedgene_provider.client.sync import EmedgeneClient


class EmedgeneHook(BaseHook):
    """Talks to one Emedgene tenant through an Airflow connection of type ``emedgene``.

    :param emedgene_conn_id: the connection: host is the tenant (``https://lab.emedgene.com``,
        ``lab.emg.illumina.com``, or ``http://127.0.0.1:PORT`` for the simulator); login/password
        for password auth, or the extra ``api_key`` for Illumina API keys. Extras are listed in the
        README.
    """

    conn_name_attr = "emedgene_conn_id"
    default_conn_name = "emedgene_default"
    conn_type = "emedgene"
    hook_name = "Emedgene"

    def __init__(self, emedgene_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emedgene_conn_id = emedgene_conn_id

    # -- connection form (Airflow 2.11-3.1; 3.2+ reads the provider info) ---------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form, from the same table as the provider info."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, PasswordField, StringField

        widgets: dict[str, Any] = {}
        for name, (label, description, kind, secret) in CONN_FIELDS.items():
            if secret:
                widgets[name] = PasswordField(
                    lazy_gettext(label), widget=BS3PasswordFieldWidget(), description=description
                )
            elif kind == "boolean":
                widgets[name] = BooleanField(lazy_gettext(label), description=description)
            else:
                widgets[name] = StringField(
                    lazy_gettext(label), widget=BS3TextFieldWidget(), description=description
                )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    # -- the client -----------------------------------------------------------------------------

    @cached_property
    def config(self) -> ClientConfig:
        """The connection, read once, its password and API key masked before it is validated."""
        return config_from_conn(self.get_connection(self.emedgene_conn_id), on_secret=mask_secret)

    @cached_property
    def client(self) -> EmedgeneClient:
        """One client, hence one ``requests.Session`` (keep-alive), per hook."""
        from emedgene_provider.client.sync import EmedgeneClient

        return EmedgeneClient(self.config)

    def get_conn(self) -> EmedgeneClient:
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: log in and read one page of cases."""
        try:
            return self.client.test_connection()
        except Exception as exc:  # a bad connection must answer False, not crash the UI
            return False, str(exc)

    def iter_cases(self, page_size: int = 100, *, max_pages: int | None = None) -> Iterator[dict[str, Any]]:
        """Every case visible to the user, lazily, paging with ``from``/``size``; with ``max_pages``,
        an error rather than paging past that many pages."""
        return self.client.iter_cases(page_size, max_pages=max_pages)

    def list_storage_providers(self) -> list[dict[str, Any]]:
        """The storage providers the user can read sample files from."""
        return self.client.list_storage_providers()

    def create_case(self, case: dict[str, Any]) -> str:
        """Create a case; returns its name (``EMG`` + 9 digits). Raises
        :class:`~emedgene_provider.client.errors.EmedgeneAmbiguousCreateError` rather than re-send a
        create whose answer was lost."""
        return self.client.create_case(case)

    def create_case_once(
        self,
        case: dict[str, Any],
        key: str,
        *,
        since: float | None = None,
        journal: Journal | None = None,
        wait: bool = True,
        failures: Sequence[str] | None = None,
    ) -> tuple[str, bool]:
        """Create ``case`` stamped with the idempotency ``key``, at most once: after an unclear create
        no second POST goes out until the key has stayed absent for the connection's
        ``reconcile_window``, and a case that appears meanwhile is adopted. ``journal`` keeps what is
        known about the POSTs across task tries; ``wait=False`` raises
        :class:`~emedgene_provider.client.errors.EmedgeneCreatePendingError` instead of waiting out a
        window; ``failures`` are statuses (the lifecycle's when None) that make a case found by its key
        a failed one. Returns ``(case name, created by this call)``."""
        return self.client.create_case_once(
            case, key, since=since, journal=journal, wait=wait, failures=failures
        )

    def cases_with_idempotency_key(
        self, key: str, *, since: float | None = None, max_pages: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Cases stamped with ``key`` (``name``, ``status``, ``created``), newest first, lazily;
        ``since`` (epoch seconds) skips cases created earlier; fails after ``max_pages`` pages."""
        return self.client.cases_with_idempotency_key(key, since=since, max_pages=max_pages)

    def validate_case(self, case: dict[str, Any]) -> None:
        """Server-side validation (``?dry_run=true``); raises with the server's message."""
        self.client.validate_case(case)

    def get_case(self, case_name: str, test_fields: list[str] | None = None) -> dict[str, Any]:
        """The case's JSON, whole or only ``test_fields``."""
        return self.client.get_case(case_name, test_fields)

    def get_case_status(self, case_name: str) -> str:
        """The case's status string, as the server spells it."""
        return self.client.get_case_status(case_name)

    def get_candidates(self, case_name: str) -> list[dict[str, Any]]:
        """Candidate variants of a delivered case."""
        return self.client.get_candidates(case_name)

    def export_case(self, case_name: str) -> list[dict[str, Any]]:
        """The case's detailed export (``hits`` or ``variants`` in the answer)."""
        return self.client.export_case(case_name)
