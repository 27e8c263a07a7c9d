"""The lineage module (emedgene_provider/lineage.py): which datasets, under which names, paths hashed
unless ``[emedgene] lineage_plain_paths`` is set. The operators' events in a real Airflow are
tests/e2e/test_lineage_events.py; the operators against the simulator,
tests/integration/test_lineage_operators.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlsplit

import pytest
from airflow_fixtures import valid_case

import emedgene_provider
from emedgene_provider import lineage
from emedgene_provider.case_events import sanitize_uri, tenant_asset_uri
from emedgene_provider.lineage import CaseLineage, SampleFile

BASE = "https://Lab.emedgene.com/"
TENANT = "emedgene://lab.emedgene.com"
PATH = "/runs/unit/S-UNIT-1.vcf.gz"


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _two_storages() -> dict:
    case = valid_case()
    files = case["test_data"]["samples"][0]["sampleFiles"]
    files.append(
        {"path": "runs/unit/S-UNIT-1.g.vcf.gz", "filename": "S-UNIT-1.gvcf.gz", "storage_id": "s3-lab"}
    )
    files.append(dict(files[0]))  # the same file twice is one input
    case["test_data"]["samples"].append({"fastq": "S-2", "sampleFiles": [{"path": "/no/storage.vcf"}]})
    return case


def test_sample_files_are_read_from_the_case_once_each_in_order() -> None:
    case = _two_storages()
    expected = [
        SampleFile("7", PATH),
        SampleFile("s3-lab", "runs/unit/S-UNIT-1.g.vcf.gz"),
        SampleFile(None, "/no/storage.vcf"),
    ]
    assert lineage.sample_files(case) == expected
    assert lineage.sample_files(json.dumps(case)) == expected  # a rendered .json case is JSON text


@pytest.mark.parametrize(
    "case",
    [
        None,
        "",
        "not json",
        "cases/trio.json",
        [],
        {"test_data": []},
        {"test_data": {"samples": {}}},
        {
            "test_data": {
                "samples": [1, {"sampleFiles": "x"}, {"sampleFiles": [{"path": 3}, {"path": ""}, 7]}]
            }
        },
    ],
)
def test_a_case_of_another_shape_has_no_sample_files(case: object) -> None:
    assert lineage.sample_files(case) == []


def test_a_path_is_hashed_as_sha256_of_its_text() -> None:
    digest = lineage.hashed(PATH)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert digest == _sha(PATH)  # `printf %s PATH | sha256sum` finds it again
    assert lineage.hashed(PATH + " ") != digest


def test_a_create_reads_its_files_hashed_and_writes_the_case_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS", raising=False)
    inputs, outputs = CaseLineage.of_create(BASE, _two_storages(), "EMG123456789").datasets()
    assert inputs == [
        (f"{TENANT}/storage/7", _sha(PATH)),
        (f"{TENANT}/storage/s3-lab", _sha("runs/unit/S-UNIT-1.g.vcf.gz")),
        (f"{TENANT}/storage", _sha("/no/storage.vcf")),
    ]
    assert outputs == [(TENANT, "cases/EMG123456789")]  # a case name is no patient data: plain


def test_the_config_option_sends_paths_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    record = CaseLineage.of_create(BASE, valid_case(), "EMG123456789")
    monkeypatch.setenv("AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS", "True")
    assert lineage.plain_paths() is True
    assert record.datasets() == ([(f"{TENANT}/storage/7", PATH)], [(TENANT, "cases/EMG123456789")])
    monkeypatch.setenv("AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS", "False")
    assert record.datasets()[0] == [(f"{TENANT}/storage/7", _sha(PATH))]


def test_a_create_before_its_case_exists_reads_files_and_writes_nothing() -> None:
    assert CaseLineage.of_create(BASE, valid_case()).datasets(plain=True) == (
        [(f"{TENANT}/storage/7", PATH)],
        [],
    )


def test_a_read_of_a_case_reads_the_case_and_writes_its_file() -> None:
    record = CaseLineage(BASE, "EMG123456789", written_uri="file:///data/exports/EMG123456789.json")
    assert record.datasets(plain=True) == (
        [(TENANT, "cases/EMG123456789")],
        [("file", "/data/exports/EMG123456789.json")],  # common-io's naming of file:// assets
    )
    assert record.datasets(plain=False)[1] == [("file", _sha("/data/exports/EMG123456789.json"))]
    assert CaseLineage(BASE, "EMG123456789").datasets() == ([(TENANT, "cases/EMG123456789")], [])


def test_a_file_on_a_scheme_no_provider_knows_is_named_the_openlineage_way() -> None:
    assert lineage.file_dataset("nosuchfs://bucket/exports/a.json") == ("nosuchfs://bucket", "exports/a.json")


def test_names_agree_with_the_tenant_asset() -> None:
    """A case's dataset, read as a URI, is on the tenant's Asset; a sample file's namespace too."""
    namespace, name = lineage.case_dataset(BASE, "EMG123456789")
    assert namespace == tenant_asset_uri(BASE) == TENANT
    assert sanitize_uri(urlsplit(f"{namespace}/{name}")).geturl() == TENANT
    assert f"{namespace}/{name}" == f"{TENANT}/cases/EMG123456789"
    storage = lineage.storage_namespace(BASE, "7")
    assert sanitize_uri(urlsplit(storage)).geturl() == TENANT
    assert lineage.storage_namespace(BASE, "a/b c") == f"{TENANT}/storage/a%2Fb%20c"  # one path segment


