"""Run every benchmark of issue 8, each in its own process, and print one table.

Columns: benchmark, figure, value, baseline, ratio, goal, pass/miss. Exits non-zero if a goal was
missed or a benchmark failed to run; with ``--quick`` (small sizes, a smoke run) goals are shown
but not enforced, and only a benchmark that fails to run fails the whole.

    python bench/run_all.py                       # the full run (several minutes)
    python bench/run_all.py --quick               # smoke run, well under a minute (the trigger
                                                  # benchmark runs beside the others)
    python bench/run_all.py --markdown out.md     # also write the table as Markdown
    python bench/run_all.py --only export         # some of them

The cluster benchmark (``bench/cluster.py``) and the fault suite (``bench/chaos.py``) are run
separately (``make bench`` runs the cluster one after this).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from benchkit import HEADER, RESULT_PREFIX, ROOT, Figure, table

HERE = Path(__file__).resolve().parent
#: Cheapest first, so a smoke run fails fast; trigger_scale, the longest, last.
BENCHES = ("import_cost", "hook_overhead", "export", "poll_economy", "trigger_scale")


def run_one(name: str, quick: bool) -> tuple[list[Figure], str | None, float]:
    """Run ``bench/<name>.py``; its figures, an error if it failed to run, and its wall time."""
    argv = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    started = time.monotonic()
    figures: list[Figure] = []
    with tempfile.TemporaryFile(mode="w+") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX):
                figures.append(Figure(**json.loads(line[len(RESULT_PREFIX) :])))
            else:
                print(f"  [{name}] {line.rstrip()}", flush=True)
        code = process.wait()
        err.seek(0)
        tail = err.read()[-3000:]
    seconds = time.monotonic() - started
    missed = any(f.ok is False for f in figures)
    expected = 0 if quick or not missed else 1
    error = None
    if not figures:
        error = f"no figures (exit {code}):\n{tail}"
    elif code != expected:
        error = f"exit {code} (expected {expected}):\n{tail}"
    return figures, error, seconds


def run_announced(name: str, quick: bool) -> tuple[list[Figure], str | None, float]:
    print(f"== {name}", flush=True)
    outcome = run_one(name, quick)
    print(f"== {name}: {outcome[2]:.0f} s", flush=True)
    return outcome


def run_quick(names: list[str]) -> dict[str, tuple[list[Figure], str | None, float]]:
    """A smoke run: the trigger benchmark (mostly waiting out its windows) alongside the others,
    one after another. Figures of a smoke run are not goals, so sharing the CPU costs nothing."""
    alone = [n for n in names if n == "trigger_scale"]
    rest = [n for n in names if n not in alone]
    with ThreadPoolExecutor(max_workers=2) as pool:
        beside = [pool.submit(run_announced, name, True) for name in alone]
        outcomes = {name: run_announced(name, True) for name in rest}
        outcomes.update({name: future.result() for name, future in zip(alone, beside, strict=True)})
    return outcomes


def markdown(rows: list[list[str]], command: str, wall: float) -> str:
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, {platform.platform()}"
    lines = [
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine}, Python {platform.python_version()}",
        f"- Command: `{command}` ({wall / 60:.1f} min)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; goals shown, not enforced")
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only this one (repeatable)")
    parser.add_argument("--markdown", help="also write the table, machine, date and command here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows: list[list[str]] = []
    errors: list[str] = []
    missed = 0
    names = list(args.only or BENCHES)
    outcomes = run_quick(names) if args.quick else {name: run_announced(name, False) for name in names}
    for name in names:
        figures, error, _ = outcomes[name]
        rows += [f.cells() for f in figures]
        missed += sum(1 for f in figures if f.ok is False)
        if error:
            errors.append(f"{name}: {error}")
            rows.append([name, "(failed to run)", "", "", "", "", "ERROR"])
    wall = time.monotonic() - started
    print()
    print(table(rows))
    print(
        f"\nwall time {wall:.0f} s; {missed} goal(s) missed"
        + (" (not enforced: --quick)" if args.quick else "")
    )
    for error in errors:
        print(f"\nERROR {error}", file=sys.stderr)
    if args.markdown:
        command = "python bench/run_all.py" + (" --quick" if args.quick else "")
        Path(args.markdown).write_text(markdown(rows, command, wall))
    if errors:
        return 2
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
