"""The "Emedgene case" extra link: from a task to its case's page on the tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey

#: XCom key under which every Emedgene task pushes its case's page URL (before any waiting).
XCOM_CASE_URL = "emedgene_case_url"
#: XCom key under which the create operator pushes the case's name as soon as the case exists,
#: before any waiting: where a downstream task (``trigger_rule="all_done"``) finds the case of a
#: create whose wait failed, which has no return value.
XCOM_CASE_NAME = "emedgene_case_name"
#: XCom key under which a wait that ended pushes ``{"case_name", "status"}``: what the cases view
#: (plugins/case_records.py) reads as a status seen by a wait.
XCOM_CASE_STATUS = "emedgene_case_status"


class EmedgeneCaseLink(BaseOperatorLink):
    """Points at the URL the task pushed under :data:`XCOM_CASE_URL`; empty before it has one."""

    name = "Emedgene case"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(key=XCOM_CASE_URL, ti_key=ti_key)
        return str(url) if url else ""
