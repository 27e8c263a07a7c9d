"""The batch CSV reader: the spec's examples, every file-, row- and family-level rule, the sources
it reads from, and the code samples of docs/batch-csv.md (executed here)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from locations import ROOT

from emedgene_provider.cases.batch_csv import (
    BatchCase,
    BatchCsvError,
    BatchProblem,
    read_batch_csv,
)
from emedgene_provider.cases.extra_data import FAMILY_ID_KEY

DATA = ROOT / "tests" / "data" / "batch"

HEADER = [
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


def row(family: str = "F1", sample: str = "S1", relation: str = "proband", **cells: str) -> dict[str, str]:
    """A valid FASTQ sample row; ``cells`` overrides columns by name (``Files_Names`` for spaces)."""
    base = {
        "Family Id": family,
        "Case Type": "Exome",
        "Files Names": f"/r/{sample}_R1.fastq.gz;/r/{sample}_R2.fastq.gz",
        "Sample Type": "FASTQ",
        "BioSample Name": sample,
        "Storage Provider Id": "3",
        "Execute now": "true",
        "Relation": relation,
        "Gender": "F",
        "Phenotypes": "",
        "Phenotypes Id": "HP:0001250" if relation == "proband" else "",
    }
    if relation != "proband":
        base["Phenotypes"] = "unaffected"
    base.update({k.replace("_", " "): v for k, v in cells.items()})
    return base


def make_csv(rows: list[dict[str, str]], header: list[str] | None = None, preamble: str = "") -> str:
    header = header or list(dict.fromkeys([*HEADER, *(k for r in rows for k in r)]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    out.write(preamble)
    writer.writerow(["[Data]"] + [""] * (len(header) - 1))
    writer.writerow(header)
    for r in rows:
        writer.writerow([r.get(c, "") for c in header])
    return out.getvalue()


def read(text: str, **kwargs: Any) -> list[BatchCase]:
    return read_batch_csv(io.StringIO(text), **kwargs)


def problems(text: str, **kwargs: Any) -> list[BatchProblem]:
    with pytest.raises(BatchCsvError) as raised:
        read(text, **kwargs)
    return raised.value.problems


def one_problem(text: str, **kwargs: Any) -> BatchProblem:
    found = problems(text, **kwargs)
    assert len(found) == 1, found
    return found[0]


def expected(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.expected.json").read_text())


# -- the spec's two examples -------------------------------------------------------------------


def test_example_1_trio_exome_from_vcfs() -> None:
    [case] = read_batch_csv(DATA / "trio-exome-vcf.csv", family_id_key=None)
    assert case.family_id == "TRIO-0007" and case.data_rows == (1, 2, 3) and case.warnings == ()
    assert case.payload == expected("trio-exome-vcf")
    td = case.payload["test_data"]
    assert td["type"] == "Exome" and td["sample_type"] == "vcf"
    assert td["notes"] == "Seizures, motor delay"  # a quoted comma
    assert td["extra_data"] == {"Institution": "Acme Genomics"}
    assert {f["vcf_column_name"] for s in td["samples"] for f in s["sampleFiles"]} == {
        "LAB-1001",
        "LAB-1002",
        "LAB-1003",
    }


def test_example_2_singleton_genome_waiting_for_sequencing() -> None:
    [case] = read_batch_csv(DATA / "singleton-genome-fastq.csv", family_id_key=None)
    assert case.payload == expected("singleton-genome-fastq")
    assert case.payload["should_upload"] is True


def test_each_case_carries_its_family_id_in_extra_data() -> None:
    [case] = read_batch_csv(DATA / "trio-exome-vcf.csv")
    assert case.payload["test_data"]["extra_data"] == {
        "Institution": "Acme Genomics",
        FAMILY_ID_KEY: "TRIO-0007",
    }
    [case] = read_batch_csv(DATA / "trio-exome-vcf.csv", family_id_key="lims_family")
    assert case.payload["test_data"]["extra_data"]["lims_family"] == "TRIO-0007"


# -- sources -----------------------------------------------------------------------------------


def test_sources_path_str_pathlike_text_and_binary_streams(tmp_path: Path) -> None:
    want = read_batch_csv(DATA / "trio-exome-vcf.csv")
    text = (DATA / "trio-exome-vcf.csv").read_text()
    assert read_batch_csv(str(DATA / "trio-exome-vcf.csv")) == want
    assert read_batch_csv(io.StringIO(text)) == want
    assert read_batch_csv(io.BytesIO(b"\xef\xbb\xbf" + text.encode())) == want  # Excel's BOM
    with (DATA / "trio-exome-vcf.csv").open() as fh:
        assert read_batch_csv(fh) == want
    crlf = tmp_path / "crlf.CSV"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    assert read_batch_csv(crlf) == want


def test_source_object_storage_path() -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    source = ObjectStoragePath(f"file://{DATA / 'trio-exome-vcf.csv'}")
    assert read_batch_csv(source) == read_batch_csv(DATA / "trio-exome-vcf.csv")


def test_object_storage_path_problems_name_the_file() -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    with pytest.raises(BatchCsvError) as raised:
        read_batch_csv(ObjectStoragePath(f"file://{DATA / 'many-problems.csv'}"))
    assert "many-problems.csv" in str(raised.value).splitlines()[0]


def test_an_unreadable_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        read_batch_csv(42)


# -- file-level rules (G1-G10) -----------------------------------------------------------------


def test_g1_the_file_name_ends_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "manifest.txt"
    path.write_text(make_csv([row()]))
    found = one_problem_of(lambda: read_batch_csv(path))
    assert found.data_row is None and ".csv" in found.message


def one_problem_of(call: Any) -> BatchProblem:
    with pytest.raises(BatchCsvError) as raised:
        call()
    assert len(raised.value.problems) == 1, raised.value.problems
    return raised.value.problems[0]


def test_g1_not_utf8() -> None:
    found = one_problem_of(
        lambda: read_batch_csv(io.BytesIO(make_csv([row(sample="Zoë")]).encode("latin-1")))
    )
    assert "UTF-8" in found.message


def test_g1_broken_quoting_names_the_line() -> None:
    text = make_csv([row()]) + 'F2,Exome,"/r/x.fastq.gz\n'
    found = one_problem(text)
    assert "not valid CSV" in found.message and found.line == 4


def test_g2_rows_above_data_are_ignored_and_trailing_empty_cells_allowed() -> None:
    text = make_csv([row()], preamble="[Header],,,\nInvestigator,Lab,,\n\n")
    assert text.splitlines()[3].startswith("[Data],,,")
    [case] = read(text)
    assert case.data_rows == (1,)


def test_g2_no_data_row() -> None:
    found = one_problem("Family Id,Case Type\nF1,Exome\n")
    assert found.data_row is None and found.column is None and "[Data]" in found.message


def test_g2_data_must_be_the_first_cell_exactly() -> None:
    assert "[Data]" in one_problem("[data],,\nFamily Id\n").message


def test_nothing_after_data() -> None:
    assert "no column names" in one_problem("[Data],,,\n").message


def test_column_row_only() -> None:
    found = one_problem(make_csv([]))
    assert "no sample rows" in found.message and found.line == 2


def test_g3_column_names_are_case_sensitive_and_all_missing_ones_are_listed() -> None:
    text = make_csv([row()], header=["family id", "Case Type", "Sample Type", "Sex"])
    found = one_problem(text)
    assert found.data_row is None
    assert "Family Id; Files Names; Phenotypes or Phenotypes Id" in found.message


def test_g10_gender_or_sex_is_required() -> None:
    header = [c for c in HEADER if c != "Gender"]
    assert "Gender or Sex" in one_problem(make_csv([row()], header=header)).message


def test_g3_column_order_does_not_matter() -> None:
    shuffled = list(reversed(HEADER))
    assert read(make_csv([row()], header=shuffled)) == read(make_csv([row()]))


def test_a_column_twice_is_refused() -> None:
    text = make_csv([row()], header=[*HEADER, "Gender"])
    assert "'Gender' appears twice" in one_problem(text).message


def test_both_execute_spellings_at_once_are_refused() -> None:
    text = make_csv([row()], header=[*HEADER, "Execute Now"])
    assert "Execute Now" in one_problem(text).message


def test_g5_a_blank_row_then_more_samples_is_an_error() -> None:
    text = make_csv([row(), {}, row(family="F2", sample="S2"), row(family="F3", sample="S3")])
    found = problems(text)
    assert [(p.data_row, p.family_id) for p in found] == [(3, "F2"), (4, "F3")]
    assert all("empty data row 2" in p.message for p in found)
    assert found[0].line == 5


def test_g5_blank_rows_at_the_end_and_a_later_section_end_the_table() -> None:
    text = make_csv([row()]) + ",,,\n\n[Reads],,\nF9,not,a,sample\n"
    [case] = read(text)
    assert case.family_id == "F1"


def test_a_second_data_section_is_refused() -> None:
    text = make_csv([row()]) + "[Data],,\n"
    assert "second" in one_problem(text).message


def test_g6_fifty_cases_are_read_and_fifty_one_refused() -> None:
    fifty = [row(family=f"F{n}", sample=f"S{n}") for n in range(50)]
    assert len(read(make_csv(fifty))) == 50
    found = one_problem(make_csv([*fifty, row(family="F50", sample="S50")]))
    assert found.data_row is None and "51 cases" in found.message and "50" in found.message


def test_g6_zero_cases() -> None:
    found = problems(make_csv([row(family="")]))
    assert [p.message for p in found] == ["the file has 0 cases (no Family Id)", "Family Id is required"]


def test_g7_quoted_cells_may_hold_commas_quotes_and_line_breaks() -> None:
    text = make_csv([row(Clinical_Notes='Seizures, "absence" type,\nsince 2019')])
    [case] = read(text)
    assert case.payload["test_data"]["notes"] == 'Seizures, "absence" type,\nsince 2019'


def test_g8_rows_may_have_fewer_or_more_cells_than_the_header() -> None:
    header = "\n".join(make_csv([]).splitlines()[:2])
    fewer = header + "\nF1,Exome,/r/S1.fastq.gz,,S1,3,true,proband,F,Fever\n"  # no Phenotypes Id cell
    more = header + "\nF1,Exome,/r/S1.fastq.gz,,S1,3,true,proband,F,Fever,,,,extra,\n"
    [case] = read(fewer, ontology=None)  # names sent as written: no HPO at hand
    assert case.payload["test_data"]["patients"]["proband"]["phenotypes"] == [{"name": "Fever"}]
    assert read(more, ontology=None)[0].payload == case.payload


def test_g9_multi_values_are_trimmed_and_empty_ones_dropped() -> None:
    [case] = read(make_csv([row(Phenotypes_Id=" HP:0001250 ;; HP:0001263 ;", Files_Names=" /r/a.fq.gz ; ")]))
    td = case.payload["test_data"]
    assert [p["id"][-7:] for p in td["patients"]["proband"]["phenotypes"]] == ["0001250", "0001263"]
    assert [f["path"] for f in td["samples"][0]["sampleFiles"]] == ["/r/a.fq.gz"]


def test_cells_are_trimmed() -> None:
    [case] = read(make_csv([row(Relation=" proband ", Family_Id=" F1 ", Gender=" m ")]))
    assert case.family_id == "F1"
    assert case.payload["test_data"]["patients"]["proband"]["gender"] == "Male"


# -- grouping, order, mapping ------------------------------------------------------------------


def test_families_in_order_of_first_appearance_and_non_adjacent_rows_grouped() -> None:
    text = make_csv(
        [
            row(family="B", sample="B1"),
            row(family="A", sample="A1"),
            row(family="B", sample="B2", relation="mother"),
        ]
    )
    cases = read(text)
    assert [(c.family_id, c.data_rows) for c in cases] == [("B", (1, 3)), ("A", (2,))]
    assert cases[0].payload["test_data"]["patients"]["mother"]["fastq_sample"] == "B2"


def test_empty_relation_means_proband_and_siblings_are_numbered() -> None:
    text = make_csv(
        [
            row(relation=""),
            row(sample="S2", relation="sibling"),
            row(sample="S3", relation="sibling"),
            row(sample="S4", relation="father"),
        ]
    )
    patients = read(text)[0].payload["test_data"]["patients"]
    assert patients["proband"]["fastq_sample"] == "S1"
    assert [p["id"] for p in patients["other"]] == ["sibling", "sibling_1"]
    assert patients["proband"]["father"] == "father"


@pytest.mark.parametrize("column", ["Execute now", "Execute Now"])
@pytest.mark.parametrize(("value", "should_upload"), [("true", False), ("FALSE", True), ("", False)])
def test_execute_now_either_spelling(column: str, value: str, should_upload: bool) -> None:
    header = [column if c == "Execute now" else c for c in HEADER]
    [case] = read(make_csv([{**row(), column: value}], header=header))
    assert case.payload["should_upload"] is should_upload


def test_sex_wins_over_gender_and_an_empty_sex_leaves_gender() -> None:
    rows = [row(Sex="M", Gender="F"), row(family="F2", sample="S2", Sex="", Gender="F")]
    cases = read(make_csv(rows))
    assert [c.payload["test_data"]["patients"]["proband"]["gender"] for c in cases] == ["Male", "Female"]


def test_case_level_columns_come_from_the_proband_row() -> None:
    rows = [
        row(sample="S2", relation="mother", Opt_In="true", Clinical_Notes="mother's note", Institution="X"),
        row(
            Opt_In="False",
            Boost_Genes="TRUE",
            Gene_List_Id="12",
            Kit_Id="4",
            Intersect_Bed_Id="8",
            Label_Id="1;2",
            Selected_Preset="Strict",
            Due_Date="2027/2/3",
            Date_Of_Birth="2016-04-30",
            Clinical_Notes="proband's note",
            Institution="",
        ),
    ]
    payload = read(make_csv(rows))[0].payload
    td = payload["test_data"]
    assert payload["sharing_level"] == 0
    assert td["boostGenes"] is True
    assert td["gene_list"] == {"id": 12, "type": "existing"}
    assert td["sequence_info"] == {"kit_id": 4, "intersect_bed_id": 8}
    assert td["labels"] == [1, 2]
    assert td["selected_preset_set"] == "Strict"
    assert td["due_date"] == "2027-02-03"
    assert td["notes"] == "proband's note"
    assert td["extra_data"] == {FAMILY_ID_KEY: "F1"}  # the proband's Institution is empty
    assert td["patients"]["proband"]["date_of_birth"] == "2016-04-30"


def test_custom_columns_go_to_extra_data() -> None:
    [case] = read(make_csv([row(Institution="Acme", Sample_Received_Date="2026-11-02")]))
    assert case.payload["test_data"]["extra_data"] == {
        "Institution": "Acme",
        "Sample Received Date": "2026-11-02",
        FAMILY_ID_KEY: "F1",
    }


def test_a_custom_column_named_like_our_keys_is_refused() -> None:
    for column in (FAMILY_ID_KEY, "airflow_idempotency_key"):
        found = one_problem(make_csv([{**row(), column: "x"}]))
        assert found.data_row is None and column in found.message


def test_unaffected_relatives_are_healthy_and_shared_phenotypes_affected() -> None:
    rows = [
        row(Phenotypes_Id="HP:0001250"),
        row(sample="S2", relation="mother", Phenotypes="UNAFFECTED"),
        row(sample="S3", relation="father", Phenotypes="", Phenotypes_Id="HP:0001250"),
    ]
    patients = read(make_csv(rows))[0].payload["test_data"]["patients"]
    assert patients["mother"]["healthy"] is True and patients["mother"]["phenotypes"] == []
    assert patients["father"]["healthy"] is False
    assert patients["father"]["phenotypes"] == [{"id": "phenotypes/EMG_PHENOTYPE_0001250", "related": True}]


def test_phenotype_ids_take_precedence_over_names() -> None:
    [case] = read(make_csv([row(Phenotypes="Seizure", Phenotypes_Id="HP:0001250")]))
    assert case.payload["test_data"]["patients"]["proband"]["phenotypes"] == [
        {"id": "phenotypes/EMG_PHENOTYPE_0001250"}
    ]


def test_phenotype_names_without_the_hpo_are_sent_as_written() -> None:
    [case] = read(make_csv([row(Phenotypes="Seizure;Short stature", Phenotypes_Id="")]), ontology=None)
    assert case.payload["test_data"]["patients"]["proband"]["phenotypes"] == [
        {"name": "Seizure"},
        {"name": "Short stature"},
    ]


def test_no_files_the_proband_needs_a_sample_type_and_is_pending() -> None:
    [case] = read(make_csv([row(Files_Names="", Storage_Provider_Id="", Sample_Type="vcf")]))
    td = case.payload["test_data"]
    assert td["sample_type"] == "vcf"
    assert td["patients"]["proband"]["pending_sample_name"] == "S1"
    assert td["samples"] == [{"fastq": "S1", "status": "uploaded", "sampleFiles": []}]


def test_sample_type_comes_from_the_files_not_the_column() -> None:
    [case] = read(make_csv([row(Sample_Type="VCF")]))
    assert case.payload["test_data"]["sample_type"] == "fastq"


def test_visualization_files_in_a_vcf_case() -> None:
    vcf = {"Files Names": "/r/S1.vcf.gz", "Visualization Files": "/r/S1.cram;/r/S1.roh.bed"}
    payload = read(make_csv([{**row(), **vcf}]))[0].payload
    sample = payload["test_data"]["samples"][0]
    assert sample["bam_location"] == "/r/S1.cram" and sample["storage_id"] == 3
    assert [f["filename"] for f in sample["sampleFiles"]] == ["S1.vcf.gz", "S1.roh.bed"]


def test_an_unknown_case_type_is_a_warning() -> None:
    [case] = read(make_csv([row(Case_Type="Long Read")]))
    assert case.payload["test_data"]["type"] == "Long Read"
    assert any("Long Read" in w for w in case.warnings)


def test_case_id_skips_a_family_already_created() -> None:
    rows = [row(Case_Id="EMG123456789"), row(sample="S2", relation="mother"), row(family="F2", sample="T1")]
    cases = read(make_csv(rows))
    assert [c.family_id for c in cases] == ["F2"]


def test_a_results_file_with_every_family_created_reads_as_nothing_to_do() -> None:
    assert read(make_csv([row(Case_Id="EMG123456789", Errors="")])) == []


def test_skipped_families_do_not_count_toward_fifty() -> None:
    rows = [row(family=f"F{n}", sample=f"S{n}") for n in range(50)]
    rows.append(row(family="DONE", sample="D1", Case_Id="EMG1"))
    assert len(read(make_csv(rows))) == 50


def test_a_case_id_on_a_relative_row_does_not_skip() -> None:
    rows = [row(), row(sample="S2", relation="mother", Case_Id="EMG1")]
    assert len(read(make_csv(rows))) == 1


# -- row- and family-level rules: one test each ------------------------------------------------


def check(
    found: BatchProblem, data_row: int | None, column: str | None, family: str | None, *words: str
) -> None:
    assert (found.data_row, found.column, found.family_id) == (data_row, column, family), found
    for word in words:
        assert word.lower() in found.message.lower(), found.message


def test_row_family_id_is_required() -> None:
    found = one_problem(make_csv([row(), row(family="", sample="S2", relation="mother")]))
    check(found, 2, "Family Id", None, "required")
    assert found.line == 4


def test_family_no_proband_every_row_gets_it() -> None:
    rows = [
        row(),
        row(family="F2", sample="S2", relation="mother"),
        row(family="F2", sample="S3", relation="Proband"),
    ]
    found = problems(make_csv(rows))
    assert [(p.data_row, p.column, p.family_id) for p in found] == [
        (2, "Relation", "F2"),
        (3, "Relation", "F2"),
        (3, "Relation", "F2"),
    ]
    assert "no proband" in found[0].message
    assert "'Proband' is not valid" in found[1].message  # the row that is not a proband...
    assert found[2].message == found[0].message  # ...is a row of the family without one


@pytest.mark.parametrize("relation", ["proband", "mother", "father"])
def test_family_duplicate_relation_each_row_gets_it(relation: str) -> None:
    rows = [row(), row(sample="S2", relation=relation), row(sample="S3", relation=relation)]
    if relation == "proband":
        rows = [row(), row(sample="S2")]
    found = problems(make_csv(rows))
    want = [2, 3] if relation != "proband" else [1, 2]
    assert [p.data_row for p in found] == want
    assert all(p.column == "Relation" and f"{relation}s" in p.message for p in found)


@pytest.mark.parametrize("value", ["Proband", "other", "MOTHER", "aunt"])
def test_row_relation_outside_the_four_values(value: str) -> None:
    found = problems(make_csv([row(), row(sample="S2", relation=value)]))
    check(found[0], 2, "Relation", "F1", value, "not valid")


def test_a_row_with_a_bad_relation_still_has_its_other_problems_reported() -> None:
    """Every problem at once: 'Proband' capitalised does not hide the same rows' other problems (a
    sample name with a space, a malformed HPO id, FASTQ mixed with VCF), which would otherwise
    come back only after the first round trip with the manifest's author."""
    rows = [
        row(relation="Proband", sample="LAB 1001", Phenotypes_Id="HP:12345",
            Files_Names="/r/LAB-1001.vcf.gz", Sample_Type="VCF"),
        row(sample="S2", relation="mother"),
    ]  # fmt: skip
    found = [(p.data_row, p.column, p.message) for p in problems(make_csv(rows))]
    messages = "\n".join(m for _, _, m in found)
    assert (
        1,
        "Relation",
        "Relation 'Proband' is not valid: proband, mother, father or sibling, in lowercase",
    ) in found
    assert (1, "BioSample Name", "sample name 'LAB 1001' contains whitespace") in found
    assert (1, "Phenotypes Id", "not HPO ids (HP: and 7 digits): 'HP:12345'") in found
    assert "mixes FASTQ-type and VCF-type samples" in messages
    assert "no proband" in messages  # and nothing the stand-in role made up: no "2 probands"
    assert "probands" not in messages


