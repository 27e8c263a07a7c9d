"""The simulated tenant's rules for a case JSON (``POST /api/cases/v2/cases``): its own small table,
written from ``docs/emedgene-api.md`` (the vendor's guide and batch creator), not from the client's code.

A simulator that judged cases with the client's code could never fail a test over a wrong client
rule: the oracle would be the code under test. So each rule here is a row of data (where it looks,
what it accepts, what the tenant answers), and :func:`first_refusal` walks the rows in order and
answers with the first that fails, as the tenant answers a 400 with one ``message``.

Where this table and :mod:`emedgene_provider.cases.validation` differ, on purpose:

- The tenant knows its case types and relationships, so one outside its lists is refused here;
  the client only warns (its lists may be older than the tenant's) and leaves the call to this.
- Only the first refusal is answered; the client lists every problem at once.
- The order is shapes first (envelope, ``test_data``, members, samples), then the tenant's lists,
  so a case with both a broken shape and an unknown case type is refused for its shape. The real
  order is not published [assumed].
- A case type or relationship that is not text is "not a known ..." here; the client tells a
  broken value from an unknown name.
- The refusals are shorter: no hints (the expected file endings, how an HPO id is written), which
  are the client's help to a lab, not the tenant's answer.

The refusals have the shape tests and DAG authors read (``"<field> must be ..."``,
``"<field> ... is not a known case type (...)"``): the vendor publishes only its error envelope,
``{"message": ...}`` [cli].
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: The tenant's lists [cli][doc].
CASE_TYPES = ("Exome", "Whole Genome", "Custom Panel", "Array")
RELATIONSHIPS = ("Test Subject", "Mother", "Father", "Sibling")
GENDERS = ("Male", "Female", "Unknown")
#: File name endings a sample of each ``sample_type`` may list [cli]; a VCF case's sample may also
#: carry its visualization files (``docs/batch-csv.md``), its BAM/CRAM going in ``bam_location``.
_VISUALIZATION = (".tn.bw", ".baf.bw", ".roh.bed", ".target.counts.bw", ".metrics.tar.gz")
FILE_ENDINGS = {
    "fastq": (".fastq.gz", ".fq.gz", ".bam", ".cram"),
    "vcf": (".vcf", ".vcf.gz", ".gvcf", ".gvcf.gz", *_VISUALIZATION),
}
PHENOTYPES_AT_MOST = 100
NOTES_AT_MOST = 4000
_PHENOTYPE_ID = re.compile(r"phenotypes/EMG_PHENOTYPE_\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: What a rule's test is given for a field the case leaves out (an explicit ``null`` is a value).
ABSENT = object()
#: One rule: (the field, relative to the object it is checked on; a test of that field's value,
#: :data:`ABSENT` when left out; the refusal, formatted with ``got``, the value found).
Rule = tuple[str, Callable[[Any], bool], str]


def _absent_or(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is ABSENT or test(value)


def _phenotype(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("related", False), bool):
        return False
    if "id" in entry:
        return isinstance(entry["id"], str) and _PHENOTYPE_ID.fullmatch(entry["id"]) is not None
    return isinstance(entry.get("name"), str) and entry["name"].strip() != ""


ENVELOPE: tuple[Rule, ...] = (
    (
        "sharing_level",
        _absent_or(lambda v: not isinstance(v, bool) and v in (0, 1)),
        "must be 0 or 1 (got {got})",
    ),
    ("should_upload", _absent_or(lambda v: isinstance(v, bool)), "must be true or false"),
    ("test_data", lambda v: isinstance(v, dict), "is required and must be an object"),
)
TEST_DATA: tuple[Rule, ...] = (
    (
        "sample_type",
        lambda v: isinstance(v, str) and v in FILE_ENDINGS,
        "must be one of fastq, vcf (got {got})",
    ),
    (
        "notes",
        lambda v: v in (ABSENT, None) or (isinstance(v, str) and len(v) <= NOTES_AT_MOST),
        f"must be text of at most {NOTES_AT_MOST} characters",
    ),
    (
        "due_date",
        lambda v: v in (ABSENT, None, "") or (isinstance(v, str) and _DATE.fullmatch(v) is not None),
        "must be YYYY-MM-DD (got {got})",
    ),
    ("extra_data", _absent_or(lambda v: isinstance(v, dict)), "must be an object"),
)
MEMBER: tuple[Rule, ...] = (
    ("gender", _absent_or(lambda v: v in GENDERS), "must be one of Male, Female, Unknown (got {got})"),
    ("phenotypes", _absent_or(lambda v: isinstance(v, list)), "must be a list"),
)
SAMPLE_FILE: tuple[Rule, ...] = tuple(
    (key, lambda v: v not in (ABSENT, None, ""), "is required") for key in ("path", "filename", "storage_id")
)


def _got(value: Any) -> str:
    """What the tenant quotes of a refused value: its ``repr``, cut short."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _walk(rules: tuple[Rule, ...], obj: dict[str, Any], where: str) -> str | None:
    for key, test, refusal in rules:
        value = obj.get(key, ABSENT)
        if not test(value):
            return f"{where}{key} " + refusal.format(got=_got(None if value is ABSENT else value))
    return None


