"""Fetching a delivered case's records (candidates, export): into object storage as an Asset, or
through XCom when they fit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypedDict

from airflow.providers.common.compat.sdk import AirflowFailException, Asset, AssetAlias, ObjectStoragePath

from emedgene_provider.operators.assets import (
    CANDIDATES_ASSET_ALIAS,
    EXPORTS_ASSET_ALIAS,
    alias_registered,
    asset_uri,
    with_alias,
)
from emedgene_provider.operators.case import _EmedgeneCaseOperator, push_case_url

#: Above this many bytes of JSON a result belongs in object storage, not in XCom.
DEFAULT_MAX_XCOM_BYTES = 512 * 1024


class EmedgeneResult(TypedDict):
    """What the candidates and export operators return, whatever their arguments.

    ``{"case_name", "count", "path", "records"}``: with ``output_path`` the records are in the file
    at ``path`` and ``records`` is None; without it, they are in ``records`` (the list, in XCom)
    and ``path`` is None. ``count`` is the number of records either way. The first three are also
    the ``extra`` of the asset event recorded for a written file.
    """

    case_name: str
    count: int
    path: str | None
    records: list[dict[str, Any]] | None


class _EmedgeneResultOperator(_EmedgeneCaseOperator):
    """Fetch a list of records; write it to object storage, or return it if it fits in XCom.

    Returns an :class:`EmedgeneResult`, ``{"case_name", "count", "path", "records"}``: with
    ``output_path``, ``path`` is the file written and ``records`` None; without it, ``records`` is
    the list and ``path`` None.

    Written to storage, the file is an Airflow Asset (a Dataset on Airflow 2), attached at run time
    to an asset alias the task declares: the path is usually templated or per case, so it is only
    known once the task runs, and an alias is how Airflow lets a task name such an asset.

    :param case_name: the case (templated).
    :param output_path: where to write the records as JSON, an ObjectStoragePath URI (templated);
        one ending in ``/`` is a folder that gets ``<case_name>.json``. The answer is streamed
        there, never held whole in memory, and the file is complete or absent (a local one is
        written as ``<name>.partial`` and renamed). Without it, the records are returned through XCom.
    :param max_xcom_bytes: without ``output_path``, fail (advising it) rather than return more than
        this much JSON of records through XCom. Default 512 KiB.
    :param asset_alias: with ``output_path``, the file written is recorded as an Airflow Asset (a
        Dataset on Airflow 2) whose URI is the file's (``file:///...``, ``s3://bucket/key``; see
        :func:`~emedgene_provider.operators.assets.asset_uri`), attached to the asset alias of this
        name, which the task declares in its ``outlets``; a DAG with
        ``schedule=[AssetAlias(<alias>)]`` then runs on each file delivered, and one scheduled on
        ``Asset("<uri>")`` on that file. The event's ``extra`` holds ``case_name``, ``path``,
        ``count`` and ``kind``. Default: the operator's own alias (below); None records nothing.
        Not templated.
    """

    template_fields: Sequence[str] = ("case_name", "output_path", "emedgene_conn_id")
    what = "records"
    #: ``extra["kind"]`` of the asset events, for a DAG scheduled on both aliases.
    asset_kind = "records"
    default_asset_alias: str | None = None

    def __init__(
        self,
        *,
        case_name: str,
        output_path: str | None = None,
        max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES,
        asset_alias: str | None = "",
        **kwargs: Any,
    ) -> None:
        alias_name = self._alias_name(asset_alias)
        if alias_name and output_path is not None:
            kwargs["outlets"] = with_alias(kwargs.get("outlets"), alias_name)
        super().__init__(**kwargs)
        self.case_name = case_name
        self.output_path = output_path
        self.max_xcom_bytes = max_xcom_bytes
        self.asset_alias = alias_name

    @classmethod
    def _alias_name(cls, asset_alias: str | None) -> str | None:
        """The alias to use: ``""`` (the default) means the class's, None means none."""
        return cls.default_asset_alias if asset_alias == "" else asset_alias

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Declare the alias on a mapped task too (``.partial(...).expand(case_name=...)``).

        Airflow builds a mapped task from these arguments and runs ``__init__`` only in each task
        instance, but the scheduler and the UI read the outlets from the parsed DAG (and Airflow 2
        fails a task that attaches to an alias no DAG declared). An ``output_path`` that is not
        among these arguments may be expanded, so it counts as set; only ``output_path=None`` or
        ``asset_alias=None`` declares nothing.
        """
        alias_name = cls._alias_name(kwargs.get("asset_alias", ""))
        if alias_name and kwargs.get("output_path", "") is not None:
            kwargs["outlets"] = with_alias(kwargs.get("outlets"), alias_name)
        return super().partial(**kwargs)

    def attach_asset(self, context: Any, path: ObjectStoragePath, count: int) -> None:
        """Record the written file as an asset event through the alias (what triggers consumers).

        The event's ``extra`` carries ``case_name``, ``path`` (as written, to read it back with the
        same connection), ``count`` and ``kind``; flat strings and numbers, as Airflow 2 needs.
        """
        if not self.asset_alias:
            return
        events = context.get("outlet_events")
        if events is None:  # a context built outside Airflow's task runner (unit tests)
            return
        uri = asset_uri(path)
        if not alias_registered(self.asset_alias):
            self.log.warning(
                "Asset alias %r is not in the metadata DB: this DAG was never parsed by a DAG processor "
                "(`airflow dags test` on a fresh DB?), and Airflow 2 fails a task whose event names an "
                "unknown alias; no asset event is recorded for %s.",
                self.asset_alias,
                uri,
            )
            return
        extra = {"case_name": str(self.case_name), "path": str(path), "count": count, "kind": self.asset_kind}
        events[AssetAlias(self.asset_alias)].add(Asset(uri=uri), extra=extra)
        self.log.info("Asset %s recorded through asset alias %r", uri, self.asset_alias)

    def fetch(self) -> list[dict[str, Any]]:
        """The records, in memory (for XCom)."""
        raise NotImplementedError

    def fetch_to(self, path: ObjectStoragePath) -> int:
        """Stream the records into ``path``; how many."""
        raise NotImplementedError

    def execute(self, context: Any) -> EmedgeneResult:
        from emedgene_provider.lineage import CaseLineage  # for OpenLineage only: not on a DAG's parse

        push_case_url(context, self.hook, self.case_name)
        self._lineage = CaseLineage(self.hook.config.base_url, str(self.case_name))
        if self.output_path:
            location = str(self.output_path)
            if location.endswith("/"):  # a folder: one file per case, so mapped tasks don't collide
                location = f"{location}{self.case_name}.json"
            path = ObjectStoragePath(location)
            # Streamed from the socket to the store, the file complete or absent (the hook's *_to).
            count = self.fetch_to(path)
            self.log.info("Wrote %d %s of case %s to %s", count, self.what, self.case_name, path)
            self._lineage = CaseLineage(
                self.hook.config.base_url, str(self.case_name), written_uri=asset_uri(path)
            )
            self.attach_asset(context, path, count)
            return EmedgeneResult(case_name=str(self.case_name), count=count, path=str(path), records=None)
        records = self.fetch()
        text = json.dumps(records, indent=None, sort_keys=True)
        size = len(text.encode())
        if size > self.max_xcom_bytes:
            raise AirflowFailException(
                f"Emedgene case {self.case_name}: {len(records)} {self.what} ({size} bytes of "
                f"JSON) are more than max_xcom_bytes={self.max_xcom_bytes} allows in XCom; set output_path "
                "(file://, s3://, gs://, ...) to write them to storage instead."
            )
        return EmedgeneResult(case_name=str(self.case_name), count=len(records), path=None, records=records)


class EmedgeneGetCandidatesOperator(_EmedgeneResultOperator):
    """A delivered case's candidate variants; the parameters and the result are the result
    operators' (:class:`_EmedgeneResultOperator`).

    The file written is recorded through the asset alias ``"emedgene-candidates"``
    (:data:`~emedgene_provider.operators.assets.CANDIDATES_ASSET_ALIAS`) unless ``asset_alias``
    names another; its events' ``kind`` is ``"candidates"``.
    """

    what = "candidates"
    asset_kind = "candidates"
    default_asset_alias = CANDIDATES_ASSET_ALIAS

    def fetch(self) -> list[dict[str, Any]]:
        return self.hook.get_candidates(self.case_name)

    def fetch_to(self, path: ObjectStoragePath) -> int:
        return self.hook.get_candidates_to(self.case_name, path)


class EmedgeneExportCaseOperator(_EmedgeneResultOperator):
    """A delivered case's detailed export (variants with transcripts, ACMG tags, ...); the
    parameters and the result are the result operators' (:class:`_EmedgeneResultOperator`).

    The file written is recorded through the asset alias ``"emedgene-exports"``
    (:data:`~emedgene_provider.operators.assets.EXPORTS_ASSET_ALIAS`) unless ``asset_alias`` names
    another; its events' ``kind`` is ``"export"``.
    """

    what = "exported variants"
    asset_kind = "export"
    default_asset_alias = EXPORTS_ASSET_ALIAS

    def fetch(self) -> list[dict[str, Any]]:
        return self.hook.export_case(self.case_name)

    def fetch_to(self, path: ObjectStoragePath) -> int:
        return self.hook.export_case_to(self.case_name, path)
