"""Phenotypes checked offline against the HPO: the ontology sources, the verdicts, and every place a
case is checked (the builder, the batch CSV reader, the create operator's local check)."""

from __future__ import annotations

import io
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from emedgene_provider.cases import hpo
from emedgene_provider.cases.batch_csv import BatchCsvError, read_batch_csv
from emedgene_provider.cases.builder import Case, Member, SampleFile
from emedgene_provider.cases.phenotypes import case_json_problems, check_case, ontology_and_note

MINI = Path(__file__).parents[2] / "data" / "hpo" / "hp-mini.obo"
HEADER = (
    "[Data]\nFamily Id,Case Type,Files Names,BioSample Name,Storage Provider Id,Relation,Gender,"
    "Phenotypes,Phenotypes Id\n"
)


@pytest.fixture
def mini() -> hpo.Ontology:
    return hpo.read_obo(MINI)


@pytest.fixture
def no_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    """As without the [hpo] extra: the hpo3 distribution is not installed."""

    def version(name: str) -> str:
        if name == "hpo3":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    real = metadata.version
    hpo.bundled.cache_clear()
    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.delenv(hpo.ENV_OBO, raising=False)
    yield
    hpo.bundled.cache_clear()


# -- reading hp.obo ----------------------------------------------------------------------------


def test_read_obo_holds_release_terms_secondary_ids_and_synonyms(mini: hpo.Ontology) -> None:
    assert mini.release == "2026-10-01"
    assert mini.describe() == f"HPO release 2026-10-01 ({MINI})"
    assert len(mini.terms) == 10  # the [Typedef] is not a term
    assert mini.terms["HP:0000057"] == hpo.Term(
        "HP:0000057", "obsolete Clitoromegaly", obsolete=True, replaced_by="HP:0008665"
    )
    assert mini.terms["HP:0001250"].synonyms == ("Seizures", "Epileptic seizure")
    assert mini.terms["HP:0001250"].name == "Seizure"  # not "Seizure ! comment"
    assert mini.alt_ids == {"HP:0003508": "HP:0004322", "HP:0008728": "HP:0008665"}
    assert hpo.read_obo(str(MINI)) is mini  # read once per file version


def test_a_file_that_is_not_an_hp_obo_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "go.obo"
    other.write_text("format-version: 1.2\n\n[Term]\nid: GO:0008150\nname: biological_process\n")
    with pytest.raises(hpo.HpoFileError, match="holds no HPO term"):
        hpo.read_obo(other)


def test_the_labs_obo_comes_first_and_a_bad_path_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(hpo.ENV_OBO, str(MINI))
    assert hpo.default_ontology().release == "2026-10-01"
    monkeypatch.setenv(hpo.ENV_OBO, str(tmp_path / "missing.obo"))
    with pytest.raises(hpo.HpoFileError, match=r"EMEDGENE_HPO_OBO=.*missing.obo.* cannot be read"):
        hpo.default_ontology()


def test_the_bundled_release_of_hpo3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hpo.ENV_OBO, raising=False)
    found = hpo.default_ontology()
    assert found is not None and found is hpo.bundled()  # the test venvs install the [hpo] extra
    assert found.source == f"hpo3 {metadata.version('hpo3')}"
    assert found.release[:2] == "20" and len(found.terms) > 15000
    verdict = found.check_id("HP:0000057")
    assert verdict.id == "HP:0008665" and "obsolete" in str(verdict.change)
    assert found.check_name("seizure").id == "HP:0001250"
    assert found.check_id("HP:9999999").problem


def test_without_the_extra_only_the_format_is_checked(no_bundled: None) -> None:
    assert hpo.default_ontology() is None
    found, note = ontology_and_note()
    assert found is None and "[hpo]" in note and hpo.ENV_OBO in note
    case = Case("Exome", [Member("proband", "S1", hpo=["HP:9999999"], files=[SampleFile("/r/S1.vcf.gz", 3)])])
    assert check_case(case).case == case and not check_case(case).problems


# -- verdicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "sent", "says"),
    [
        ("HP:0001250", "HP:0001250", None),
        (" HP:0001250 ", "HP:0001250", None),
        ("HP:0000057", "HP:0008665", "obsolete in HPO release 2026-10-01"),
        ("HP:0003508", "HP:0004322", "secondary id of HP:0004322 (Short stature)"),
    ],
)
def test_ids_that_can_be_sent(mini: hpo.Ontology, written: str, sent: str, says: str | None) -> None:
    verdict = mini.check_id(written)
    assert (verdict.id, verdict.problem) == (sent, None)
    assert (says is None and verdict.change is None) or says in str(verdict.change)


