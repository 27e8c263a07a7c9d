"""`make demo`: the example pipeline DAG end to end in a real Airflow, against the simulator.

Starts the bundled Emedgene simulator as a process, points ``emedgene_default`` at it, writes
the sequencing run's completion marker, migrates an SQLite metadata DB under ``.demo/``, runs
``airflow dags test emedgene_case_pipeline`` (the deferred wait runs its trigger in line), and
stops the simulator whatever happened.

What a person reads is the story, a line per step as it happens: the simulator's address, each
task starting and ending, what the provider and the DAG's tasks say (the login, the case created,
its statuses, the export written), and at the end the case and where its export went. Airflow's
own output, every line of it, goes to ``.demo/airflow.log``, whose path is printed first and last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("DEMO_HOME", ROOT / ".demo")).resolve()
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "emedgene_case_pipeline"

#: A log record's first line: ``<time> [<level>] <message>``; a one-line record ends with
#: `` [<logger>] key=value ...``, a longer one (an exception) has its logger on a later line.
RECORD_HEAD = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z? \[(?P<level>[a-z]+)\s*\] (?P<rest>.*)$")
RECORD_TAIL = re.compile(r"^(?P<msg>.*?) \[(?P<logger>[\w.]+)\](?: (?P<kv>.*))?$")
TASK_START = re.compile(r"^\[DAG TEST\] starting task_id=(?P<task>\S+)")
TASK_END = re.compile(r"^\[DAG TEST\] end task task_id=(?P<task>\S+)")
NEW_STATE = re.compile(r"\bnew_state=(?P<state>\w+)")
#: Loggers whose lines are the story: the provider's, and the operators' own task loggers.
OURS = ("emedgene_provider", "airflow.task.operators.emedgene_provider")
#: Lines of an error's continuation (its traceback) shown before pointing at the log.
CONTINUATION_LINES = 3
MAX_WIDTH = 200


class StoryTeller:
    """Turns Airflow's output, line by line, into the few lines of the story.

    The story: each task starting and ending (its new state, ``deferred`` included), the trigger
    run in line, what the provider's loggers say, what a task prints, and any error. The current
    task is the one ``airflow dags test`` last started; a line that is no log record's and comes
    while a task runs is the task's own output, unless it continues a log record (a traceback).
    """

    def __init__(self) -> None:
        self.task: str | None = None
        self.continuation: int | None = None  # lines of a shown record's continuation left

    def feed(self, line: str) -> list[str]:
        head = RECORD_HEAD.match(line)
        if head is None:
            return self._continuation_or_print(line.strip())
        self.continuation = None
        level = head["level"]
        tail = RECORD_TAIL.match(head["rest"])
        if tail is None:  # the first line of a record of several lines
            if level in {"error", "critical"}:
                self.continuation = CONTINUATION_LINES
                return [self._about(f"{level.upper()}: {head['rest'].strip()}")]
            self.continuation = 0
            return []
        msg, logger = tail["msg"].strip(), tail["logger"]
        if started := TASK_START.match(msg):
            self.task = started["task"]
            return [self._about("started")]
        if TASK_END.match(msg):
            self.task = None
            return []
        if msg == "[DAG TEST] running trigger in line":
            return [self._about("`dags test` runs the trigger in line, as a triggerer would")]
        if msg == "[DAG TEST] Trigger completed":
            return [self._about("the trigger fired; the task resumes")]
        if msg == "Task instance state updated" and (state := NEW_STATE.search(tail["kv"] or "")):
            return [self._about(state["state"])]
        if logger.startswith(OURS) or level in {"error", "critical"}:
            if level in {"error", "critical"}:
                self.continuation = CONTINUATION_LINES
            return [self._about(msg if level in {"info", "debug"} else f"{level.upper()}: {msg}")]
        return []

    def _continuation_or_print(self, text: str) -> list[str]:
        if not text:
            return []
        if self.continuation is None:  # not inside a record: a task's own output
            return [self._about(text)] if self.task else []
        if self.continuation == 0:
            return []
        self.continuation -= 1
        return [f"    {text}" if self.continuation else f"    {text} ... (the whole of it is in the log)"]

    def _about(self, text: str) -> str:
        return f"{self.task or 'airflow'}: {text}"


class Story:
    """Prints the story with the seconds since the run started; writes everything to the log."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        text = text if len(text) <= MAX_WIDTH else text[: MAX_WIDTH - 3] + "..."
        print(f"{time.monotonic() - self.start:6.1f}s  {text}", flush=True)

    def record(self, line: str) -> None:
        with self.lock:
            self.log.write(line if line.endswith("\n") else line + "\n")
            self.log.flush()


def start_simulator(story: Story) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emedgene_provider.testing.simulator", "--port", "0", "--stage-seconds", "2"],
        stdout=subprocess.PIPE,
        stderr=story.log,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r} (see {story.log.name})")
    story.record(line)

    def drain(stream: IO[str]) -> None:  # so that the simulator never blocks on a full pipe
        for rest in stream:
            story.record(rest)

    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    return proc, line.rsplit(" ", 1)[1]


def airflow_env(url: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        PATH=f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",  # the tasks' prints reach the story as they happen
        AIRFLOW_HOME=str(DEMO / "airflow_home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{DEMO / 'airflow_home' / 'airflow.db'}",
        AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(
            {"conn_type": "emedgene", "host": url, "login": "lab-user", "password": "lab-password"}
        ),
        EMEDGENE_DATA_DIR=str(data),
        EMEDGENE_POLL_INTERVAL="2",
    )
    return env


def run_dag(story: Story, env: dict[str, str]) -> int:
    """``airflow dags test``, its output teed: every line to the log, the story to the screen."""
    proc = subprocess.Popen(  # noqa: S603 - the venv's own airflow
        [AIRFLOW, "dags", "test", DAG_ID],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    teller = StoryTeller()
    for line in proc.stdout:
        story.record(line)
        for text in teller.feed(line.rstrip("\n")):
            story.say(text)
    return proc.wait()


def main() -> int:
    data = DEMO / "data"
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("run complete\n")
    (DEMO / "airflow_home").mkdir(parents=True, exist_ok=True)
    log_path = DEMO / "airflow.log"
    with log_path.open("w") as log:
        story = Story(log)
        print(f"Airflow's full log: {log_path}")
        sim, url = start_simulator(story)
        story.say(f"Emedgene simulator listening at {url} (login lab-user; each case stage takes 2 s)")
        try:
            env = airflow_env(url, data)
            story.say(f"migrating the Airflow metadata DB under {DEMO / 'airflow_home'}")
            migrate = subprocess.run(  # noqa: S603 - the venv's own airflow
                [AIRFLOW, "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
            if migrate.returncode != 0:
                print(f"airflow db migrate failed (exit {migrate.returncode}): {log_path}", file=sys.stderr)
                return 1
            story.say(f"running {DAG_ID}: run marker, create case, wait for Delivered, export, summary")
            code = run_dag(story, env)
        finally:
            sim.terminate()
            sim.wait(timeout=30)
    exports = sorted((data / "exports").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if code != 0 or not exports:
        print(f"\n{DAG_ID} failed (exit {code}). Airflow's full log: {log_path}", file=sys.stderr)
        return 1
    count = len(json.loads(exports[-1].read_text()))
    print(f"\n{DAG_ID} succeeded in {time.monotonic() - story.start:.0f} s.")
    print(f"  case:   {exports[-1].stem}")
    print(f"  export: {exports[-1]} ({count} variants)")
    print(f"  Airflow's full log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