def test_row_case_type_required_on_the_proband_row() -> None:
    check(one_problem(make_csv([row(Case_Type="")])), 1, "Case Type", "F1", "case type is required")
    assert read(make_csv([row(), row(sample="S2", relation="mother", Case_Type="")]))  # others: not checked


def test_row_phenotypes_or_ids_required() -> None:
    found = one_problem(make_csv([row(), row(sample="S2", relation="mother", Phenotypes="")]))
    check(found, 2, "Phenotypes", "F1", "Phenotypes or Phenotypes Id is required")


def test_row_more_than_100_phenotypes() -> None:
    ids = ";".join(f"HP:{n:07d}" for n in range(101))
    found = one_problem(make_csv([row(Phenotypes_Id=ids)]), ontology=None)
    check(found, 1, "Phenotypes Id", "F1", "101", "at most 100")
    names = ";".join(f"p{n}" for n in range(101))
    found = one_problem(make_csv([row(Phenotypes_Id="", Phenotypes=names)]), ontology=None)
    check(found, 1, "Phenotypes", "F1", "101")


def test_row_phenotype_id_without_hp() -> None:
    found = one_problem(make_csv([row(Phenotypes_Id="HP:0001250;0001263;HP:12")]))
    check(found, 1, "Phenotypes Id", "F1", "'0001263'", "'HP:12'")


