"""Footprint: how big the provider is, how much of it repeats itself, and how much of it one user
journey touches; for comparing a tree before and after a refactoring.

For a tree ``DIR`` (by default the repository holding this script) it prints:

- the non-blank lines of the ``.py`` files of ``emedgene_provider/`` without
  ``emedgene_provider/testing/`` (the bundled simulator), with it, and of ``tests/`` (recursively);
- the 10 largest modules of ``emedgene_provider/`` (simulator included, marked) by non-blank lines;
- what the ``duplicates`` tool (when on PATH) reports for ``DIR/emedgene_provider``: the pairs of
  places sharing runs of 6 or more identical or same-shape lines, with its own summary line;
- with ``--journeys``: for three user journeys against the bundled simulator ("status wait",
  "export", "create"), the ``emedgene_provider`` modules whose code runs. Each journey runs in a
  fresh interpreter (``--python``) with ``PYTHONPATH=DIR``, so DIR's package is the one imported
  (the child prints ``emedgene_provider.__file__`` to prove it), under ``sys.setprofile`` and
  ``threading.setprofile``; every Python frame whose ``co_filename`` is under
  ``DIR/emedgene_provider`` is recorded, except the simulator's: files under
  ``emedgene_provider/testing/``, and provider code called with a simulator frame on the stack (the
  simulator imports a few provider modules and serves from its own thread). A module counts as
  *called* when one of its functions ran outside any import, as *import only* when nothing but
  import-time code of it ran (its module body, class bodies, what they call).

Why: the size of a change's tree says little on its own; what a refactoring is meant to change is
how much code a reader meets, how much of it says the same thing twice, and how many modules one
feature is spread over. The figures are comparable between trees only when taken the same way,
hence one script run on both.

    python bench/footprint.py                              # this tree, sizes and duplicates
    python bench/footprint.py --repo /tmp/before --journeys
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

PACKAGE = "emedgene_provider"
SIMULATOR = "testing"
JOURNEYS = ("status wait", "export", "create")
EXAMPLE_CASE = Path("dags_examples") / "cases" / "trio-exome-vcf.json"
STAGE_SECONDS = 0.05  # the simulator's lifecycle stage: a case is Delivered within a second
MARK = "FOOTPRINT-JSON: "
_ROW = re.compile(r"^D\d+\s+(\S+):\d+-\d+\s+~\s+(\S+):\d+-\d+")
_PAIRS = re.compile(r"^(\d+) pairs? of places")
_NO_PAIRS = re.compile(r"^no duplicates")
_MORE = re.compile(r"^\(\+(\d+) more pairs?\)")
_IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


# -- sizes --------------------------------------------------------------------------------------


def non_blank_lines(path: Path) -> int:
    """Lines holding anything but white space (``grep -cv '^\\s*$'``)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip())


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def sizes(repo: Path) -> dict[str, Any]:
    package = repo / PACKAGE
    per_module = {p.relative_to(package).as_posix(): non_blank_lines(p) for p in python_files(package)}
    simulator = {name: n for name, n in per_module.items() if name.startswith(f"{SIMULATOR}/")}
    tests = python_files(repo / "tests") if (repo / "tests").is_dir() else []
    return {
        "package": sum(per_module.values()) - sum(simulator.values()),
        "package_files": len(per_module) - len(simulator),
        "with_simulator": sum(per_module.values()),
        "with_simulator_files": len(per_module),
        "tests": sum(non_blank_lines(p) for p in tests),
        "tests_files": len(tests),
        "largest": sorted(per_module.items(), key=lambda item: (-item[1], item[0]))[:10],
    }


# -- repeated code ------------------------------------------------------------------------------


