"""Every ```python sample of README.md and docs/**/*.md runs, so the docs cannot drift from the code.

(docs/batch-csv.md's samples run in tests/unit/cases/test_batch_csv.py, beside the files they read.)

Two kinds of sample, told apart by whether they build a DAG:

- **A DAG sample** (``with DAG(`` or ``@dag``) is written as a DAG file into a DAG folder of its
  own and run with ``dag.test()`` in a subprocess on the session's throwaway AIRFLOW_HOME (all
  of them in one process, to pay Airflow's start-up once), against a simulator. Beside the DAG
  files lie the example DAGs' ``cases/`` and ``manifests/``, and the pool ``emedgene`` exists. A param
  whose default is a local path (``/...`` or ``file:///...``) is given, through the run's conf,
  the same path under a temp folder: a sample may show ``file:///data/emedgene/`` as a lab would.
  Every task must succeed; one that writes to a cloud bucket (``s3://``...) is marked success
  without running (there is no bucket here).
- **Any other sample** is executed in this process, in a fresh namespace and an empty temp
  working dir holding ``cases/``, with ``emedgene_default`` pointing at a simulator whose cases
  are delivered at once. That simulator already holds one case, created with the idempotency key
  :data:`GIVEN_KEY` (what a lab would look up after a duplicate-case scare). The namespace holds
  ``case``, a valid case dict (the README's hook sample uses one). A function ``test_*`` the
  sample defines (a pytest example) is then called, its arguments being pytest fixtures.

A sample whose first line is ``# Airflow 3`` (a feature Airflow 2 lacks) runs on Airflow 3 only.
A sample that fails here is a docs/code mismatch: fix the doc, or the code.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow_fixtures import EXAMPLE_DAGS, AirflowHome, airflow_run, connect, python_run, valid_case
from locations import ROOT

from emedgene_provider.client.config import KNOWN_EXTRAS
from emedgene_provider.testing import EmedgeneSimulator

AIRFLOW_3 = airflow.__version__.startswith("3.")
#: Run by tests/unit/cases/test_batch_csv.py, next to the CSV files they name.
RUN_ELSEWHERE = {"docs/batch-csv.md"}
#: The idempotency key of the one case the in-process samples' simulator holds.
GIVEN_KEY = "airflow:lab_pipeline:manual__2026-05-04T09:00:00+00:00:create_case:-1"

_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_DAG = re.compile(r"^\s*(with\s+DAG\(|@dag\b)", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    doc: str  # path relative to the repository
    line: int  # of the opening fence
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def airflow3_only(self) -> bool:
        return self.code.lstrip().startswith("# Airflow 3")

    @property
    def is_dag(self) -> bool:
        return bool(_DAG.search(self.code))

    @property
    def slug(self) -> str:
        return re.sub(r"\W+", "_", self.id).strip("_")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fences(path: Path) -> list[Sample]:
    text = path.read_text()
    doc = str(path.relative_to(ROOT))
    return [
        Sample(doc, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2))
        for m in _FENCE.finditer(text)
    ]


def python_samples() -> list[Sample]:
    return [
        sample
        for path in doc_files()
        if str(path.relative_to(ROOT)) not in RUN_ELSEWHERE
        for sample in fences(path)
        if sample.language == "python" and (AIRFLOW_3 or not sample.airflow3_only)
    ]


SAMPLES = python_samples()
PLAIN = [s for s in SAMPLES if not s.is_dag]
DAGS = [s for s in SAMPLES if s.is_dag]


# -- what the docs must be -----------------------------------------------------------------------


def test_samples_are_found() -> None:
    docs = {s.doc for s in SAMPLES}
    assert {"README.md", "docs/connection.md", "docs/simulator.md"} <= docs
    assert {
        f"docs/howto/{name}.md" for name in ("create-case", "get-case", "candidates-and-export", "sensor")
    } <= {s.doc for s in DAGS}


def test_every_code_block_in_docs_names_its_language() -> None:
    """A bare fence would hide a Python sample from this module; a shell block must say so."""
    bare = [s.id for path in sorted((ROOT / "docs").rglob("*.md")) for s in fences(path) if not s.language]
    assert bare == []


def test_the_readme_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "docs").rglob("*.md"))
        if f"({path.relative_to(ROOT)})" not in readme
    ]
    assert missing == []


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to -."""
    text = _FENCE.sub("", path.read_text())
    headings = re.findall(r"^#+\s+(.*?)\s*$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_relative_links_and_their_anchors_resolve() -> None:
    broken = []
    for path in doc_files():
        text = _FENCE.sub("", path.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_connection_doc_lists_every_extra() -> None:
    table = (ROOT / "docs" / "connection.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))
    assert rows == set(KNOWN_EXTRAS)


# -- samples run in this process -----------------------------------------------------------------


@pytest.fixture
def docs_tenant(
    emedgene_simulator_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[EmedgeneSimulator]:
    """A simulator whose cases are delivered at once, holding one case made with GIVEN_KEY,
    ``emedgene_default`` pointing at it, and a temp working dir with ``cases/``."""
    from emedgene_provider.client.config import config_from_connection
    from emedgene_provider.client.sync import EmedgeneClient

    sim: EmedgeneSimulator = emedgene_simulator_factory(stage_seconds=0)
    conn = sim.connection_json()
    client = EmedgeneClient(
        config_from_connection(
            host=conn["host"], login=conn["login"], password=conn["password"], extra=conn["extra"]
        )
    )
    given = valid_case(airflow_idempotency_key=GIVEN_KEY)
    client.create_case(given)
    client.close()
    connect(monkeypatch, sim)
    shutil.copytree(EXAMPLE_DAGS / "cases", tmp_path / "cases")
    monkeypatch.chdir(tmp_path)
    yield sim


@pytest.mark.parametrize("sample", PLAIN, ids=[s.id for s in PLAIN])
def test_sample_runs(sample: Sample, docs_tenant: EmedgeneSimulator, request: pytest.FixtureRequest) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_sample", "case": valid_case()}
    exec(compile(sample.code, sample.id, "exec"), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            code = value.__code__
            value(*(request.getfixturevalue(arg) for arg in code.co_varnames[: code.co_argcount]))


def test_the_duplicate_case_look_up_finds_the_given_case(docs_tenant: EmedgeneSimulator) -> None:
    """The troubleshooting look-up is run above; here, that it finds what the key made."""
    from emedgene_provider.hooks.emedgene import EmedgeneHook

    found = list(EmedgeneHook().client.cases_with_idempotency_key(GIVEN_KEY))
    assert len(found) == 1


# -- DAG samples, run by Airflow -----------------------------------------------------------------

#: Parses the DAG folder, runs every DAG with dag.test() (local-path params moved under argv[2]),
#: and prints each run's state and its task instances' states.
DAG_TEST_SCRIPT = r"""
import json, sys, traceback
from pathlib import Path
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
from airflow.models import DagRun, TaskInstance
from airflow.utils.session import create_session

folder, scratch = sys.argv[1], Path(sys.argv[2])
try:
    bag = DagBag(dag_folder=folder, include_examples=False)
except TypeError:
    bag = DagBag(dag_folder=folder)
out = {"errors": {Path(k).name: str(v) for k, v in bag.import_errors.items()}, "runs": {}}

def moved(value):
    if not isinstance(value, str):
        return value
    if value.startswith("file:///"):
        return "file://" + str(scratch) + value[len("file://"):]
    if value.startswith("/"):
        return str(scratch) + value
    return value

# Airflow 2.11 records an asset event through an alias only if the DAG's aliases are in the DB
# (the scheduler's parse puts them there; `airflow dags reserialize` too). Airflow 3 needs nothing.
if hasattr(bag, "sync_to_db"):
    bag.sync_to_db()
for dag_id, dag in sorted(bag.dags.items()):
    conf = {}
    for name, param in dag.params.items():
        default = getattr(param, "value", param)
        if moved(default) != default:
            conf[name] = moved(default)
    # A task writing to a cloud bucket (s3://, gs://, ...) is marked success, not run: no bucket here.
    cloud = sorted(
        task.task_id for task in dag.tasks
        if "://" in str(getattr(task, "output_path", None) or "")
        and not str(task.output_path).startswith(("file://", "{{"))
    )
    run = {"file": Path(dag.fileloc).name, "conf": conf, "not_run": cloud}
    try:
        dag.test(run_conf=conf or None, mark_success_pattern="^(" + "|".join(cloud) + ")$" if cloud else None)
    except Exception as exc:
        run["exception"] = traceback.format_exc()[-3000:]
    with create_session() as session:
        latest = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        run["state"] = str(getattr(latest.state, "value", latest.state)) if latest else None
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == latest.run_id
        ).all() if latest else []
        run["tasks"] = {
            f"{ti.task_id}[{ti.map_index}]": str(getattr(ti.state, "value", ti.state)) for ti in tis
        }
    out["runs"][dag_id] = run
print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def dag_results(airflow_home: AirflowHome, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("docs_dags")
    scratch = tmp_path_factory.mktemp("docs_scratch")
    for support in ("cases", "manifests"):
        shutil.copytree(EXAMPLE_DAGS / support, folder / support)
    for sample in DAGS:
        (folder / f"{sample.slug}.py").write_text(sample.code)
    with EmedgeneSimulator(stage_seconds=0) as sim:
        env = airflow_home.with_env(
            AIRFLOW__CORE__DAGS_FOLDER=str(folder),
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(sim.connection_json()),
        )
        pool = airflow_run(env, "pools", "set", "emedgene", "8", "Emedgene tenant")
        assert pool.returncode == 0, pool.stdout + pool.stderr
        result: dict[str, Any] = python_run(env, DAG_TEST_SCRIPT, str(folder), str(scratch), timeout=600)
    result["scratch"] = str(scratch)
    return result


@pytest.mark.e2e
@pytest.mark.parametrize("sample", DAGS, ids=[s.id for s in DAGS])
def test_dag_sample_runs(sample: Sample, dag_results: dict[str, Any]) -> None:
    file = f"{sample.slug}.py"
    assert file not in dag_results["errors"], dag_results["errors"][file]
    runs = {dag_id: run for dag_id, run in dag_results["runs"].items() if run["file"] == file}
    assert runs, f"{sample.id} builds no DAG"
    for dag_id, run in runs.items():
        assert run["state"] == "success" and run["tasks"], f"{dag_id} of {sample.id}: {run}"
        assert set(run["tasks"].values()) == {"success"}, f"{dag_id} of {sample.id}: {run}"


@pytest.mark.e2e
def test_the_export_sample_wrote_its_files(dag_results: dict[str, Any]) -> None:
    """The results land where the sample said, under the scratch folder its params were moved to."""
    base = Path(dag_results["scratch"]) / "data" / "emedgene"
    assert [p.suffix for p in (base / "candidates").iterdir()] == [".json"]
    (export,) = (base / "exports").iterdir()
    assert re.fullmatch(r"EMG\d{9}\.json", export.name)
    assert isinstance(json.loads(export.read_text()), list)
