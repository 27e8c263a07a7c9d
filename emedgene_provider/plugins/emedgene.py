"""The provider's Airflow plugin: the status webhook receiver on Airflow 3's api-server.

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
                from emedgene_provider.plugins.webhooks import create_app

                self._apps.append(
                    {"app": create_app(), "url_prefix": "/emedgene", "name": "Emedgene webhooks"}
                )
        return self._apps


class EmedgenePlugin(AirflowPlugin):
    """Serves ``POST /emedgene/webhooks/{conn_id}`` (see :mod:`emedgene_provider.plugins.webhooks`)."""

    name = "emedgene"
    fastapi_apps = _BuiltOnFirstRead()
