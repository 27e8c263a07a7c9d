"""A batch CSV in a DAG: the create operator's relaxed local check and its off switch, the Family Id
label of mapped creates, the batch reader task (all or nothing against the simulator's dry run)
and the batch summary.

The e2e run of ``emedgene_clinical_batch`` (real Airflow, both majors) is in test_example_dags.py.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowFailException, AirflowSkipException
from airflow_fixtures import EXAMPLE_DAGS, creates, make_context, valid_case
from locations import DATA as TESTS_DATA
from locations import ROOT

from emedgene_provider.cases.batch_csv import BatchCsvError, read_batch_csv
from emedgene_provider.cases.builder import Case, Member, SampleFile, parse_date
from emedgene_provider.cases.extra_data import family_of
from emedgene_provider.cases.tenant_samples import TenantSamples
from emedgene_provider.cases.validation import MAX_NOTES, MAX_PHENOTYPES, case_problems, case_warnings
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.batch import (
    EmedgeneBatchCsvOperator,
    EmedgeneBatchSummaryOperator,
    batch_summary,
    cases_from_batch_csv,
    read_all,
)
from emedgene_provider.operators.create import FAMILY_ID_CONTEXT_KEY
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.testing.fakes import FakeTI

DATA = TESTS_DATA / "batch"
EXAMPLE_BATCH = EXAMPLE_DAGS / "manifests" / "example-batch.csv"
FAMILIES = ["TRIO-2026-0007", "SOLO-2026-0311", "SOLO-2026-0312"]


def _dag() -> DAG:
    return DAG("batch_unit", schedule=None, start_date=datetime(2026, 1, 1))


# -- payload: what the builder produces is accepted ------------------------------------------------


def _family_case() -> dict[str, Any]:
    """A case with the shapes the builder produces: a proband with a VCF and visualization files,
    phenotypes by name, a mother and a father whose samples are pending, and a relative of a role
    we do not know."""
    return Case(
        "Exome",
        members=[
            Member(
                "proband",
                "P1",
                "F",
                phenotype_names=["Seizure"],
                files=[SampleFile("/r/P1.vcf.gz", 7)],
                visualization_files=[SampleFile("/r/P1.bam", 7), SampleFile("/r/P1.tn.bw", 7)],
            ),
            Member("mother", "M1", "F", phenotype_names=["Seizure"]),
            Member("father", "F1", "M", hpo=["HP:0004322"]),
            Member("aunt", "A1", "F"),
        ],
    ).to_json()


def test_builder_shapes_have_no_problem() -> None:
    case = _family_case()
    patients = case["test_data"]["patients"]
    assert patients["mother"]["fastq_sample"] == "" and patients["mother"]["pending_sample_name"] == "M1"
    assert patients["mother"]["phenotypes"] == [{"name": "Seizure", "related": True}]
    assert case["test_data"]["samples"][0]["sampleFiles"][1]["filename"] == "P1.tn.bw"
    assert case_problems(case) == []


def test_a_pending_proband_and_an_existing_sample_have_no_problem() -> None:
    pending = Case("Exome", members=[Member("proband", "P1", "M", hpo=["HP:0001250"])], sample_type="fastq")
    nameless = Case("Exome", members=[Member("proband", "", "M", hpo=["HP:0001250"])], sample_type="vcf")
    existing = Case(
        "Exome",
        members=[Member("proband", "P1", "M", existing_sample_id=42), Member("sibling", "", "U")],
    )
    assert pending.to_json()["test_data"]["samples"] == [
        {"fastq": "P1", "status": "uploaded", "sampleFiles": []}
    ]
    assert existing.to_json()["test_data"]["samples"] == [{"id": 42, "fastq": "P1"}]
    for case in (pending, nameless, existing):
        assert case_problems(case.to_json()) == []


def test_every_batch_fixture_has_no_problem(sim_conn) -> None:
    tenant = TenantSamples(EmedgeneHook().get_conn().call)  # the example's auto row
    for path in (EXAMPLE_BATCH, DATA / "trio-exome-vcf.csv", DATA / "singleton-genome-fastq.csv"):
        for case in read_batch_csv(path, resolver=tenant):
            assert case_problems(case.payload) == [], case.family_id
            assert case_warnings(case.payload) == []


def _pending_case() -> dict[str, Any]:
    return Case(
        "Exome", members=[Member("proband", "P1", "M", hpo=["HP:0001250"])], sample_type="fastq"
    ).to_json()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda td: td["samples"].append({"fastq": "X1", "sampleFiles": []}),
            "test_data.samples[1].sampleFiles must be a non-empty list (empty only for the proband's sample",
        ),
        (
            lambda td: td["patients"]["proband"].update(pending_sample_name="OTHER"),
            "test_data.samples[0].sampleFiles must be a non-empty list",
        ),
        (
            lambda td: td["patients"]["proband"].pop("pending_sample_name"),
            "test_data.patients.proband.fastq_sample is required (or pending_sample_name",
        ),
        (
            lambda td: td["patients"]["proband"].update(fastq_sample=7),
            "test_data.patients.proband.fastq_sample must be text (got 7)",
        ),
        (
            lambda td: td["samples"].append({"id": True, "fastq": ""}),
            "test_data.samples[1].id (an existing sample's id) must be a number or text",
        ),
        (
            lambda td: td["samples"].append({"id": 5}),
            "test_data.samples[1].fastq (the sample name) is required",
        ),
        (
            lambda td: td["patients"]["proband"].update(phenotypes=[{"name": "Seizure", "related": "yes"}]),
            'test_data.patients.proband.phenotypes[0] must be {"id": "phenotypes/EMG_PHENOTYPE_<digits>"} '
            'or {"name": "<phenotype name>"}',
        ),
        (
            lambda td: td["patients"]["proband"].update(phenotypes=[{"name": "  "}]),
            "test_data.patients.proband.phenotypes[0] must be",
        ),
        (
            lambda td: td["patients"]["proband"].update(phenotypes=[{"name": "x"}] * (MAX_PHENOTYPES + 1)),
            f"test_data.patients.proband has {MAX_PHENOTYPES + 1} phenotypes; at most {MAX_PHENOTYPES}",
        ),
        (lambda td: td.update(notes="n" * (MAX_NOTES + 1)), "test_data.notes must be text of at most 4000"),
        (
            lambda td: td["patients"]["proband"].update(relationship=["Test Subject"]),
            "test_data.patients.proband.relationship must be a relationship's name (got ['Test Subject'])",
        ),
        (
            lambda td: td.update(type="x" * 101),
            "test_data.type must be a case type's name, e.g. Exome, Whole Genome, Custom Panel, Array",
        ),
    ],
)
def test_malformed_shapes_are_still_problems(change, expected: str) -> None:
    case = _pending_case()
    change(case["test_data"])
    problems = case_problems(case)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_vcf_case_refuses_a_companion_file_in_a_fastq_case() -> None:
    case = valid_case()
    case["test_data"]["sample_type"] = "fastq"
    case["test_data"]["samples"][0]["sampleFiles"][0]["filename"] = "S-UNIT-1.tn.bw"
    assert any("'S-UNIT-1.tn.bw' is not a fastq file" in p for p in case_problems(case))


# -- payload: what the server may know better is a warning ------------------------------------------


def test_unknown_case_type_and_relationship_are_warnings_not_problems() -> None:
    case = valid_case()
    case["test_data"]["type"] = "Oncology Panel"
    case["test_data"]["patients"]["other"] = [
        {"id": "aunt", "fastq_sample": "", "pending_sample_name": "A1", "relationship": "Aunt"}
    ]
    assert case_problems(case) == []
    assert case_warnings(case) == [
        "test_data.type 'Oncology Panel' is not a known case type (Exome, Whole Genome, Custom Panel, Array)",
        "test_data.patients.other[0].relationship 'Aunt' is not a known relationship "
        "(Test Subject, Mother, Father, Sibling)",
    ]
    assert case_warnings(valid_case()) == []


@pytest.mark.parametrize("value", [None, [], "case", {"test_data": []}, {"test_data": {"patients": [1]}}])
def test_warnings_of_any_shape_never_raise(value: Any) -> None:
    assert case_warnings(value) == []


def test_a_broken_value_is_a_problem_and_not_also_a_warning() -> None:
    case = valid_case()
    case["test_data"]["type"] = "x" * 500
    assert case_warnings(case) == []
    assert len([p for p in case_problems(case) if p.startswith("test_data.type")]) == 1


def test_the_simulator_refuses_what_the_client_only_warns_about(sim_conn) -> None:
    case = valid_case()
    case["test_data"]["type"] = "Oncology Panel"
    with pytest.raises(Exception, match="'Oncology Panel' is not a known case type"):
        EmedgeneHook().validate_case(case)
    assert sim_conn.counters()["cases_created"] == 0


# -- the create operator: warnings, the off switch ----------------------------------------------------


def test_create_logs_warnings_and_sends_the_case_as_given(sim_conn, task_log) -> None:
    case = valid_case()
    case["test_data"]["type"] = "Oncology Panel"  # the simulator, as a tenant, does not know it
    op = EmedgeneCreateCaseOperator(task_id="create", case=case, wait_for_completion=False)
    with pytest.raises(Exception, match="'Oncology Panel' is not a known case type") as raised:
        op.execute(make_context(FakeTI()))
    assert not isinstance(raised.value, AirflowFailException)  # the server refused it, not us
    assert creates(sim_conn) == 1  # sent
    assert (
        "Emedgene case: test_data.type 'Oncology Panel' is not a known case type "
        "(Exome, Whole Genome, Custom Panel, Array); sent as given, the server decides"
    ) in task_log()


def test_validate_locally_false_sends_a_case_with_problems(sim_conn) -> None:
    case = valid_case()
    case["test_data"]["patients"]["proband"]["phenotypes"] = [{"id": "HP:0001250"}]
    checked = EmedgeneCreateCaseOperator(
        task_id="checked", case=copy.deepcopy(case), wait_for_completion=False
    )
    with pytest.raises(AirflowFailException, match="nothing was sent"):
        checked.execute(make_context(FakeTI()))
    assert creates(sim_conn) == 0
    unchecked = EmedgeneCreateCaseOperator(
        task_id="unchecked", case=case, validate_locally=False, wait_for_completion=False
    )
    with pytest.raises(Exception, match=r"phenotypes\[0\] must be") as raised:
        unchecked.execute(make_context(FakeTI()))
    assert not isinstance(raised.value, AirflowFailException)
    assert creates(sim_conn) == 1  # the server's answer, not ours


def test_validate_locally_false_still_needs_a_json_object() -> None:
    op = EmedgeneCreateCaseOperator(task_id="create", case="[1, 2]", validate_locally=False)
    with pytest.raises(AirflowFailException, match="must be a JSON object, not list"):
        op.load_case()


# -- the create operator: the Family Id label -------------------------------------------------------


def _mapped_ti(index: int = 2) -> FakeTI:
    ti = FakeTI()
    ti.map_index = index
    return ti


def _render_label(context: dict[str, Any]) -> str | None:
    """What Airflow does after ``execute``: render the context's ``map_index_template``."""
    template = context.get("map_index_template")
    return None if template is None else jinja2.Environment().from_string(template).render(context)


