"""The typed case builder: the JSON it builds, and every rule it checks (all problems at once)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, replace
from datetime import date
from typing import Any

import pytest
from locations import DATA as TESTS_DATA

from emedgene_provider.cases.builder import (
    Case,
    CaseProblemsError,
    Member,
    Problem,
    SampleFile,
    file_kind,
    parse_date,
)
from emedgene_provider.cases.validation import case_problems

DATA = TESTS_DATA / "batch"


def expected(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.expected.json").read_text())


def vcf(name: str, *paths: str, storage: int = 7) -> tuple[SampleFile, ...]:
    return tuple(SampleFile(p, storage) for p in paths) or (SampleFile(f"/runs/{name}.vcf.gz", storage),)


def trio() -> Case:
    """The spec's example 1, typed by hand."""
    return Case(
        case_type="Exome",
        members=(
            Member(
                "proband",
                "LAB-1001",
                sex="M",
                hpo=("HP:0001250", "HP:0001263"),
                files=vcf(
                    "LAB-1001", "/runs/R118/LAB-1001.hard-filtered.vcf.gz", "/runs/R118/LAB-1001.sv.vcf.gz"
                ),
            ),
            Member("mother", "LAB-1002", sex="F", files=vcf("", "/runs/R118/LAB-1002.hard-filtered.vcf.gz")),
            Member("father", "LAB-1003", sex="M", files=vcf("", "/runs/R118/LAB-1003.hard-filtered.vcf.gz")),
        ),
        preset="Default",
        notes="Seizures, motor delay",
        extra_data={"Institution": "Acme Genomics"},
    )


def solo(**changes: Any) -> Case:
    """The spec's example 2, typed by hand."""
    case = Case(
        case_type="Whole Genome",
        members=[
            Member(
                "proband",
                "LAB-2040",
                sex="F",
                hpo=["HP:0004322"],
                files=[
                    SampleFile("/fastq/F22/LAB-2040_S7_L001_R1_001.fastq.gz", 3),
                    SampleFile("/fastq/F22/LAB-2040_S7_L001_R2_001.fastq.gz", 3),
                ],
                date_of_birth="2016-04-30",
            )
        ],
        execute_now=False,
    )
    return replace(case, **changes) if changes else case


def proband(**changes: Any) -> Member:
    base = Member("proband", "P1", sex="F", hpo=("HP:0001250",), files=(SampleFile("/r/P1.fastq.gz", 3),))
    return replace(base, **changes)


def relative(role: str, name: str, **changes: Any) -> Member:
    base = Member(role, name, files=(SampleFile(f"/r/{name}.fastq.gz", 3),), phenotype_names=())
    return replace(base, **changes)


def fields(case: Case) -> list[str]:
    return [p.field for p in case.problems()]


# -- the two documented examples ---------------------------------------------------------------


def test_example_1_trio_builds_the_documented_json() -> None:
    case = trio()
    assert case.problems() == [] and case.warnings == []
    assert case.to_json() == expected("trio-exome-vcf")


def test_example_2_singleton_waiting_for_sequencing_builds_the_documented_json() -> None:
    built = solo().to_json()
    assert built == expected("singleton-genome-fastq")
    assert built["should_upload"] is True  # Execute now false: wait for sequencing
    assert "vcf_column_name" not in built["test_data"]["samples"][0]["sampleFiles"][0]


def test_built_cases_pass_the_local_payload_check() -> None:
    """The builder and validation.case_problems (the operator's local check) agree on valid cases."""
    assert case_problems(trio().to_json()) == []
    assert case_problems(solo().to_json()) == []


# -- the JSON's details ------------------------------------------------------------------------