def test_row_biosample_required_with_files() -> None:
    found = one_problem(make_csv([row(BioSample_Name="")]))
    check(found, 1, "BioSample Name", "F1", "needs a sample name")


def test_row_biosample_without_space() -> None:
    check(one_problem(make_csv([row(BioSample_Name="LAB 1")])), 1, "BioSample Name", "F1", "whitespace")


def test_row_storage_provider_id_required_and_digits() -> None:
    check(one_problem(make_csv([row(Storage_Provider_Id="")])), 1, "Storage Provider Id", "F1", "required")
    check(one_problem(make_csv([row(Storage_Provider_Id="s3")])), 1, "Storage Provider Id", "F1", "digits")


def test_row_auto_needs_a_default_project_and_the_tenant() -> None:
    found = problems(make_csv([row(Files_Names="auto")]))
    assert [(p.column, p.data_row) for p in found] == [("Default Project", 1), ("Files Names", 1)]
    assert "resolver" in found[1].message


def test_row_existing_needs_the_tenant() -> None:
    found = one_problem(make_csv([row(Files_Names="existing", Storage_Provider_Id="")]))
    check(found, 1, "Files Names", "F1", "existing", "resolver")


def test_row_auto_or_existing_needs_a_biosample_name() -> None:
    found = problems(make_csv([row(Files_Names="existing", BioSample_Name="")]))
    check(found[0], 1, "BioSample Name", "F1", "required")


