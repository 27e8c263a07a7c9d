"""EmedgeneCaseStatusSensor: wait until a case reaches a status, in poke, reschedule or deferrable
mode, and return the status it ended on (its XCom ``return_value``) in every mode."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from emedgene_provider.client.polling import PollSchedule
from emedgene_provider.client.status import UnrecognisedStatusNotice, WaitOutcome
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.links.emedgene import EmedgeneCaseLink
from emedgene_provider.operators.case import (
    CASE_NAME_CONTEXT_KEY,
    label_map_index,
    push_case_status,
    push_case_url,
)
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger
from emedgene_provider.waiting import DEFAULT_TARGETS, check_case, resume, status_list


class EmedgeneCaseStatusSensor(BaseSensorOperator):
    """Wait for an Emedgene case to reach one of ``target_statuses`` (or any status past it).

    Lifecycle-aware: a case already Finalized, or in a custom status declared in the connection
    extra ``custom_statuses``, has passed Delivered. Statuses compare normalised (case, ``_``,
    ``-``). Any other status is "not yet" (fail closed), with a warning once per execution that
    says how to declare it. A failure status fails the task at once with
    the case and status in the message (skips it with ``soft_fail``); it never waits out its timeout
    on a failed case. Stateless between pokes, so reschedule mode works.

    Returns the case status the wait ended on, as the server wrote it (``"Delivered"``,
    ``"Finalized"``, a custom status...), in every mode: poke, reschedule and deferrable (also when
    a deferrable sensor finds the case already there and does not defer). It is the task's XCom
    ``return_value``, so a downstream task reads it as ``sensor.output``.

    :param case_name: the case to watch (templated).
    :param target_statuses: statuses that end the wait (templated). Default ``("Delivered",)``.
    :param failure_statuses: statuses that fail it; None for Issue reported, Trash bin, Move to trash.
    :param emedgene_conn_id: the Emedgene connection.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param max_poll_interval: deferrable mode only: the longest wait between two polls. The
        trigger polls every ``poke_interval`` once the case is one stage before a target and less
        often before that (Pending sequencing, Uploading), up to this, with jitter; None for
        ``max(poke_interval, min(8 * poke_interval, 3600))`` (:mod:`emedgene_provider.client.polling`).
    :param check_before_deferring: deferrable mode only: read the status once in the worker before
        deferring (the default), so a case already there ends the task without a triggerer round
        trip. False defers at once: for a case created just upstream, which cannot be there yet,
        that saves the worker process a login and a read (Airflow 3 runs each task in a fresh
        process, so every task that calls logs in; the triggerer's login is shared by its waits).

    A case that answers 404 is waited on for the connection's ``reconcile_window`` from the task's
    start (a tenant's replica can lag behind a create made just upstream), then fails the task.

    Poke and reschedule modes keep Airflow's own schedule: a poke every ``poke_interval`` (or
    Airflow's ``exponential_backoff`` up to ``max_wait``, if set), not the lifecycle-aware one.
    """

    template_fields: Sequence[str] = ("case_name", "target_statuses", "failure_statuses", "emedgene_conn_id")
    operator_extra_links = (EmedgeneCaseLink(),)
    ui_color = "#d9ecf7"

    def __init__(
        self,
        *,
        case_name: str,
        target_statuses: Sequence[str] = DEFAULT_TARGETS,
        failure_statuses: Sequence[str] | None = None,
        emedgene_conn_id: str = EmedgeneHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_poll_interval: float | None = None,
        check_before_deferring: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.check_before_deferring = check_before_deferring
        self.case_name = case_name
        self.target_statuses = target_statuses
        self.failure_statuses = failure_statuses
        self.emedgene_conn_id = emedgene_conn_id
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval
        if deferrable:  # a bad interval fails the DAG file's parse, not the wait in the triggerer
            PollSchedule(float(self.poke_interval), max_poll_interval)
        self._notice = UnrecognisedStatusNotice()

    @cached_property
    def hook(self) -> EmedgeneHook:
        return EmedgeneHook(emedgene_conn_id=self.emedgene_conn_id)

    def _targets(self) -> list[str]:
        return status_list(self.target_statuses) or []

    def _failures(self) -> list[str] | None:
        return status_list(self.failure_statuses)

    def poke(self, context: Any) -> PokeReturnValue | bool:
        """Done, with the status it ended on as the XCom value, or False (not yet)."""
        status = check_case(
            self.hook,
            self.case_name,
            self._targets(),
            self._failures(),
            soft_fail=self.soft_fail,
            notice=self._notice,
            not_found_until=self._lag_until(context),
        )
        return False if status is None else PokeReturnValue(is_done=True, xcom_value=status)

    def _lag_until(self, context: Any) -> float:
        """Until then a 404 is the tenant not having caught up with the case's create (a replica
        behind the write), not a case gone: the connection's ``reconcile_window`` from when the
        task started (its first start, in reschedule mode)."""
        started = getattr(context.get("ti"), "start_date", None)
        since = started.timestamp() if started is not None else time.time()
        return since + self.hook.config.reconcile_window

    def execute(self, context: Any) -> Any:
        self._notice = UnrecognisedStatusNotice()  # an unknown status is warned about once per execution
        push_case_url(context, self.hook, self.case_name)
        if not self.deferrable:
            reached = super().execute(context)
            return push_case_status(context, self.case_name, reached) if isinstance(reached, str) else reached
        done = self.poke(context) if self.check_before_deferring else False
        if isinstance(done, PokeReturnValue) and done:  # already there: no deferral, no triggerer round trip
            return push_case_status(context, self.case_name, str(done.xcom_value))
        self.defer(
            trigger=EmedgeneCaseStatusTrigger(
                case_name=self.case_name,
                emedgene_conn_id=self.emedgene_conn_id,
                target_statuses=self._targets(),
                failure_statuses=self._failures(),
                poll_interval=float(self.poke_interval),
                end_time=time.time() + float(self.timeout),
                max_poll_interval=self.max_poll_interval,
                not_found_until=self._lag_until(context),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        label_map_index(context, CASE_NAME_CONTEXT_KEY, str(self.case_name))  # resumed: labelled anew
        if event and WaitOutcome.parse(event.get("status")) is WaitOutcome.TIMEOUT:
            if self.soft_fail:
                raise AirflowSkipException(str(event.get("message")))
            raise AirflowSensorTimeout(str(event.get("message")))
        status = resume(event, soft_fail=self.soft_fail)
        self.log.info("Emedgene case %s reached %r", self.case_name, status)
        return push_case_status(context, self.case_name, status)
