"""The benchmarks of issue 8 keep running: ``bench/run_all.py --quick`` (small sizes, goals shown
but not enforced) must finish, every benchmark must report its figures, and none may crash.

Slow (tens of seconds of child processes, a real Airflow import in several), hence ``e2e``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from locations import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from run_all import BENCHES


@pytest.mark.e2e
def test_every_benchmark_runs_quick_and_reports_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    table = done.stdout.rsplit("\nbenchmark ", 1)[-1].split("\nwall time")[0]  # the final table
    for name in BENCHES:
        assert f"\n{name} " in table, f"{name} reported nothing:\n{done.stdout[-6000:]}"
    assert "ERROR" not in table