def _members(patients: dict[str, Any]) -> list[tuple[str, Any]]:
    roles = [role for role in ("proband", "mother", "father") if role in patients]
    found = [(f"test_data.patients.{role}", patients[role]) for role in roles]
    other = patients.get("other")
    if isinstance(other, list):
        found += [(f"test_data.patients.other[{i}]", member) for i, member in enumerate(other)]
    return found


def _member_refusal(where: str, member: Any) -> str | None:
    if not isinstance(member, dict):
        return f"{where} must be an object, not {type(member).__name__}"
    sample = member.get("fastq_sample")
    if sample in (None, "") and not isinstance(member.get("pending_sample_name"), str):
        return f"{where}.fastq_sample is required (or pending_sample_name, for a sample with no files yet)"
    if sample not in (None, "") and not isinstance(sample, str):
        return f"{where}.fastq_sample must be text (got {_got(sample)})"
    refusal = _walk(MEMBER, member, where + ".")
    if refusal:
        return refusal
    phenotypes = member.get("phenotypes", [])
    if len(phenotypes) > PHENOTYPES_AT_MOST:
        return f"{where} has {len(phenotypes)} phenotypes; at most {PHENOTYPES_AT_MOST} are allowed"
    for i, entry in enumerate(phenotypes):
        if not _phenotype(entry):
            return (
                f'{where}.phenotypes[{i}] must be {{"id": "phenotypes/EMG_PHENOTYPE_<digits>"}} '
                f'or {{"name": "<phenotype name>"}}, with an optional "related": true|false'
            )
    return None


def _sample_refusal(where: str, sample: Any, sample_type: str, pending: Any) -> str | None:
    if not isinstance(sample, dict):
        return f"{where} must be an object"
    if "sampleFiles" not in sample and "id" in sample:  # a sample already on the platform [cli]
        if type(sample["id"]) not in (int, str) or sample["id"] == "":
            return f"{where}.id (an existing sample's id) must be a number or text"
        return None if sample.get("fastq") else f"{where}.fastq (the sample name) is required"
    files = sample.get("sampleFiles")
    # The proband's sample while its files are pending is listed with no files [cli].
    waiting = files == [] and isinstance(pending, str) and sample.get("fastq", "") == pending
    if not sample.get("fastq") and not waiting:
        return f"{where}.fastq (the sample name) is required"
    if not isinstance(files, list) or not (files or waiting):
        return (
            f"{where}.sampleFiles must be a non-empty list (empty only for the proband's sample "
            "while its files are pending)"
        )
    for j, entry in enumerate(files):
        fwhere = f"{where}.sampleFiles[{j}]"
        if not isinstance(entry, dict):
            return f"{fwhere} must be an object"
        refusal = _walk(SAMPLE_FILE, entry, fwhere + ".")
        if refusal:
            return refusal
        if not str(entry["filename"]).lower().endswith(FILE_ENDINGS[sample_type]):
            return f"{fwhere}.filename {_got(entry['filename'])} is not a {sample_type} file"
    return None


def _shape_refusal(case: Any) -> str | None:
    if not isinstance(case, dict):
        return f"the case must be a JSON object, not {type(case).__name__}"
    refusal = _walk(ENVELOPE, case, "") or _walk(TEST_DATA, case["test_data"], "test_data.")
    if refusal:
        return refusal
    td = case["test_data"]
    patients = td.get("patients")
    if not isinstance(patients, dict) or not isinstance(patients.get("proband"), dict):
        return "test_data.patients.proband is required"
    for where, member in _members(patients):
        refusal = _member_refusal(where, member)
        if refusal:
            return refusal
    samples = td.get("samples")
    if not isinstance(samples, list) or not samples:
        return "test_data.samples must be a non-empty list"
    proband = patients["proband"]
    pending = proband.get("pending_sample_name") if proband.get("fastq_sample") in (None, "") else None
    for i, sample in enumerate(samples):
        refusal = _sample_refusal(f"test_data.samples[{i}]", sample, td["sample_type"], pending)
        if refusal:
            return refusal
    return None


def _list_refusal(case: dict[str, Any]) -> str | None:
    td = case["test_data"]
    if td.get("type") not in CASE_TYPES:
        return f"test_data.type {_got(td.get('type'))} is not a known case type ({', '.join(CASE_TYPES)})"
    for where, member in _members(td["patients"]):
        relationship = member.get("relationship", "Test Subject")
        if relationship not in RELATIONSHIPS:
            known = ", ".join(RELATIONSHIPS)
            return f"{where}.relationship {_got(relationship)} is not a known relationship ({known})"
    return None


def first_refusal(case: Any) -> str | None:
    """The tenant's 400 ``message`` for this case JSON, or None when it accepts the case."""
    return _shape_refusal(case) or _list_refusal(case)
