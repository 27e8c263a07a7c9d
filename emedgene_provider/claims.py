"""Key claims a whole Airflow deployment shares, in Airflow Variables (docs/idempotency-keys.md).

A claim is the Variable ``emedgene_claim:<SHA-256 of the key>`` holding the owner, when it claimed
and the case it made; :class:`~emedgene_provider.client.claims.CellClaims` applies the rules. What
"create it if absent" can mean depends on what a running task can reach:

- **Airflow 2.11**: the task has the metadata DB. ``variable.key`` is unique, so an INSERT is a
  create-if-absent, and an UPDATE or DELETE guarded by the stored (encrypted) value is a
  compare-and-set: exactly one of two racing tasks wins, on SQLite, PostgreSQL and MySQL alike.
- **Airflow 3**: the task has no DB, only the Execution API, and every write it offers for shared
  state is an upsert: Variables (``PUT /variables/{key}``), XComs (delete then insert), the task
  state store (one task instance's only) and the asset state store. None compares before it
  writes. So a change is written, then read back after ``settle_seconds``: two claimants that
  both saw the key free both write, and both read back the last write, whose owner alone goes on.
  What stays open: a claimant that stalls longer than the settle time between its read and its
  write (a frozen VM, an API server that holds a request) overwrites a claim its rival already
  confirmed, and both create. (The one create-if-absent the API has, a DAG run's unique run id,
  would start a DAG run per claim.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from emedgene_provider.client.claims import CellClaims, Cells
from emedgene_provider.client.process import PROCESS

#: Seconds a written claim must survive before it counts (Airflow 3): well above the time between
#: a claimant's read and its write, a few Execution API round trips.
SETTLE_SECONDS = 3.0

DESCRIPTION = (
    "Emedgene: the claim on one case idempotency key (its SHA-256): owner, claim time, case made. "
    "Delete it only if no task is creating that case."
)


class _DatabaseVariables:
    """Variables in the metadata DB, changed atomically (Airflow 2.11 tasks)."""

    def read(self, name: str) -> str | None:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalar(select(Variable).where(Variable.key == name))
            return None if row is None else row.val

    def create(self, name: str, text: str) -> bool:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session
        from sqlalchemy.exc import IntegrityError

        try:
            with create_session() as session:
                session.add(Variable(key=name, val=text, description=DESCRIPTION))
        except IntegrityError:  # the key is unique: another claimant inserted it first
            return False
        return True

    def replace(self, name: str, old: str, new: str) -> bool:
        return self._change(name, old, new)

    def delete(self, name: str, old: str) -> bool:
        return self._change(name, old, None)

    @staticmethod
    def _change(name: str, old: str, new: str | None) -> bool:
        """Update (or delete) the row only if it still holds the stored value ``old`` was read from."""
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session
        from sqlalchemy import delete, select, update

        with create_session() as session:
            row = session.scalar(select(Variable).where(Variable.key == name))
            if row is None or row.val != old:
                return False
            guard = (Variable.key == name, Variable._val == row._val)
            if new is None:
                done = session.execute(
                    delete(Variable).where(*guard).execution_options(synchronize_session=False)
                )
            else:
                fresh = Variable(key=name, val=new)  # encrypts as Airflow does; never added
                done = session.execute(
                    update(Variable)
                    .where(*guard)
                    .values(_val=fresh._val, is_encrypted=fresh.is_encrypted)
                    .execution_options(synchronize_session=False)
                )
            return bool(getattr(done, "rowcount", 0) == 1)  # a CursorResult; typed as any Result


class _ApiVariables:
    """Variables through the Execution API (Airflow 3 tasks): upserts, confirmed by reading back."""

    def __init__(self, settle_seconds: float, sleep: Callable[[float], None]) -> None:
        self.settle_seconds, self.sleep = settle_seconds, sleep

    def read(self, name: str) -> str | None:
        from airflow.sdk import Variable

        try:  # the worker's secrets cache ([secrets] use_cache) could answer an old claim
            from airflow.sdk.execution_time.cache import SecretCache

            SecretCache.invalidate_variable(name)
        except ImportError:  # an Airflow 3 without that cache
            pass
        value = Variable.get(name, default=None)
        return None if value is None else str(value)

    def _confirmed(self, name: str, text: str) -> bool:
        from airflow.sdk import Variable

        Variable.set(name, text, description=DESCRIPTION)
        self.sleep(self.settle_seconds)
        return self.read(name) == text

    def create(self, name: str, text: str) -> bool:
        return self.read(name) is None and self._confirmed(name, text)

    def replace(self, name: str, old: str, new: str) -> bool:
        return self.read(name) == old and self._confirmed(name, new)

    def delete(self, name: str, old: str) -> bool:
        from airflow.sdk import Variable

        if self.read(name) != old:
            return False
        Variable.delete(name)
        return True


def _in_a_task_run() -> bool:
    """Whether Airflow is running a task here (it set the task's context), rather than a test
    calling an operator's ``execute`` directly."""
    from airflow.providers.common.compat.sdk import get_current_context

    try:
        get_current_context()
    except Exception:  # Airflow 3: RuntimeError; 2.11: AirflowException
        return False
    return True


class AirflowClaims(CellClaims):
    """The deployment's key claims, for a running task (see the module's notes on each major).

    Outside a task run by Airflow (an operator's ``execute`` called by a test) there is no
    deployment to share a key with, nor a way to reach Variables: the process's claims serve.

    :param settle_seconds: on Airflow 3, how long a written claim must survive before it counts.
    :param sleep: how the settle time is waited (tests pass their own).
    """

    def __init__(
        self, *, settle_seconds: float = SETTLE_SECONDS, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

        cells: Cells
        if not _in_a_task_run():
            cells = PROCESS.claims.memory
        elif AIRFLOW_V_3_0_PLUS:
            cells = _ApiVariables(settle_seconds, sleep)
        else:
            cells = _DatabaseVariables()
        super().__init__(cells)