def test_nothing_of_the_case_but_its_files_and_name_is_recorded() -> None:
    """No facet: the sample names, the LIMS id, the phenotypes stay out of every event."""
    record = CaseLineage.of_create(BASE, valid_case(), "EMG123456789")
    sent = json.dumps(record.datasets())
    for private in ("S-UNIT-1", "LIMS-UNIT-1", "proband", "EMG_PHENOTYPE"):
        assert private not in sent


# -- with the OpenLineage provider (the venvs install the extra) -----------------------------------


def test_operator_lineage_is_the_providers_structure(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    monkeypatch.delenv("AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS", raising=False)
    result = lineage.operator_lineage(CaseLineage.of_create(BASE, valid_case(), "EMG123456789"))
    assert isinstance(result, OperatorLineage)
    assert result.inputs == [Dataset(namespace=f"{TENANT}/storage/7", name=_sha(PATH))]
    assert result.outputs == [Dataset(namespace=TENANT, name="cases/EMG123456789")]
    assert result.run_facets == {} and result.job_facets == {}
    assert lineage.operator_lineage(None) is None


def test_the_tenant_asset_converts_to_the_namespace_of_its_cases() -> None:
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.common.compat.sdk import Asset

    converted = lineage.convert_asset_to_openlineage(Asset(uri=TENANT), None)
    assert (converted.namespace, converted.name) == (TENANT, "cases")


def test_the_provider_info_declares_the_converter_and_the_option() -> None:
    info = emedgene_provider.get_provider_info()
    (uris,) = info["asset-uris"]
    assert uris["to_openlineage_converter"] == "emedgene_provider.lineage.convert_asset_to_openlineage"
    option = info["config"][lineage.CONFIG_SECTION]["options"][lineage.PLAIN_PATHS_OPTION]
    assert (option["type"], option["default"]) == ("boolean", "False")


def test_airflow_translates_the_tenant_asset_with_our_converter() -> None:
    """Airflow's own Asset -> OpenLineage translation, through the providers manager, gives what
    the operators' cases share a namespace with. The tenant Asset is Airflow 3 only: Airflow 2
    reads no ``asset-uris``, so it has no translation for ``emedgene://`` at all."""
    pytest.importorskip("airflow.providers.openlineage")
    import airflow
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.providers.common.compat.sdk import Asset

    translated = translate_airflow_asset(Asset(uri="emedgene://Lab.emedgene.com/"), None)
    if not airflow.__version__.startswith("3."):
        assert translated is None
        return
    assert translated is not None
    assert (translated.namespace, translated.name) == (TENANT, "cases")
