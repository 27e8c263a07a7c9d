"""OpenLineage for the Emedgene operators: which datasets a task read and wrote, named as the
provider's ``emedgene://`` Asset URIs name them, with paths hashed unless the deployment opts in.

Names (``namespace`` + ``name``; the two joined with ``/`` read as a URI):

- a case: ``emedgene://<tenant host>`` + ``cases/<case name>``. The tenant's Asset is
  ``emedgene://<tenant host>`` (:func:`~emedgene_provider.case_events.tenant_asset_uri`), whose
  OpenLineage name is ``cases``: the stream of the tenant's case events.
- a sample file a case was created from: ``emedgene://<tenant host>/storage/<storage id>`` + its
  path, the storage being the tenant's (as an S3 bucket is the namespace of its keys);
  ``emedgene://<tenant host>/storage`` for a file with no ``storage_id``.
- a file an operator wrote: what Airflow's own Asset -> OpenLineage translation makes of its
  Asset URI (:func:`~emedgene_provider.operators.assets.asset_uri`): ``file`` + ``/abs/path``,
  ``s3://bucket`` + ``key``...

Paths leave the cluster in lineage events and may hold patient data (sample names, family ids),
so a path is sent as ``sha256:`` + the 64 hex digits of the SHA-256 of its UTF-8 text, unless
``[emedgene] lineage_plain_paths`` is true. It is a deployment's choice, next to its
``[openlineage]`` transport, not a connection's: whoever may edit a connection may not decide what
the cluster sends out. Case names (``EMG`` + digits) and storage ids are sent as they are. No
facet is added: nothing of the case JSON, the connection or its credentials is in an event.

Nothing here imports OpenLineage at import time: only :func:`operator_lineage`,
:func:`convert_asset_to_openlineage` and :func:`file_dataset` do, when the OpenLineage provider
makes an event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

from emedgene_provider.case_events import tenant_asset_uri

#: The Airflow config option that sends paths as they are: ``[emedgene] lineage_plain_paths``.
CONFIG_SECTION = "emedgene"
PLAIN_PATHS_OPTION = "lineage_plain_paths"
HASH_PREFIX = "sha256:"
#: The OpenLineage name of the tenant Asset; a case is ``cases/<case name>`` beside it.
CASES = "cases"

#: A dataset as OpenLineage names it.
DatasetId = tuple[str, str]


@dataclass(frozen=True)
class SampleFile:
    """A file a case was created from: where the tenant reads it (``storage_id``) and its path."""

    storage_id: str | None
    path: str


@dataclass(frozen=True)
class CaseLineage:
    """What one task instance read and wrote, kept on the operator while it runs: plain data, no
    OpenLineage, nothing named or hashed yet (that is done when the event is made, in the
    OpenLineage listener, with the config of that moment).

    A create reads its ``sample_files`` and writes the case (once ``case_name`` is known); a read
    of a case (``created=False``) reads the case and writes the file at ``written_uri``, if any.
    """

    #: The tenant; None until the event is made when the task resumed after a deferral without
    #: needing its connection (reading it there could fail a delivered case for lineage's sake).
    base_url: str | None
    case_name: str | None
    created: bool = False
    sample_files: tuple[SampleFile, ...] = ()
    written_uri: str | None = None

    @classmethod
    def of_create(cls, base_url: str | None, case: Any, case_name: str | None = None) -> CaseLineage:
        """A create of ``case`` (a dict or its JSON text), which made ``case_name`` if known."""
        return cls(base_url, case_name, created=True, sample_files=tuple(sample_files(case)))

    def datasets(self, plain: bool | None = None) -> tuple[list[DatasetId], list[DatasetId]]:
        """(inputs, outputs) as sent: paths hashed unless ``plain`` (default: the config option)."""
        if plain is None:
            plain = plain_paths()
        if self.base_url is None:
            raise ValueError(f"Lineage of case {self.case_name}: the tenant is not known")
        base_url = self.base_url

        def path(name: str) -> str:
            return name if plain else hashed(name)

        case = [case_dataset(base_url, self.case_name)] if self.case_name else []
        if self.created:
            files = [(storage_namespace(base_url, f.storage_id), path(f.path)) for f in self.sample_files]
            return files, case
        written = []
        if self.written_uri:
            namespace, name = file_dataset(self.written_uri)
            written = [(namespace, path(name))]
        return case, written


def plain_paths() -> bool:
    """``[emedgene] lineage_plain_paths`` (default false: paths are hashed)."""
    from airflow.providers.common.compat.sdk import conf

    return bool(conf.getboolean(CONFIG_SECTION, PLAIN_PATHS_OPTION, fallback=False))


def hashed(path: str) -> str:
    """``sha256:<64 hex>`` of the path's UTF-8 text: ``printf %s PATH | sha256sum`` finds it again."""
    return HASH_PREFIX + hashlib.sha256(path.encode()).hexdigest()


