"""The fakes the provider's tests, its benchmarks (``bench/``) and a lab's own DAG tests share.

- :class:`FakeTI`: an Airflow task instance, for running an operator's ``execute(context)``
  outside Airflow's runner.
- :class:`FakeClock`: virtual time for a module's waits (``time`` and ``asyncio`` sleeps).
- :class:`FakeTime`: a clock and sleep injected into a hook's client.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest


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


# -- virtual time -------------------------------------------------------------------------------

_REAL_ASYNC_SLEEP = asyncio.sleep


class _PassThrough:
    """A stand-in for a module: the given attributes, and the real module's for everything else."""

    def __init__(self, real: ModuleType, **overrides: Any) -> None:
        self._real = real
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FakeClock:
    """Virtual time for the waits under test: it moves only when the code under test sleeps.

    :meth:`install` replaces a module's ``time`` (``time()``, ``monotonic()``, ``sleep()``) and
    ``asyncio`` (``sleep()``) names with views of this clock; everything else passes through to the
    real modules, and monkeypatch puts the originals back after the test. A wait then costs no real
    time and makes exactly as many polls as its arithmetic says, however loaded the machine is.
    :meth:`on_sleep` runs an action as the n-th sleep starts, so a test changes a case between two
    given polls instead of racing a timer. Intervals and deadlines in multiples of 1/8 s keep the
    arithmetic exact in binary floating point, so counts can be asserted exactly.
    """

    START = 1_000_000.0

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = self.START
        #: every sleep asked for, in order
        self.sleeps: list[float] = []
        self._monkeypatch = monkeypatch
        self._actions: defaultdict[int, list[Callable[[], object]]] = defaultdict(list)

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        for action in self._actions.pop(len(self.sleeps), []):
            action()

    async def async_sleep(self, seconds: float, result: Any = None) -> Any:
        self.sleep(seconds)
        await _REAL_ASYNC_SLEEP(0)  # still yield to the event loop, as a real sleep does
        return result

    def on_sleep(self, number: int, action: Callable[[], object]) -> None:
        """Run ``action`` when the ``number``-th sleep (1-based) starts, after the clock moved."""
        self._actions[number].append(action)

    def install(self, module: ModuleType) -> None:
        """Make ``module`` (which did ``import time`` and/or ``import asyncio``) wait on this clock."""
        installed = []
        if getattr(module, "time", None) is time:
            view = _PassThrough(time, time=self.time, monotonic=self.monotonic, sleep=self.sleep)
            self._monkeypatch.setattr(module, "time", view)
            installed.append("time")
        if getattr(module, "asyncio", None) is asyncio:
            self._monkeypatch.setattr(module, "asyncio", _PassThrough(asyncio, sleep=self.async_sleep))
            installed.append("asyncio")
        assert installed, f"{module.__name__} waits neither through `time` nor through `asyncio`"


class FakeTime:
    """An injected clock and sleep: a whole window passes without waiting for it. ``on_sleep``
    runs at every sleep, while the window is still open."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.now = time.time()
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.on_sleep is not None:
            self.on_sleep()
        self.slept.append(seconds)
        self.now += seconds

    def install(self, hook: Any) -> Any:
        hook.client.clock, hook.client.sleep = self.clock, self.sleep
        return hook
