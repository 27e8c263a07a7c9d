"""Import cost: what importing the operators and the sensor adds to a DAG file's parse.

Fresh interpreters, ``python -X importtime``: ``import airflow.sdk`` (Airflow 3; on 2.x
``from airflow import DAG``, since 2.x's ``import airflow`` alone loads nothing a DAG file uses)
against the same plus ``import emedgene_provider.operators.emedgene,
emedgene_provider.sensors.emedgene``. The two take turns, repeated; the figure is the median, over
the runs with the provider, of the own import time of every module no baseline run imported (the
difference of the total times is printed too, but a 1-3 s baseline on a shared machine drowns
tens of milliseconds in noise). The modules the provider adds are listed with their own time,
the heaviest first.

Both venvs are measured when present (``.venv/airflow3`` and ``.venv/airflow2``), else the
running interpreter. Goal (issue 8): < 50 ms added.

    python bench/import_cost.py            # 9 runs per side and venv
    python bench/import_cost.py --quick    # 1 run, this interpreter only, goals not enforced
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchkit import ROOT, Figure, base_parser, interleaved, report

BENCH = "import_cost"
PROVIDER = "import emedgene_provider.operators.emedgene, emedgene_provider.sensors.emedgene"
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S.*)$")


def interpreters() -> list[str]:
    venvs = (ROOT / ".venv" / "airflow3", ROOT / ".venv" / "airflow2")
    found = [str(venv / "bin" / "python") for venv in venvs if (venv / "bin" / "python").exists()]
    return found or [sys.executable]


def airflow_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return done.stdout.strip()


#: As a deployed package is imported: from bytecode. With PYTHONDONTWRITEBYTECODE set (some
#: sandboxes set it) every run would compile the provider's sources anew, which doubled the figure.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_sources(python: str) -> None:
    subprocess.run(
        [python, "-m", "compileall", "-q", str(ROOT / "emedgene_provider")],
        env=ENV, capture_output=True, check=True, cwd=ROOT,
    )  # fmt: skip


def import_times(python: str, code: str) -> dict[str, int]:
    """Each module's own import time (µs) in a fresh ``python -X importtime -c code``."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
        check=False, env=ENV,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{python} -c {code!r} failed:\n{done.stderr[-3000:]}")
    own: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            own[match.group(4).strip()] = own.get(match.group(4).strip(), 0) + int(match.group(1))
    return own


def measure(python: str, runs: int) -> dict[str, Any]:
    version = airflow_version(python)
    compile_sources(python)
    # Airflow 2's ``import airflow`` is lazy: it loads none of what a DAG file uses, so the
    # baseline there is what every DAG file runs first, ``from airflow import DAG``.
    base_code = (
        "import airflow.sdk" if int(version.split(".")[0]) >= 3 else "import airflow; from airflow import DAG"
    )
    codes = {"base": base_code, "provider": f"{base_code}; {PROVIDER}"}
    totals: dict[str, list[float]] = {"base": [], "provider": []}
    seen: dict[str, list[dict[str, int]]] = {"base": [], "provider": []}
    for _, side in interleaved(("base", "provider"), runs):
        own = import_times(python, codes[side])
        totals[side].append(sum(own.values()) / 1000.0)
        seen[side].append(own)
    base_modules = set().union(*seen["base"])
    added: dict[str, list[int]] = defaultdict(list)
    for own in seen["provider"]:
        for module in set(own) - base_modules:
            added[module].append(own[module])
    added_ms = [sum(t for m, t in own.items() if m not in base_modules) / 1000.0 for own in seen["provider"]]
    return {
        "version": version,
        "base_code": base_code,
        "totals": totals,
        "added": added,
        "added_ms": added_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per side (9; 1 with --quick)")
    parser.add_argument("--python", action="append", help="interpreter(s) to measure (default: both venvs)")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 9)
    figures: list[Figure] = []
    notes: list[str] = []
    for python in args.python or ([sys.executable] if args.quick else interpreters()):
        result = measure(python, runs)
        base = statistics.median(result["totals"]["base"])
        difference = statistics.median(result["totals"]["provider"]) - base
        extra = statistics.median(result["added_ms"])
        label = f"Airflow {result['version']}"
        figures.append(
            Figure(BENCH, f"{label}: ms added to `{result['base_code']}`", extra, "ms", base,
                   None, "< 50 ms", extra < 50)
        )  # fmt: skip
        notes.append(
            f"{label}: difference of the median totals {difference:+.0f} ms (whole-process noise included; "
            "the figure sums only the modules the baseline never imports)"
        )
        heaviest = sorted(result["added"].items(), key=lambda kv: -statistics.median(kv[1]))[:8]
        notes.append(
            f"{label} ({Path(python).parent.parent.name}): {len(result['added'])} modules added; heaviest "
            + ", ".join(f"{m} {statistics.median(t) / 1000:.1f} ms" for m, t in heaviest)
        )
    notes.append(
        f"{runs} interleaved fresh interpreters per side; baseline column = median total of the baseline"
    )
    return report(figures, quick=args.quick, notes=notes)


if __name__ == "__main__":
    raise SystemExit(main())
