"""Benchmark 6 of issue 8: the example batch DAG through a real Airflow 3 cluster shape.

``emedgene_clinical_batch`` runs with a 50-sample manifest (its ``manifest`` param, given as the
run's conf) under ``airflow api-server``, ``airflow dag-processor``, ``airflow scheduler`` with the
**CeleryExecutor** (``--executor celery``, the default: Redis as the broker, Debian's
``redis-server`` started and stopped by the bench as PostgreSQL is, and ``--workers`` (2) ``airflow
celery worker`` processes; ``--executor local`` for the LocalExecutor) and **two** ``airflow
triggerer`` processes, on PostgreSQL as the metadata DB
(``BENCH_PG_URL``; ``bench/pg.sh run`` provides one, ``make bench`` does it all), against the
simulator serving TLS in a process of its own. It prints each figure beside its goal and exits 1
on a miss:

- the run succeeded, every case was created once, delivered, and its export file written;
- every trigger ran in exactly one triggerer: the metadata DB's ``trigger`` table, sampled twice a
  second, and the triggerers' per-task log files (``*.log.trigger.<triggerer job id>.log``) never
  show one trigger in two triggerers; both triggerers took a share (their ``capacity`` is set
  below the batch size, as a deployment bounds its triggerers, so one cannot take every wait);
- the triggerers logged in at most once per triggerer per token lifetime (the simulator's tokens
  last ``--token-ttl`` seconds and say so in ``expires_in``; a client renews a token before it
  expires, so one lifetime is the part of it the client uses, ``ttl - min(ttl/10, 300)``);
- no password or API key in any process's output or task log;
- and, recorded without a goal, the wall time and the requests per case.

How logins are told apart: the simulator counts logins, not who made them. The triggerers read
the connection with the tenant's API key (``POST /platform-services-manager/Token``), the workers
with username and password (``POST /api/auth/v2/api_login/``): both are supported ways into one
tenant, and the per-route request counters then give the triggerers' logins exactly.

Delivery: by default the simulator never moves a case on its own; the bench marks each case
Delivered (through the simulator's admin API) ``--analysis-seconds`` after its trigger was claimed
by a triggerer, once its wait has deferred and the scheduler has handled the exit of the attempt
that deferred, so every one of the 50 waits really runs in a triggerer, polls there a few times,
and sees the delivery at a poll. Delivering earlier races Airflow itself (see
tests/e2e/test_triggerer.py: a trigger that fires before the scheduler has processed the
deferring attempt can fail the task under CPU load). ``--stage-seconds N`` lets time move the
cases instead; then a wait that starts after its case was delivered never defers, so the number
of triggers is recorded rather than held to one per case.

With ``--chaos`` (``make bench-chaos``), the run also holds 200 more waits (``bench/dags``: a
sensor per case the bench made beforehand) and goes through process-level faults, in order
(``bench/cluster_chaos.py``): a Celery worker killed mid-create, a triggerer killed with 200
waits, PostgreSQL restarted, the tenant down for two minutes, every token expired. Every task
is in one Airflow pool, and each connection has its ``requests_per_second``, so the tenant's
busiest second is checked against the deployment's bound. It ends with the line ``chaos: cases
per family X, families lost N, green runs A/B``.

    BENCH_PG_URL=postgresql+psycopg2://... python bench/cluster.py --cases 50 [--chaos]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import benchkit
from cluster_chaos import ChaosPlan

from emedgene_provider.client.auth import MAX_RENEWAL_LEAD

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "emedgene_clinical_batch"
TRIGGER_CLASSPATH = "emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger"
WATCHERS_DAG_ID = "emedgene_bench_watchers"  # bench/dags: the chaos run's extra waits
POOL = "emedgene"
LOGGED_IN = "Emedgene: logged in"  # emedgene_provider.client.auth's line, once per login
WORKER_LOGIN_ROUTE = "POST /api/auth/v2/api_login/"
TRIGGERER_LOGIN_ROUTE = "POST /platform-services-manager/Token"
SIM_USER, SIM_PASSWORD, SIM_API_KEY = "lab-user", "lab-password", "sim-api-key"  # simulator defaults
#: The scheduler's line once it has handled the executor's report of an attempt that deferred.
SETTLED = re.compile(
    rf"TaskInstance Finished: dag_id={DAG_ID}, task_id=wait_for_delivery, run_id=[^,]*, "
    r"map_index=(-?\d+), .*?\bstate=deferred\b"
)
TRIGGER_LOG = re.compile(r"\.log\.trigger\.(\d+)\.log$")
TRIGGER_STARTED = re.compile(r"^trigger emedgene_\w+/.* \(ID (\d+)\) starting$")  # batch and watchers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Redis:
    """A throwaway ``redis-server`` (the Celery broker) on a free port, nothing saved to disk."""

    def __init__(self, home: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit(
                "error: redis-server not found (Debian: apt-get install redis-server; make redis)"
            )
        self.port = free_port()
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(home)],
            stdout=(home / "redis.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                terminate(self.proc)
                raise SystemExit(f"error: redis-server did not start; see {home / 'redis.out'}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        terminate(self.proc)


def write_manifest(path: Path, cases: int) -> None:
    """``cases`` singleton exome cases in Emedgene's batch CSV format (the DAG's manifest), one
    family per row. The format allows at most 50 cases a file
    (``emedgene_provider.cases.batch_csv.MAX_CASES``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["[Data]"])
        out.writerow(
            [
                "Family Id",
                "Case Type",
                "Files Names",
                "Sample Type",
                "BioSample Name",
                "Storage Provider Id",
                "Execute now",
                "Relation",
                "Gender",
                "Phenotypes",
                "Phenotypes Id",
            ]
        )
        for i in range(1, cases + 1):
            sample = f"S-BENCH-{i:04d}"
            out.writerow(
                [
                    f"BENCH-{i:04d}",
                    "Exome",
                    f"/runs/bench/{sample}.hard-filtered.vcf.gz",
                    "VCF",
                    sample,
                    7,
                    "true",
                    "proband",
                    "F" if i % 2 else "M",
                    "",
                    "HP:0001250;HP:0001263",
                ]
            )