def test_siblings_are_numbered_and_linked_to_their_parents() -> None:
    case = Case(
        "Exome",
        [
            proband(),
            relative("sibling", "S1"),
            relative("mother", "M1"),
            relative("sibling", "S2"),
            relative("sibling", "S3"),
        ],
    )
    patients = case.to_json()["test_data"]["patients"]
    assert [p["id"] for p in patients["other"]] == ["sibling", "sibling_1", "sibling_2"]
    assert all(p["relationship"] == "Sibling" and p["mother"] == "mother" for p in patients["other"])
    assert all("father" not in p for p in patients["other"])  # no father in this family
    assert patients["proband"]["mother"] == "mother" and "father" not in patients["proband"]
    assert "mother" not in patients["mother"]
    samples = case.to_json()["test_data"]["samples"]
    assert [s["fastq"] for s in samples] == ["P1", "M1", "S1", "S2", "S3"]  # proband, mother, siblings


def test_affected_status_follows_shared_phenotypes_unless_given() -> None:
    case = Case(
        "Exome",
        [
            proband(hpo=("HP:0001250",), phenotype_names=("Seizure",)),
            relative("mother", "M1", hpo=("HP:0001250",)),  # shares the proband's id
            relative("father", "F1", phenotype_names=("Myopia",)),  # own phenotype only
            relative("sibling", "S1", phenotype_names=("Seizure",)),  # shares by name
            relative("sibling", "S2", affected=True),  # the LIMS knows better
        ],
    )
    patients = case.to_json()["test_data"]["patients"]
    assert patients["proband"]["healthy"] is False
    assert patients["proband"]["phenotypes"] == [
        {"id": "phenotypes/EMG_PHENOTYPE_0001250"},
        {"name": "Seizure"},
    ]
    assert patients["mother"]["healthy"] is False
    assert patients["mother"]["phenotypes"] == [{"id": "phenotypes/EMG_PHENOTYPE_0001250", "related": True}]
    assert patients["father"]["healthy"] is True
    assert patients["father"]["phenotypes"] == [{"name": "Myopia", "related": False}]
    assert patients["other"][0]["healthy"] is False
    assert patients["other"][1]["healthy"] is False


def test_a_proband_without_phenotypes_is_healthy() -> None:
    case = Case("Exome", [proband(hpo=())])
    assert case.to_json()["test_data"]["patients"]["proband"]["healthy"] is True


def test_case_level_options_map_to_their_fields() -> None:
    built = solo(
        execute_now=True,
        opt_in=False,
        boost_genes=True,
        gene_list_id=42,
        kit_id=5,
        intersect_bed_id=9,
        labels=[3, 4],
        preset="Strict",
        due_date="2026/1/5",
        notes="n",
        extra_data={"lims": "L1"},
    ).to_json()
    td = built["test_data"]
    assert built["should_upload"] is False and built["sharing_level"] == 0
    assert td["boostGenes"] is True
    assert td["gene_list"] == {"id": 42, "type": "existing"}
    assert td["sequence_info"] == {"kit_id": 5, "intersect_bed_id": 9}
    assert td["labels"] == [3, 4]
    assert td["selected_preset_set"] == "Strict"
    assert td["due_date"] == "2026-01-05"  # normalised
    assert td["notes"] == "n" and td["extra_data"] == {"lims": "L1"}


def test_gene_list_1_means_all_genes() -> None:
    assert solo(gene_list_id=1).to_json()["test_data"]["gene_list"] == {"id": 1, "type": "all"}


def test_a_pending_proband_is_listed_without_files() -> None:
    case = Case("Exome", [proband(files=())], sample_type="VCF")
    td = case.to_json()["test_data"]
    assert td["sample_type"] == "vcf"
    assert td["samples"] == [{"fastq": "P1", "status": "uploaded", "sampleFiles": []}]
    assert td["patients"]["proband"]["fastq_sample"] == ""
    assert td["patients"]["proband"]["pending_sample_name"] == "P1"


def test_a_relative_without_files_has_no_sample() -> None:
    case = Case("Exome", [proband(), relative("mother", "M1", files=())])
    td = case.to_json()["test_data"]
    assert [s["fastq"] for s in td["samples"]] == ["P1"]
    assert td["patients"]["mother"]["pending_sample_name"] == "M1"


