"""Webhook economy: status reads per delivered case and detection delay, deferred waits woken by
webhooks against the same waits polling only, in one run (Airflow 3).

Real time, 100 times faster than a deployment so a run takes about a minute and a half: each
case's analysis lasts ``2 x STAGE`` = 72 s (2 hours); the polling waits use ``poll_interval`` =
0.6 s (60 s); the webhook waits poll every ``webhook_poll_interval`` = 9 s (15 min) and their
triggerer reads the hint board every 0.05 s (5 s). The simulator sends a signed webhook at each status change
(lost with probability ``--drop``) to the provider's own receiver app, served by uvicorn on
loopback, which puts the case on an in-memory hint board (the metadata DB's Variable in a
deployment); the triggers read that board. Both sides' waits run together in one event loop, as
in one triggerer, against one simulator.

Figures: status reads per delivered case (webhooks / polling, goal < 0.5x) and the mean detection
delay, seconds from delivery to the wait's end (goal: no worse than polling's, without drops).
With ``--drop``, the slow poll still ends every wait (asserted), and the delay of a wait whose
last webhook was lost is the slow poll's: reported, no goal.

    python bench/webhook_economy.py            # 40 cases per side
    python bench/webhook_economy.py --quick    # 8 cases per side, goals not enforced
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import threading
import time
from typing import Any

from benchkit import Figure, base_parser, case_body, report

BENCH = "webhook_economy"
#: A deployment's times divided by this: an analysis of 2 h, polls every 60 s, a 15 min slow poll.
SCALE = 100.0
STAGE = 3600.0 / SCALE  # seconds a lifecycle stage lasts: delivered 2 stages after creation
POLL_INTERVAL = 60.0 / SCALE
WEBHOOK_POLL_INTERVAL = 900.0 / SCALE
BOARD_READ_SECONDS = 5.0 / SCALE
SECRET = "whsec-bench"
POLLING, HOOKED = "emedgene_polling", "emedgene_hooked"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_receiver(board: dict[str, float]) -> tuple[str, Any]:
    import uvicorn

    from emedgene_provider import hints
    from emedgene_provider.plugins.webhooks import create_app

    def record(conn_id: str, names: list[str], now: float) -> None:
        for name in names:
            board[hints.case_key(conn_id, name)] = now

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(record=record), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}/webhooks/{HOOKED}", server


def _status_reads(sim: Any) -> int:
    return int(sim.counters()["requests"].get("GET /api/test/{name}", 0))


async def _wait(conn_id: str, case: str) -> tuple[str, float]:
    from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

    trigger = EmedgeneCaseStatusTrigger(
        case_name=case,
        emedgene_conn_id=conn_id,
        target_statuses=["Delivered"],
        failure_statuses=None,
        poll_interval=POLL_INTERVAL,
        end_time=time.time() + 3600,
    )
    async for event in trigger.run():
        return str(event.payload["status"]), time.monotonic()
    raise AssertionError("no event")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, help="cases per side (40; 8 with --quick)")
    parser.add_argument("--drop", type=float, default=0.0, help="probability a webhook is lost")
    args = parser.parse_args(argv)
    count = args.cases or (8 if args.quick else 40)

    from emedgene_provider import hints
    from emedgene_provider.hooks.emedgene import EmedgeneHook
    from emedgene_provider.testing import EmedgeneSimulator, Webhooks

    board: dict[str, float] = {}
    board_reads = [0]

    async def read_board(conn_id: str) -> str:
        board_reads[0] += 1
        return hints.board_value(dict(board))

    hints.read_board = read_board  # type: ignore[assignment]
    hints.BOARD_READ_SECONDS = BOARD_READ_SECONDS
    url, server = _serve_receiver(board)
    hooks = Webhooks(url=url, secret=SECRET, interval=0.1, drop=args.drop, seed=1)
    # One tenant per side, so each side's status reads are counted apart.
    with (
        EmedgeneSimulator(stage_seconds=STAGE) as polled,
        EmedgeneSimulator(stage_seconds=STAGE, webhooks=hooks) as hooked,
    ):
        tenants = {POLLING: polled, HOOKED: hooked}
        extras: dict[str, dict[str, Any]] = {
            POLLING: {},
            HOOKED: {"webhook_secret": SECRET, "webhook_poll_interval": WEBHOOK_POLL_INTERVAL},
        }
        for conn_id, sim in tenants.items():
            conn = sim.connection_json()
            conn["extra"].update({"requests_per_second": 0, **extras[conn_id]})
            os.environ["AIRFLOW_CONN_" + conn_id.upper()] = json.dumps(conn)
        sides: dict[str, list[str]] = {POLLING: [], HOOKED: []}
        created: dict[str, float] = {}
        clients = {conn_id: EmedgeneHook(conn_id).get_conn() for conn_id in tenants}
        for _ in range(count):  # interleaved, so both sides see the same moments of the lifecycle
            for side, client in clients.items():
                name = client.create_case(case_body())
                created[name] = time.monotonic()
                sides[side].append(name)
        for client in clients.values():
            client.close()
        for sim in tenants.values():
            sim.reset_counters()

        async def all_waits() -> dict[str, tuple[str, float]]:
            names = [(side, name) for side, names in sides.items() for name in names]
            ends = await asyncio.gather(*(_wait(side, name) for side, name in names))
            return {name: end for (_, name), end in zip(names, ends, strict=True)}

        ends = asyncio.run(all_waits())
        reads = {
            side: int(sim.counters()["requests"].get("GET /api/test/{name}", 0))
            for side, sim in tenants.items()
        }
        dropped = sum("drop" in s.faults for s in hooked.webhooks_sent())
    server.should_exit = True
    assert all(status == "success" for status, _ in ends.values()), "a wait did not end in success"

    def delay(side: str) -> float:
        return statistics.fmean(ends[name][1] - (created[name] + 2 * STAGE) for name in sides[side])

    per_case = {side: reads[side] / count for side in sides}
    delay_p, delay_h = delay(POLLING), delay(HOOKED)
    hooked_reads, polled_reads = per_case[HOOKED], per_case[POLLING]
    figures = [
        Figure(BENCH, "status reads per delivered case", hooked_reads, "", polled_reads,
               hooked_reads / polled_reads, "< 0.5x polling's", hooked_reads < 0.5 * polled_reads),
        Figure(BENCH, "detection delay (mean)", delay_h, "s", delay_p, delay_h / delay_p if delay_p else None,
               "<= polling's" if not args.drop else "", delay_h <= delay_p if not args.drop else None),
    ]  # fmt: skip
    notes = [
        f"{count} cases per side, delivered {2 * STAGE:g} s after creation; polling every "
        f"{POLL_INTERVAL:g} s against webhooks with a {WEBHOOK_POLL_INTERVAL:g} s slow poll and a "
        f"{BOARD_READ_SECONDS:g} s board read ({SCALE:g}x a deployment's 2 h, 60 s, 15 min, 5 s); "
        f"{dropped} webhook(s) dropped; "
        f"{board_reads[0]} board reads in all",
    ]
    return report(figures, quick=args.quick, notes=notes)


if __name__ == "__main__":
    raise SystemExit(main())