def test_row_auto_must_be_alone() -> None:
    found = problems(make_csv([row(Files_Names="auto;/r/x.fastq.gz", Default_Project="P")]))
    assert any(p.column == "Files Names" and "alone" in p.message for p in found)


def test_row_unknown_file_type() -> None:
    check(
        one_problem(make_csv([row(Files_Names="/r/S1.txt")])),
        1,
        "Files Names",
        "F1",
        "S1.txt",
        "no known type",
    )


def test_row_mixed_file_types() -> None:
    found = problems(make_csv([row(Files_Names="/r/S1.fastq.gz;/r/S1.vcf.gz")]))
    assert any(p.column == "Files Names" and "mix" in p.message and p.data_row == 1 for p in found)


def test_family_sample_type_not_unique() -> None:
    rows = [row(), row(sample="S2", relation="mother", Files_Names="/r/S2.vcf.gz")]
    found = problems(make_csv(rows))
    assert [(p.data_row, p.column) for p in found] == [(1, "Files Names"), (2, "Files Names")]
    assert all("one sample type" in p.message for p in found)


def test_row_proband_needs_files_or_sample_type() -> None:
    found = one_problem(make_csv([row(Files_Names="", Storage_Provider_Id="", Sample_Type="")]))
    check(found, 1, "Sample Type", "F1", "sample type")


