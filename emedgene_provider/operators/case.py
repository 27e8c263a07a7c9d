"""What every Emedgene operator shares (the connection, the hook, the case link), and fetching one case."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.links.emedgene import XCOM_CASE_STATUS, XCOM_CASE_URL, EmedgeneCaseLink

if TYPE_CHECKING:
    from emedgene_provider.lineage import CaseLineage


#: The context variable that holds a mapped task's case name for its ``map_index_template``.
CASE_NAME_CONTEXT_KEY = "emedgene_case_name"


def label_map_index(context: Any | None, key: str, label: str) -> None:
    """Label a mapped instance (``wait_for_delivery [EMG123]``, not ``[0]``) through the context's
    ``map_index_template``, which Airflow (2.9+) renders after ``execute``: the label goes in the
    context variable ``key``, never into template text, so no Jinja in it is ever rendered. A
    template of the task's own wins; an unmapped task or an empty label is left as is. Called
    again by a task resumed after a deferral, which renders its label anew."""
    if context is None or context.get("map_index_template") is not None or not label:
        return
    if getattr(context.get("ti"), "map_index", -1) in (None, -1):
        return
    context[key] = label
    context["map_index_template"] = "{{ " + key + " }}"


def push_case_url(context: Any, hook: EmedgeneHook, case_name: str) -> None:
    """The case's link (XCom ``emedgene_case_url``), and a mapped instance labelled with the
    case's name: what every task about one case does first, operator or sensor."""
    context["ti"].xcom_push(key=XCOM_CASE_URL, value=hook.config.case_url(case_name))
    label_map_index(context, CASE_NAME_CONTEXT_KEY, str(case_name))


def push_case_status(context: Any, case_name: str, status: str) -> str:
    """Record the status a wait ended on (XCom ``emedgene_case_status``), for the cases view;
    returns ``status``."""
    context["ti"].xcom_push(key=XCOM_CASE_STATUS, value={"case_name": case_name, "status": status})
    return status


class _EmedgeneCaseOperator(BaseOperator):
    """What every Emedgene operator shares: the connection, the hook, the case link."""

    operator_extra_links = (EmedgeneCaseLink(),)
    ui_color = "#d9ecf7"
    #: What this try read and wrote, set in ``execute``, for OpenLineage (:mod:`emedgene_provider.lineage`).
    _lineage: CaseLineage | None = None

    def __init__(self, *, emedgene_conn_id: str = EmedgeneHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emedgene_conn_id = emedgene_conn_id

    @cached_property
    def hook(self) -> EmedgeneHook:
        return EmedgeneHook(emedgene_conn_id=self.emedgene_conn_id)

    def get_openlineage_facets_on_start(self) -> Any:
        """What the task is about to read (its templates are rendered by then). Without it
        OpenLineage would fall back to the files the process's ObjectStoragePath calls touched,
        by their plain paths."""
        from emedgene_provider.lineage import operator_lineage

        return operator_lineage(self._lineage_at_start())

    def _lineage_at_start(self) -> CaseLineage | None:
        from emedgene_provider.lineage import CaseLineage

        case_name = getattr(self, "case_name", None)
        return CaseLineage(self.hook.config.base_url, str(case_name)) if case_name else None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The OpenLineage provider's hook (also on failure): what ``_lineage`` recorded, paths
        hashed by default. OpenLineage is imported only here, so the provider works without it."""
        from emedgene_provider.lineage import operator_lineage

        return operator_lineage(self._lineage, tenant=lambda: self.hook.config.base_url)


class EmedgeneGetCaseOperator(_EmedgeneCaseOperator):
    """Return a case's JSON, whole or only ``test_fields``.

    :param case_name: the case (templated).
    :param test_fields: the fields to fetch (templated); None for the whole case.
    """

    template_fields: Sequence[str] = ("case_name", "test_fields", "emedgene_conn_id")

    def __init__(self, *, case_name: str, test_fields: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case_name = case_name
        self.test_fields = test_fields

    def execute(self, context: Any) -> dict[str, Any]:
        from emedgene_provider.lineage import CaseLineage

        push_case_url(context, self.hook, self.case_name)
        self._lineage = CaseLineage(self.hook.config.base_url, str(self.case_name))
        return self.hook.get_case(self.case_name, self.test_fields)