def duplicate_pairs(repo: Path, seconds: int, min_lines: int) -> dict[str, Any]:
    """Run ``duplicates`` on ``DIR/emedgene_provider``; the pairs it counts, or why there are none."""
    tool = shutil.which("duplicates")
    command = [
        "duplicates", "--repo", str(repo / PACKAGE), "--most", "200",
        "--seconds", str(seconds), "--min-lines", str(min_lines),
    ]  # fmt: skip
    out: dict[str, Any] = {"command": " ".join(command), "pairs": None}
    if tool is None:
        out["error"] = "`duplicates` is not on PATH"
        return out
    try:
        done = subprocess.run(
            [tool, *command[1:]], capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["error"] = f"`duplicates` could not run: {exc}"
        return out
    lines = done.stdout.splitlines()
    if not lines:
        out["error"] = f"`duplicates` printed nothing (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        return out
    out["summary"] = lines[0]
    out["notes"] = [line for line in lines if line.startswith(("left out:", "incomplete:"))]
    rows = [match.groups() for match in map(_ROW.match, lines) if match]
    more = sum(int(match.group(1)) for match in map(_MORE.match, lines) if match)
    if (match := _PAIRS.match(lines[0])) is not None:
        out["pairs"] = int(match.group(1))
    elif _NO_PAIRS.match(lines[0]):
        out["pairs"] = 0
    else:
        out["error"] = f"unexpected first line: {lines[0]!r}"
    out["rows"] = len(rows)
    if not more:  # every pair listed: split them by whether the simulator is in them
        in_sim = [any(side.startswith(f"{SIMULATOR}/") for side in row) for row in rows]
        out["outside_simulator"] = in_sim.count(False)
        out["touching_simulator"] = in_sim.count(True)
    return out


# -- journeys: the parent side ------------------------------------------------------------------


def default_python() -> str:
    here = Path(__file__).resolve().parents[1] / ".venv" / "airflow3" / "bin" / "python"
    return str(here) if here.exists() else sys.executable


def run_journey(repo: Path, journey: str, python: str, timeout: float) -> dict[str, Any]:
    """Run one journey in a fresh interpreter importing ``repo``'s package; its JSON report."""
    with tempfile.TemporaryDirectory(prefix="footprint-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
        env.update(
            PYTHONPATH=str(repo),
            PYTHONDONTWRITEBYTECODE="1",  # leave no __pycache__ in the measured tree
            AIRFLOW_HOME=home,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        )
        command = [python, str(Path(__file__).resolve()), "--repo", str(repo), "--child", journey]
        try:
            done = subprocess.run(
                command, env=env, cwd=home, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            report: dict[str, Any] = json.loads(line[len(MARK) :])
            return report
    return {"error": f"exit {done.returncode}, no report; stderr ends:\n{done.stderr.strip()[-3000:]}"}


# -- journeys: the child side -------------------------------------------------------------------


class Recorder:
    """Which provider files ran code, from a profile function set on every thread.

    ``files[path]`` is True once a function of that file ran outside any import, False while only
    import-time code of it did. Nothing is recorded while :attr:`paused`.
    """

    def __init__(self, package_dir: Path) -> None:
        roots = {str(package_dir), os.path.realpath(package_dir)}
        self.prefixes = tuple(root + os.sep for root in roots)
        self.simulator = tuple(f"{root}{os.sep}{SIMULATOR}{os.sep}" for root in roots)
        self.files: dict[str, bool] = {}
        self.paused = False
        self._kinds: dict[str, int] = {}  # 0 elsewhere, 1 provider, 2 simulator

    def _kind(self, filename: str) -> int:
        kind = self._kinds.get(filename)
        if kind is None:
            path = os.path.abspath(filename) if filename[:1] != "<" else filename
            kind = 2 if path.startswith(self.simulator) else 1 if path.startswith(self.prefixes) else 0
            self._kinds[filename] = kind
        return kind

    def profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or self.paused:
            return
        code = frame.f_code
        filename = code.co_filename
        if self.files.get(filename) or self._kind(filename) != 1:
            return
        importing = False
        caller = frame.f_back
        while caller is not None:
            caller_file = caller.f_code.co_filename
            if self._kind(caller_file) == 2:
                return  # the simulator at work
            importing = importing or caller_file in _IMPORT_MACHINERY
            caller = caller.f_back
        function = bool(code.co_flags & inspect.CO_OPTIMIZED) and code.co_name not in _COMPREHENSIONS
        self.files[filename] = self.files.get(filename, False) or (function and not importing)

    def install(self) -> None:
        sys.setprofile(self.profile)
        threading.setprofile(self.profile)

    def uninstall(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


def find(names: Iterable[str], modules: Iterable[str]) -> tuple[Any, str]:
    """The first of ``names`` defined by the first of ``modules`` that exists, and where it was found.

    The callers list the after tree's module first, then the before tree's."""
    names = list(names)
    tried = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise  # a module that exists but misses a dependency: not a naming difference
            tried.append(f"{module_name} (no such module)")
            continue
        for name in names:
            if hasattr(module, name):
                return getattr(module, name), f"{module_name}.{name}"
        tried.append(f"{module_name} (none of {', '.join(names)})")
    raise LookupError("not found: " + "; ".join(tried))


class _FallbackTI:
    """The tests' FakeTI, for trees that have no ``emedgene_provider.testing.fakes``."""

    max_tries = 0

    def __init__(self) -> None:
        self.try_number = 1
        self.dag_id, self.run_id, self.task_id, self.map_index = "unit_dag", "manual__unit", "unit_task", -1
        self.pushed: list[tuple[str, Any]] = []
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.pushed.append((key, value))

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def make_context(used: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A task context like the tests' ``make_context``, around the tree's FakeTI if it has one."""
    try:
        ti_class, where = find(["FakeTI"], [f"{PACKAGE}.testing.fakes"])
    except LookupError:
        ti_class, where = _FallbackTI, "bench/footprint.py _FallbackTI (the tree has no testing.fakes)"
    used["FakeTI"] = where
    context: dict[str, Any] = {"ti": ti_class(), "run_id": "manual__footprint", "params": {}}
    context.update(extra)
    return context


def example_case(repo: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((repo / EXAMPLE_CASE).read_text())
    case["test_data"]["extra_data"]["airflow_run_id"] = "manual__footprint"  # what Jinja would render
    return case


def create_through_hook(case: dict[str, Any], used: dict[str, str]) -> str:
    hook_class, used["hook"] = find(["EmedgeneHook"], [f"{PACKAGE}.hooks.emedgene", f"{PACKAGE}.hooks"])
    hook = hook_class()
    client = getattr(hook, "client", None)
    if client is not None and hasattr(client, "create_case"):
        used["create"] = "EmedgeneHook().client.create_case"
        return str(client.create_case(case))
    used["create"] = "EmedgeneHook().create_case"
    return str(hook.create_case(case))


#: What a process shares between clients, and how to forget it: the after tree's one reset, else
#: the before tree's three.
_RESETS = (
    ((f"{PACKAGE}.client.process", "PROCESS.reset"),),
    (
        (f"{PACKAGE}.client.auth", "TOKEN_CACHE.clear"),
        (f"{PACKAGE}.hooks.emedgene", "forget_connection_reads"),
        (f"{PACKAGE}.client.ratelimit", "forget"),
    ),
)


def reset_process_state() -> str:
    """Forget the tokens, connection reads and rate limits the set-up left in this process."""
    for group in _RESETS:
        done = []
        for module_name, dotted in group:
            try:
                target: Any = importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
            for attribute in dotted.split("."):
                target = getattr(target, attribute, None)
            if callable(target):
                target()
                done.append(f"{module_name.removeprefix(PACKAGE + '.')}.{dotted}()")
        if done:
            return "reset: " + ", ".join(done)
    return "reset: nothing found to reset"


def accepted(callable_: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments ``callable_`` takes (optional ones differ between trees)."""
    parameters = inspect.signature(callable_).parameters
    return {k: v for k, v in kwargs.items() if k in parameters}


def entry_points(journey: str, used: dict[str, str]) -> dict[str, Any]:
    """Import what the journey's DAG would import (the after names first, then the before ones).

    Done before the simulator starts: the simulator imports a few provider modules itself, and a
    module's body runs once, so a journey importing them later would not be seen to."""
    names = {
        "hook": (["EmedgeneHook"], [f"{PACKAGE}.hooks.emedgene", f"{PACKAGE}.hooks"]),
        "sensor": (["EmedgeneCaseStatusSensor"], [f"{PACKAGE}.sensors.emedgene", f"{PACKAGE}.sensors"]),
        "trigger": (["EmedgeneCaseStatusTrigger"], [f"{PACKAGE}.triggers.emedgene", f"{PACKAGE}.triggers"]),
        "export": (
            ["EmedgeneExportCaseOperator"],
            [f"{PACKAGE}.operators.results", f"{PACKAGE}.operators.emedgene", f"{PACKAGE}.operators"],
        ),
        "create": (
            ["EmedgeneCreateCaseOperator"],
            [f"{PACKAGE}.operators.create", f"{PACKAGE}.operators.emedgene", f"{PACKAGE}.operators"],
        ),
    }
    wanted = {"status wait": ["hook", "sensor", "trigger"], "export": ["export"], "create": ["create"]}
    found = {}
    for role in wanted[journey]:
        found[role], used[role] = find(*names[role])
    return found


def journey_status_wait(repo: Path, sim: Any, used: dict[str, str], found: dict[str, Any]) -> dict[str, Any]:
    sensor_class, trigger_class = found["sensor"], found["trigger"]
    name = create_through_hook(example_case(repo), used)
    sensor = sensor_class(task_id="wait", case_name=name, poke_interval=0.1, timeout=30)
    poked = sensor.poke(make_context(used))
    trigger = trigger_class(
        case_name=name,
        emedgene_conn_id="emedgene_default",
        target_statuses=["Delivered"],
        failure_statuses=None,
        poll_interval=0.1,
        end_time=time.time() + 60,
        **accepted(trigger_class, max_poll_interval=0.2),
    )

    async def first_event() -> dict[str, Any]:
        events = trigger.run()
        try:
            event = await events.__anext__()
        finally:
            await events.aclose()
        payload: dict[str, Any] = event.payload
        return payload

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    poke = {"is_done": poked.is_done, "xcom_value": poked.xcom_value} if hasattr(poked, "is_done") else poked
    return {"case_name": name, "poke": poke, "trigger_event": payload}


def seed_case(sim: Any, case: dict[str, Any], used: dict[str, str], recorder: Recorder) -> str:
    """Put a case in the simulator as set-up, without running provider code in this process.

    Through the simulator's state (a private attribute, the same in both trees), so that no module
    the journey would import is imported, unrecorded, before it. Else through the hook with the
    recorder paused, and the process's shared state forgotten afterwards; import-time code the
    set-up runs first is then missing from the journey's list."""
    try:
        state = sim._server.simulation.state
    except AttributeError:
        recorder.paused = True
        try:
            name = create_through_hook(case, used)
            used["setup"] = f"case created through the hook, unrecorded; {reset_process_state()}"
        finally:
            recorder.paused = False
        return name
    used["setup"] = "case stored in the simulator's state (sim._server.simulation.state.create_case)"
    return str(sim._call(lambda: state.create_case(case)).name)


def journey_export(
    repo: Path, sim: Any, used: dict[str, str], found: dict[str, Any], recorder: Recorder
) -> dict[str, Any]:
    export_class = found["export"]
    name = seed_case(sim, example_case(repo), used, recorder)
    sim.set_status(name, "Delivered")
    with tempfile.TemporaryDirectory(prefix="footprint-export-") as folder:
        target = Path(folder) / "export.json"
        operator = export_class(task_id="export", case_name=name, output_path=f"file://{target}")
        result = operator.execute(make_context(used))
        written = len(json.loads(target.read_text())) if target.exists() else None
    return {"case_name": name, "result": result, "records_in_file": written}


def journey_create(repo: Path, sim: Any, used: dict[str, str], found: dict[str, Any]) -> dict[str, Any]:
    create_class = found["create"]
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2
        from airflow import DAG  # type: ignore[attr-defined,no-redef,unused-ignore]
    from datetime import datetime

    case_file = repo / EXAMPLE_CASE
    searchpath = [str(case_file.parent)]
    with DAG("footprint", schedule=None, start_date=datetime(2026, 1, 1), template_searchpath=searchpath):
        operator = create_class(task_id="create", case=case_file.name, wait_for_completion=False)
    context = make_context(used)
    operator.render_template_fields(context)
    name = operator.execute(context)
    return {"case_name": name, "pushed": [key for key, _ in context["ti"].pushed]}


def drop_editable_finders() -> list[str]:
    """Remove the meta path finders of editable installs (``pip install -e``), which map
    ``emedgene_provider`` to the installed checkout: a submodule that DIR lacks (an entry point
    naming a module added later) would be imported from that checkout instead of failing."""
    editable = [f for f in sys.meta_path if getattr(f, "__module__", "").startswith("__editable__")]
    sys.meta_path[:] = [f for f in sys.meta_path if f not in editable]
    return [repr(f) for f in editable]


def child(repo: Path, journey: str) -> int:
    """Run one journey in this (fresh) interpreter and print its report as one JSON line."""
    dropped = drop_editable_finders()
    recorder = Recorder(repo / PACKAGE)
    recorder.install()
    started = time.monotonic()
    used: dict[str, str] = {}
    if dropped:
        used["import system"] = f"editable-install finders removed: {', '.join(dropped)}"
    report: dict[str, Any] = {"journey": journey}
    try:
        import emedgene_provider

        report["package_file"] = emedgene_provider.__file__
        print(f"emedgene_provider.__file__ = {emedgene_provider.__file__}", flush=True)
        found = entry_points(journey, used)
        from emedgene_provider.testing import EmedgeneSimulator

        with EmedgeneSimulator(stage_seconds=STAGE_SECONDS) as sim:
            os.environ["AIRFLOW_CONN_EMEDGENE_DEFAULT"] = json.dumps(sim.connection_json())
            if journey == "status wait":
                report["outcome"] = journey_status_wait(repo, sim, used, found)
            elif journey == "export":
                report["outcome"] = journey_export(repo, sim, used, found, recorder)
            else:
                report["outcome"] = journey_create(repo, sim, used, found)
            recorder.paused = True
    except Exception as exc:  # report it: the parent prints why and goes on
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        recorder.uninstall()
    package = repo / PACKAGE
    modules = {}
    for filename, called in recorder.files.items():
        path = Path(os.path.abspath(filename))
        try:
            relative = path.relative_to(package)
        except ValueError:
            relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(package))
        modules[relative.as_posix()] = called
    report["modules"] = dict(sorted(modules.items()))
    report["foreign"] = sorted(  # provider modules imported from anywhere but DIR: must stay empty
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == PACKAGE
        and getattr(module, "__file__", None)
        and not os.path.realpath(module.__file__ or "").startswith(os.path.realpath(package) + os.sep)
    )
    report["used"] = used
    report["seconds"] = round(time.monotonic() - started, 2)
    print(MARK + json.dumps(report, default=repr), flush=True)
    return 0


# -- printing -----------------------------------------------------------------------------------


def git_state(repo: Path) -> str:
    """The commit and how many paths differ from it, read without taking git's optional locks."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(repo), *args],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "not a git checkout"
    changed = len(git("status", "--porcelain").splitlines())
    return f"HEAD {head}, {changed} paths modified or untracked" if changed else f"HEAD {head}, clean"


def print_report(repo: Path, figures: dict[str, Any], dups: dict[str, Any], journeys: dict[str, Any]) -> None:
    print(f"# Footprint of {repo} ({git_state(repo)})")
    print("\n## a. Non-blank lines (.py files)")
    for label, key in (
        (f"{PACKAGE}/ without {PACKAGE}/{SIMULATOR}/", "package"),
        (f"{PACKAGE}/ with the simulator", "with_simulator"),
        ("tests/ (recursively)", "tests"),
    ):
        print(f"{label + ':':<48} {figures[key]} ({figures[key + '_files']} files)")
    print(f"\n## b. The 10 largest modules of {PACKAGE}/ (non-blank lines)")
    for name, lines in figures["largest"]:
        note = "  (simulator)" if name.startswith(f"{SIMULATOR}/") else ""
        print(f"{lines:6d}  {name}{note}")
    print("\n## c. Repeated code")
    print(f"command: {dups['command']}")
    if dups.get("summary"):
        print(f"tool says: {dups['summary']}")
    for note in dups.get("notes", []):
        print(f"tool says: {note}")
    if dups.get("pairs") is not None:
        print(f"pairs of places sharing >= 6 identical or same-shape lines: {dups['pairs']}")
        if "outside_simulator" in dups:
            print(
                f"  of which outside {SIMULATOR}/ on both sides: {dups['outside_simulator']}, "
                f"with {SIMULATOR}/ on a side: {dups['touching_simulator']}"
            )
    if dups.get("error"):
        print(f"not counted: {dups['error']}")
    if not journeys:
        return
    print(f"\n## d. Journeys: {PACKAGE} modules whose code ran (paths relative to {PACKAGE}/)")
    for journey, report in journeys.items():
        print(f"\n### {journey}")
        if report.get("package_file"):
            print(f"emedgene_provider.__file__ = {report['package_file']}")
        if report.get("error"):
            print(f"FAILED: {report['error']}")
        if report.get("foreign"):
            print(f"WARNING: provider modules imported from outside the tree: {report['foreign']}")
        if "modules" not in report:
            continue
        for what, where in report.get("used", {}).items():
            print(f"used {what}: {where}")
        if "outcome" in report:
            print(f"outcome: {json.dumps(report['outcome'], default=repr)}")
        modules: dict[str, bool] = report["modules"]
        called = sum(modules.values())
        only = len(modules) - called
        print(f"modules: {len(modules)} ({called} called, {only} import only) in {report['seconds']} s")
        for name, was_called in modules.items():
            print(f"  {name}{'' if was_called else '  [import only]'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--repo", type=Path, default=here, help="tree to measure (default: %(default)s)")
    parser.add_argument("--journeys", action="store_true", help="also trace the three user journeys")
    parser.add_argument("--python", default=default_python(), help="interpreter for the journeys")
    parser.add_argument("--seconds", type=int, default=120, help="time limit of `duplicates`")
    parser.add_argument("--timeout", type=float, default=300.0, help="time limit of one journey")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--child", choices=JOURNEYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    if args.child:
        return child(repo, args.child)
    if not (repo / PACKAGE).is_dir():
        parser.error(f"{repo} has no {PACKAGE}/")
    figures = sizes(repo)
    dups = duplicate_pairs(repo, args.seconds, min_lines=6)
    journeys = {}
    if args.journeys:
        journeys = {name: run_journey(repo, name, args.python, args.timeout) for name in JOURNEYS}
    print_report(repo, figures, dups, journeys)
    if args.json:
        everything = {"repo": str(repo), "sizes": figures, "duplicates": dups, "journeys": journeys}
        args.json.write_text(json.dumps(everything, indent=2, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