class Simulator:
    """The simulator as a process of its own (TLS), driven through its admin endpoints."""

    def __init__(
        self, log: Path, stage_seconds: float, token_ttl: float, worker_rate: float, triggerer_rate: float
    ) -> None:
        self.log = log
        self.worker_rate, self.triggerer_rate = worker_rate, triggerer_rate
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "emedgene_provider.testing.simulator", "--port", "0", "--tls",
                "--stage-seconds", str(stage_seconds), "--token-ttl", str(token_ttl),
                "--token-style", "expires_in",
            ],
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.ca_file = ""
        for line in self.proc.stdout:  # "CA bundle: <path>", then "... listening on <url>"
            line = line.strip()
            if line.startswith("CA bundle: "):
                self.ca_file = line.split(": ", 1)[1]
            if "listening on" in line:
                self.url = line.rsplit(" ", 1)[1]
                break
        else:
            self.stop()
            raise SystemExit(f"the simulator did not start; see {log}")
        self._tls = ssl.create_default_context(cafile=self.ca_file)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, context=self._tls, timeout=30) as answer:
            return json.load(answer)

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_simulator/counters")
        return result

    def hold_next_create(self, seconds: float) -> None:
        """The next create is applied at once and answered only after ``seconds``."""
        self._call("POST", "/_simulator/faults", {"kind": "slow_create", "times": 1, "delay": seconds})

    def deliver(self, case_name: str) -> None:
        self._call("POST", f"/_simulator/cases/{case_name}/status", {"status": "Delivered"})

    def reset_counters(self) -> None:
        self._call("POST", "/_simulator/counters/reset")

    def outage(self, seconds: float) -> None:
        """The tenant refuses connections (and cuts open ones) for ``seconds``; admin calls too."""
        self._call("POST", "/_simulator/outage", {"seconds": seconds})

    def expire_tokens(self) -> None:
        self._call("POST", "/_simulator/tokens/expire")

    def create_cases(self, count: int) -> list[str]:
        """``count`` cases made through the API (the bench's own login), for the chaos run's waits."""
        token = self._call(
            "POST", "/api/auth/v2/api_login/", {"username": SIM_USER, "password": SIM_PASSWORD}
        )
        return asyncio.run(benchkit.create_cases(self.url, self.ca_file, str(token["access_token"]), count))

    def worker_conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "emedgene",
                "host": self.url,
                "login": SIM_USER,
                "password": SIM_PASSWORD,
                "extra": {
                    "auth_type": "password",
                    "verify": self.ca_file,
                    "requests_per_second": self.worker_rate,
                },
            }
        )

    def triggerer_conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "emedgene",
                "host": self.url,
                "extra": {
                    "api_key": SIM_API_KEY,
                    "login_url": self.url + "/platform-services-manager/Token",
                    "auth_type": "api_key",
                    "verify": self.ca_file,
                    "requests_per_second": self.triggerer_rate,
                },
            }
        )

    def stop(self) -> None:
        terminate(self.proc)


