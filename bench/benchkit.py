"""What every benchmark shares: the simulator in its own process, figures and their goals, the
result protocol ``run_all.py`` reads, and measuring a child process.

Principles (issue 8): every figure is a ratio against a baseline measured in the same run,
interleaved and repeated; the simulator serves HTTPS on loopback from a **separate process**, so
its CPU and memory are never counted as the client's; each benchmark prints its goal beside its
figure and exits non-zero on a miss, except with ``--quick`` (small sizes, a smoke run: goals are
shown but not enforced).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASE_FILE = ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json"
#: A benchmark's figures reach ``run_all.py`` as JSON on stdout lines starting with this.
RESULT_PREFIX = "BENCH-FIGURE "
#: A measuring child answers with one JSON line starting with this.
CHILD_PREFIX = "BENCH-CHILD "
CONN_ID = "emedgene_bench"


# -- figures -----------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure, its baseline, and whether it meets its goal.

    ``ok`` is None for a figure reported for information (no goal of its own).
    """

    bench: str
    name: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    ratio: float | None = None
    goal: str = ""
    ok: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        verdict = {True: "pass", False: "MISS", None: "-"}[self.ok]
        return [
            self.bench,
            self.name,
            fmt(self.value, self.unit),
            fmt(self.baseline, self.unit),
            "" if self.ratio is None else f"{self.ratio:.2f}x",
            self.goal,
            verdict,
        ]


HEADER = ["benchmark", "figure", "value", "baseline", "ratio", "goal", "pass/miss"]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{int(value):,}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def report(figures: Sequence[Figure], *, quick: bool, notes: Sequence[str] = ()) -> int:
    """Print the figures (a table, then one machine-readable line each); the exit status: 1 if a
    goal was missed (0 with ``quick``, whose sizes are too small for the goals to mean much)."""
    print(table([f.cells() for f in figures]))
    for note in notes:
        print(f"note: {note}")
    for figure in figures:
        if figure.note:
            print(f"note ({figure.name}): {figure.note}")
    for figure in figures:
        print(RESULT_PREFIX + json.dumps(asdict(figure)), flush=True)
    missed = [f for f in figures if f.ok is False]
    if missed:
        print(f"{len(missed)} goal(s) missed" + (" (not enforced with --quick)" if quick else ""))
    return 1 if missed and not quick else 0


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes; goals shown, not enforced")
    return parser


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# -- processes ---------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Thousands of connections need thousands of descriptors: soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB: ``VmHWM``, the high-water mark of this
    process image. Not ``ru_maxrss``: Linux carries the pre-``exec`` image's peak into it, so a
    child started by a big parent would report the parent's memory."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_guard(cap_mb: float, on_exceed: Callable[[float], None]) -> None:
    """Watch this process's RSS from a thread; past ``cap_mb`` call ``on_exceed`` (which should
    report and exit): a runaway client must not take a machine shared with others."""

    def watch() -> None:
        while True:
            rss = current_rss_mb()
            if rss > cap_mb:
                on_exceed(rss)
                return
            time.sleep(0.25)

    threading.Thread(target=watch, daemon=True, name="rss-guard").start()


def child_answer(result: dict[str, Any]) -> None:
    print(CHILD_PREFIX + json.dumps(result), flush=True)