def test_ids_that_cannot(mini: hpo.Ontology) -> None:
    unknown = mini.check_id("HP:9999999")
    assert unknown.id is None and "HP:9999999 is not a term of HPO release 2026-10-01" in str(unknown.problem)
    retired = mini.check_id("HP:0001425")
    assert retired.id is None
    assert "no replacement; the HPO suggests HP:0000005 (Mode of inheritance)" in str(retired.problem)


def test_names(mini: hpo.Ontology) -> None:
    assert mini.check_name("  SEIZURE ").id == "HP:0001250"
    synonym = mini.check_name("clitoral   enlargement")
    assert synonym.id == "HP:0008665" and "synonym of HP:0008665 (Clitoromegaly)" in str(synonym.change)
    shared = mini.check_name("Developmental delay")
    assert shared.id is None and shared.candidates == ("HP:0001263", "HP:0012758")
    assert "names 2 terms" in str(shared.problem)
    assert "is not the name of a term" in str(mini.check_name("Seizurez").problem)
    assert mini.check_name("obsolete Clitoromegaly").id is None  # an obsolete term's name is no name


# -- the builder -------------------------------------------------------------------------------


def trio(proband_hpo: Any = (), proband_names: Any = (), mother_hpo: Any = ()) -> Case:
    def vcf(name: str) -> tuple[SampleFile, ...]:
        return (SampleFile(f"/r/{name}.vcf.gz", 3),)

    return Case(
        "Exome",
        [
            Member("proband", "P1", "F", hpo=proband_hpo, phenotype_names=proband_names, files=vcf("P1")),
            Member("mother", "M1", "F", hpo=mother_hpo, files=vcf("M1")),
        ],
    )


def phenotypes(case: Case, role: str) -> list[dict[str, Any]]:
    return case.to_json()["test_data"]["patients"][role]["phenotypes"]


def test_the_builder_replaces_obsolete_ids_and_maps_names(mini: hpo.Ontology) -> None:
    case = trio(["HP:0000057", "phenotypes/EMG_PHENOTYPE_0008665"], ["Seizures"], mother_hpo=["HP:0008728"])
    checked = check_case(case, mini)
    assert checked.problems == [] and checked.ontology is mini
    assert phenotypes(checked.case, "proband") == [
        {"id": "phenotypes/EMG_PHENOTYPE_0008665"},  # the obsolete id and its replacement, once
        {"id": "phenotypes/EMG_PHENOTYPE_0001250"},
    ]
    # the mother's secondary id is the proband's term: shared, so she is affected
    assert phenotypes(checked.case, "mother") == [{"id": "phenotypes/EMG_PHENOTYPE_0008665", "related": True}]
    assert [w.split(":")[0] for w in checked.warnings] == ["proband P1", "proband P1", "mother M1"]
    assert "HP:0000057 (obsolete Clitoromegaly) is obsolete" in checked.warnings[0]
    assert checked.warnings[0].endswith("sent as HP:0008665")
    assert phenotypes(case, "proband")[0] == {"id": "phenotypes/EMG_PHENOTYPE_0000057"}  # case unchanged


def test_the_builder_lists_every_unknown_term_with_its_member(mini: hpo.Ontology) -> None:
    checked = check_case(trio(["HP:9999999", "HP:0001425"], ["Seizurez"], ["HP:0000002"]), mini)
    assert [(p.field, p.members) for p in checked.problems] == [
        ("hpo", (0,)),
        ("hpo", (0,)),
        ("phenotype_names", (0,)),
        ("hpo", (1,)),
    ]
    assert "HP:0000002 is not a term" in checked.problems[3].message


# -- the batch CSV -----------------------------------------------------------------------------