class Components:
    """Airflow processes, each in its own session, stopped children-first at the end."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.specs: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
        self.killed: list[str] = []
        self.restarted: list[str] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.specs[name] = (args, dict(env or {}))
        log = (self.home / f"{name}.out").open("ab")  # a restart appends to the same file
        proc = subprocess.Popen(
            [AIRFLOW, *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))

    def supervise(self) -> list[str]:
        """Start again every component that exited, as systemd or Kubernetes would; return what
        exited, with its status."""
        exited = [(n, p) for n, p in self.procs if p.poll() is not None]
        for name, proc in exited:
            self.procs.remove((name, proc))
            args, env = self.specs[name]
            self.start(name, *args, env=env)
            self.restarted.append(name)
        return [f"{name} exited ({proc.returncode}), restarted" for name, proc in exited]

    def cli(self, *args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def kill(self, name: str) -> None:
        """SIGKILL a component's whole process group (a worker and its task processes)."""
        proc = dict(self.procs)[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.procs = [(n, p) for n, p in self.procs if n != name]
        self.killed.append(name)

    def owner_of(self, pid: int) -> str | None:
        """The component whose process tree holds ``pid`` (its session: each starts its own)."""
        with contextlib.suppress(OSError):
            session = os.getsid(pid)
            return next((n for n, p in self.procs if p.pid == session), None)
        return None

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited early:\n{self.output(name)[-3000:]}")

    def output(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM every process group (the last started first), then SIGKILL what is left."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class MetadataDB:
    """Read-only queries on the Airflow metadata DB (PostgreSQL), through psycopg2."""

    def __init__(self, sqlalchemy_url: str) -> None:
        import psycopg2  # the [bench] extra; only this benchmark needs it

        self._psycopg2 = psycopg2
        self.dsn = re.sub(r"^postgresql\+\w+://", "postgresql://", sqlalchemy_url)
        self.conn: Any = None

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        for attempt in range(60):  # 30 s: a PostgreSQL restart (the chaos run) takes a few
            try:
                if self.conn is None:
                    self.conn = self._psycopg2.connect(self.dsn)
                    self.conn.autocommit = True
                with self.conn.cursor() as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall())
            except self._psycopg2.OperationalError:
                self.close()
                if attempt == 59:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


@dataclass
class Observation:
    """What the bench saw while the run went on."""

    #: trigger id -> the triggerer job ids it was ever seen claimed by, in the ``trigger`` table.
    claimed_by: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    #: What the chaos did, in order; whether the next create's answer is being held.
    chaos: list[str] = field(default_factory=list)
    holding: bool = False
    #: trigger id -> the map index of the wait it serves.
    map_index_of: dict[int, int] = field(default_factory=dict)
    #: map index -> when its trigger was first seen claimed by a triggerer (monotonic).
    claimed_at: dict[int, float] = field(default_factory=dict)
    #: map indices delivered without the scheduler's settle line (see SETTLED).
    unsettled: set[int] = field(default_factory=set)
    #: map index -> when the bench marked its case Delivered (monotonic).
    delivered_at: dict[int, float] = field(default_factory=dict)
    peak_concurrent: int = 0


def sample_triggers(db: MetadataDB, seen: Observation) -> dict[int, int]:
    """Record which triggerer holds each trigger now; return claimed waits: map index -> trigger id."""
    rows = db.query(
        "SELECT t.id, t.triggerer_id, ti.map_index, ti.dag_id FROM trigger t "
        "LEFT JOIN task_instance ti ON ti.trigger_id = t.id "
        "WHERE t.classpath = %s",
        TRIGGER_CLASSPATH,
    )
    claimed: dict[int, int] = {}
    for trigger_id, triggerer_id, map_index, dag_id in rows:
        if dag_id is not None and dag_id != DAG_ID:  # the chaos run's watchers: counted, not delivered
            map_index = None
            if triggerer_id is not None:
                seen.claimed_by[trigger_id].add(int(triggerer_id))
            continue
        if map_index is not None:
            seen.map_index_of[trigger_id] = map_index
        if triggerer_id is not None:
            seen.claimed_by[trigger_id].add(int(triggerer_id))
            if map_index is not None:
                claimed[int(map_index)] = int(trigger_id)
                seen.claimed_at.setdefault(int(map_index), time.monotonic())
    seen.peak_concurrent = max(seen.peak_concurrent, len(rows))
    return claimed


def case_names(db: MetadataDB, run_id: str) -> dict[int, str]:
    """map index -> the case ``create_case[i]`` created (its XCom return value)."""
    names: dict[int, str] = {}
    for map_index, value in db.query(
        "SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s "
        "AND task_id = 'create_case' AND key = 'return_value'",
        DAG_ID,
        run_id,
    ):
        if isinstance(value, (bytes, memoryview)):
            value = bytes(value).decode()
        if isinstance(value, str) and value.startswith('"'):
            value = json.loads(value)
        names[int(map_index)] = str(value)
    return names


@dataclass
class TriggerRun:
    """One trigger's run in one triggerer, as the triggerer's log for the task tells it."""

    trigger_id: int
    triggerer: int  # the triggerer's job id
    start: datetime
    end: datetime


def read_trigger_logs(logs: Path) -> list[TriggerRun]:
    """Every trigger run the triggerers logged, from their per-task log files.

    A triggerer writes a trigger's log beside its task's, as ``<attempt>.log.trigger.<job id>.log``:
    JSON lines, beginning with ``trigger <dag>/<run>/<task>/<map index>/<try> (ID <trigger id>)
    starting`` (a file can hold several runs, if a task deferred twice in one attempt).
    """
    runs: list[TriggerRun] = []
    for path in logs.rglob("*.log.trigger.*.log"):
        job = TRIGGER_LOG.search(path.name)
        if job is None:
            continue
        current: TriggerRun | None = None
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                stamp = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError):
                continue
            started = TRIGGER_STARTED.search(str(record.get("event", "")))
            if started:
                current = TriggerRun(int(started.group(1)), int(job.group(1)), stamp, stamp)
                runs.append(current)
            elif current is not None:
                current.end = max(current.end, stamp)
    return runs


@dataclass
class Row:
    figure: str
    value: str
    goal: str = ""
    ok: bool | None = None  # None: recorded, no goal


