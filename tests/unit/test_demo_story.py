"""`make demo`'s story: what of Airflow's output a person reads (scripts/demo.py's StoryTeller).

The lines below are Airflow 3.3's own, as `airflow dags test emedgene_case_pipeline` prints them
(trimmed of key=value tails that do not matter).
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from locations import ROOT

T = "2026-11-29T17:29:58.101Z"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("emedgene_demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rec(level: str, msg: str, logger: str, kv: str = "loc=x.py:1") -> str:
    return f"{T} [{level:<9}] {msg} [{logger}] {kv}"


DAG = "airflow.sdk.definitions.dag"
TI = "airflow.api_fastapi.execution_api.routes.task_instances"
RUN = [
    rec(
        "info", "DAG bundles loaded: dags-folder", "airflow.dag_processing.bundles.manager.DagBundlesManager"
    ),
    "You might need to install the graphviz package and necessary system packages.",
    rec("info", "Created dag run.", "airflow.models.dagrun", "dagrun=<DagRun emedgene_case_pipeline>"),
    rec("info", "[DAG TEST] starting task_id=wait_for_sequencing map_index=-1", DAG),
    rec("info", "Task started", TI, "previous_state=queued ti_id=1"),
    rec("info", "Task instance state updated", TI, "rows_affected=1 ti_id=1"),
    "waiting for /data/runs/latest/CopyComplete.txt: present",
    rec("info", "Task instance state updated", TI, "new_state=success rows_affected=1"),
    rec("info", "[DAG TEST] end task task_id=wait_for_sequencing map_index=-1", DAG),
    rec("info", "[DAG TEST] starting task_id=create_case map_index=-1", DAG),
    rec("info", "Created Emedgene case EMG1 (key 'k')", "airflow.task.operators.emedgene_provider.operators"),
    rec("info", "Pushing xcom", "task", "ti=RuntimeTaskInstance(...)"),
    rec("info", "Task instance state updated", TI, "new_state=success rows_affected=1"),
    rec("info", "[DAG TEST] end task task_id=create_case map_index=-1", DAG),
    rec("info", "[DAG TEST] starting task_id=wait_for_delivery map_index=-1", DAG),
    rec("info", "Task instance state updated", TI, "new_state=deferred rows_affected=1"),
    rec("info", "[DAG TEST] running trigger in line", DAG),
    rec("warning", "Emedgene case EMG1 is 'Odd'; waiting", "emedgene_provider.triggers.emedgene.Trigger"),
    rec("info", "[DAG TEST] Trigger completed", DAG),
    rec("info", "Task instance state updated", TI, "new_state=success rows_affected=1"),
    rec("info", "[DAG TEST] end task task_id=wait_for_delivery map_index=-1", DAG),
    rec("info", "Marking run <DagRun emedgene_case_pipeline> successful", "airflow.models.dagrun.DagRun"),
]


def test_the_story_of_a_run_is_its_steps_and_what_the_provider_and_tasks_say() -> None:
    teller = load_demo().StoryTeller()
    story = [text for line in RUN for text in teller.feed(line)]
    assert story == [
        "wait_for_sequencing: started",
        "wait_for_sequencing: waiting for /data/runs/latest/CopyComplete.txt: present",
        "wait_for_sequencing: success",
        "create_case: started",
        "create_case: Created Emedgene case EMG1 (key 'k')",
        "create_case: success",
        "wait_for_delivery: started",
        "wait_for_delivery: deferred",
        "wait_for_delivery: `dags test` runs the trigger in line, as a triggerer would",
        "wait_for_delivery: WARNING: Emedgene case EMG1 is 'Odd'; waiting",
        "wait_for_delivery: the trigger fired; the task resumes",
        "wait_for_delivery: success",
    ]


def test_a_records_continuation_is_not_taken_for_a_tasks_output() -> None:
    teller = load_demo().StoryTeller()
    teller.feed(rec("info", "[DAG TEST] starting task_id=export_case map_index=-1", DAG))
    # An info record of several lines (Airflow's own): none of it is the story.
    assert teller.feed(f"{T} [info     ] Some multi-line notice") == []
    assert teller.feed("  its second line [airflow.somewhere] loc=a.py:1") == []
    # An error is, with the first lines of its traceback and a pointer to the log.
    assert teller.feed(f"{T} [error    ] Task failed with exception") == [
        "export_case: ERROR: Task failed with exception"
    ]
    tail = [
        teller.feed(line) for line in ("Traceback (most recent call last):", '  File "x.py"', "  a", "  b")
    ]
    assert tail == [
        ["    Traceback (most recent call last):"],
        ['    File "x.py"'],
        ["    a ... (the whole of it is in the log)"],
        [],
    ]
    # The next record ends the continuation: a print is the task's own output again.
    teller.feed(rec("info", "Pushing xcom", "task"))
    assert teller.feed("exported 7 variants") == ["export_case: exported 7 variants"]
