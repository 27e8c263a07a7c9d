"""Export: a 200,000-variant export (about 87 MB of JSON) written to a file, three ways.

- ``operator``: ``EmedgeneExportCaseOperator(output_path=...)``, executed as a task would;
- ``guide``: the vendor guide's style, ``requests.get(...).json()`` then ``json.dump``;
- ``raw``: a streamed byte copy of the answer to the file (``iter_content``): the limit.

Each run is a fresh child process (so its peak RSS growth is its own: ``ru_maxrss`` after the
export minus before it, the connection and the token already made), the three take turns,
repeated; the simulator serves HTTPS on loopback from its own process and holds the export
serialised, so its cost is the same for all three. Throughput is the answer's bytes over the
median wall time of the export.

Goals (issue 8): the operator's peak RSS growth < 64 MB, its throughput >= 0.7x the raw copy's
(and, reported, against the guide's style).

    python bench/export.py            # 200,000 variants, 3 runs each
    python bench/export.py --quick    # 20,000 variants, 1 run each, goals not enforced
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchkit import (
    CONN_ID,
    Figure,
    SimulatorProcess,
    base_parser,
    bench_env,
    child_answer,
    interleaved,
    peak_rss_mb,
    ratio,
    report,
    run_child,
)

from emedgene_provider.testing.fakes import FakeTI

BENCH = "export"
SIDES = ("operator", "guide", "raw")


def _operator(case: str, out: str) -> tuple[float, float, dict[str, Any]]:
    from emedgene_provider.operators.emedgene import EmedgeneExportCaseOperator

    operator = EmedgeneExportCaseOperator(
        task_id="export", case_name=case, output_path=f"file://{out}", emedgene_conn_id=CONN_ID
    )
    ti = FakeTI(dag_id="bench", run_id="bench", task_id="export")
    context = {"ti": ti, "dag_run": SimpleNamespace(run_id="bench"), "run_id": "bench"}
    operator.hook.get_case_status(case)  # token and connection made before measuring
    before = peak_rss_mb()
    started = time.perf_counter()
    result = operator.execute(context)
    return time.perf_counter() - started, before, dict(result)


def _requests_side(side: str, case: str, out: str) -> tuple[float, float, dict[str, Any]]:
    import requests

    conn = json.loads(os.environ["AIRFLOW_CONN_" + CONN_ID.upper()])
    url, ca = conn["host"], conn["extra"]["verify"]
    login = requests.post(
        url + "/api/auth/v2/api_login/",
        json={"username": conn["login"], "password": conn["password"]},
        verify=ca,
        timeout=60,
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    export_url = f"{url}/api/test/{case}/export"
    requests.get(f"{url}/api/test/{case}", headers=headers, verify=ca, timeout=60).raise_for_status()
    before = peak_rss_mb()
    started = time.perf_counter()
    if side == "guide":
        data = requests.get(export_url, headers=headers, verify=ca, timeout=600).json()
        with open(out, "w") as fh:
            json.dump(data, fh)
        count = len(data["hits"])
    else:
        with requests.get(export_url, headers=headers, verify=ca, timeout=600, stream=True) as answer:
            answer.raise_for_status()
            with open(out, "wb") as fh:
                for chunk in answer.iter_content(chunk_size=1 << 20):
                    fh.write(chunk)
        count = -1
    return time.perf_counter() - started, before, {"path": out, "count": count}


def child(side: str, case: str, out: str) -> int:
    if side == "operator":
        seconds, before, result = _operator(case, out)
    else:
        seconds, before, result = _requests_side(side, case, out)
    child_answer(
        {
            "seconds": seconds,
            "growth_mb": peak_rss_mb() - before,
            "count": result.get("count"),
            "bytes": Path(out).stat().st_size,
        }
    )
    return 0


def orchestrate(args: Any) -> int:
    variants = args.variants or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with SimulatorProcess(stage_seconds=0) as sim, tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        [case] = sim.create_cases(1, simulator_variants=variants)
        warm = sim.session.get(
            f"{sim.url}/api/test/{case}/export",
            headers={"Authorization": f"Bearer {sim.login()}"},
            timeout=600,
        )  # the simulator builds and keeps the answer now, not during a measured run
        warm.raise_for_status()
        answer_bytes = len(warm.content)
        del warm
        env = bench_env(sim.connection())
        for r, side in interleaved(SIDES, rounds):
            out = str(Path(tmp) / f"{side}-{r}.json")
            result = run_child([__file__, "--child", side, "--case", case, "--out", out], env=env)
            print(
                f"  {side}: {result['seconds']:.2f} s, RSS growth {result['growth_mb']:.0f} MB, "
                f"{result['bytes']:,} bytes written",
                flush=True,
            )
            if side != "raw" and r == 0:
                written = json.loads(Path(out).read_text())
                records = written if isinstance(written, list) else written.get("hits", written)
                assert len(records) == variants, f"{side} wrote {len(records)} records, not {variants}"
            Path(out).unlink()
            runs[side].append(result)

    def mb_per_s(side: str) -> float:
        return answer_bytes / 2**20 / statistics.median(r["seconds"] for r in runs[side])

    def growth(side: str) -> float:
        return statistics.median(r["growth_mb"] for r in runs[side])

    op, guide, raw = mb_per_s("operator"), mb_per_s("guide"), mb_per_s("raw")
    op_count = runs["operator"][0]["count"]
    figures = [
        Figure(BENCH, "operator peak RSS growth", growth("operator"), "MB", growth("guide"),
               ratio(growth("operator"), growth("guide")), "< 64 MB", growth("operator") < 64),
        Figure(BENCH, "operator vs raw streamed copy", op, "MB/s", raw, ratio(op, raw), ">= 0.7x raw copy",
               op / raw >= 0.7),
        Figure(BENCH, "operator vs guide's .json()+dump", op, "MB/s", guide, ratio(op, guide)),
        Figure(BENCH, "operator's count", op_count, "", variants, None, f"== {variants:,}",
               op_count == variants),
    ]  # fmt: skip
    notes = [
        f"{variants:,} variants = {answer_bytes / 2**20:.1f} MB of JSON; {rounds} interleaved run(s) "
        "per side "
        "(median), each a fresh process; the RSS baseline column is the guide's growth",
    ]
    return report(figures, quick=args.quick, notes=notes)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, help="variants in the export (200,000; 20,000 with --quick)")
    parser.add_argument("--rounds", type=int, help="runs per side (3; 1 with --quick)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.case, args.out)
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