def overlapping(runs: list[TriggerRun]) -> set[int]:
    """Triggers whose runs in two different triggerers overlap in time (by their log lines)."""
    by_trigger: dict[int, list[TriggerRun]] = defaultdict(list)
    for r in runs:
        by_trigger[r.trigger_id].append(r)
    found: set[int] = set()
    for trigger_id, mine in by_trigger.items():
        for a, b in itertools.combinations(mine, 2):
            if a.triggerer != b.triggerer and a.start < b.end and b.start < a.end:
                found.add(trigger_id)
    return found


def task_process_logins(logs: Path) -> dict[tuple[str, str], int]:
    """(dag id, log file) -> the logins its task process made, for every task try's log (each try
    is a process of its own; the triggerers' ``.log.trigger.`` files are left out)."""
    found: dict[tuple[str, str], int] = {}
    for path in logs.rglob("attempt=*.log"):
        if ".log.trigger." in path.name:
            continue
        dag = next((part[len("dag_id=") :] for part in path.parts if part.startswith("dag_id=")), "")
        found[(dag, str(path))] = path.read_text(errors="replace").count(LOGGED_IN)
    return found


def print_table(rows: list[Row]) -> None:
    widths = [
        max(len(r.figure) for r in rows),
        max(len(r.value) for r in rows),
        max(len(r.goal) for r in rows),
    ]
    print(f"{'figure':<{widths[0]}}  {'measured':<{widths[1]}}  {'goal':<{widths[2]}}  result")
    for r in rows:
        verdict = "" if r.ok is None else ("ok" if r.ok else "MISS")
        print(f"{r.figure:<{widths[0]}}  {r.value:<{widths[1]}}  {r.goal:<{widths[2]}}  {verdict}")


def deliver_all(db: MetadataDB, sim: Simulator, run_id: str, seen: Observation) -> int:
    """Mark every case of the batch Delivered; how many."""
    names = case_names(db, run_id)
    for map_index, name in sorted(names.items()):
        sim.deliver(name)
        seen.delivered_at[map_index] = time.monotonic()
    return len(names)


def wait_until(what: str, done: Callable[[], bool], components: Components, limit: float) -> None:
    """Poll ``done``; ``limit`` only bounds how long a broken run takes to fail."""
    deadline = time.monotonic() + limit
    while not done():
        components.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what}: not after {limit:g} s; scheduler said:\n{components.output('scheduler')[-3000:]}"
            )
        time.sleep(0.5)