def test_an_existing_sample_is_reused_by_id() -> None:
    case = Case("Exome", [proband(files=(), existing_sample_id=1234)])
    td = case.to_json()["test_data"]
    assert td["sample_type"] == "fastq"
    assert td["samples"] == [{"id": 1234, "fastq": "P1"}]
    assert td["patients"]["proband"]["fastq_sample"] == "P1"


def test_visualization_files_of_a_vcf_case() -> None:
    member = replace(
        trio().members[0],
        visualization_files=(SampleFile("/v/LAB-1001.bam", 8), SampleFile("/v/LAB-1001.tn.bw", 8)),
    )
    case = replace(trio(), members=(member, *trio().members[1:]))
    sample = case.to_json()["test_data"]["samples"][0]
    assert sample["bam_location"] == "/v/LAB-1001.bam" and sample["storage_id"] == 8
    assert sample["sampleFiles"][-1] == {
        "path": "/v/LAB-1001.tn.bw",
        "filename": "LAB-1001.tn.bw",
        "size": 0,
        "status": "uploaded",
        "storage_id": 8,
    }


def test_visualization_files_of_a_fastq_case_are_a_warning_and_not_sent() -> None:
    case = Case("Exome", [proband(visualization_files=(SampleFile("/v/x.bam", 3),))])
    assert case.problems() == []
    assert any("visualization" in w for w in case.warnings)
    assert "bam_location" not in case.to_json()["test_data"]["samples"][0]


def test_a_file_name_can_be_given_for_a_path_without_one() -> None:
    member = proband(
        files=(SampleFile("/projects/1/biosamples/2/datasets/3/sequenced files/9", 3, "P1_R1.fastq.gz"),)
    )
    sample = Case("Exome", [member]).to_json()["test_data"]["samples"][0]
    assert sample["sampleFiles"][0]["filename"] == "P1_R1.fastq.gz"


def test_values_are_immutable() -> None:
    case = solo()
    with pytest.raises(FrozenInstanceError):
        case.notes = "x"  # type: ignore[misc]
    assert isinstance(case.members, tuple) and isinstance(case.members[0].hpo, tuple)


# -- warnings, not refusals --------------------------------------------------------------------


def test_an_unknown_case_type_is_a_warning_and_sent_as_written() -> None:
    case = solo(case_type="Long Read")
    assert case.problems() == []
    assert any("Long Read" in w for w in case.warnings)
    assert case.to_json()["test_data"]["type"] == "Long Read"


def test_an_unknown_role_is_a_warning_and_sent_as_a_relative() -> None:
    case = Case("Exome", [proband(), relative("half sibling", "H1")])
    assert case.problems() == []
    assert any("half sibling" in w for w in case.warnings)
    other = case.to_json()["test_data"]["patients"]["other"]
    assert other[0]["id"] == "half_sibling" and other[0]["relationship"] == "half sibling"


# -- one test per rule -------------------------------------------------------------------------


def test_exactly_one_proband_no_proband() -> None:
    case = Case("Exome", [relative("mother", "M1"), relative("father", "F1")])
    [problem] = case.problems()
    assert problem.field == "role" and problem.family and problem.members == (0, 1)
    assert "no proband" in problem.message


@pytest.mark.parametrize("role", ["proband", "mother", "father"])
def test_at_most_one_proband_mother_and_father(role: str) -> None:
    members = (
        [proband(), relative(role, "X1"), relative(role, "X2")]
        if role != "proband"
        else [
            proband(),
            proband(sample_name="P2", files=(SampleFile("/r/P2.fastq.gz", 3),)),
        ]
    )
    problems = [p for p in Case("Exome", members).problems() if p.field == "role"]
    assert len(problems) == 1
    assert f"{role}s" in problems[0].message
    assert problems[0].members == ((1, 2) if role != "proband" else (0, 1))


def test_two_siblings_are_fine() -> None:
    assert Case("Exome", [proband(), relative("sibling", "S1"), relative("sibling", "S2")]).problems() == []


@pytest.mark.parametrize(("length", "ok"), [(4000, True), (4001, False)])
def test_notes_at_most_4000_characters(length: int, ok: bool) -> None:
    problems = solo(notes="x" * length).problems()
    assert (problems == []) is ok
    if not ok:
        assert problems[0].field == "notes" and "4000" in problems[0].message and problems[0].members == ()