def test_a_mapped_create_is_labelled_with_its_family(sim_conn) -> None:
    case = valid_case(family_id="TRIO-{{ 7 }}")  # label text is never Jinja-rendered again
    op = EmedgeneCreateCaseOperator(task_id="create", case=case)
    context = make_context(_mapped_ti(), map_index_template=None)
    op.load_case(context)
    assert context[FAMILY_ID_CONTEXT_KEY] == "TRIO-{{ 7 }}"
    assert _render_label(context) == "TRIO-{{ 7 }}"


def test_mapped_waits_and_exports_are_labelled_with_their_case(sim_conn, tmp_path: Path) -> None:
    """Without a map_index_template of their own, a mapped wait (before and after its deferral)
    and export are labelled with the case name; the task's own template wins; unmapped: none."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from emedgene_provider.operators.emedgene import EmedgeneExportCaseOperator
    from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

    name = EmedgeneHook().client.create_case(valid_case())
    sensor = EmedgeneCaseStatusSensor(
        task_id="wait", case_name=name, deferrable=True, check_before_deferring=False
    )
    context = make_context(_mapped_ti(), map_index_template=None)
    with pytest.raises(TaskDeferred):
        sensor.execute(context)
    assert _render_label(context) == name
    resumed = make_context(_mapped_ti(), map_index_template=None)
    sensor.execute_complete(resumed, {"status": "success", "case_status": "Delivered", "message": "ok"})
    assert _render_label(resumed) == name
    sim_conn.set_status(name, "Delivered")
    export = EmedgeneExportCaseOperator(task_id="export", case_name=name, output_path=f"file://{tmp_path}/")
    for ti, template, expected in [
        (_mapped_ti(), None, name),
        (_mapped_ti(), "{{ ti.map_index }}", "2"),
        (FakeTI(), None, None),
    ]:
        context = make_context(ti, map_index_template=template)
        export.execute(context)
        assert _render_label(context) == expected


@pytest.mark.parametrize(
    ("ti", "template", "case", "expected"),
    [
        (FakeTI(), None, valid_case(family_id="F-1"), None),  # not mapped
        (_mapped_ti(), "{{ ti.map_index }}", valid_case(family_id="F-1"), "2"),  # the task's own wins
        (_mapped_ti(), None, valid_case(), None),  # no family
        (_mapped_ti(), None, valid_case(family_id=""), None),
    ],
)
def test_the_family_label_is_left_out(ti, template, case, expected) -> None:
    op = EmedgeneCreateCaseOperator(task_id="create", case=case)
    context = make_context(ti, map_index_template=template)
    op.load_case(context)
    assert _render_label(context) == expected


def test_a_resumed_create_labels_itself_again() -> None:
    op = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(family_id="F-9"))
    context = make_context(_mapped_ti(), map_index_template=None)
    event = {"status": "success", "case_name": "EMG000000001", "case_status": "Delivered"}
    op.execute_complete(context, event)
    assert _render_label(context) == "F-9"


# -- reading a batch in a task ----------------------------------------------------------------------


def test_read_returns_one_payload_per_family_in_file_order(sim_conn, task_log) -> None:
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH))
    payloads = op.execute(make_context())
    assert [family_of(p) for p in payloads] == FAMILIES
    tenant = TenantSamples(EmedgeneHook().get_conn().call)
    assert payloads == [c.payload for c in read_batch_csv(EXAMPLE_BATCH, resolver=tenant)]
    assert f"Batch CSV {EXAMPLE_BATCH}: 3 case(s): {', '.join(FAMILIES)}" in task_log()


def test_a_relative_source_is_read_from_the_dag_folder(sim_conn, tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_BATCH, tmp_path / "today.csv")
    with DAG("batch_unit", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        op = EmedgeneBatchCsvOperator(task_id="read", source="today.csv")
    dag.fileloc = str(tmp_path / "dag.py")
    assert len(op.execute(make_context())) == 3


def test_an_object_storage_source_is_read(sim_conn) -> None:
    op = EmedgeneBatchCsvOperator(task_id="read", source=f"file://{EXAMPLE_BATCH}")
    assert len(op.execute(make_context())) == 3


def test_a_file_with_problems_fails_without_retry_listing_every_problem() -> None:
    source = DATA / "many-problems.csv"
    with pytest.raises(BatchCsvError) as expected:
        read_batch_csv(source)
    with pytest.raises(AirflowFailException) as raised:  # no retry: the file must change first
        EmedgeneBatchCsvOperator(task_id="read", source=str(source)).execute(make_context())
    assert str(raised.value) == str(expected.value)
    assert len(str(raised.value).splitlines()) == len(expected.value.problems) + 1 > 5


def test_a_missing_source_fails_or_skips(tmp_path: Path) -> None:
    missing = tmp_path / "2026-11-29.csv"
    with pytest.raises(AirflowFailException, match=r"batch CSV '.*2026-11-29.csv' cannot be read: "):
        EmedgeneBatchCsvOperator(task_id="read", source=str(missing)).execute(make_context())
    skipping = EmedgeneBatchCsvOperator(task_id="read", source=str(missing), skip_if_missing=True)
    with pytest.raises(AirflowSkipException, match=r"No batch CSV at .*2026-11-29.csv: nothing to create"):
        skipping.execute(make_context())


def test_reader_warnings_are_logged(sim_conn, tmp_path: Path, task_log) -> None:
    text = EXAMPLE_BATCH.read_text().replace("SOLO-2026-0312,Exome,", "SOLO-2026-0312,Oncology Panel,")
    (tmp_path / "batch.csv").write_text(text)
    EmedgeneBatchCsvOperator(task_id="read", source=str(tmp_path / "batch.csv")).execute(make_context())
    assert "Family SOLO-2026-0312: case type 'Oncology Panel' is not one we know" in task_log()


# -- all or nothing ---------------------------------------------------------------------------------


def test_validate_on_server_dry_runs_every_case_and_creates_none(sim_conn) -> None:
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH), validate_on_server=True)
    payloads = op.execute(make_context())
    assert [family_of(p) for p in payloads] == FAMILIES
    assert creates(sim_conn) == 3  # three dry runs
    assert sim_conn.counters()["cases_created"] == 0


def test_a_refused_case_fails_the_batch_and_lists_every_refusal(sim_conn, tmp_path: Path) -> None:
    text = EXAMPLE_BATCH.read_text()
    text = text.replace("TRIO-2026-0007,Exome,", "TRIO-2026-0007,Oncology Panel,")
    text = text.replace("SOLO-2026-0312,Exome,", "SOLO-2026-0312,Exome v9,")
    (tmp_path / "batch.csv").write_text(text)
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(tmp_path / "batch.csv"), validate_on_server=True)
    with pytest.raises(AirflowFailException) as raised:
        op.execute(make_context())
    assert str(raised.value) == (
        f"Emedgene refused 2 of the 3 case(s) of batch CSV {tmp_path / 'batch.csv'} in its dry run; "
        "no case was created:\n"
        "  - family TRIO-2026-0007 (data row(s) 1, 2, 3): test_data.type 'Oncology Panel' is not a known "
        "case type (Exome, Whole Genome, Custom Panel, Array)\n"
        "  - family SOLO-2026-0312 (data row(s) 5): test_data.type 'Exome v9' is not a known case type "
        "(Exome, Whole Genome, Custom Panel, Array)"
    )
    assert creates(sim_conn) == 3  # every case was dry-run, so every refusal is listed
    assert sim_conn.counters()["cases_created"] == 0


def test_an_unreachable_tenant_is_not_a_refusal(sim_conn, monkeypatch) -> None:
    """A failure to ask (the tenant down) is an ordinary error, so the task's retries apply."""
    from emedgene_provider.client.errors import EmedgeneUnavailableError

    def down(self, case):
        raise EmedgeneUnavailableError("Emedgene is unavailable", operation="validate_case")

    monkeypatch.setattr(EmedgeneHook, "validate_case", down)
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH), validate_on_server=True)
    with pytest.raises(EmedgeneUnavailableError):
        op.execute(make_context())


