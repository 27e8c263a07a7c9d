"""Poll economy: requests spent and detection delay on a case whose analysis takes 2 hours, the
trigger's default polling against the sensor's classic fixed 60 s poke.

Simulated time: the simulator's lifecycle clock and every ``asyncio.sleep`` of the trigger run on
one virtual clock (a sleep advances it and returns at once), so 2 hours cost seconds, while the
polls are real HTTPS requests to a simulator (in this process, since its clock must be the
benchmark's; nothing here measures CPU or memory). The case is "Uploading" for its first hour,
"In progress" for the second, then "Delivered".

- ``trigger``: ``EmedgeneCaseStatusTrigger(poll_interval=60)`` with its default polling, its first
  event taken as the triggerer does;
- ``poke``: ``EmedgeneCaseStatusSensor(poke_interval=60).poke()`` every 60 simulated seconds.

Each seeded run starts both waits the same random 0-300 s after the case was created (a random
phase against delivery). Figures: status requests per wait (mean), and detection delay (simulated
seconds from delivery to the poll that saw it; mean). Goals (issue 8): fewer requests, and a
delay no worse than the poke's: the trigger's mean at most the poke's plus twice the standard
error of the difference (jitter makes single runs differ; without that margin an equal delay
would fail half the time).

    python bench/poll_economy.py            # 30 seeded runs
    python bench/poll_economy.py --quick    # 3 runs, goals not enforced
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import threading
import time
from typing import Any

from benchkit import CONN_ID, Figure, base_parser, case_body, report

BENCH = "poll_economy"
STAGE_SECONDS = 3600.0  # Uploading for an hour, In progress for an hour, then Delivered
DELIVERED_AT = 2 * STAGE_SECONDS
POLL_INTERVAL = 60.0
MAX_PHASE = 300.0


class VirtualClock:
    """Simulated seconds: the simulator's lifecycle reads it; the trigger's sleeps advance it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def install_virtual_sleep(clock: VirtualClock) -> None:
    """Every ``asyncio.sleep`` of the benchmark's own thread advances ``clock`` and returns at once;
    the simulator's thread keeps real time. Installed before the provider is imported."""
    real_sleep = asyncio.sleep
    main = threading.main_thread()

    async def virtual_sleep(delay: float, result: Any = None) -> Any:
        if delay > 0 and threading.current_thread() is main:
            clock.now += delay
            delay = 0
        return await real_sleep(delay, result)

    asyncio.sleep = virtual_sleep  # type: ignore[assignment]


def status_reads(sim: Any) -> int:
    return int(sim.counters()["requests"].get("GET /api/test/{name}", 0))


def new_case(sim: Any, session: Any, clock: VirtualClock, phase: float) -> str:
    """A case created ``phase`` simulated seconds before the wait starts (the clock then reads 0)."""
    clock.now = -phase
    answer = session.post(sim.url + "/api/cases/v2/cases", json=case_body(), timeout=60)
    answer.raise_for_status()
    clock.now = 0.0
    return str(answer.json()["name"])


def by_trigger(sim: Any, case: str, clock: VirtualClock) -> tuple[int, float]:
    from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

    trigger = EmedgeneCaseStatusTrigger(
        case_name=case,
        emedgene_conn_id=CONN_ID,
        target_statuses=["Delivered"],
        failure_statuses=None,
        poll_interval=POLL_INTERVAL,
        end_time=time.time() + 10 * 24 * 3600,
    )

    async def first_event() -> dict[str, Any]:
        run = trigger.run()
        try:
            event = await run.__anext__()
        finally:
            await run.aclose()
        return dict(event.payload)

    before = status_reads(sim)
    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    return status_reads(sim) - before, clock.now


def by_poke(sim: Any, case: str, clock: VirtualClock) -> tuple[int, float]:
    from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

    sensor = EmedgeneCaseStatusSensor(
        task_id="wait", case_name=case, emedgene_conn_id=CONN_ID, poke_interval=POLL_INTERVAL
    )
    before = status_reads(sim)
    while not sensor.poke({}):
        clock.now += POLL_INTERVAL
    return status_reads(sim) - before, clock.now


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="seeded runs (30; 3 with --quick)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 30)
    clock = VirtualClock()
    install_virtual_sleep(clock)

    import requests

    from emedgene_provider.client.config import KNOWN_EXTRAS
    from emedgene_provider.testing import EmedgeneSimulator

    results: dict[str, list[tuple[int, float]]] = {"trigger": [], "poke": []}
    with EmedgeneSimulator(tls=True, stage_seconds=STAGE_SECONDS, token_ttl=10**9) as sim:
        sim.set_clock(clock)
        conn = sim.connection_json()
        if "requests_per_second" in KNOWN_EXTRAS:  # the limiter's clock is real time: keep it out
            conn["extra"]["requests_per_second"] = 0
        os.environ["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(conn)
        session = requests.Session()
        session.trust_env = False
        session.verify = sim.ca_file
        login = session.post(
            sim.url + "/api/auth/v2/api_login/", json={"username": sim.username, "password": sim.password}
        )
        session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        for seed in range(runs):
            phase = random.Random(seed).uniform(0, MAX_PHASE)
            _seed_jitter(seed)
            for side, wait in (("trigger", by_trigger), ("poke", by_poke)):
                case = new_case(sim, session, clock, phase)
                reads, detected = wait(sim, case, clock)
                results[side].append((reads, detected - (DELIVERED_AT - phase)))

    def mean(side: str, index: int) -> float:
        return statistics.fmean(r[index] for r in results[side])

    req_t, req_p = mean("trigger", 0), mean("poke", 0)
    delay_t, delay_p = mean("trigger", 1), mean("poke", 1)
    diffs = [t[1] - p[1] for t, p in zip(results["trigger"], results["poke"], strict=True)]
    margin = 2 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    assert all(r[1] >= 0 for side in results.values() for r in side), "a wait ended before delivery"
    figures = [
        Figure(BENCH, "status requests per wait", req_t, "", req_p, req_t / req_p, "< poke's", req_t < req_p),
        Figure(BENCH, "detection delay (mean)", delay_t, "s", delay_p, delay_t / delay_p if delay_p else None,
               f"<= poke's + 2 SE (+{margin:.1f} s)", delay_t <= delay_p + margin),
        Figure(BENCH, "detection delay (max)", max(r[1] for r in results["trigger"]), "s",
               max(r[1] for r in results["poke"])),
    ]  # fmt: skip
    notes = [
        f"{runs} seeded runs; analysis {DELIVERED_AT / 3600:g} h of simulated time "
        "(Uploading 1 h, In progress 1 h); "
        f"waits start 0-{MAX_PHASE:g} s after creation; poll_interval = poke_interval = {POLL_INTERVAL:g} s; "
        "the trigger with its default max_poll_interval",
    ]
    return report(figures, quick=args.quick, notes=notes)


def _seed_jitter(seed: int) -> None:
    """Seed the polling jitter's shared generator, if the provider has one, so runs repeat."""
    try:
        from emedgene_provider.client.process import PROCESS
    except ImportError:
        return
    rng = PROCESS.poll_rng
    if isinstance(rng, random.Random):
        rng.seed(seed)


if __name__ == "__main__":
    raise SystemExit(main())