def test_row_sample_type_not_valid() -> None:
    found = one_problem(make_csv([row(), row(sample="S2", relation="mother", Sample_Type="BAM")]))
    check(found, 2, "Sample Type", "F1", "'BAM'", "not valid")


@pytest.mark.parametrize("column", ["Gender", "Sex"])
def test_row_gender_or_sex_not_valid(column: str) -> None:
    cells = {"Gender": "F", column: "woman"}
    found = one_problem(make_csv([{**row(), **cells}]))
    check(found, 1, column, "F1", "'woman'", "not valid")


@pytest.mark.parametrize("column", ["Execute now", "Boost Genes", "Opt In"])
def test_row_booleans(column: str) -> None:
    found = one_problem(make_csv([{**row(), column: "yes"}]))
    check(found, 1, column, "F1", '"true" or "false"')


def test_row_booleans_are_read_on_the_proband_row_only() -> None:
    assert read(make_csv([row(), row(sample="S2", relation="mother", Opt_In="yes")]))


@pytest.mark.parametrize("column", ["Gene List Id", "Kit Id", "Intersect Bed Id"])
def test_row_ids_are_digits(column: str) -> None:
    check(one_problem(make_csv([{**row(), column: "12a"}])), 1, column, "F1", "not valid")


def test_row_label_ids_are_digits() -> None:
    check(one_problem(make_csv([row(Label_Id="1;x;-2")])), 1, "Label Id", "F1", "x", "-2")