# -- the summary ------------------------------------------------------------------------------------


def test_summary_maps_families_to_case_names_and_statuses(sim_conn, task_log) -> None:
    tenant = TenantSamples(EmedgeneHook().get_conn().call)
    payloads = [c.payload for c in read_batch_csv(EXAMPLE_BATCH, resolver=tenant)]
    hook = EmedgeneHook()
    solo = hook.client.create_case(payloads[1])
    trio = hook.client.create_case(payloads[0])
    stray = hook.client.create_case(valid_case())  # no Family Id
    sim_conn.set_status(trio, "Delivered")
    op = EmedgeneBatchSummaryOperator(task_id="summary", case_names=[solo, None, trio, stray], cases=payloads)
    summary = op.execute(make_context())
    assert list(summary) == [*FAMILIES, stray]  # file order, then cases without a family
    assert summary["TRIO-2026-0007"] == {"case_name": trio, "status": "Delivered"}
    assert summary["SOLO-2026-0311"]["case_name"] == solo
    assert summary["SOLO-2026-0311"]["status"] == hook.get_case_status(solo)
    assert summary["SOLO-2026-0312"] == {"case_name": None, "status": None}  # never created
    assert summary[stray]["case_name"] == stray
    assert f"Family TRIO-2026-0007: case {trio}, Delivered" in task_log()