def airflow_env(
    home: Path,
    pg_url: str,
    args: argparse.Namespace,
    sim: Simulator,
    data: Path,
    broker: str | None = None,
    dags: Path | None = None,
) -> dict[str, str]:
    """One environment for every Airflow process (the triggerers override the connection); with a
    ``broker``, the CeleryExecutor's (task results in the metadata DB); ``dags``: the chaos run's
    DAG folder."""
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        PATH=f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=pg_url,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM=str(args.parallelism),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        # Only the bench's own run: unpausing the daily DAG must not add a scheduled run (that
        # would read the small example manifest and create cases of its own).
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        # A triggerer runs at most this many triggers, so the batch needs both triggerers; and it
        # claims few per loop, as Airflow advises for HA, so the two share the work as it comes.
        AIRFLOW__TRIGGERER__CAPACITY=str(math.ceil(args.cases * 0.6)),
        AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP="5",
        # Airflow 3's task supervisor waits up to this long before it notices its task exited.
        AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__API__PORT=str(api_port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
        AIRFLOW_CONN_EMEDGENE_DEFAULT=sim.worker_conn(),
        EMEDGENE_DATA_DIR=str(data),
        EMEDGENE_POLL_INTERVAL=str(args.poll_interval),
    )
    # Every Emedgene task in one pool: with each process's requests_per_second, it bounds the rate
    # of the whole deployment (see the "peak request rate" figure).
    env.update(EMEDGENE_POOL=POOL)
    if args.chaos:
        env.update(
            # The killed worker's task stops heartbeating: the scheduler fails its try after this
            # long, and the create's retry runs on a live worker. Retries 10 s apart and doubling
            # (the example DAG's EMEDGENE_RETRIES) outlast the tenant's outage.
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="20",
            EMEDGENE_RETRIES="6",
            # One triggerer must be able to take every wait of the other; Airflow's default batch.
            AIRFLOW__TRIGGERER__CAPACITY=str(2 * (args.cases + args.watchers)),
            AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP="50",
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        )
    if broker is not None:
        env.update(
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CELERY__BROKER_URL=broker,
            AIRFLOW__CELERY__RESULT_BACKEND="db+"
            + pg_url,  # its driver kept: SQLAlchemy 2.1 defaults to psycopg 3
            AIRFLOW__CELERY__WORKER_CONCURRENCY=str(max(1, args.parallelism // args.workers)),
        )
    return env


def run(args: argparse.Namespace) -> int:
    pg_url = args.pg_url or os.environ.get("BENCH_PG_URL", "")
    if not pg_url.startswith("postgresql"):
        print(
            "error: give a PostgreSQL SQLAlchemy URL (--pg-url or BENCH_PG_URL); bench/pg.sh run ...",
            file=sys.stderr,
        )
        return 2
    if args.chaos:  # 200 extra waits to defer: at least 8 task slots
        args.parallelism = max(args.parallelism, 8)
    out = Path(args.home).resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.csv").exists():
        print(f"error: {out} is not empty and not an earlier run's outputs; not wiping it", file=sys.stderr)
        return 2
    shutil.rmtree(out, ignore_errors=True)
    home, data = out / "airflow_home", out / "data"
    home.mkdir(parents=True)
    manifest = out / "manifest.csv"
    write_manifest(manifest, args.cases)
    exports = data / "batch-exports"
    by_hand = args.stage_seconds <= 0
    seen = Observation()
    bench_started = time.monotonic()
    with contextlib.ExitStack() as cleanup:  # stopped in reverse: Airflow, the DB reader, the simulator
        sim = Simulator(
            out / "simulator.out",
            7 * 24 * 3600 if by_hand else args.stage_seconds,
            args.token_ttl,
            args.worker_rate,
            args.triggerer_rate,
        )
        cleanup.callback(sim.stop)
        db = MetadataDB(pg_url)
        cleanup.callback(db.close)
        broker = None
        if args.executor == "celery":
            redis = Redis(out)
            cleanup.callback(redis.stop)
            broker = redis.url
        dags = None
        if args.chaos:  # the example batch DAG and the bench's watchers, nothing else
            dags = out / "dags"
            dags.mkdir()
            (dags / "emedgene_clinical_batch.py").symlink_to(
                ROOT / "dags_examples" / "emedgene_clinical_batch.py"
            )
            (dags / "emedgene_bench_watchers.py").symlink_to(
                ROOT / "bench" / "dags" / "emedgene_bench_watchers.py"
            )
        components = Components(home, airflow_env(home, pg_url, args, sim, data, broker, dags))
        cleanup.callback(components.stop)
        print(f"simulator {sim.url} (TLS); metadata DB {re.sub(r'//[^@/]*@', '//', pg_url)}", flush=True)
        print(f"executor {args.executor}" + (f": broker {broker}, {args.workers} workers" if broker else ""))
        t_migrate = time.monotonic()
        components.cli("db", "migrate")
        print(f"airflow db migrate: {time.monotonic() - t_migrate:.0f} s", flush=True)
        components.cli("pools", "set", POOL, str(args.pool_slots), "Emedgene tenant (bench)")
        api_port = components.env["AIRFLOW__API__PORT"]
        components.start("api-server", "api-server", "--port", api_port)
        components.start("dag-processor", "dag-processor")
        components.start("scheduler", "scheduler")

        def start_worker(name: str) -> None:
            components.start(
                name, "celery", "worker", "--celery-hostname", f"{name}@%h",
                env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
            )  # fmt: skip

        def start_triggerer(i: int) -> None:
            components.start(
                f"triggerer-{i}",
                "triggerer",
                env={
                    "AIRFLOW_CONN_EMEDGENE_DEFAULT": sim.triggerer_conn(),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                },
            )

        for i in range(1, (args.workers if broker else 0) + 1):
            start_worker(f"worker-{i}")
        for i in range(1, (1 if args.chaos else args.triggerers) + 1):  # chaos: the 2nd joins later
            start_triggerer(i)
        dag_ids = [DAG_ID, WATCHERS_DAG_ID] if args.chaos else [DAG_ID]
        wait_until(
            "the DAGs were parsed",
            lambda: (
                len(db.query("SELECT 1 FROM serialized_dag WHERE dag_id = ANY(%s)", dag_ids)) == len(dag_ids)
            ),
            components,
            limit=300,
        )
        watched = sim.create_cases(args.watchers) if args.chaos else []
        sim.reset_counters()  # the figures count the run's requests and cases only
        conf = {"manifest": str(manifest), "export_dir": f"file://{exports}/"}
        for dag_id in dag_ids:
            components.cli("dags", "unpause", dag_id)
        started = time.monotonic()
        components.cli("dags", "trigger", DAG_ID, "--conf", json.dumps(conf))
        print(f"triggered {DAG_ID} with {args.cases} cases", flush=True)
        (run_id,) = [r[0] for r in db.query("SELECT run_id FROM dag_run WHERE dag_id = %s", DAG_ID)]
        run_ids = [run_id]
        chaos = None
        if args.chaos:
            components.cli("dags", "trigger", WATCHERS_DAG_ID, "--conf", json.dumps({"cases": watched}))
            print(f"triggered {WATCHERS_DAG_ID} with {len(watched)} waits", flush=True)
            run_ids += [
                r[0] for r in db.query("SELECT run_id FROM dag_run WHERE dag_id = %s", WATCHERS_DAG_ID)
            ]
            chaos = ChaosPlan(
                db=db, sim=sim, components=components, seen=seen, run_id=run_id, dag_id=DAG_ID,
                watched=watched, kill_at=args.kill_at, outage_seconds=args.outage_seconds,
                start_triggerer=start_triggerer, start_worker=lambda: start_worker("worker-replacement"),
                deliver_batch=lambda: deliver_all(db, sim, run_id, seen),
            )  # fmt: skip

        settled: set[int] = set()
        scheduler_log = home / "scheduler.out"
        offset = 0
        names: dict[int, str] = {}
        deadline = started + args.timeout
        state = None
        while True:
            if chaos is None:
                components.check_alive()
            else:
                chaos.step()
            claimed = sample_triggers(db, seen)
            if by_hand and claimed and chaos is None:  # (the chaos plan delivers the batch itself)
                with scheduler_log.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                    end = chunk.rfind(b"\n") + 1  # whole lines only
                    offset += end
                settled.update(int(m) for m in SETTLED.findall(chunk[:end].decode(errors="replace")))
                deferred = {
                    int(r[0])
                    for r in db.query(
                        "SELECT map_index FROM task_instance WHERE dag_id = %s AND run_id = %s "
                        "AND task_id = 'wait_for_delivery' AND state = 'deferred'",
                        DAG_ID,
                        run_id,
                    )
                }
                now = time.monotonic()
                held = {i for i in claimed if now - seen.claimed_at[i] >= args.analysis_seconds}
                # Should Airflow stop logging the settle line the way SETTLED expects, a wait is
                # delivered anyway 30 s on, rather than the run hanging until --timeout.
                overdue = {i for i in held if now - seen.claimed_at[i] >= args.analysis_seconds + 30}
                ready = ((held & settled) | overdue) & (deferred - set(seen.delivered_at))
                seen.unsettled.update(ready - settled)
                if ready and not names.keys() >= ready:
                    names = case_names(db, run_id)
                for map_index in sorted(ready):
                    sim.deliver(names[map_index])
                    seen.delivered_at[map_index] = time.monotonic()
            run_states = dict(db.query("SELECT run_id, state FROM dag_run WHERE run_id = ANY(%s)", run_ids))
            state = str(run_states[run_id])
            if all(run_states[r] in ("success", "failed") for r in run_ids) and (
                chaos is None or chaos.stage == "done"
            ):
                break
            if time.monotonic() > deadline:
                print(f"error: the run is still {state} after {args.timeout:g} s", file=sys.stderr)
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        counters = sim.counters()
        ti_states = db.query(
            "SELECT task_id, state, count(*) FROM task_instance WHERE run_id = %s GROUP BY task_id, state "
            "ORDER BY task_id, state",
            run_id,
        )
        triggerer_jobs = [
            int(r[0]) for r in db.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
        ]
        names = case_names(db, run_id)
        created_ok = {
            int(m)
            for (m,) in db.query(
                "SELECT map_index FROM task_instance WHERE run_id = %s AND task_id = 'create_case' "
                "AND state = 'success'",
                run_id,
            )
        }
        retried = db.query(
            "SELECT task_id, sum(try_number - 1) FROM task_instance WHERE run_id = ANY(%s) "
            "GROUP BY task_id HAVING sum(try_number - 1) > 0 ORDER BY task_id",
            run_ids,
        )
    whole = time.monotonic() - bench_started

    # -- figures ---------------------------------------------------------------------------------
    print(f"\nrun {run_id}: {state}; task instances: " + ", ".join(f"{t} {s}: {n}" for t, s, n in ti_states))
    rows: list[Row] = [Row("DAG run state", str(state), "success", state == "success")]
    green = sum(1 for r in run_ids if run_states[r] == "success")
    if chaos is not None:
        rows.append(
            Row(
                "runs green once the faults are over", f"{green}/{len(run_ids)}", "all", green == len(run_ids)
            )
        )
    rows.append(
        Row(
            "executor",
            args.executor + (f", {args.workers} Celery workers" if args.executor == "celery" else ""),
        )
    )
    n = args.cases
    rows.append(
        Row(
            "cases created (simulator)",
            str(counters["cases_created"]),
            f"= {n}",
            counters["cases_created"] == n,
        )
    )
    written = sorted(p.stem for p in exports.glob("*.json")) if exports.is_dir() else []
    per_family = counters["cases_created"] / n
    # A family is lost if its create did not end in success or its case's export was not written.
    lost = sorted(i for i in range(n) if i not in created_ok or names.get(i) not in written)
    rows.append(Row("cases per family", f"{per_family:.2f}", "1.00", counters["cases_created"] == n))
    shown = str(len(lost)) + (f" {lost[:5]}" if lost else "")
    rows.append(Row("families with no case or a wrong outcome", shown, "0", not lost))
    if chaos is not None:
        f = chaos.figures
        print("chaos, in order:\n" + "\n".join(f"  {what}" for what in seen.chaos))
        rows.append(Row("chaos", f"{len(seen.chaos)} events", "all 5 faults", chaos.stage == "done"))
        rows.append(Row("waits on the killed triggerer", str(f.triggerer_killed_with), f">= {args.kill_at}",
                        f.triggerer_killed_with >= args.kill_at))  # fmt: skip
        rows.append(Row("takeover of its waits by the survivor",
                        "-" if f.takeover_seconds is None else f"{f.takeover_seconds:.0f} s"))  # fmt: skip
        rows.append(Row("components restarted after exiting", str(len(f.restarted)) +
                        (f" ({'; '.join(f.restarted)})" if f.restarted else "")))  # fmt: skip
    rows.append(Row("task retries (tries beyond the first)",
                    ", ".join(f"{t} {int(k)}" for t, k in retried) or "none"))  # fmt: skip
    rows.append(
        Row("export files written", str(len(written)), f"= {n}, one per case",
            len(written) == n and set(written) == set(names.values()))
    )  # fmt: skip

    # Every trigger in exactly one triggerer: the DB samples and the triggerers' log files agree.
    trigger_runs = read_trigger_logs(home / "logs")
    log_owners: dict[int, set[int]] = defaultdict(set)
    for trigger_run in trigger_runs:
        log_owners[trigger_run.trigger_id].add(trigger_run.triggerer)
    ids = set(seen.claimed_by) | set(log_owners)
    owners = {t: seen.claimed_by.get(t, set()) | log_owners.get(t, set()) for t in ids}
    twice = sorted(t for t, jobs in owners.items() if len(jobs) > 1)
    both_sources = sum(1 for t in ids if seen.claimed_by.get(t) and log_owners.get(t))
    per_triggerer: dict[int, int] = defaultdict(int)
    for jobs in owners.values():
        for job in jobs:
            per_triggerer[job] += 1
    triggers = len(ids)
    waits = n + len(watched)
    rows.append(
        Row("triggers run", str(triggers), f"= {waits}, one per wait" if by_hand else "recorded",
            triggers == waits if by_hand else None)
    )  # fmt: skip
    rows.append(
        Row("triggers seen in the DB and in a trigger log", str(both_sources),
            f"= {waits}" if by_hand else "recorded", both_sources == waits if by_hand else None)
    )  # fmt: skip
    orphaned = chaos.orphaned if chaos is not None else set()
    # Under chaos a trigger moves on when its triggerer dies, killed or exited: never two at once.
    # From the logs: a trigger's runs in two triggerers never overlap in time.
    at_once = sorted(overlapping(trigger_runs))
    rows.append(
        Row("triggers run by two triggerers at once", f"{len(at_once)} {at_once[:5]}" if at_once else "0",
            "0", not at_once)
    )  # fmt: skip
    rows.append(
        Row("triggers run by two triggerers", str(len(twice)) + (f" {twice[:5]}" if twice else ""),
            f"recorded: the {len(orphaned)} orphaned by the kill, and any of a triggerer that exited"
            if chaos else "0", None if chaos else not twice)
    )  # fmt: skip
    split = " / ".join(str(per_triggerer.get(job, 0)) for job in triggerer_jobs)
    used = sum(1 for job in triggerer_jobs if per_triggerer.get(job))
    rows.append(
        Row("triggers per triggerer", split or "-", f"all {len(triggerer_jobs)} used",
            used == len(triggerer_jobs) >= args.triggerers)
    )  # fmt: skip

    # Celery: every worker took tasks (each logs "Task execute_workload[...] received" per task).
    if args.executor == "celery":
        workers = [name for name in components.specs if name.startswith("worker-")]
        taken = {name: components.output(name).count("] received") for name in workers}
        split = " / ".join(f"{w}: {t}" for w, t in taken.items())
        rows.append(Row("tasks per Celery worker", split, f"all {len(workers)} used", all(taken.values())))

    # Logins: the triggerers' (API key) against one per triggerer per token lifetime, over the
    # time each triggerer had triggers running (from its logs). A client renews a token
    # min(ttl/10, MAX_RENEWAL_LEAD) s before it expires: the rest is the lifetime it uses.
    requests = counters["requests"]
    trig_logins = int(requests.get(TRIGGERER_LOGIN_ROUTE, 0))
    worker_logins = int(requests.get(WORKER_LOGIN_ROUTE, 0))
    usable = args.token_ttl - min(args.token_ttl / 10, MAX_RENEWAL_LEAD)
    busy: dict[int, float] = {}
    for job in {r.triggerer for r in trigger_runs}:
        mine = [r for r in trigger_runs if r.triggerer == job]
        busy[job] = (max(r.end for r in mine) - min(r.start for r in mine)).total_seconds()
    allowed = sum(1 + math.floor(seconds / usable) for seconds in busy.values())
    spans = " + ".join(f"(1 + {seconds:.0f} s / {usable:g} s)" for seconds in busy.values())
    if chaos is None:
        rows.append(
            Row("triggerer logins", str(trig_logins), f"<= {allowed} = {spans}", 0 < trig_logins <= allowed)
        )  # fmt: skip
    else:  # a killed triggerer, an outage and every token expired each cost logins: recorded
        rows.append(
            Row("triggerer logins", f"{trig_logins} ({trig_logins / len(triggerer_jobs):.1f} per triggerer)")
        )
    rows.append(Row("worker logins (tenant's count)", str(worker_logins)))
    by_process = task_process_logins(home / "logs")
    batch_logins = sum(k for (dag_id, _), k in by_process.items() if dag_id == DAG_ID)
    calling = [k for k in by_process.values() if k]
    rows.append(
        Row("logins per task process that logged in", f"{max(calling, default=0)} at most, "
            f"{len(calling)} of {len(by_process)} processes")
    )  # fmt: skip
    rows.append(Row("worker logins per case (batch DAG)", f"{batch_logins / n:.2f}"))

    # Secrets: the password and the API key appear in no output and no task log.
    scanned = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".log", ".out") and p != manifest]
    leaks = sorted(
        {p.name for p in scanned for s in (SIM_PASSWORD, SIM_API_KEY) if s.encode() in p.read_bytes()}
    )
    rows.append(
        Row("files holding a secret", str(len(leaks)) + (f" {leaks[:3]}" if leaks else ""), "0", not leaks)
    )

    total = sum(int(v) for v in requests.values())
    polls = int(requests.get("GET /api/test/{name}", 0))
    rows.append(Row("wall time (trigger to run end)", f"{wall:.0f} s"))
    rows.append(Row("wall time (whole bench, up to processes stopped)", f"{whole:.0f} s"))
    per_wait = f", {total / waits:.1f} per wait" if watched else ""
    rows.append(Row("requests per case (all routes)", f"{total / n:.1f}{per_wait}"))
    rows.append(Row("status reads per wait", f"{polls / waits:.1f}"))
    rows.append(Row("peak concurrent triggers", str(seen.peak_concurrent)))
    # The deployment's bound: at most pool-slots task processes call at once, each paced to its
    # connection's rate (plus a burst of one), and each live triggerer to its own.
    bound = args.pool_slots * (args.worker_rate + 1) + args.triggerers * (args.triggerer_rate + 1)
    peak = int(counters["peak_requests_per_second"])
    rows.append(
        Row("peak request rate at the tenant (any 1 s)", f"{peak}/s",
            f"<= {bound:g}/s = {args.pool_slots} slots x ({args.worker_rate:g}+1) + "
            f"{args.triggerers} triggerers x ({args.triggerer_rate:g}+1)", peak <= bound)
    )  # fmt: skip
    if seen.delivered_at:
        rows.append(Row("cases delivered by the bench", str(len(seen.delivered_at))))
    if seen.unsettled:
        rows.append(Row("... of them without the scheduler's settle line", str(len(seen.unsettled))))
    print()
    print_table(rows)
    print("\nrequests by route: " + json.dumps(dict(sorted(requests.items())), indent=None))
    result = {
        "state": state, "executor": args.executor, "workers": args.workers,
        "wall_seconds": round(wall, 1), "bench_seconds": round(whole, 1), "cases": n,
        "counters": counters,
        "triggers": triggers, "per_triggerer": dict(per_triggerer), "peak_concurrent": seen.peak_concurrent,
        "triggerer_logins": trig_logins, "allowed_triggerer_logins": allowed, "worker_logins": worker_logins,
        "triggerer_busy_seconds": busy, "token_ttl": args.token_ttl,
        "peak_requests_per_second": peak, "rate_bound": bound, "logins_by_process": sorted(calling),
        "chaos": None if chaos is None else {**chaos.figures.__dict__, "events": seen.chaos},
        "rows": [r.__dict__ for r in rows],
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result, indent=2))
    missed = [r.figure for r in rows if r.ok is False]
    print(f"\n{'MISSED: ' + '; '.join(missed) if missed else 'all goals met'} (outputs in {out})")
    if chaos is not None:
        line = (
            f"cases per family {per_family:.2f}, families lost {len(lost)}, green runs {green}/{len(run_ids)}"
        )
        print(f"chaos: {line}")
    return 1 if missed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=50, help="samples in the manifest (mapped cases)")
    parser.add_argument("--triggerers", type=int, default=2, help="triggerer processes")
    parser.add_argument(
        "--executor", choices=("celery", "local"), default="celery", help="CeleryExecutor or LocalExecutor"
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (--executor celery)")
    parser.add_argument(
        "--chaos", action="store_true",
        help="kill a worker mid-create, a triggerer with --kill-at waits, restart PostgreSQL, take the "
        "tenant down, expire every token (bench/cluster_chaos.py)",
    )  # fmt: skip
    parser.add_argument("--watchers", type=int, default=200, help="--chaos: extra waits (bench/dags)")
    parser.add_argument("--kill-at", type=int, default=200, help="--chaos: waits on the triggerer killed")
    parser.add_argument("--outage-seconds", type=float, default=120.0, help="--chaos: the tenant down, s")
    parser.add_argument("--pool-slots", type=int, default=4, help="slots of the Emedgene tasks' pool")
    parser.add_argument(
        "--worker-rate", type=float, default=5.0, help="requests_per_second, worker connection"
    )
    parser.add_argument(
        "--triggerer-rate", type=float, default=20.0, help="requests_per_second, triggerer connection"
    )
    parser.add_argument(
        "--parallelism", type=int, default=4, help="task slots (split among the Celery workers)"
    )
    parser.add_argument("--poll-interval", type=float, default=3.0, help="the sensor's poll interval, s")
    parser.add_argument("--token-ttl", type=float, default=30.0, help="simulator token lifetime, s")
    parser.add_argument(
        "--stage-seconds", type=float, default=0.0,
        help="let the simulator move cases every N s; 0: the bench delivers each deferred wait's case",
    )  # fmt: skip
    parser.add_argument(
        "--analysis-seconds", type=float, default=20.0,
        help="with --stage-seconds 0: deliver a case this long after its trigger was claimed",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up on a run after this, s")
    parser.add_argument("--home", default=str(ROOT / ".bench" / "cluster"), help="outputs (wiped first)")
    parser.add_argument(
        "--pg-url", default="", help="SQLAlchemy URL of an empty PostgreSQL DB (or BENCH_PG_URL)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
