"""Trigger scale: thousands of ``EmedgeneCaseStatusTrigger`` waits in one event loop, as Airflow's
triggerer runs them, against a bare asyncio baseline doing the same polls.

Each side runs in its own child process (so its CPU seconds and peak RSS are its own) against one
simulator serving HTTPS on loopback from a third process:

- ``triggers``: one task per trigger consuming ``trigger.run()`` until its first event (then the
  generator is closed, as the triggerer does), all cancelled after a fixed window of a few poll
  intervals. Cases stay "Uploading" for the whole run, so every wait keeps polling.
- ``baseline``: one shared ``aiohttp.ClientSession`` (pool of 100, keep-alive longer than the poll
  interval), one login, one task per case polling ``GET /api/test/{name}?test_fields=status``
  every poll interval: the limit of what the provider can cost.

Measured: logins and TLS connections accepted (simulator counters), status requests per case,
poll lateness (actual minus intended wake time of every sleep of 0.5 s or more, by wrapping
``asyncio.sleep`` before the provider is imported), time to each case's first completed status
read (by wrapping ``AsyncEmedgeneClient.get_case_status``), CPU seconds and peak RSS of the child.

The main run sets ``requests_per_second`` to its maximum (10,000/s) so the limiter takes part
without shaping the run (lateness measures the event loop, not the limit), and
``max_poll_interval`` equal to ``poll_interval`` (when the trigger has it) so both sides make the
same polls; ``poll_economy.py`` measures the backoff. Two sub-runs with fewer waits follow: the
token expiring every 30 s (logins <= renewals + 1, no wait ending in an error), and
``requests_per_second`` = 50 (the simulator's peak over any 1 s window <= 55).

    python bench/trigger_scale.py            # 5,000 waits, poll every 20 s, 70 s windows
    python bench/trigger_scale.py --quick    # 200 waits, seconds; goals not enforced
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchkit import (
    CONN_ID,
    Figure,
    SimulatorProcess,
    base_parser,
    bench_env,
    child_answer,
    cpu_seconds,
    current_rss_mb,
    interleaved,
    peak_rss_mb,
    percentile,
    raise_fd_limit,
    ratio,
    report,
    rss_guard,
    run_child,
)

BENCH = "trigger_scale"
POOL_SIZE = 100
#: Sleeps at least this long are poll waits (or retry backoffs); shorter ones are not measured.
LATENESS_MIN_SLEEP = 0.5
#: A child past this RSS stops and reports it (a shared machine must not be taken down).
RSS_CAP_MB = 3000.0
#: Cases never finish within a run: every wait keeps polling.
STAGE_SECONDS = 10**7
#: The rate the main run allows: the most the connection accepts, far above what it needs.
UNSHAPED_RPS = 10000


# -- the measuring children --------------------------------------------------------------------


class Probe:
    """Poll lateness and first status reads, collected inside a child."""

    def __init__(self) -> None:
        self.start = 0.0
        self.lateness: list[float] = []
        self.first_poll: dict[str, float] = {}
        self.polls = 0

    def install_sleep(self) -> None:
        """Wrap ``asyncio.sleep`` (before the provider is imported, so every alias is the wrapper)."""
        real_sleep = asyncio.sleep

        async def probed_sleep(delay: float, result: Any = None) -> Any:
            if delay < LATENESS_MIN_SLEEP:
                return await real_sleep(delay, result)
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            answer = await real_sleep(delay, result)
            self.lateness.append(loop.time() - due)
            return answer

        asyncio.sleep = probed_sleep  # type: ignore[assignment]

    def polled(self, case_name: str) -> None:
        self.polls += 1
        if case_name not in self.first_poll:
            self.first_poll[case_name] = asyncio.get_running_loop().time() - self.start


def _answer(
    probe: Probe, names: list[str], window: float, cpu: float, events: Counter[str], errors: list[str]
) -> None:
    child_answer(
        {
            "cases": len(names),
            "window": window,
            "first_poll": [probe.first_poll.get(n, math.inf) for n in names],
            "lateness": probe.lateness,
            "polls": probe.polls,
            "cpu": cpu,
            "rss_mb": peak_rss_mb(),
            "events": dict(events),
            "errors": errors[:5],
        }
    )


def _guard(probe: Probe, names: list[str], window: float) -> None:
    def exceeded(rss: float) -> None:
        child_answer({"aborted": f"RSS reached {rss:.0f} MB (cap {RSS_CAP_MB:.0f} MB)", "rss_mb": rss})
        os._exit(3)

    rss_guard(RSS_CAP_MB, exceeded)


async def _run_triggers(args: Any, probe: Probe, names: list[str]) -> None:
    from emedgene_provider.client.aio import AsyncEmedgeneClient
    from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

    real_status = AsyncEmedgeneClient.get_case_status

    async def get_case_status(self: Any, case_name: str) -> str:
        status = await real_status(self, case_name)
        probe.polled(case_name)
        return status

    AsyncEmedgeneClient.get_case_status = get_case_status  # type: ignore[method-assign]
    extra: dict[str, Any] = {}
    if "max_poll_interval" in inspect.signature(EmedgeneCaseStatusTrigger).parameters:
        extra["max_poll_interval"] = args.interval
    triggers = [
        EmedgeneCaseStatusTrigger(
            case_name=name,
            emedgene_conn_id=CONN_ID,
            target_statuses=["Delivered"],
            failure_statuses=None,
            poll_interval=args.interval,
            end_time=time.time() + 10 * 3600,
            **extra,
        )
        for name in names
    ]
    events: Counter[str] = Counter()
    errors: list[str] = []

    async def consume(trigger: EmedgeneCaseStatusTrigger) -> None:
        run = trigger.run()
        try:
            event = await run.__anext__()  # the triggerer takes the first event, then closes
        finally:
            await run.aclose()
        events[event.payload["status"]] += 1
        if event.payload["status"] == "error":
            errors.append(str(event.payload.get("message"))[:300])

    loop = asyncio.get_running_loop()
    cpu0 = cpu_seconds()
    probe.start = loop.time()
    tasks = [asyncio.create_task(consume(t)) for t in triggers]
    await _window(tasks, args.window)
    _answer(probe, names, args.window, cpu_seconds() - cpu0, events, errors)


async def _window(tasks: list[asyncio.Task[None]], window: float) -> None:
    """Let the tasks run for ``window`` seconds of real time, then cancel what is left and wait."""
    done, pending = await asyncio.wait(tasks, timeout=window)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _run_baseline(args: Any, probe: Probe, names: list[str]) -> None:
    import ssl

    import aiohttp

    conn = json.loads(os.environ["AIRFLOW_CONN_" + CONN_ID.upper()])
    url = conn["host"]
    context = ssl.create_default_context(cafile=conn["extra"]["verify"])
    events: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    cpu0 = cpu_seconds()
    probe.start = loop.time()
    connector = aiohttp.TCPConnector(limit=POOL_SIZE, ssl=context, keepalive_timeout=args.interval + 30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=300)
    ) as session:
        async with session.post(
            url + "/api/auth/v2/api_login/", json={"username": conn["login"], "password": conn["password"]}
        ) as answer:
            headers = {"Authorization": f"Bearer {(await answer.json())['access_token']}"}

        async def wait(name: str) -> None:
            while True:
                async with session.get(
                    f"{url}/api/test/{name}", params={"test_fields": "status"}, headers=headers
                ) as answer:
                    answer.raise_for_status()
                    body = await answer.read()
                status = json.loads(body)["status"]
                probe.polled(name)
                if status == "Delivered":
                    events["success"] += 1
                    return
                await asyncio.sleep(args.interval)

        await _window([asyncio.create_task(wait(n)) for n in names], args.window)
    _answer(probe, names, args.window, cpu_seconds() - cpu0, events, [])


def child(args: Any) -> int:
    raise_fd_limit()
    probe = Probe()
    probe.install_sleep()
    names: list[str] = json.loads(Path(args.names).read_text())[: args.cases]
    _guard(probe, names, args.window)
    rss_start = current_rss_mb()
    runner = _run_triggers if args.child == "triggers" else _run_baseline
    asyncio.run(runner(args, probe, names))
    print(f"rss at start {rss_start:.0f} MB", file=sys.stderr)
    return 0


# -- the orchestrator ---------------------------------------------------------------------------


def _child_args(side: str, names_file: str, cases: int, interval: float, window: float) -> list[str]:
    return [
        __file__,
        "--child",
        side,
        "--names",
        names_file,
        "--cases",
        str(cases),
        "--interval",
        str(interval),
        "--window",
        str(window),
    ]


def _measure(
    sim: SimulatorProcess,
    side: str,
    names_file: str,
    cases: int,
    interval: float,
    window: float,
    **extra: Any,
) -> dict[str, Any]:
    sim.reset_counters()
    result = run_child(
        _child_args(side, names_file, cases, interval, window), env=bench_env(sim.connection(**extra))
    )
    result["sim"] = sim.counters()
    print(f"  {side}: {_summary(result)}", flush=True)
    return result


def _summary(result: dict[str, Any]) -> str:
    if "aborted" in result:
        return f"aborted: {result['aborted']}"
    sim = result["sim"]
    first = [t for t in result["first_poll"] if math.isfinite(t)]
    return (
        f"{len(first)}/{result['cases']} first polls, p99 {percentile(result['first_poll'], 0.99):.2f} s; "
        f"lateness p99 {percentile(result['lateness'], 0.99) or 0:.3f} s; cpu {result['cpu']:.1f} s; "
        f"rss {result['rss_mb']:.0f} MB; logins {sim['logins']}; connections {sim['connections_opened']}; "
        f"status reads {_status_reads(result)}; peak {sim['peak_requests_per_second']}/s; "
        f"events {result['events']}"
    )


def _status_reads(result: dict[str, Any]) -> int:
    return int(result["sim"]["requests"].get("GET /api/test/{name}", 0))


def _med(results: list[dict[str, Any]], key: Any) -> float | None:
    values = [v for v in (key(r) for r in results if "aborted" not in r) if v is not None]
    if not values:
        return None
    values.sort()
    return (
        values[len(values) // 2]
        if len(values) % 2
        else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    )


def _limiter_supported() -> bool:
    from emedgene_provider.client.config import KNOWN_EXTRAS

    return "requests_per_second" in KNOWN_EXTRAS


def orchestrate(args: Any) -> int:
    quick = args.quick
    cases = args.cases or (200 if quick else 5000)
    interval = args.interval or (1.0 if quick else 20.0)
    window = args.window or (3.0 if quick else 70.0)
    sub_cases = min(cases, args.sub_cases or (100 if quick else 1000))
    ttl = args.token_ttl or (1.5 if quick else 30.0)
    token_window = args.token_window or (3.5 if quick else 65.0)
    rps = args.rps
    rps_window = args.rps_window or (2.5 if quick else 30.0)
    limiter = _limiter_supported()
    main_extra: dict[str, Any] = {"requests_per_second": UNSHAPED_RPS} if limiter else {}
    results: dict[str, list[dict[str, Any]]] = {"triggers": [], "baseline": []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-trigger-scale-") as tmp:
        names_file = str(Path(tmp) / "names.json")
        with SimulatorProcess(stage_seconds=STAGE_SECONDS) as sim:
            Path(names_file).write_text(json.dumps(sim.create_cases(cases)))
            print(f"main run: {cases} waits, poll every {interval:g} s, {window:g} s window", flush=True)
            for _, side in interleaved(("baseline", "triggers"), args.repeat):
                results[side].append(_measure(sim, side, names_file, cases, interval, window, **main_extra))
            print(f"rate-limited sub-run: {sub_cases} waits at requests_per_second={rps:g}", flush=True)
            limited = _measure(
                sim, "triggers", names_file, sub_cases, interval, rps_window, requests_per_second=rps
            )
        with SimulatorProcess(stage_seconds=STAGE_SECONDS, token_ttl=ttl) as sim:
            Path(names_file).write_text(json.dumps(sim.create_cases(sub_cases)))
            print(f"token sub-run: {sub_cases} waits, token lifetime {ttl:g} s", flush=True)
            expiring = _measure(sim, "triggers", names_file, sub_cases, interval, token_window, **main_extra)
    print(f"wall time {time.monotonic() - started:.0f} s", flush=True)
    return report(
        _figures(results, limited, expiring, cases, ttl, token_window, rps),
        quick=quick,
        notes=_notes(cases, interval, window, sub_cases, limiter, args.repeat),
    )


def _figures(
    results: dict[str, list[dict[str, Any]]],
    limited: dict[str, Any],
    expiring: dict[str, Any],
    cases: int,
    ttl: float,
    token_window: float,
    rps: float,
) -> list[Figure]:
    trig, base = results["triggers"], results["baseline"]
    aborted = [r["aborted"] for r in trig if "aborted" in r]

    def both(key: Any) -> tuple[float | None, float | None]:
        return _med(trig, key), _med(base, key)

    logins, base_logins = both(lambda r: r["sim"]["logins"])
    conns, base_conns = both(lambda r: r["sim"]["connections_opened"])
    per_case, base_per_case = both(lambda r: _status_reads(r) / r["cases"])
    late, base_late = both(lambda r: percentile(r["lateness"], 0.99))
    first, base_first = both(lambda r: percentile(r["first_poll"], 0.99))
    cpu, base_cpu = both(lambda r: r["cpu"])
    cpu_poll, base_cpu_poll = both(lambda r: 1000 * r["cpu"] / max(1, _status_reads(r)))
    rss, base_rss = both(lambda r: r["rss_mb"])
    errors = _med(trig, lambda r: sum(n for k, n in r["events"].items() if k != "success"))
    first_ratio, cpu_ratio = ratio(first, base_first), ratio(cpu, base_cpu)
    figures = [
        Figure(BENCH, "logins", logins, "", base_logins, None, "== 1", logins == 1),
        Figure(BENCH, "TLS connections opened", conns, "", base_conns, ratio(conns, base_conns),
               f"<= {POOL_SIZE} (pool)", conns is not None and conns <= POOL_SIZE),
        Figure(BENCH, "status requests per case", per_case, "", base_per_case,
               ratio(per_case, base_per_case)),
        Figure(BENCH, "poll lateness p99", late, "s", base_late, ratio(late, base_late), "< 1 s",
               late is not None and late < 1.0,
               note="" if late is not None else "no sleep of 0.5 s or more ended on the trigger side"),
        Figure(BENCH, "first poll done p99", first, "s", base_first, first_ratio, "<= 1.5x baseline",
               first_ratio is not None and math.isfinite(first_ratio) and first_ratio <= 1.5),
        Figure(BENCH, "CPU seconds", cpu, "s", base_cpu, cpu_ratio, "<= 1.25x baseline",
               cpu_ratio is not None and cpu_ratio <= 1.25),
        Figure(BENCH, "CPU per status request", cpu_poll, "ms", base_cpu_poll,
               ratio(cpu_poll, base_cpu_poll)),
        Figure(BENCH, "peak RSS", rss, "MB", base_rss, ratio(rss, base_rss), "< 400 MB",
               rss is not None and rss < 400 and not aborted, note="; ".join(aborted)),
        Figure(BENCH, "waits ended in error/timeout", errors, "", None, None, "== 0", errors == 0),
    ]  # fmt: skip
    renewals = int(token_window // ttl)
    exp_logins = expiring.get("sim", {}).get("logins")
    exp_errors = (
        sum(n for k, n in expiring.get("events", {}).items() if k != "success")
        if "events" in expiring
        else None
    )
    figures += [
        Figure(BENCH, f"token {ttl:g} s: logins", exp_logins, "", renewals + 1, None,
               f"<= renewals + 1 = {renewals + 1}", exp_logins is not None and exp_logins <= renewals + 1,
               note=expiring.get("aborted", "")),
        Figure(BENCH, f"token {ttl:g} s: waits ended in error", exp_errors, "", None, None, "== 0",
               exp_errors == 0),
    ]  # fmt: skip
    peak = limited.get("sim", {}).get("peak_requests_per_second")
    figures.append(
        Figure(BENCH, f"{rps:g} req/s limit: server's peak in 1 s", peak, "req/s", rps, ratio(peak, rps),
               f"<= {rps * 1.1:g}", peak is not None and peak <= rps * 1.1, note=limited.get("aborted", ""))
    )  # fmt: skip
    return figures


def _notes(
    cases: int, interval: float, window: float, sub_cases: int, limiter: bool, repeat: int
) -> list[str]:
    notes = [
        f"{cases} waits per side, poll interval {interval:g} s, {window:g} s window, {repeat} run(s) "
        "per side "
        "(median); each side in its own process; simulator over TLS in a third",
        f"sub-runs use {sub_cases} waits; the token sub-run's simulator expires tokens; "
        "renewals = window // lifetime",
    ]
    if limiter:
        notes.append(
            f"main run: requests_per_second={UNSHAPED_RPS} (the maximum; it does not shape the run, so "
            "lateness measures the event loop); max_poll_interval = poll_interval where the trigger has it"
        )
    else:
        notes.append("this provider has no requests_per_second extra yet: the limited sub-run is not limited")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, help="concurrent waits (5,000; 200 with --quick)")
    parser.add_argument("--interval", type=float, help="poll interval, s (20; 1 with --quick)")
    parser.add_argument("--window", type=float, help="seconds each main run lasts (70; 3 with --quick)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side in the main run (median)")
    parser.add_argument("--sub-cases", type=int, help="waits in the sub-runs (1,000; 100 with --quick)")
    parser.add_argument("--token-ttl", type=float, help="token lifetime of the token sub-run (30 s)")
    parser.add_argument("--token-window", type=float, help="seconds the token sub-run lasts (65)")
    parser.add_argument("--rps", type=float, default=50.0, help="requests_per_second of the limited sub-run")
    parser.add_argument("--rps-window", type=float, help="seconds the limited sub-run lasts (30)")
    parser.add_argument("--child", choices=("triggers", "baseline"), help=argparse_hidden())
    parser.add_argument("--names", help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    return orchestrate(args)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
