"""A fake Airflow task instance, for running an operator's ``execute(context)`` outside Airflow's
runner: in the provider's tests, in its benchmarks (``bench/``) and in a lab's own DAG tests."""

from __future__ import annotations

from typing import Any


class FakeTI:
    """Just enough of a task instance for ``execute(context)``: it records ``xcom_push`` calls in
    :attr:`pushed` so that a test can read what the task returned through XCom."""

    max_tries = 0

    def __init__(
        self,
        try_number: int = 1,
        *,
        dag_id: str = "unit_dag",
        run_id: str = "manual__unit",
        task_id: str = "unit_task",
        map_index: int = -1,
    ) -> None:
        self.try_number = try_number
        self.dag_id, self.run_id, self.task_id, self.map_index = dag_id, run_id, task_id, map_index
        self.pushed: list[tuple[str, Any]] = []
        self.stats_tags: dict[str, str] = {}  # read by Airflow 3.3's ResumableJobMixin

    def pushed_keys(self) -> list[str]:
        """The keys pushed, in order, each once (the create operator may push a key again)."""
        return list(dict.fromkeys(key for key, _ in self.pushed))

    def values(self, key: str) -> set[Any]:
        return {value for k, value in self.pushed if k == key}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.pushed.append((key, value))

    def get_first_reschedule_date(self, context: Any) -> None:  # Airflow 3's reschedule sensor
        return None
