"""The Airflow Assets a written result becomes: the alias names, the asset URI of a file, and the
Airflow 2 check that an alias exists before an event names it."""

from __future__ import annotations

import os
from typing import Any

from airflow.providers.common.compat.sdk import AssetAlias, ObjectStoragePath

#: The asset aliases the export and candidates operators attach the files they write to, by
#: default: a downstream DAG ``schedule=[AssetAlias(EXPORTS_ASSET_ALIAS)]`` runs on each delivered
#: export, wherever it was written.
EXPORTS_ASSET_ALIAS = "emedgene-exports"
CANDIDATES_ASSET_ALIAS = "emedgene-candidates"


def asset_uri(path: ObjectStoragePath) -> str:
    """The Asset URI of a written result: ``file:///abs/file.json``, ``s3://bucket/key``, ...

    It names the data, not the way to it: the connection id an ObjectStoragePath carries as user
    info (``s3://aws_default@bucket/key``) is left out (Airflow 2 drops it from a Dataset URI,
    Airflow 3 would keep it: one file written through two connections would be two assets), and
    a local path without a scheme is made absolute under ``file://``. The full path, connection
    included, is in the asset event's ``extra["path"]``.
    """
    protocol = path.protocol
    if isinstance(protocol, (tuple, list)):  # fsspec may list a protocol's aliases
        protocol = protocol[0]
    if protocol in ("", "file", "local"):
        return "file://" + os.path.abspath(path.path)
    return f"{protocol}://{path.path}"


def alias_registered(name: str) -> bool:
    """Whether an asset event may name the alias ``name``: always on Airflow 3; on Airflow 2 only
    if the alias is in the metadata DB.

    Airflow 2.11 creates a missing Dataset for an alias event but not a missing alias: it fails
    the task at its end ("Can't flush None value found in collection DatasetModel.aliases"), after
    the file was written. The alias is in the DB once a DAG processor (or ``airflow dags
    reserialize``) parsed a DAG that declares it, so this only happens to runs of a DAG Airflow
    never parsed (``airflow dags test`` on a fresh DB). When the DB cannot be asked (no DB here),
    the event is recorded as Airflow would.
    """
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        return True
    try:
        from airflow.models.dataset import DatasetAliasModel  # type: ignore[import-not-found,unused-ignore]
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found = session.scalar(
                select(DatasetAliasModel.id).where(DatasetAliasModel.name == name).limit(1)
            )
    except Exception:  # no DB to ask: leave it to Airflow
        return True
    return found is not None


def with_alias(outlets: Any, alias_name: str) -> list[Any]:
    """``outlets`` (None, one object or a list: what BaseOperator accepts) plus the alias, once."""
    if outlets is None:
        listed: list[Any] = []
    elif isinstance(outlets, (list, tuple)):
        listed = list(outlets)
    else:
        listed = [outlets]
    alias = AssetAlias(alias_name)
    return listed if alias in listed else [*listed, alias]