def test_summary_without_cases_lists_what_was_created(sim_conn) -> None:
    name = EmedgeneHook().client.create_case(valid_case(family_id="F-1"))
    summary = EmedgeneBatchSummaryOperator(task_id="summary", case_names=[name]).execute(make_context())
    assert list(summary) == ["F-1"]


class _LazyOutput(Sequence[str]):
    """A mapped task's output as Airflow hands it over: a read by index past the end fails (and
    Airflow 3 logs it as an error); a slice is one read."""

    def __init__(self, values: list[str]) -> None:
        self.values, self.reads = values, []

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, key):  # type: ignore[override]
        self.reads.append(key)
        if isinstance(key, int) and key >= len(self.values):
            raise AssertionError(f"read past the end: {key}")
        return self.values[key]


def test_the_summary_reads_the_mapped_output_in_one_slice(sim_conn) -> None:
    name = EmedgeneHook().client.create_case(valid_case(family_id="F-1"))
    names, cases = _LazyOutput([name]), _LazyOutput([])
    summary = EmedgeneBatchSummaryOperator(task_id="summary", case_names=names, cases=cases).execute(
        make_context()
    )
    assert list(summary) == ["F-1"]
    assert names.reads == [slice(None)] and cases.reads == [slice(None)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [(None, []), (("a", "b"), ["a", "b"]), (iter(["a"]), ["a"]), ({"a": 1}, ["a"])],
)
def test_read_all_takes_any_iterable(values, expected) -> None:
    assert read_all(values) == expected