def case_dataset(base_url: str, case_name: str) -> DatasetId:
    """``(emedgene://<tenant host>, cases/<case name>)``."""
    return tenant_asset_uri(base_url), f"{CASES}/{case_name}"


def storage_namespace(base_url: str, storage_id: str | None) -> str:
    """``emedgene://<tenant host>/storage/<storage id>`` (``.../storage`` without an id)."""
    base = f"{tenant_asset_uri(base_url)}/storage"
    return f"{base}/{quote(storage_id, safe='')}" if storage_id else base


def sample_files(case: Any) -> list[SampleFile]:
    """``test_data.samples[].sampleFiles[]`` of a case (a dict, or its JSON text), each once, in
    order; anything not shaped so is left out (the create's own checks judge the case)."""
    if isinstance(case, str):
        try:
            case = json.loads(case)
        except ValueError:
            return []
    test_data = case.get("test_data") if isinstance(case, dict) else None
    samples = test_data.get("samples") if isinstance(test_data, dict) else None
    found: dict[SampleFile, None] = {}
    for sample in samples if isinstance(samples, list) else []:
        files = sample.get("sampleFiles") if isinstance(sample, dict) else None
        for entry in files if isinstance(files, list) else []:
            path = entry.get("path") if isinstance(entry, dict) else None
            if isinstance(path, str) and path:
                storage = entry.get("storage_id")
                storage_id = None if storage is None or isinstance(storage, bool) else str(storage)
                found.setdefault(SampleFile(storage_id or None, path))
    return list(found)


def file_dataset(uri: str) -> DatasetId:
    """A written file's Asset URI as Airflow translates it for OpenLineage (the providers'
    ``to_openlineage_converter``: common-io's for ``file``, Amazon's for ``s3``...), so both
    agree; where no provider knows the scheme, ``(<scheme>://<netloc>, <path without leading />)``,
    the OpenLineage naming of object stores."""
    try:
        from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
        from airflow.providers.common.compat.sdk import Asset

        translated = translate_airflow_asset(Asset(uri=uri), None)
    except Exception:  # no OpenLineage, no converter for the scheme: name it the OpenLineage way
        translated = None
    if translated is not None:
        return str(translated.namespace), str(translated.name)
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", parts.path
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"


def operator_lineage(record: CaseLineage | None, tenant: Callable[[], str] | None = None) -> Any:
    """The ``OperatorLineage`` of ``record`` (None when the task recorded nothing: OpenLineage then
    falls back to the task's inlets and outlets); ``tenant()`` gives the base URL a record made
    without one lacks (the OpenLineage provider logs, and drops, what raises here)."""
    if record is None:
        return None
    if record.base_url is None and tenant is not None:
        record = replace(record, base_url=tenant())
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs, outputs = record.datasets()
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
    )


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """The provider info's ``to_openlineage_converter`` for ``emedgene://``: the tenant Asset is
    ``(emedgene://<tenant host>, cases)``, the namespace its cases' datasets share."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=tenant_asset_uri(asset.uri), name=CASES)
