"""The one thread that fires every overall call deadline of the process when its time comes.

A ``threading.Timer`` per call started and joined a thread per HTTP attempt (~0.4 ms, a fifth of a
status read on loopback). Here a call registers, and the one thread sleeps until the earliest
registered deadline; a handful of calls are in flight at a time, so finding the earliest is a short
scan. Restarted in a forked child (Airflow's executors fork), where the parent's thread does not
exist. Stdlib only: it is part of :class:`~emedgene_provider.client.process.ProcessState`, which a
DAG file's import reaches.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol


class Watched(Protocol):
    """What the watchdog needs of a deadline (:class:`~emedgene_provider.client.deadline.Deadline`)."""

    @property
    def when(self) -> float:
        """The ``time.monotonic()`` it fires at."""
        ...

    def fire(self) -> None:
        """Called from the watchdog's thread once ``when`` has passed."""
        ...


class Watchdog:
    """Fires each watched deadline once its ``when`` has passed, from one daemon thread."""

    def __init__(self) -> None:
        self._pid = -1
        self._wake = threading.Condition()
        self._active: set[Watched] = set()
        self._next = float("inf")  # what the thread is sleeping until

    def watch(self, deadline: Watched) -> None:
        if self._pid != os.getpid():
            self._start()
        with self._wake:
            self._active.add(deadline)
            if deadline.when < self._next:
                self._wake.notify()

    def forget(self, deadline: Watched) -> None:
        with self._wake:
            self._active.discard(deadline)  # the thread may wake early for it: harmless

    def _start(self) -> None:
        self._pid = os.getpid()
        self._wake = threading.Condition()  # a lock held by a thread of the parent stays held here
        self._active = set()
        self._next = float("inf")
        threading.Thread(target=self._run, name="emedgene-deadlines", daemon=True).start()

    def _run(self) -> None:
        wake = self._wake
        while True:
            with wake:
                now = time.monotonic()
                due = [d for d in self._active if d.when <= now]
                self._active.difference_update(due)
                self._next = min((d.when for d in self._active), default=float("inf"))
                if not due:
                    wake.wait(None if self._next == float("inf") else self._next - now)
                    continue
            for deadline in due:
                deadline.fire()