@pytest.mark.parametrize("column", ["Due Date", "Date Of Birth"])
@pytest.mark.parametrize("value", ["2023-02-29", "31/12/2020", "2020-1"])
def test_row_dates(column: str, value: str) -> None:
    check(one_problem(make_csv([{**row(), column: value}])), 1, column, "F1", "not a YYYY-MM-DD date")


def test_row_date_of_birth_is_checked_on_every_row() -> None:
    found = one_problem(make_csv([row(), row(sample="S2", relation="mother", Date_Of_Birth="2020-02-30")]))
    check(found, 2, "Date Of Birth", "F1")


def test_row_clinical_notes_at_most_4000() -> None:
    assert read(make_csv([row(Clinical_Notes="x" * 4000)]))
    check(one_problem(make_csv([row(Clinical_Notes="x" * 4001)])), 1, "Clinical Notes", "F1", "4000")


def test_row_visualization_files() -> None:
    vcf = {"Files Names": "/r/S1.vcf.gz"}
    found = one_problem(make_csv([{**row(), **vcf, "Visualization Files": "/r/S1.bai"}]))
    check(found, 1, "Visualization Files", "F1", "S1.bai")
    found = one_problem(make_csv([{**row(), **vcf, "Visualization Files": "/r/a.bam;/r/b.bam"}]))
    check(found, 1, "Visualization Files", "F1", "more than one")


