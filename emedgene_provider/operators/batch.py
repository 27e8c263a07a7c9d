"""A batch CSV manifest in a DAG: its cases, checked (all or nothing), then what they became.

The whole batch, the way a lab uploads it to Emedgene, is three lines::

    cases = cases_from_batch_csv("{{ params.manifest }}", validate_on_server=True)
    created = EmedgeneCreateCaseOperator.partial(task_id="create_case", deferrable=True).expand(case=cases)
    batch_summary(created.output, cases=cases)

- :func:`cases_from_batch_csv` adds an :class:`EmedgeneBatchCsvOperator` task that reads the file
  (:func:`emedgene_provider.cases.batch_csv.read_batch_csv`) and returns the case JSONs, in file
  order, to map the create over. A file with problems fails the task with every problem listed, and
  no retry (the file must change first). Rows whose ``Files Names`` is ``auto`` (the FASTQs of a
  BaseSpace project's biosample) or ``existing`` (a FASTQ sample already on the platform) are
  resolved on the tenant here (:mod:`emedgene_provider.cases.tenant_samples`), before any case is
  created; each sample it cannot find is a problem named by family and row. Phenotypes are checked
  against the HPO when it is at hand (:mod:`emedgene_provider.cases.phenotypes`; the release is
  logged). With ``validate_on_server=True`` every case is then validated by the tenant (``POST
  /api/cases/v2/cases?dry_run=true``), and if it refuses any, the task fails listing each refusal
  with its family and the server's words, and returns nothing: no case of the batch is created, as
  with Emedgene's own batch upload.
- Each mapped create is labelled with its Family Id in the UI (the create operator does it for a
  case that carries ``test_data.extra_data.family_id``, as every case of the reader does).
- :func:`batch_summary` adds an :class:`EmedgeneBatchSummaryOperator` task that returns
  ``{family_id: {"case_name": ..., "status": ...}}``: the map from a lab's families to the cases
  the tenant named, with each case's status when the summary runs.

Importing this module imports no HTTP library: the hook makes its client when a call is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSkipException,
    BaseOperator,
    ObjectStoragePath,
)

from emedgene_provider.cases.batch_csv import BatchCase, BatchCsvError, read_batch_csv
from emedgene_provider.cases.extra_data import FAMILY_ID_KEY, family_of
from emedgene_provider.client.errors import EmedgeneInvalidRequestError
from emedgene_provider.hooks.emedgene import EmedgeneHook

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import XComArg

__all__ = [
    "EmedgeneBatchCsvOperator",
    "EmedgeneBatchSummaryOperator",
    "batch_summary",
    "cases_from_batch_csv",
    "read_all",
]


class EmedgeneBatchCsvOperator(BaseOperator):
    """Read an Emedgene batch CSV and return its case JSONs, one per Family Id, in file order.

    :param source: the batch CSV: a local path (a relative one is looked up in the DAG's folder) or
        an object storage URI (``s3://...``, ``file://...``); templated.
    :param validate_on_server: validate every case with the tenant (``?dry_run=true``) before
        returning any: all or nothing. A refusal fails the task listing each refused family and
        the server's words, without retry; a tenant that cannot be reached fails it as any call
        does (and the task's retries apply).
    :param skip_if_missing: a source that does not exist skips the task, and so the batch (a day
        without samples), instead of failing it.
    :param family_id_key: the ``test_data.extra_data`` key each case carries its Family Id in
        (templated).
    :param emedgene_conn_id: the Emedgene connection (only ``validate_on_server`` uses it).
    """

    template_fields: Sequence[str] = ("source", "family_id_key", "emedgene_conn_id")
    ui_color = "#d9ecf7"

    def __init__(
        self,
        *,
        source: str,
        validate_on_server: bool = False,
        skip_if_missing: bool = False,
        family_id_key: str = FAMILY_ID_KEY,
        emedgene_conn_id: str = EmedgeneHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.validate_on_server = validate_on_server
        self.skip_if_missing = skip_if_missing
        self.family_id_key = family_id_key
        self.emedgene_conn_id = emedgene_conn_id

    @cached_property
    def hook(self) -> EmedgeneHook:
        return EmedgeneHook(emedgene_conn_id=self.emedgene_conn_id)

    def _location(self) -> Path | ObjectStoragePath:
        location = str(self.source).strip()
        if "://" in location:
            return ObjectStoragePath(location)
        path = Path(location)
        if path.is_absolute() or not self.has_dag():
            return path
        return Path(self.dag.folder) / path

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from emedgene_provider.cases.hpo import HpoFileError
        from emedgene_provider.cases.phenotypes import ontology_and_note

        location = self._location()
        if self.skip_if_missing and not location.exists():
            raise AirflowSkipException(f"No batch CSV at {location}: nothing to create")
        try:
            ontology, note = ontology_and_note()
        except HpoFileError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("Batch CSV %s: %s", location, note)
        from emedgene_provider.cases.tenant_samples import TenantSamples

        # Asked only for rows the tenant alone can resolve (auto, existing, BaseSpace file ids):
        # a batch of plain paths reads no connection.
        tenant = TenantSamples(lambda call: self.hook.get_conn().call(call))
        try:
            batch = read_batch_csv(
                location, family_id_key=self.family_id_key, resolver=tenant, ontology=ontology
            )
        except BatchCsvError as error:
            raise AirflowFailException(str(error)) from None
        except OSError as exc:
            raise AirflowFailException(f"batch CSV {str(location)!r} cannot be read: {exc}") from None
        finally:
            for line in tenant.resolved:
                self.log.info("Batch CSV %s: %s", location, line)
        for case in batch:
            for warning in case.warnings:
                self.log.warning("Family %s: %s", case.family_id, warning)
        if self.validate_on_server:
            self._validate(batch, str(location))
        self.log.info(
            "Batch CSV %s: %d case(s): %s", location, len(batch), ", ".join(c.family_id for c in batch)
        )
        return [case.payload for case in batch]

    def _validate(self, batch: list[BatchCase], location: str) -> None:
        """Every case through the tenant's dry run; fail listing every refusal if there is any."""
        refusals: list[str] = []
        for case in batch:
            try:
                self.hook.validate_case(case.payload)
            except EmedgeneInvalidRequestError as refused:
                rows = ", ".join(map(str, case.data_rows))
                said = refused.server_message or str(refused)
                refusals.append(f"family {case.family_id} (data row(s) {rows}): {said}")
        if refusals:
            listed = "\n".join(f"  - {r}" for r in refusals)
            raise AirflowFailException(
                f"Emedgene refused {len(refusals)} of the {len(batch)} case(s) of batch CSV {location} "
                f"in its dry run; no case was created:\n{listed}"
            )
        self.log.info("Emedgene's dry run accepted all %d case(s)", len(batch))


def cases_from_batch_csv(
    source: str,
    *,
    task_id: str = "read_batch_csv",
    validate_on_server: bool = False,
    emedgene_conn_id: str = EmedgeneHook.default_conn_name,
    **kwargs: Any,
) -> XComArg:
    """The case JSONs of a batch CSV, as a task's output to ``expand`` the create over::

        EmedgeneCreateCaseOperator.partial(task_id="create_case").expand(
            case=cases_from_batch_csv("{{ params.manifest }}", validate_on_server=True)
        )

    Adds an :class:`EmedgeneBatchCsvOperator` (its parameters; ``kwargs`` go to it too, e.g.
    ``skip_if_missing``, ``retries``) to the DAG being defined.
    """
    operator = EmedgeneBatchCsvOperator(
        task_id=task_id,
        source=source,
        validate_on_server=validate_on_server,
        emedgene_conn_id=emedgene_conn_id,
        **kwargs,
    )
    return operator.output


def read_all(values: Any) -> list[Any]:
    """A task argument that may be a mapped task's output, as a list, in one read.

    A mapped task's output reaches a task as a lazy sequence; iterating it reads item by item
    until one read past the end fails, which Airflow 3 logs as ``[error] XCom not found`` in a
    green run. A slice is one request (one query on Airflow 2) and no failed read.
    """
    if values is None:
        return []
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        return list(values[:])
    return list(values)


class EmedgeneBatchSummaryOperator(BaseOperator):
    """Return a batch's summary: ``{family_id: {"case_name": ..., "status": ...}}``.

    Each case's family and status are read from the tenant (``GET /api/test/{name}``), so the
    summary is right whatever order the mapped creates finished in. With ``cases`` (the reader's
    output), families come in file order and a family whose create failed is listed with
    ``case_name`` and ``status`` None (give the task ``trigger_rule="all_done"`` to see them). A
    case without a Family Id is listed under its case name.

    :param case_names: the created cases' names, e.g. the mapped create's ``output`` (templated).
    :param cases: the batch's case JSONs, e.g. :func:`cases_from_batch_csv`'s output (templated).
    :param family_id_key: the ``extra_data`` key of the Family Id (templated).
    :param emedgene_conn_id: the Emedgene connection.
    """

    template_fields: Sequence[str] = ("case_names", "cases", "family_id_key", "emedgene_conn_id")
    ui_color = "#d9ecf7"

    def __init__(
        self,
        *,
        case_names: Any,
        cases: Any = None,
        family_id_key: str = FAMILY_ID_KEY,
        emedgene_conn_id: str = EmedgeneHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.case_names = case_names
        self.cases = cases
        self.family_id_key = family_id_key
        self.emedgene_conn_id = emedgene_conn_id

    @cached_property
    def hook(self) -> EmedgeneHook:
        return EmedgeneHook(emedgene_conn_id=self.emedgene_conn_id)

    def execute(self, context: Any) -> dict[str, dict[str, Any]]:
        summary: dict[str, dict[str, Any]] = {}
        for case in read_all(self.cases):
            family = family_of(case, self.family_id_key)
            if family is not None:
                summary[family] = {"case_name": None, "status": None}
        for name in [str(n) for n in read_all(self.case_names) if n]:
            found = self.hook.get_case(name, ["status", "extra_data"])
            family = family_of(found, self.family_id_key) or name
            if (summary.get(family) or {}).get("case_name") not in (None, name):
                self.log.warning(
                    "Family %s has two cases, %s and %s: the summary shows the latter",
                    family,
                    summary[family]["case_name"],
                    name,
                )
            summary[family] = {"case_name": name, "status": found.get("status")}
        for family, entry in summary.items():
            self.log.info("Family %s: case %s, %s", family, entry["case_name"], entry["status"])
        return summary


def batch_summary(
    case_names: Any,
    *,
    cases: Any = None,
    task_id: str = "batch_summary",
    emedgene_conn_id: str = EmedgeneHook.default_conn_name,
    **kwargs: Any,
) -> XComArg:
    """A task returning ``{family_id: {"case_name", "status"}}`` for a batch: adds an
    :class:`EmedgeneBatchSummaryOperator` (``kwargs`` go to it, e.g. ``trigger_rule``)."""
    operator = EmedgeneBatchSummaryOperator(
        task_id=task_id, case_names=case_names, cases=cases, emedgene_conn_id=emedgene_conn_id, **kwargs
    )
    return operator.output