def run_child(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """Run ``python <args>`` (a measuring child) and return the JSON it answers; its stderr goes
    to a temporary file shown only if it fails."""
    with tempfile.TemporaryFile(mode="w+") as err:
        done = subprocess.run(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
        for line in reversed(done.stdout.splitlines()):
            if line.startswith(CHILD_PREFIX):
                answer: dict[str, Any] = json.loads(line[len(CHILD_PREFIX) :])
                return answer
        err.seek(0)
        tail = err.read()[-4000:]
    raise RuntimeError(f"child {' '.join(args)} exited {done.returncode} without an answer:\n{tail}")


def bench_env(conn: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a measuring child: the connection as ``AIRFLOW_CONN_EMEDGENE_BENCH``, no
    example DAGs, and Airflow's unit-test mode off (as a deployment runs)."""
    env = dict(os.environ)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    if conn is not None:
        env["AIRFLOW_CONN_" + CONN_ID.upper()] = json.dumps(conn)
    env.update(extra)
    return env


# -- the simulator, in its own process ---------------------------------------------------------


class SimulatorProcess:
    """``python -m emedgene_provider.testing.simulator --tls`` in a child process.

    :param options: simulator options (``stage_seconds=0``, ``token_ttl=30``...), as CLI flags.
    """

    def __init__(self, **options: Any) -> None:
        self.options = {"stage_seconds": 0, **options}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.ca_file = ""
        self._session: Any = None

    def __enter__(self) -> SimulatorProcess:
        argv = [sys.executable, "-m", "emedgene_provider.testing.simulator", "--tls", "--port", "0"]
        for key, value in self.options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=raise_fd_limit
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited ({self.process.wait()}) before listening")
            if line.startswith("CA bundle:"):
                self.ca_file = line.split(":", 1)[1].strip()
            if "listening on" in line:
                self.url = line.rsplit(" ", 1)[1].strip()
                return self
        raise RuntimeError("the simulator did not start listening within 120 s")

    def __exit__(self, *exc: object) -> None:
        if self._session is not None:
            self._session.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def connection(self, **extra: Any) -> dict[str, Any]:
        """The Airflow connection (JSON form) for it, with ``extra`` added to the extras."""
        return {
            "conn_type": "emedgene",
            "host": self.url,
            "login": "lab-user",
            "password": "lab-password",
            "extra": {"auth_type": "password", "verify": self.ca_file, **extra},
        }

    @property
    def session(self) -> Any:
        """A ``requests`` session for set-up and the admin calls (``trust_env`` off so that
        ``REQUESTS_CA_BUNDLE`` does not override ``verify``)."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False
            self._session.verify = self.ca_file
        return self._session

    def counters(self) -> dict[str, Any]:
        answer = self.session.get(self.url + "/_simulator/counters", timeout=60)
        answer.raise_for_status()
        counters: dict[str, Any] = answer.json()
        return counters

    def reset_counters(self) -> None:
        self.session.post(self.url + "/_simulator/counters/reset", timeout=60).raise_for_status()

    def login(self) -> str:
        answer = self.session.post(
            self.url + "/api/auth/v2/api_login/",
            json={"username": "lab-user", "password": "lab-password"},
            timeout=60,
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    def create_cases(self, count: int, **extra_data: Any) -> list[str]:
        """Create ``count`` cases (concurrently; ``extra_data`` lands in ``test_data.extra_data``)."""
        return asyncio.run(create_cases(self.url, self.ca_file, self.login(), count, **extra_data))


def case_body(**extra_data: Any) -> dict[str, Any]:
    """The example trio case, with ``extra_data`` (``simulator_variants=200_000``...) added."""
    case: dict[str, Any] = json.loads(CASE_FILE.read_text())
    case["test_data"].setdefault("extra_data", {}).update(extra_data)
    return case


async def create_cases(url: str, ca_file: str, token: str, count: int, **extra: Any) -> list[str]:
    """``count`` cases created over the API with ``token``, 32 at a time; their names."""
    import ssl

    import aiohttp

    context = ssl.create_default_context(cafile=ca_file)
    body = case_body(**extra)
    names: list[str] = []
    gate = asyncio.Semaphore(32)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32, ssl=context)) as session:

        async def one() -> None:
            async with gate, session.post(url + "/api/cases/v2/cases", json=body, headers=headers) as answer:
                answer.raise_for_status()
                names.append((await answer.json())["name"])

        await asyncio.gather(*(one() for _ in range(count)))
    return sorted(names)


def interleaved(sides: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """``(round, side)`` with the order rotated each round, so no side always goes first."""
    for r in range(rounds):
        shift = r % len(sides)
        for side in [*sides[shift:], *sides[:shift]]:
            yield r, side