def test_a_batch_reports_every_unknown_term_by_row_and_column(mini: hpo.Ontology) -> None:
    text = HEADER + (
        "F1,Exome,/r/P1.vcf.gz,P1,3,proband,F,,HP:0001250;HP:9999999\n"
        "F1,Exome,/r/M1.vcf.gz,M1,3,mother,F,Developmental delay;Seizure,\n"
        "F2,Exome,/r/P2.vcf.gz,P2,3,proband,M,,HP:0001425\n"
    )
    with pytest.raises(BatchCsvError) as raised:
        read_batch_csv(io.StringIO(text), ontology=mini)
    got = [(p.data_row, p.column, p.family_id) for p in raised.value.problems]
    assert got == [(1, "Phenotypes Id", "F1"), (2, "Phenotypes", "F1"), (3, "Phenotypes Id", "F2")]
    assert "'Developmental delay' names 2 terms" in str(raised.value)


def test_a_batch_sends_replacements_and_ids_for_names(mini: hpo.Ontology) -> None:
    text = HEADER + (
        "F1,Exome,/r/P1.vcf.gz,P1,3,proband,F,,HP:0000057;HP:0001250\n"
        "F1,Exome,/r/M1.vcf.gz,M1,3,mother,F,seizures,\n"
    )
    [case] = read_batch_csv(io.StringIO(text), ontology=mini)
    patients = case.payload["test_data"]["patients"]
    assert [p["id"] for p in patients["proband"]["phenotypes"]] == [
        "phenotypes/EMG_PHENOTYPE_0008665",
        "phenotypes/EMG_PHENOTYPE_0001250",
    ]
    assert patients["mother"]["phenotypes"] == [{"id": "phenotypes/EMG_PHENOTYPE_0001250", "related": True}]
    assert patients["mother"]["healthy"] is False
    assert len(case.warnings) == 2 and "HP:0000057" in case.warnings[0]


# -- a case JSON written by the lab (the create operator) ----------------------------------------


def test_a_written_case_json_is_refused_for_obsolete_or_unknown_terms(mini: hpo.Ontology) -> None:
    case = json.loads(
        (Path(__file__).parents[3] / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text()
    )
    proband = case["test_data"]["patients"]["proband"]
    assert case_json_problems(case, mini) == [] or proband["phenotypes"]
    proband["phenotypes"] = [
        {"id": "phenotypes/EMG_PHENOTYPE_0000057"},
        {"id": "phenotypes/EMG_PHENOTYPE_9999999"},
        {"name": "Developmental delay"},  # shared by two terms: the server matches names
        {"name": "Seizurez"},
        {"id": "phenotypes/EMG_PHENOTYPE_0001250"},
    ]
    found = case_json_problems(case, mini)
    assert [p.split(":")[0] for p in found] == [
        "test_data.patients.proband.phenotypes[0]",
        "test_data.patients.proband.phenotypes[1]",
        "test_data.patients.proband.phenotypes[3]",
    ]
    assert found[0].endswith("write phenotypes/EMG_PHENOTYPE_0008665")
    assert case_json_problems(case, None) == []
    for broken in (
        {"test_data": 1},
        {"test_data": {"patients": []}},
        [],
        {"test_data": {"patients": {"proband": 3}}},
    ):
        assert case_json_problems(broken, mini) == []  # the shape check's to report


def test_the_create_operator_refuses_an_obsolete_id_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator

    monkeypatch.setenv(hpo.ENV_OBO, str(MINI))
    case = Case(
        "Exome", [Member("proband", "P1", "F", hpo=["HP:0001250"], files=[SampleFile("/r/P1.vcf.gz", 3)])]
    )
    payload = case.to_json()
    operator = EmedgeneCreateCaseOperator(task_id="create", case=payload, wait_for_completion=False)
    assert operator.load_case() == payload
    payload["test_data"]["patients"]["proband"]["phenotypes"] = [{"id": "phenotypes/EMG_PHENOTYPE_0000057"}]
    operator = EmedgeneCreateCaseOperator(task_id="create", case=payload, wait_for_completion=False)
    with pytest.raises(AirflowFailException) as raised:
        operator.load_case()
    assert "has 1 problem(s); nothing was sent" in str(raised.value)
    assert "HP:0000057 (obsolete Clitoromegaly) is obsolete in HPO release 2026-10-01" in str(raised.value)
    monkeypatch.setenv(hpo.ENV_OBO, "/nonexistent/hp.obo")
    with pytest.raises(AirflowFailException, match=r"EMEDGENE_HPO_OBO='/nonexistent/hp\.obo' cannot be read"):
        EmedgeneCreateCaseOperator(task_id="create", case=payload, wait_for_completion=False).load_case()