@pytest.mark.parametrize(
    ("case_json", "expected"),
    [
        ({"extra_data": {"family_id": "A"}}, "A"),
        ({"test_data": {"extra_data": {"family_id": 12}}}, "12"),
        ({"extra_data": {"family_id": ""}}, None),
        ({"extra_data": "x"}, None),
        ([], None),
    ],
)
def test_family_of(case_json, expected) -> None:
    assert family_of(case_json) == expected


# -- the one-line DAG -------------------------------------------------------------------------------


def test_factories_add_their_tasks_and_wire_the_expand() -> None:
    with _dag() as dag:
        cases = cases_from_batch_csv("{{ params.manifest }}", validate_on_server=True, retries=0)
        created = EmedgeneCreateCaseOperator.partial(task_id="create_case").expand(case=cases)
        summary = batch_summary(created.output, cases=cases, trigger_rule="all_done")
    read = dag.get_task("read_batch_csv")
    assert isinstance(read, EmedgeneBatchCsvOperator)
    assert (read.source, read.validate_on_server, read.retries) == ("{{ params.manifest }}", True, 0)
    assert "source" in read.template_fields
    report = dag.get_task("batch_summary")
    assert isinstance(report, EmedgeneBatchSummaryOperator)
    assert str(report.trigger_rule) in ("all_done", "TriggerRule.ALL_DONE")
    assert summary.operator is report
    assert set(report.upstream_task_ids) == {"read_batch_csv", "create_case"}
    assert dag.get_task("create_case").upstream_task_ids == {"read_batch_csv"}