# -- the server's rules, through a resolver ----------------------------------------------------


class FakeTenant:
    """What a tenant would answer; records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def existing_sample_id(self, name: str) -> int | None:
        self.calls.append(("sample", name))
        return {"S1": 901}.get(name)

    def storage_scheme(self, storage_id: int) -> str | None:
        return {3: "basespace", 4: "s3"}.get(storage_id)

    def find_files(self, storage_id: int, project: str, biosample: str) -> list[str]:
        if (project, biosample) != ("Run118", "S1"):
            return []
        return [f"/projects/1/biosamples/2/datasets/3/sequenced files/{n}" for n in (10, 11)]

    def file_name(self, storage_id: int, path: str) -> str | None:
        self.calls.append(("name", path))
        return f"S1_R{path[-1]}.fastq.gz"


def test_existing_with_a_resolver() -> None:
    tenant = FakeTenant()
    [case] = read(make_csv([row(Files_Names="existing", Storage_Provider_Id="")]), resolver=tenant)
    assert case.payload["test_data"]["samples"] == [{"id": 901, "fastq": "S1"}]
    found = one_problem(make_csv([row(sample="S9", Files_Names="existing")]), resolver=tenant)
    check(found, 1, "BioSample Name", "F1", "'S9'", "not an existing sample")


def test_auto_with_a_resolver() -> None:
    tenant = FakeTenant()
    [case] = read(make_csv([row(Files_Names="auto", Default_Project="Run118")]), resolver=tenant)
    files = case.payload["test_data"]["samples"][0]["sampleFiles"]
    assert [(f["path"][-2:], f["filename"]) for f in files] == [
        ("10", "S1_R0.fastq.gz"),
        ("11", "S1_R1.fastq.gz"),
    ]
    found = one_problem(make_csv([row(Files_Names="auto", Default_Project="Run7")]), resolver=tenant)
    check(found, 1, "Files Names", "F1", "no sample files found")
    found = one_problem(
        make_csv([row(Files_Names="auto", Default_Project="Run118", Storage_Provider_Id="4")]),
        resolver=tenant,
    )
    check(found, 1, "Storage Provider Id", "F1", "basespace")


def test_a_basespace_path_without_a_file_name_is_named_by_the_resolver() -> None:
    path = "/projects/1/biosamples/2/datasets/3/sequenced files/7"
    [case] = read(make_csv([row(Files_Names=path)]), resolver=FakeTenant())
    assert case.payload["test_data"]["samples"][0]["sampleFiles"][0]["filename"] == "S1_R7.fastq.gz"
    found = one_problem(make_csv([row(Files_Names=path)]))  # without one, its type is unknown
    check(found, 1, "Files Names", "F1", "no known type")


# -- many problems at once ---------------------------------------------------------------------


def test_a_file_with_many_problems_lists_them_all_in_order() -> None:
    with pytest.raises(BatchCsvError) as raised:
        read_batch_csv(DATA / "many-problems.csv")
    error = raised.value
    got = [(p.data_row, p.column, p.family_id) for p in error.problems]
    assert got == [
        (1, "Gender", "TRIO-0007"),
        (1, "Phenotypes Id", "TRIO-0007"),
        (2, "Relation", "TRIO-0007"),
        (3, "Storage Provider Id", "TRIO-0007"),
        (4, "Family Id", None),
        (5, "Relation", "SOLO-0311"),
        (6, "Execute now", "DUO-0001"),
        (6, "Case Type", "DUO-0001"),
        (6, "Clinical Notes", "DUO-0001"),
        (6, "Due Date", "DUO-0001"),
        (7, "Files Names", "DUO-0001"),
    ]
    lines = str(error).splitlines()
    assert lines[0].endswith("many-problems.csv: 11 problems")
    assert lines[1:] == [str(p) for p in error.problems]
    assert (
        lines[3]
        == "data row 2 (line 5), column 'Relation', family TRIO-0007: Relation 'Proband' is not valid: "
        "proband, mother, father or sibling, in lowercase"
    )
    assert all(
        p.line == p.data_row + 3 for p in error.problems if p.data_row
    )  # a preamble row + [Data] + header


def test_problem_text_for_a_file_level_problem() -> None:
    assert str(BatchProblem(None, None, None, "no [Data] row", 3)) == "line 3: no [Data] row"
    assert str(BatchProblem(None, None, None, "too big")) == "file: too big"


def test_the_error_is_a_value_error() -> None:
    assert issubclass(BatchCsvError, ValueError)


def test_importing_the_reader_loads_no_airflow() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, emedgene_provider.cases.batch_csv\n"
        "print(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- the docs' code samples run ----------------------------------------------------------------


def docs_samples() -> list[str]:
    text = (ROOT / "docs" / "batch-csv.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_docs_have_code_samples() -> None:
    assert len(docs_samples()) == 4  # the third asks a tenant: tests/integration/test_batch_samples.py


@pytest.mark.parametrize("index", [0, 1, 3])
def test_docs_code_sample_runs(
    index: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(DATA)  # the samples name files of tests/data/batch as a lab names its own
    exec(compile(docs_samples()[index], f"docs/batch-csv.md sample {index + 1}", "exec"), {})
    out = capsys.readouterr().out
    assert out.strip()
    assert {0: "TRIO-0007", 1: "data row 2 (line 5), column 'Relation'", 3: "'sample_type': 'vcf'"}[
        index
    ] in out


def test_a_bad_sample_type_on_a_proband_without_files_is_one_problem() -> None:
    found = one_problem(make_csv([row(Files_Names="", Storage_Provider_Id="", Sample_Type="BAM")]))
    check(found, 1, "Sample Type", "F1", "'BAM'", "not valid")
