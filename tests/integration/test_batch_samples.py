"""Batch rows whose files only the tenant knows (``auto``, ``existing``), resolved on it before any
case is created: over real HTTP against the simulator's storage and samples, the exact requests
with requests_mock, and the batch task all or nothing."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import requests_mock as rm
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow_fixtures import EXAMPLE_DAGS, creates, make_context
from locations import ROOT

from emedgene_provider.cases import hpo, phenotypes
from emedgene_provider.cases.batch_csv import BatchCsvError, read_batch_csv
from emedgene_provider.cases.tenant_samples import TenantSamples
from emedgene_provider.client.errors import EmedgeneRedirectError
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.batch import EmedgeneBatchCsvOperator

EXAMPLE_BATCH = EXAMPLE_DAGS / "manifests" / "example-batch.csv"
HEADER = (
    "[Data]\nFamily Id,Case Type,Files Names,Sample Type,BioSample Name,Storage Provider Id,"
    "Default Project,Relation,Gender,Phenotypes,Phenotypes Id\n"
)
FOLDER = "GET /api/storage/{id}/fs/list"


def tenant() -> TenantSamples:
    return TenantSamples(EmedgeneHook().get_conn().call)


def rows(*lines: str) -> io.StringIO:
    return io.StringIO(HEADER + "".join(f"{line}\n" for line in lines))


def test_auto_finds_the_fastqs_of_every_dataset_of_the_biosample(sim_conn) -> None:
    [case] = read_batch_csv(
        rows("F1,Exome,auto,,LAB-3050,3,Run-2026-11-28,proband,M,,HP:0001250"), resolver=tenant()
    )
    [sample] = case.payload["test_data"]["samples"]
    assert [f["filename"] for f in sample["sampleFiles"]] == [
        "LAB-3050_S1_L001_R1_001.fastq.gz",
        "LAB-3050_S1_L001_R2_001.fastq.gz",
        "LAB-3050_S1_L002_R1_001.fastq.gz",  # the second dataset (a re-run), without its metrics file
        "LAB-3050_S1_L002_R2_001.fastq.gz",
    ]
    assert {f["storage_id"] for f in sample["sampleFiles"]} == {3}
    assert all(f["path"].startswith("/projects/1000/biosamples/") for f in sample["sampleFiles"])
    assert case.payload["test_data"]["sample_type"] == "fastq"
    # projects, biosamples (34: two pages of at most 25), datasets, two file folders
    assert sim_conn.counters()["requests"][FOLDER] == 6


def test_existing_takes_the_sample_of_exactly_that_name(sim_conn) -> None:
    resolver = tenant()
    [case] = read_batch_csv(rows("F1,Exome,existing,,LAB-0990,,,proband,M,,HP:0001250"), resolver=resolver)
    assert case.payload["test_data"]["samples"] == [{"id": 5001, "fastq": "LAB-0990"}]  # not LAB-0990-RERUN
    assert resolver.resolved == ["existing sample 'LAB-0990' is platform sample 5001"]


def test_every_unresolved_sample_is_named_by_family_and_row(sim_conn) -> None:
    text = rows(
        "F1,Exome,auto,,LAB-3050,3,Run-1999,proband,M,,HP:0001250",  # no such project
        "F2,Exome,auto,,LAB-9999,3,Run-2026-11-28,proband,M,,HP:0001250",  # no such biosample
        "F3,Exome,existing,,LAB-7777,,,proband,F,,HP:0001250",  # no such sample
        "F4,Exome,auto,,LAB-3050,7,Run-2026-11-28,proband,F,,HP:0001250",  # storage 7 is S3
        "F5,Exome,auto,,LAB-3050,3,Run-2026-11-28,proband,F,,HP:0001250",  # fine
    )
    with pytest.raises(BatchCsvError) as raised:
        read_batch_csv(text, resolver=tenant())
    got = [(p.data_row, p.column, p.family_id) for p in raised.value.problems]
    assert got == [
        (1, "Files Names", "F1"),
        (2, "Files Names", "F2"),
        (3, "BioSample Name", "F3"),
        (4, "Storage Provider Id", "F4"),
    ]
    assert "no sample files found for BioSample Name 'LAB-3050' in project 'Run-1999'" in str(raised.value)
    assert "'LAB-7777' is not an existing sample" in str(raised.value)


def test_two_samples_of_one_name_are_a_problem_never_a_guess() -> None:
    with rm.Mocker() as m:
        m.get(
            "https://t.emedgene.com/api/sample/",
            json={"total": 2, "hits": [{"id": 1, "note": "S1"}, {"id": 2, "note": "S1"}]},
        )
        m.get(
            "https://t.emedgene.com/api/storage/3/fs/list",
            json={
                "resources": [{"name": "11", "alias": "Run-1"}, {"name": "12", "alias": "Run-1"}],
                "has_more": False,
            },
        )
        m.get("https://t.emedgene.com/api/storage/3", json={"id": 3, "scheme": "basespace"})
        resolver = TenantSamples(_client(m).call)
        text = rows(
            "F1,Exome,existing,,S1,,,proband,M,,HP:0001250", "F2,Exome,auto,,S2,3,Run-1,proband,M,,HP:0001250"
        )
        with pytest.raises(BatchCsvError) as raised:
            read_batch_csv(text, resolver=resolver, ontology=None)
    problems = [str(p) for p in raised.value.problems]
    assert problems == [
        "data row 1 (line 3), column 'BioSample Name', family F1: BioSample Name 'S1': 2 platform samples "
        "are named 'S1' (ids 1, 2)",
        "data row 2 (line 4), column 'Files Names', family F2: BioSample Name 'S2': storage 3 has 2 projects "
        "named 'Run-1' (ids 11, 12)",
    ]


def _client(m: rm.Mocker):
    from emedgene_provider.client.config import config_from_connection
    from emedgene_provider.client.sync import EmedgeneClient

    m.post("https://t.emedgene.com/api/auth/v2/api_login/", json={"Authorization": "Bearer tok-1"})
    return EmedgeneClient(
        config_from_connection(host="https://t.emedgene.com", login="u", password="p", extra=None)
    )


def test_the_requests_a_resolver_sends() -> None:
    with rm.Mocker() as m:
        m.get("https://t.emedgene.com/api/storage/3", json={"id": 3, "scheme": "BaseSpace"})
        listing = m.get(
            "https://t.emedgene.com/api/storage/3/fs/list",
            [
                {"json": {"resources": [{"name": "11", "alias": "Run-0"}], "has_more": True}},
                {"json": {"resources": [{"name": "12", "alias": "Run-1"}], "has_more": False}},
                {"json": {"resources": [{"name": "21", "alias": "S2"}], "has_more": False}},
                {"json": {"resources": [{"name": "31", "alias": "S2-run"}], "has_more": False}},
                {"json": {"resources": [{"name": "41", "alias": "S2_R1.fastq.gz"}], "has_more": False}},
            ],
        )
        samples = m.get("https://t.emedgene.com/api/sample/", json={"total": 0, "hits": []})
        resolver = TenantSamples(_client(m).call, page_size=1)
        assert resolver.storage_scheme(3) == "basespace"
        assert resolver.find_files(3, "Run-1", "S2") == [
            "/projects/12/biosamples/21/datasets/31/sequenced files/41"
        ]
        assert (
            resolver.file_name(3, "/projects/12/biosamples/21/datasets/31/sequenced files/41")
            == "S2_R1.fastq.gz"
        )
        assert resolver.existing_sample_id("S 9") is None
    assert [(r.qs["from"], r.qs["size"], r.qs["path"]) for r in listing.request_history] == [
        (["0"], ["1"], ["/projects/"]),
        (["1"], ["1"], ["/projects/"]),
        (["0"], ["1"], ["/projects/12/biosamples/"]),
        (["0"], ["1"], ["/projects/12/biosamples/21/datasets/"]),
        (["0"], ["1"], ["/projects/12/biosamples/21/datasets/31/sequenced files/"]),
    ]  # file_name read the file folder already listed
    assert samples.last_request.query == "query=s+9&sampletype=fastq"
    assert all(r.headers["Authorization"] == "Bearer tok-1" for r in listing.request_history)


def test_a_folder_that_never_ends_is_an_error_not_a_loop() -> None:
    with rm.Mocker() as m:
        m.get(
            "https://t.emedgene.com/api/storage/3/fs/list",
            json={"resources": [{"name": "1", "alias": "x"}], "has_more": True},
        )
        resolver = TenantSamples(_client(m).call, max_pages=5)
        with pytest.raises(BatchCsvError, match="did not end after 5 pages"):
            read_batch_csv(
                rows("F1,Exome,auto,,S1,3,Run-1,proband,M,,HP:0001250"), resolver=_with_scheme(m, resolver)
            )


def _with_scheme(m: rm.Mocker, resolver: TenantSamples) -> TenantSamples:
    m.get("https://t.emedgene.com/api/storage/3", json={"id": 3, "scheme": "basespace"})
    return resolver


# -- the batch task ---------------------------------------------------------------------------------


def test_the_example_batch_resolves_its_auto_row_and_replaces_its_obsolete_id(sim_conn, task_log) -> None:
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH), validate_on_server=True)
    payloads = op.execute(make_context())
    solo_fastq = payloads[1]["test_data"]
    assert [f["filename"] for f in solo_fastq["samples"][0]["sampleFiles"]][:1] == [
        "LAB-3050_S1_L001_R1_001.fastq.gz"
    ]
    phenotypes = payloads[2]["test_data"]["patients"]["proband"]["phenotypes"]
    assert phenotypes == [
        {"id": "phenotypes/EMG_PHENOTYPE_0001249"},
        {"id": "phenotypes/EMG_PHENOTYPE_0001252"},
    ]
    log = task_log()
    assert f"phenotypes are checked against {hpo.bundled().describe()}" in log
    assert "HP:0011398 (obsolete Central hypotonia) is obsolete" in log and "sent as HP:0001252" in log
    assert "auto: 4 FASTQ file(s) of biosample 'LAB-3050' in project 'Run-2026-11-28' (storage 3)" in log
    assert creates(sim_conn) == 3 and sim_conn.counters()["cases_created"] == 0  # dry runs only


def test_without_the_hpo_the_tenant_refuses_the_obsolete_id(sim_conn, monkeypatch) -> None:
    """What the offline check saves a lab from: the simulated tenant answers an obsolete term as the
    real one answers an unknown one, in the dry run, for the whole batch."""
    monkeypatch.setattr(phenotypes, "default_ontology", lambda: None)
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH), validate_on_server=True)
    with pytest.raises(AirflowFailException) as raised:
        op.execute(make_context())
    assert "Emedgene refused 1 of the 3 case(s)" in str(raised.value)
    assert (
        "family SOLO-2026-0312 (data row(s) 5): Unmatched phenotype(s) found: "
        "phenotypes/EMG_PHENOTYPE_0011398" in str(raised.value)
    )


def test_an_unresolved_row_fails_the_batch_before_any_dry_run(sim_conn, tmp_path: Path) -> None:
    (tmp_path / "batch.csv").write_text(
        EXAMPLE_BATCH.read_text().replace("auto,FASTQ,LAB-3050", "auto,FASTQ,LAB-3999")
    )
    op = EmedgeneBatchCsvOperator(task_id="read", source=str(tmp_path / "batch.csv"), validate_on_server=True)
    with pytest.raises(AirflowFailException) as raised:
        op.execute(make_context())
    assert (
        "data row 4 (line 6), column 'Files Names', family SOLO-2026-0311: no sample files found for "
        "BioSample Name 'LAB-3999'" in str(raised.value)
    )
    assert creates(sim_conn) == 0


def test_a_read_the_tenant_fails_once_is_retried(sim_conn) -> None:
    sim_conn.inject("503", times=1, method="GET", path="/api/storage/3/fs/list")
    assert (
        len(EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH)).execute(make_context())) == 3
    )
    assert sim_conn.counters()["faults_injected"] == 1


def test_a_tenant_that_cannot_be_asked_fails_the_task_not_the_row(sim_conn) -> None:
    """Not a problem of the file: an error, so the task's retries apply."""
    sim_conn.inject("redirect", times=1, method="GET", path="/api/storage/3/fs/list")
    with pytest.raises(EmedgeneRedirectError):
        EmedgeneBatchCsvOperator(task_id="read", source=str(EXAMPLE_BATCH)).execute(make_context())


def test_a_batch_of_plain_paths_reads_no_connection(monkeypatch, tmp_path: Path) -> None:
    text = EXAMPLE_BATCH.read_text().replace(
        "auto,FASTQ,LAB-3050,3,Run-2026-11-28", "/r/LAB-3050_R1.fastq.gz,FASTQ,LAB-3050,3,"
    )
    (tmp_path / "batch.csv").write_text(text)
    monkeypatch.setattr(EmedgeneHook, "get_connection", lambda *a: pytest.fail("a connection was read"))
    assert (
        len(
            EmedgeneBatchCsvOperator(task_id="read", source=str(tmp_path / "batch.csv")).execute(
                make_context()
            )
        )
        == 3
    )


def test_the_docs_sample_resolves_the_example_batch_on_the_tenant(sim_conn, monkeypatch, capsys) -> None:
    samples = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "batch-csv.md").read_text(), flags=re.DOTALL
    )
    monkeypatch.chdir(ROOT)
    exec(compile(samples[2], "docs/batch-csv.md sample 3", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]  # Airflow 2 logs to stdout too
    assert printed == "['TRIO-2026-0007', 'SOLO-2026-0311', 'SOLO-2026-0312']"
