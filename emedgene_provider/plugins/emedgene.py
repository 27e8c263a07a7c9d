"""The provider's Airflow plugin: the status webhook receiver and the cases view on Airflow 3's
api-server, and (Airflow 3.1+) the UI's "Emedgene cases" page and task instance tab.

Registered through the ``airflow.plugins`` entry point (``pyproject.toml``), so installing the
provider is enough: Airflow loads the plugins a provider lists in its provider info only when
``[core] lazy_discover_providers`` is off, and it is on by default. Every Airflow process loads
entry-point plugins, so the FastAPI app is built on first use of ``fastapi_apps``, which only the
api-server reads. Airflow 2.11 has no api-server to mount it on: there it serves nothing, and
waits poll as before.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class _BuiltOnFirstRead:
    """``fastapi_apps``, made when first read (FastAPI and the app cost ~0.2 s to import)."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        if self._apps is None:
            from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

            self._apps = []
            if AIRFLOW_V_3_0_PLUS:
                from emedgene_provider.plugins.cases import router
                from emedgene_provider.plugins.webhooks import create_app

                app = create_app()
                app.include_router(router())
                self._apps.append({"app": app, "url_prefix": "/emedgene", "name": "Emedgene"})
        return self._apps


#: The UI entries (Airflow 3.1+ draws plugin views): the cases page in the navigation, and the
#: case timeline as a tab of every task instance (it says so when the task made no case).
EXTERNAL_VIEWS = [
    {
        "name": "Emedgene cases",
        "href": "/emedgene/cases",
        "destination": "nav",
        "url_route": "emedgene-cases",
        "category": "browse",
    },
    {
        "name": "Emedgene case",
        "href": "/emedgene/cases/task"
        "?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}",
        "destination": "task_instance",
        "url_route": "emedgene-case",
    },
]


def _external_views() -> list[dict[str, Any]]:
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS

    return [dict(view) for view in EXTERNAL_VIEWS] if AIRFLOW_V_3_1_PLUS else []


class EmedgenePlugin(AirflowPlugin):
    """Serves ``POST /emedgene/webhooks/{conn_id}`` (:mod:`emedgene_provider.plugins.webhooks`) and
    the cases view (:mod:`emedgene_provider.plugins.cases`)."""

    name = "emedgene"
    fastapi_apps = _BuiltOnFirstRead()
    external_views = _external_views()