def test_an_invalid_date_in_the_builder_is_named() -> None:
    with pytest.raises(ValueError, match="is not a date written YYYY-MM-DD"):
        parse_date("29/02/2023")


def test_the_cluster_bench_manifest_is_a_valid_batch(tmp_path: Path, monkeypatch) -> None:
    """bench/cluster.py runs ``emedgene_clinical_batch`` on the manifest it writes: 50 families."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import cluster

    cluster.write_manifest(tmp_path / "manifest.csv", 50)
    cases = read_batch_csv(tmp_path / "manifest.csv")
    assert [c.family_id for c in cases] == [f"BENCH-{i:04d}" for i in range(1, 51)]
    assert all(case_problems(c.payload) == [] for c in cases)


_IMPORT_PROBE = """
import json, sys
from airflow.providers.common.compat.sdk import BaseOperator  # noqa: F401
before = set(sys.modules)
import emedgene_provider.operators.batch  # noqa: F401

print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_the_batch_tasks_loads_no_http_client() -> None:
    """A DAG file importing them is parsed every few seconds (as tests/unit/test_import_cost.py)."""
    import json
    import subprocess
    import sys

    from locations import HEAVY

    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    added = json.loads(done.stdout.strip().splitlines()[-1])
    assert "emedgene_provider.operators.batch" in added
    assert [m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []


def _load_dag_file(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"dag_under_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_every_example_batch_task_retries_doubling_in_the_pool_it_is_given(monkeypatch) -> None:
    """EMEDGENE_RETRIES and EMEDGENE_POOL reach every task (all safe to retry: a create adopts its
    earlier try's case), the delays double (a multiplier on Airflow 3.3, a switch before), and the
    wait defers without a read in the worker: its case was created just upstream."""
    from datetime import timedelta

    monkeypatch.setenv("EMEDGENE_RETRIES", "6")
    monkeypatch.setenv("EMEDGENE_POOL", "emedgene")
    dag = _load_dag_file(EXAMPLE_DAGS / "emedgene_clinical_batch.py")
    for task in dag.tasks:
        assert (task.task_id, task.retries, task.pool) == (task.task_id, 6, "emedgene")
        assert task.retry_delay == timedelta(seconds=10)
        assert task.max_retry_delay == timedelta(minutes=5)
        assert task.retry_exponential_backoff in (True, 2.0)
        assert task.retry_exponential_backoff is not False
    wait = dag.get_task("wait_for_delivery")
    assert wait.partial_kwargs["check_before_deferring"] is False
    assert wait.partial_kwargs["deferrable"] is True


def test_the_chaos_bench_watchers_dag_defers_each_watched_case(monkeypatch) -> None:
    """bench/cluster.py --chaos runs bench/dags/emedgene_bench_watchers.py beside the batch."""
    dag = _load_dag_file(ROOT / "bench" / "dags" / "emedgene_bench_watchers.py")
    wait = dag.get_task("wait")
    assert wait.partial_kwargs["deferrable"] is True
    assert wait.partial_kwargs["check_before_deferring"] is False
    assert wait.upstream_task_ids == {"watched"}
