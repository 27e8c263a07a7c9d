"""The chaos of ``bench/cluster.py --chaos`` (``make bench-chaos``): process-level faults in order.

One fault at a time, each once the previous one is over, so that each figure is its own:

1. **A Celery worker killed mid-create.** Once the batch's dry runs are over, the simulator holds
   the answer of the next create for 600 s (the case is made at once); when that create's task is
   the only one running for more than 10 s, its worker's process group gets SIGKILL and a
   replacement worker starts. The try fails by its missed heartbeats, the retry adopts the case by
   its idempotency key.
2. **A triggerer killed with at least ``--kill-at`` (200) waits.** Triggerer 2 starts only once
   triggerer 1 holds that many (a lab's second triggerer joining; with both from the start, 200 on
   one would take 400 waits, more than two cores run in a bench); once it heartbeats, triggerer 1
   gets SIGKILL. The takeover time runs from the kill until every orphaned trigger still waiting
   is claimed by the survivor (Airflow waits ``[triggerer] triggerer_health_check_threshold``, 30 s,
   before it calls a silent triggerer dead).
3. **PostgreSQL restarted** (``bench/pg.sh restart``), cutting every process's DB connections.
4. **The tenant down** for ``--outage-seconds`` (120): connections refused and open ones cut. The
   batch's cases are delivered just before, so that its exports run into the outage (until then
   the bench holds every delivery, so that the batch's waits live through the faults above).
5. **Every token expired at once.**
6. Then the watched cases are delivered, and the faults are over.

Meanwhile every component that exits is started again (``Components.supervise``), as a process
supervisor would, and counted.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cluster import Components, MetadataDB, Observation, Simulator

BENCH = Path(__file__).resolve().parent


@dataclass
class ChaosFigures:
    """What the chaos did and how long the cluster took over from it."""

    #: Monotonic time the faults were over (the watched cases delivered); None while they last.
    over_at: float | None = None
    triggerer_killed_with: int = 0
    takeover_seconds: float | None = None
    pg_restart_seconds: float | None = None
    outage: tuple[float, float] | None = None  # monotonic start and end
    restarted: list[str] = field(default_factory=list)


class ChaosPlan:
    """Steps the faults forward; ``step()`` is called from the bench's loop every half second."""

    def __init__(
        self,
        *,
        db: MetadataDB,
        sim: Simulator,
        components: Components,
        seen: Observation,
        run_id: str,
        dag_id: str,
        watched: list[str],
        kill_at: int,
        outage_seconds: float,
        start_triggerer: Callable[[int], None],
        start_worker: Callable[[], None],
        deliver_batch: Callable[[], int],
    ) -> None:
        self.db, self.sim, self.components, self.seen = db, sim, components, seen
        self.run_id, self.dag_id, self.watched = run_id, dag_id, watched
        self.kill_at, self.outage_seconds = kill_at, outage_seconds
        self.start_triggerer, self.start_worker = start_triggerer, start_worker
        self.deliver_batch = deliver_batch
        self.figures = ChaosFigures()
        self.stage = "worker"
        self.since = time.monotonic()
        self.first_job: int | None = None
        self.orphaned: set[int] = set()
        self.killed_at = 0.0

    def note(self, what: str) -> None:
        self.seen.chaos.append(what)
        print(f"chaos: {what}", flush=True)

    def _next(self, stage: str) -> None:
        self.stage, self.since = stage, time.monotonic()

    def step(self) -> None:
        for what in self.components.supervise():
            self.figures.restarted.append(what)
            self.note(what)
        now = time.monotonic()
        if self.stage == "worker":
            if kill_the_held_create(self.db, self.sim, self.components, self.run_id, self.seen, self.dag_id):
                self.start_worker()
                self._next("triggerer")
        elif self.stage == "triggerer":
            self._kill_a_loaded_triggerer()
        elif self.stage == "takeover":
            waiting = self.db.query(
                "SELECT triggerer_id FROM trigger WHERE id = ANY(%s)", sorted(self.orphaned)
            )
            if all(t is not None and int(t) != self.first_job for (t,) in waiting):
                self.figures.takeover_seconds = now - self.killed_at
                self.note(
                    f"{len(waiting)} orphaned waits claimed by the survivor "
                    f"{self.figures.takeover_seconds:.0f} s after the kill"
                )
                self._next("postgres")
        elif self.stage == "postgres" and now - self.since > 10:
            began = time.monotonic()
            subprocess.run(
                ["sh", str(BENCH / "pg.sh"), "restart"], check=True, timeout=120,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip  # (a pipe would be inherited by the new postmaster and never close)
            self.figures.pg_restart_seconds = time.monotonic() - began
            self.note(f"PostgreSQL restarted ({self.figures.pg_restart_seconds:.1f} s)")
            self._next("deliver")
        elif self.stage == "deliver" and now - self.since > 10:
            self.note(f"the batch's {self.deliver_batch()} cases delivered")
            self._next("outage")
        elif self.stage == "outage" and (self._exporting() or now - self.since > 60):
            self.sim.outage(self.outage_seconds)
            self.figures.outage = (now, now + self.outage_seconds)
            self.note(f"the tenant refuses connections for {self.outage_seconds:g} s")
            self._next("tokens")
        elif self.stage == "tokens" and self.figures.outage and now > self.figures.outage[1] + 15:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.sim.expire_tokens()
                self.note("every token expired")
                self._next("release")
        elif self.stage == "release" and now - self.since > 15:
            for name in self.watched:
                self.sim.deliver(name)
            self.figures.over_at = time.monotonic()
            self.note(f"faults over; the {len(self.watched)} watched cases delivered")
            self._next("done")

    def _exporting(self) -> bool:
        return bool(
            self.db.query(
                "SELECT 1 FROM task_instance WHERE dag_id = %s AND run_id = %s "
                "AND task_id = 'export_case' AND state = 'running'",
                self.dag_id,
                self.run_id,
            )
        )

    def _kill_a_loaded_triggerer(self) -> None:
        jobs = [
            int(j) for (j,) in self.db.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
        ]
        if self.first_job is None:
            if len(jobs) != 1:
                return
            self.first_job = jobs[0]
        held = {
            int(t) for (t,) in self.db.query("SELECT id FROM trigger WHERE triggerer_id = %s", self.first_job)
        }
        if "triggerer-2" not in self.components.specs:
            if len(held) >= self.kill_at:
                self.start_triggerer(2)
                self.note(f"triggerer-2 started (triggerer-1 holds {len(held)} waits)")
            return
        alive = self.db.query(
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND id <> %s AND state = 'running' "
            "AND latest_heartbeat > now() - interval '5 seconds'",
            self.first_job,
        )
        if not alive:
            return
        self.components.kill("triggerer-1")
        self.killed_at = time.monotonic()
        self.orphaned = held
        self.figures.triggerer_killed_with = len(held)
        self.note(f"SIGKILL triggerer-1 holding {len(held)} deferred waits")
        self._next("takeover")


def kill_the_held_create(
    db: MetadataDB, sim: Simulator, components: Components, run_id: str, seen: Observation, dag_id: str
) -> bool:
    """Once the held create has reached the tenant (the case exists, its answer is held for 600 s)
    and the creates around it have finished, SIGKILL the worker running it; True once it has."""
    if not seen.holding:
        # Once the batch's dry runs are over (the simulator's faults match POST paths, dry runs too).
        read = db.query(
            "SELECT state FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = 'read_batch_csv'",
            dag_id,
            run_id,
        )
        if read and read[0][0] == "success":
            sim.hold_next_create(600)
            seen.holding = True
        return False
    if not sim.counters()["faults_injected"]:
        return False
    running = db.query(
        "SELECT map_index, pid, EXTRACT(EPOCH FROM now() - start_date) FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND task_id = 'create_case' AND state = 'running'",
        dag_id,
        run_id,
    )
    held = [(int(m), int(pid)) for m, pid, age in running if pid and age is not None and float(age) > 10]
    if len(held) != 1:
        return False
    map_index, pid = held[0]
    owner = components.owner_of(pid)
    if owner is None or not owner.startswith("worker-"):
        return False
    components.kill(owner)
    seen.chaos.append(f"SIGKILL {owner} (create_case[{map_index}], its case created, answer held)")
    print(f"chaos: {seen.chaos[-1]}", flush=True)
    return True