@pytest.mark.parametrize(("count", "ok"), [(100, True), (101, False)])
def test_at_most_100_phenotypes_per_member(count: int, ok: bool) -> None:
    hpo = tuple(f"HP:{n:07d}" for n in range(count // 2))
    names = tuple(f"name {n}" for n in range(count - len(hpo)))
    problems = Case("Exome", [proband(hpo=hpo, phenotype_names=names)]).problems()
    assert (problems == []) is ok
    if not ok:
        assert problems[0].field == "hpo" and "101" in problems[0].message and problems[0].members == (0,)


@pytest.mark.parametrize("term", ["HP:123", "hp:0001250", "0001250", "HP:00012500", "HP:000125x"])
def test_hpo_ids_must_be_hp_and_seven_digits(term: str) -> None:
    [problem] = Case("Exome", [proband(hpo=("HP:0001250", term))]).problems()
    assert problem.field == "hpo" and repr(term) in problem.message


def test_emedgene_phenotype_ids_pass_through() -> None:
    case = Case("Exome", [proband(hpo=("phenotypes/EMG_PHENOTYPE_0001250",))])
    assert case.to_json()["test_data"]["patients"]["proband"]["phenotypes"] == [
        {"id": "phenotypes/EMG_PHENOTYPE_0001250"}
    ]


@pytest.mark.parametrize(
    ("sex", "sent"), [("m", "Male"), ("FEMALE", "Female"), ("U", "Unknown"), ("", "Unknown")]
)
def test_sex_spellings(sex: str, sent: str) -> None:
    assert Case("Exome", [proband(sex=sex)]).to_json()["test_data"]["patients"]["proband"]["gender"] == sent


def test_sex_outside_the_spellings_is_refused() -> None:
    [problem] = Case("Exome", [proband(sex="X")]).problems()
    assert problem.field == "sex" and problem.members == (0,)


def test_sample_name_without_whitespace() -> None:
    [problem] = Case("Exome", [proband(sample_name="LAB 1")]).problems()
    assert problem.field == "sample_name" and "whitespace" in problem.message


def test_files_need_a_sample_name() -> None:
    [problem] = Case("Exome", [proband(sample_name="")]).problems()
    assert problem.field == "sample_name" and "needs a sample name" in problem.message


def test_one_sample_name_per_member() -> None:
    [problem] = Case("Exome", [proband(), relative("mother", "P1")]).problems()
    assert problem.field == "sample_name" and problem.members == (0, 1)


def test_files_of_unknown_type_are_refused() -> None:
    [problem] = Case("Exome", [proband(files=(SampleFile("/r/P1.txt", 3),))]).problems()
    assert problem.field == "files" and "P1.txt" in problem.message


def test_a_member_files_do_not_mix_types() -> None:
    files = (SampleFile("/r/P1.fastq.gz", 3), SampleFile("/r/P1.vcf.gz", 3))
    problems = Case("Exome", [proband(files=files)]).problems()
    assert any(p.field == "files" and p.members == (0,) and "mix" in p.message for p in problems)


def test_a_family_has_one_sample_type() -> None:
    case = Case("Exome", [proband(), relative("mother", "M1", files=(SampleFile("/r/M1.vcf.gz", 3),))])
    [problem] = case.problems()
    assert problem.field == "files" and problem.family and problem.members == (0, 1)


def test_a_pending_proband_needs_a_sample_type() -> None:
    [problem] = Case("Exome", [proband(files=())]).problems()
    assert problem.field == "sample_type" and problem.members == (0,)


def test_a_sample_type_must_be_fastq_or_vcf() -> None:
    [problem] = Case("Exome", [proband(files=())], sample_type="BAM").problems()
    assert problem.field == "sample_type" and "not FASTQ or VCF" in problem.message


def test_a_given_sample_type_must_agree_with_the_proband_files() -> None:
    [problem] = Case("Exome", [proband()], sample_type="vcf").problems()
    assert problem.field == "sample_type" and "disagrees" in problem.message


def test_a_case_type_is_required() -> None:
    [problem] = solo(case_type=" ").problems()
    assert problem.field == "case_type" and problem.members == ()


@pytest.mark.parametrize("name", ["gene_list_id", "kit_id", "intersect_bed_id"])
@pytest.mark.parametrize("value", [-1, True, "5"])
def test_ids_are_whole_numbers(name: str, value: Any) -> None:
    assert fields(solo(**{name: value})) == [name]


def test_label_ids_are_whole_numbers() -> None:
    assert fields(solo(labels=[1, -2])) == ["labels"]


def test_storage_ids_are_whole_numbers() -> None:
    assert fields(Case("Exome", [proband(files=(SampleFile("/r/P1.fastq.gz", -3),))])) == ["storage_id"]


@pytest.mark.parametrize("value", ["2023-02-29", "2026-13-01", "26-01-01", "2026.01.01", "tomorrow"])
def test_dates_must_exist(value: str) -> None:
    assert fields(solo(due_date=value)) == ["due_date"]
    assert fields(Case("Exome", [proband(date_of_birth=value)])) == ["date_of_birth"]


def test_dates_accept_the_cli_spellings_and_date_objects() -> None:
    assert parse_date("2024-02-29") == date(2024, 2, 29)  # a leap day
    assert parse_date("2024/2/9") == date(2024, 2, 9)
    assert parse_date(date(2020, 1, 1)) == date(2020, 1, 1)
    with pytest.raises(ValueError):
        parse_date("2024-02/09")  # one separator, not two


def test_visualization_files_at_most_one_bam_and_known_kinds() -> None:
    member = replace(
        trio().members[0],
        visualization_files=(
            SampleFile("/v/a.bam", 7),
            SampleFile("/v/a.cram", 7),
            SampleFile("/v/a.txt", 7),
        ),
    )
    problems = replace(trio(), members=(member, *trio().members[1:])).problems()
    assert [(p.field, p.members) for p in problems] == [("visualization_files", (0,))] * 2
    assert "a.txt" in problems[0].message and "a.bam, a.cram" in problems[1].message


def test_an_existing_sample_or_files_not_both() -> None:
    assert fields(Case("Exome", [proband(existing_sample_id=5)])) == ["files"]


def test_no_members() -> None:
    assert fields(Case("Exome", [])) == ["members"]


def test_every_problem_is_listed_at_once_and_to_json_raises_with_all() -> None:
    case = Case(
        "",
        [
            proband(sex="?", hpo=("HP:1",), sample_name="A B", date_of_birth="2023-02-30"),
            relative("mother", "M1"),
            relative("mother", "M2", files=(SampleFile("/r/M2.vcf.gz", 3),)),
        ],
        notes="x" * 4001,
        due_date="soon",
        labels=[-1],
    )
    got = {(p.field, p.members) for p in case.problems()}
    assert got == {
        ("case_type", ()),
        ("notes", ()),
        ("labels", ()),
        ("due_date", ()),
        ("role", (1, 2)),
        ("files", (0, 1, 2)),
        ("sex", (0,)),
        ("hpo", (0,)),
        ("sample_name", (0,)),
        ("date_of_birth", (0,)),
    }
    with pytest.raises(CaseProblemsError) as raised:
        case.to_json()
    assert raised.value.problems == case.problems()
    assert str(raised.value).count("\n- ") == len(case.problems())


def test_problem_text_names_the_members() -> None:
    assert str(Problem("sex", "bad", (0, 2))) == "members[0], members[2]: bad"
    assert str(Problem("notes", "too long")) == "too long"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.fastq.gz", "fastq"), ("a.FQ.GZ", "fastq"), ("a.cram", "fastq"), ("a.g.vcf.gz", "vcf"),
     ("a.gvcf", "vcf"), ("a.vcf", "vcf"), ("a.txt", None), ("a.fastq", None)],
)  # fmt: skip
def test_file_kinds_by_extension(name: str, kind: str | None) -> None:
    assert file_kind(name) == kind
