"""Creating a case at most once per task instance, then waiting for it: the operator, its idempotency
key, and the journal that keeps what is known about its creates across tries."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    ObjectStoragePath,
    conf,
)
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

from emedgene_provider.cases.extra_data import FAMILY_ID_KEY
from emedgene_provider.cases.validation import case_problems, case_warnings
from emedgene_provider.client.create import CLOCK_SKEW, CreateRecord, Journal, MemoryJournal
from emedgene_provider.client.endpoints import case_path_segment
from emedgene_provider.client.errors import EmedgeneCreatePendingError
from emedgene_provider.client.events import (
    EventError,
    ReconcileEvent,
    ReconcileOutcome,
    parse_reconcile_event,
    parse_status_event,
)
from emedgene_provider.client.polling import PollSchedule
from emedgene_provider.links.emedgene import XCOM_CASE_NAME
from emedgene_provider.operators.case import (
    _EmedgeneCaseOperator,
    label_map_index,
    push_case_status,
    push_case_url,
)
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger, EmedgeneCreateReconcileTrigger
from emedgene_provider.waiting import DEFAULT_TARGETS, check_case, resume, status_list, wait_blocking

if TYPE_CHECKING:
    from emedgene_provider.client.claims import KeyClaims
    from emedgene_provider.lineage import CaseLineage

#: The context variable that holds a mapped create's Family Id for its ``map_index_template``.
FAMILY_ID_CONTEXT_KEY = "emedgene_family_id"


class EmedgeneCreateCaseOperator(_EmedgeneCaseOperator):
    """Create an Emedgene case, push its name and page URL, and wait until it is delivered.

    The payload is checked locally first and every problem is listed at once.

    XCom, once each per try:

    - ``emedgene_case_name`` (:data:`~emedgene_provider.links.emedgene.XCOM_CASE_NAME`): the case
      name, pushed as soon as the case exists (created, or found from an earlier try), *before*
      any waiting. A downstream task finds the case here even when the wait failed (a failure
      status, a timeout): give it ``trigger_rule="all_done"`` and read
      ``ti.xcom_pull(task_ids="create_case", key="emedgene_case_name")``.
    - ``emedgene_case_url`` (:data:`~emedgene_provider.links.emedgene.XCOM_CASE_URL`): the case's
      page, pushed with it; the "Emedgene case" link shows it.
    - ``return_value`` (``create.output``): the case name, only when the task succeeds, i.e. once
      the case exists and, with ``wait_for_completion``, has reached a target status.

    :param case: the case JSON, as a dict or as the path of a ``.json`` file (relative to the DAG
        folder or ``template_searchpath``); both are Jinja-templated.
    :param emedgene_conn_id: the Emedgene connection.
    :param wait_for_completion: wait until a target status before finishing (default True, as
        dbt Cloud's and Databricks' operators do: ``create >> export`` then reads right). Make it
        deferrable for waits of days; False returns once the case exists (a separate
        :class:`~emedgene_provider.sensors.emedgene.EmedgeneCaseStatusSensor` then waits).
    :param target_statuses: statuses that end the wait. Default ``("Delivered",)``.
    :param failure_statuses: statuses that fail it; None for the lifecycle's failure statuses.
    :param poll_interval: seconds between status checks once the case is one stage before a target
        (In progress, waiting for Delivered); earlier stages are checked less often, with jitter
        (the rule: :mod:`emedgene_provider.client.polling`).
    :param max_poll_interval: the longest wait between two checks; None for
        ``max(poll_interval, min(8 * poll_interval, 3600))``.
    :param timeout: seconds to wait at most.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param idempotency_key: stamped into ``test_data.extra_data.airflow_idempotency_key`` of the
        case and looked up before a retry creates anything (templated). Default
        ``airflow:<dag_id>:<run_id>:<task_id>:<map_index>``.
    :param durable: keep what is known about this task's creates (each POST, recorded before it is
        sent, and the case it made) in Airflow's durable task state, so that a retry reattaches to
        its case, or settles an unclear create, instead of guessing; default True. Airflow 3.3+
        only: below 3.3 there is no task state store, and a retry treats whatever an earlier try
        may have sent as an unclear create made just now (it adopts a case that appears by its key
        within the ``reconcile_window`` and creates one only after it). False gives that behaviour
        on 3.3 too.
    :param validate_locally: check the case JSON here before sending it (default True): a case with
        a certain problem (a malformed shape, notes over 4000 characters, more than 100 phenotypes,
        two probands...) fails the task with every problem listed and nothing sent, and a value
        the tenant may know better than this provider (a case type or relationship it has not
        seen) is logged as a warning and sent as given, for the server to decide. False sends the
        case unchecked (the server still validates it): for a case shape this provider does not
        know yet.

    A mapped instance whose case carries a Family Id (``test_data.extra_data.family_id``, as
    :func:`emedgene_provider.cases.batch_csv.read_batch_csv` sets it) is labelled with it in the UI, unless
    the task has a ``map_index_template`` of its own.
    """

    template_fields: Sequence[str] = (
        "case",
        "emedgene_conn_id",
        "target_statuses",
        "failure_statuses",
        "idempotency_key",
    )
    template_ext: Sequence[str] = (".json",)
    template_fields_renderers = {"case": "json"}

    def __init__(
        self,
        *,
        case: dict[str, Any] | str,
        wait_for_completion: bool = True,
        target_statuses: Sequence[str] = DEFAULT_TARGETS,
        failure_statuses: Sequence[str] | None = None,
        poll_interval: float = 60.0,
        timeout: float = 7 * 24 * 3600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        idempotency_key: str | None = None,
        max_poll_interval: float | None = None,
        validate_locally: bool = True,
        durable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.durable = durable and AIRFLOW_V_3_3_PLUS  # no task state store below Airflow 3.3
        self.case = case
        self.validate_locally = validate_locally
        self.idempotency_key = idempotency_key
        self.wait_for_completion = wait_for_completion
        self.target_statuses = target_statuses
        self.failure_statuses = failure_statuses
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        if wait_for_completion:  # a bad interval fails the DAG file's parse, not the wait
            PollSchedule(poll_interval, max_poll_interval)

    def load_case(self, context: Any | None = None) -> dict[str, Any]:
        """The rendered case, checked: a dict as is; JSON text (what a literal ``.json`` path renders
        to); or a path that only became one when templated (``"{{ params.case_file }}"``), read
        and rendered here. Every problem is listed at once and nothing is sent if there is one."""
        case: Any = self.case
        if _is_case_file(case):
            case = self._read_case_file(case.strip(), context)
        if isinstance(case, str):
            try:
                case = json.loads(case)
            except ValueError as exc:
                raise AirflowFailException(
                    f"Emedgene case for task {self.task_id} is not valid JSON ({exc}): {case[:200]!r}"
                ) from None
        if not isinstance(case, dict):
            raise AirflowFailException(
                f"Emedgene case for task {self.task_id} must be a JSON object, not {type(case).__name__}"
            )
        if self.validate_locally:
            problems = case_problems(case) + self._phenotype_problems(case)
            if problems:
                listed = "\n".join(f"  - {p}" for p in problems)
                raise AirflowFailException(
                    f"Emedgene case for task {self.task_id} has {len(problems)} problem(s); "
                    f"nothing was sent:\n{listed}"
                )
            for warning in case_warnings(case):
                self.log.warning("Emedgene case: %s; sent as given, the server decides", warning)
        self._label_map_index(context, case)
        return dict(case)

    def _phenotype_problems(self, case: dict[str, Any]) -> list[str]:
        """The case's HPO ids and names against the HPO, when it is at hand; sent as written, so
        an obsolete id is refused naming its replacement (:mod:`emedgene_provider.cases.phenotypes`).
        Imported here: a DAG file importing the operator pays nothing for it."""
        from emedgene_provider.cases.hpo import HpoFileError
        from emedgene_provider.cases.phenotypes import case_json_problems, ontology_and_note

        try:
            ontology, note = ontology_and_note()
        except HpoFileError as exc:
            return [str(exc)]
        self.log.info("Emedgene case: %s", note)
        return case_json_problems(case, ontology)

    def _label_map_index(self, context: Any | None, case: Any) -> None:
        """Label a mapped instance with its case's Family Id (what a lab knows the case by), through
        the context's ``map_index_template``, which Airflow (2.9+) renders after ``execute``. A
        template of the task's own wins; an unmapped task or a case without a Family Id is left as is.
        """
        td = case.get("test_data") if isinstance(case, dict) else None
        extra = td.get("extra_data") if isinstance(td, dict) else None
        family = extra.get(FAMILY_ID_KEY) if isinstance(extra, dict) else None
        if isinstance(family, (str, int)):
            label_map_index(context, FAMILY_ID_CONTEXT_KEY, str(family))

    def _read_case_file(self, location: str, context: Any | None) -> str:
        path = ObjectStoragePath(location if "://" in location else f"file://{self._resolve(location)}")
        try:
            text = path.read_text()
        except OSError as exc:
            raise AirflowFailException(f"Emedgene case file {location!r} cannot be read: {exc}") from None
        return str(self.render_template(text, context)) if context is not None else text

    def _resolve(self, location: str) -> str:
        """A relative path is looked up as Airflow looks up template files: in the DAG's
        ``template_searchpath``, then in the DAG's folder."""
        if location.startswith("/"):
            return location
        dag = getattr(self, "dag", None)
        searchpath = getattr(dag, "template_searchpath", None) or []
        folders = [searchpath] if isinstance(searchpath, str) else list(searchpath)
        if getattr(dag, "folder", None):
            folders.append(dag.folder)  # type: ignore[union-attr]
        for folder in folders:
            candidate = Path(folder) / location
            if candidate.exists():
                return str(candidate)
        return str(Path(folders[-1]) / location) if folders else location

    def _targets(self) -> list[str]:
        return status_list(self.target_statuses) or []

    def _failures(self) -> list[str] | None:
        return status_list(self.failure_statuses)

    def execute(self, context: Any) -> str:
        return self._create_and_wait(context)

    def execute_reconciled(self, context: Any, event: dict[str, Any] | None = None) -> str:
        """Back from :class:`EmedgeneCreateReconcileTrigger`: adopt the case it found, or create the
        case now that its key stayed absent for the whole window (which may defer again)."""
        return self._create_and_wait(context, event)

    def _create_and_wait(self, context: Any, event: dict[str, Any] | None = None) -> str:
        """Create the case at most once (the hook drives :class:`~emedgene_provider.client.create.CreateOnce`,
        saving its record in the journal after every step), then wait for it. The operator only
        chooses: block through a reconcile window, or defer it to the triggerer."""
        from emedgene_provider.lineage import CaseLineage

        self._announced: str | None = None
        case = self.load_case(context)
        self._lineage = CaseLineage.of_create(None, case)  # the files, case or not; tenant read at event time
        key = self.idempotency_key or default_idempotency_key(context)
        journal, durable = self._journal(context)
        retry = int(getattr(context["ti"], "try_number", 1) or 1) > 1
        if event is not None:
            journal.save(_after_reconcile(parse_reconciled(event, key), journal, key, self._now()).to_json())
            retry = False  # what the earlier POST did is settled now
        try:
            case_name, created = self.hook.create_case_once(
                case,
                key,
                since=run_started(context),
                journal=journal,
                wait=not self.deferrable,
                failures=self._key_failures(),
                retry=retry,
                durable=durable,
                claims=self._claims(),
                owner=default_idempotency_key(context),
            )
        except EmedgeneCreatePendingError as pending:
            record = CreateRecord.from_json(journal.load(), key) or CreateRecord(key)
            self.log.warning(
                "Emedgene create (key %r): unclear, and the key is not listed yet; waiting in the "
                "triggerer until the key has stayed absent for %g s before creating the case again",
                key,
                self.hook.config.reconcile_window,
            )
            self.defer(
                trigger=EmedgeneCreateReconcileTrigger(
                    idempotency_key=key,
                    emedgene_conn_id=self.emedgene_conn_id,
                    window_start=record.unclear_since(self._now()) or self._now(),
                    window=self.hook.config.reconcile_window,
                    since=pending.since,
                    assumed=record.assumed,
                    failure_statuses=self._key_failures(),
                ),
                method_name="execute_reconciled",
            )
        self._announce(context, case_name)
        self._lineage = CaseLineage.of_create(self.hook.config.base_url, case, case_name)
        if created:
            self.log.info("Created Emedgene case %s (key %r)", case_name, key)
        else:
            self.log.info("Reattaching to Emedgene case %s (key %r): not creating another", case_name, key)
        kept = CreateRecord.from_json(journal.load(), key)
        created_at = kept.case_at if kept is not None else None
        lag_until = None if created_at is None else created_at + self.hook.config.reconcile_window
        self._wait(context, case_name, lag_until)
        return case_name

    def _now(self) -> float:
        """Epoch seconds, from the client's clock (tests replace it together with its sleep)."""
        return self.hook.client.clock()

    def _journal(self, context: Any) -> tuple[Journal, bool]:
        """Where the create record lives: the durable task state store, else this try's memory."""
        store = context.get("task_state_store")
        if store is not None and self.durable:
            return _StoreJournal(store), True
        return MemoryJournal(), False

    def _claims(self) -> KeyClaims | None:
        """A key the lab chose may be shared by tasks and DAG runs: claim it in Airflow's metadata
        (:mod:`emedgene_provider.claims`). The default key names this task instance, so the
        process's store is enough."""
        if not self.idempotency_key:
            return None
        from emedgene_provider.claims import AirflowClaims

        return AirflowClaims()

    def _key_failures(self) -> list[str] | None:
        """The statuses that make a case recorded or found for the key a failed one (created anew):
        without ``wait_for_completion`` the lifecycle's, since the task's job is the create; with
        it, the task's own ``failure_statuses``, as the wait judges them."""
        return self._failures() if self.wait_for_completion else None

    def _wait(self, context: Any, case_name: str, lag_until: float | None) -> None:
        """Wait for a target status, blocking or in the triggerer. Until ``lag_until`` a 404 is the
        tenant not having caught up with the create yet."""
        if not self.wait_for_completion:
            return
        targets, failures = self._targets(), self._failures()
        if not self.deferrable:
            reached = wait_blocking(
                self.hook,
                case_name,
                targets,
                failures,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                max_poll_interval=self.max_poll_interval,
                not_found_until=lag_until,
            )
            push_case_status(context, case_name, reached)
            return
        already = check_case(self.hook, case_name, targets, failures, not_found_until=lag_until)
        if already is not None:
            push_case_status(context, case_name, already)
            return
        self.defer(
            trigger=EmedgeneCaseStatusTrigger(
                case_name=case_name,
                emedgene_conn_id=self.emedgene_conn_id,
                target_statuses=targets,
                failure_statuses=failures,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout,
                max_poll_interval=self.max_poll_interval,
                not_found_until=lag_until,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def _announce(self, context: Any, case_name: str) -> None:
        """The case name (``emedgene_case_name``) and URL into XCom before any waiting, so they
        survive a failed wait; once per try, whichever path (create, reattach, resume) reaches it
        first. The return value is Airflow's to push, from what ``execute`` returns at success."""
        if getattr(self, "_announced", None) == case_name:
            return
        case_path_segment(case_name)  # a name the server made up is refused before anyone reads it
        context["ti"].xcom_push(key=XCOM_CASE_NAME, value=case_name)
        push_case_url(context, self.hook, case_name)
        self._announced = case_name

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        self._label_map_index(context, self.case)  # a resumed task renders its label anew
        status = resume(event)
        case_name = parse_status_event(event)["case_name"]
        from emedgene_provider.lineage import CaseLineage

        # The tenant is read when the event is made: a lineage need must not fail a delivered case here.
        self._lineage = CaseLineage.of_create(None, self._case_as_sent(context), case_name)
        self.log.info("Emedgene case %s reached %r", case_name, status)
        push_case_status(context, case_name, status)
        return case_name

    def _lineage_at_start(self) -> CaseLineage | None:
        """The sample files of the rendered case (a case file still to be read: none yet)."""
        from emedgene_provider.lineage import CaseLineage

        return CaseLineage.of_create(self.hook.config.base_url, self.case)

    def _case_as_sent(self, context: Any) -> Any:
        """The rendered case again, after a deferral, for lineage only: a case file is read anew,
        and one that cannot be read gives no sample files rather than failing a delivered case."""
        case = self.case
        if _is_case_file(case):
            try:
                return self._read_case_file(case.strip(), context)
            except Exception:  # a file gone, a template that no longer renders: no files, no failure
                return None
        return case


class _StoreJournal:
    """A create record kept in Airflow's durable task state (``context["task_state_store"]``)."""

    key = "emedgene_create_attempt"

    def __init__(self, store: Any) -> None:
        self.store = store

    def load(self) -> Any:
        return self.store.get(self.key)

    def save(self, data: dict[str, Any]) -> None:
        self.store.set(self.key, data)


def _is_case_file(case: Any) -> TypeGuard[str]:
    """A rendered ``case`` that names a ``.json`` file rather than holding the JSON."""
    return isinstance(case, str) and case.strip().endswith(".json") and not case.lstrip().startswith("{")


def parse_reconciled(event: Any, key: str) -> ReconcileEvent:
    """The reconcile trigger's event; its error (or an event that is not one) fails the task."""
    try:
        return parse_reconcile_event(event, key)
    except EventError as exc:
        raise AirflowException(str(exc)) from None


def _after_reconcile(event: ReconcileEvent, journal: Journal, key: str, now: float) -> CreateRecord:
    """The record once a reconcile wait has ended: the case it found adopted, or nothing pending."""
    record = CreateRecord.from_json(journal.load(), key) or CreateRecord(key)
    if event["status"] is ReconcileOutcome.FOUND:
        record.settled(event["case_name"], now)
    else:
        record.settled()
        record.forget_case()
    return record


def run_started(context: Any) -> float | None:
    """When the DAG run started, less the clock allowance: no earlier try can have made a case
    before then."""
    dag_run = context.get("dag_run")
    start = getattr(dag_run, "start_date", None) or getattr(dag_run, "queued_at", None)
    return start.timestamp() - CLOCK_SKEW if start is not None else None


def default_idempotency_key(context: Any) -> str:
    """``airflow:<dag>:<run>:<task>:<map index>``: the same for every try of one task instance, and
    different for every other one, so a retry finds its own case and nothing else's."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else map_index
    return f"airflow:{ti.dag_id}:{ti.run_id}:{ti.task_id}:{map_index}"
