"""What a case JSON for ``POST /api/cases/v2/cases`` must look like, checked before sending.

The rules are those the vendor's batch case creator and guide show [cli][doc]; the server may
check more. :func:`case_problems` lists *every* problem at once, so that a lab fixes a manifest
in one round; the simulator answers invalid cases with the first of them, as the server does.

Only what is certainly wrong is a problem (a malformed shape, notes over 4000 characters, more
than 100 phenotypes, a missing proband...). A value the tenant may know better than we do (a case
type or a relationship we have not seen) is sent as given: :func:`case_warnings` names it, and the
server's dry run (``?dry_run=true``) is the authority. The shapes the case builder
(:mod:`emedgene_provider.cases.builder`) produces are all accepted: members whose sample has no
files yet (``pending_sample_name``), phenotypes by ``name`` with ``related``, the proband's pending
sample with empty ``sampleFiles``, and a reused platform sample (``{id, fastq}``).
"""

from __future__ import annotations

import re
from typing import Any

CASE_TYPES = ("Exome", "Whole Genome", "Custom Panel", "Array")
SAMPLE_TYPES = ("fastq", "vcf")
GENDERS = ("Male", "Female", "Unknown")
RELATIONSHIPS = ("Test Subject", "Mother", "Father", "Sibling")
PHENOTYPE_ID = re.compile(r"^phenotypes/EMG_PHENOTYPE_\d+$")
MAX_PHENOTYPES = 100
MAX_NOTES = 4000
FASTQ_EXTENSIONS = (".fastq.gz", ".fq.gz", ".bam", ".cram")
VCF_EXTENSIONS = (".vcf", ".vcf.gz", ".gvcf", ".gvcf.gz")
DUE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Visualization files of a VCF case, by name ending [doc][cli]. The builder makes the BAM/CRAM the
#: sample's ``bam_location`` and appends the others to its ``sampleFiles``.
VISUALIZATION_KINDS = (
    (".bam", "bam"),
    (".cram", "bam"),
    (".tn.bw", "tn-bw"),
    (".baf.bw", "baf-bw"),
    (".roh.bed", "roh-bed"),
    (".target.counts.bw", "targetcounts-bw"),
    (".metrics.tar.gz", "dragen-metrics"),
)
#: Files a VCF case's sample may list in ``sampleFiles`` besides its VCFs: the visualization files
#: other than the BAM/CRAM.
VCF_COMPANION_EXTENSIONS = tuple(end for end, kind in VISUALIZATION_KINDS if kind != "bam")
#: A case type or relationship longer than this is not a name the tenant may know but a broken value.
MAX_NAME = 100


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a problem quotes what it found, not 100 kB of it."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def members_of(patients: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(where, member)`` of every family member: ``patients.proband``, ... ``patients.other[i]``."""
    found: list[tuple[str, Any]] = []
    for role in ("proband", "mother", "father"):
        if role in patients:
            found.append((f"patients.{role}", patients[role]))
    other = patients.get("other", [])
    if isinstance(other, list):
        found.extend((f"patients.other[{i}]", m) for i, m in enumerate(other))
    return found


def _is_name(value: Any) -> bool:
    """Whether ``value`` can be a name the tenant knows (a case type, a relationship): short text."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_NAME


def _phenotype_ok(entry: Any) -> bool:
    """``{"id": "phenotypes/EMG_PHENOTYPE_<digits>"}`` or ``{"name": "<a phenotype name>"}``, with an
    optional ``related`` flag (a relative's phenotype shared with the proband) [cli]."""
    if not isinstance(entry, dict) or not isinstance(entry.get("related", False), bool):
        return False
    if "id" in entry:
        pid = entry["id"]
        return isinstance(pid, str) and PHENOTYPE_ID.match(pid) is not None
    name = entry.get("name")
    return isinstance(name, str) and bool(name.strip())


def _member_problems(where: str, member: Any) -> list[str]:
    if not isinstance(member, dict):
        return [f"{where} must be an object, not {type(member).__name__}"]
    problems = []
    sample = member.get("fastq_sample")
    if sample in (None, ""):
        # A member whose sample has no files yet is sent with ``pending_sample_name`` [cli].
        if not isinstance(member.get("pending_sample_name"), str):
            problems.append(
                f"{where}.fastq_sample is required (or pending_sample_name, for a sample with no files yet)"
            )
    elif not isinstance(sample, str):
        problems.append(f"{where}.fastq_sample must be text (got {_show(sample)})")
    if member.get("gender", "Unknown") not in GENDERS:
        problems.append(
            f"{where}.gender must be one of {', '.join(GENDERS)} (got {_show(member.get('gender'))})"
        )
    relationship = member.get("relationship", "Test Subject")
    if not _is_name(relationship):
        problems.append(f"{where}.relationship must be a relationship's name (got {_show(relationship)})")
    phenotypes = member.get("phenotypes", [])
    if not isinstance(phenotypes, list):
        problems.append(f"{where}.phenotypes must be a list")
    else:
        if len(phenotypes) > MAX_PHENOTYPES:
            problems.append(f"{where} has {len(phenotypes)} phenotypes; at most {MAX_PHENOTYPES} are allowed")
        for i, p in enumerate(phenotypes):
            if not _phenotype_ok(p):
                problems.append(
                    f'{where}.phenotypes[{i}] must be {{"id": "phenotypes/EMG_PHENOTYPE_<digits>"}} '
                    f'or {{"name": "<phenotype name>"}}, with an optional "related": true|false '
                    f"(HPO HP:0001250 is phenotypes/EMG_PHENOTYPE_0001250), got {_show(p)}"[:300]
                )
    return problems


def _pending_proband_sample(patients: Any) -> str | None:
    """The proband's ``pending_sample_name`` when its sample has no files yet, else None: its entry
    in ``samples`` is listed anyway, with empty ``sampleFiles`` [cli]."""
    proband = patients.get("proband") if isinstance(patients, dict) else None
    if not isinstance(proband, dict) or proband.get("fastq_sample") not in (None, ""):
        return None
    pending = proband.get("pending_sample_name")
    return pending if isinstance(pending, str) else None


def _sample_problems(samples: Any, sample_type: Any, pending: str | None = None) -> list[str]:
    if not isinstance(samples, list) or not samples:
        return ["test_data.samples must be a non-empty list"]
    problems = []
    allowed: tuple[str, ...] = (
        (*VCF_EXTENSIONS, *VCF_COMPANION_EXTENSIONS) if sample_type == "vcf" else FASTQ_EXTENSIONS
    )
    for i, sample in enumerate(samples):
        where = f"test_data.samples[{i}]"
        if not isinstance(sample, dict):
            problems.append(f"{where} must be an object")
            continue
        files = sample.get("sampleFiles")
        if "sampleFiles" not in sample and "id" in sample:
            # A FASTQ sample already on the platform, reused by its id [cli].
            sample_id = sample["id"]
            if isinstance(sample_id, bool) or not isinstance(sample_id, (int, str)) or sample_id == "":
                problems.append(f"{where}.id (an existing sample's id) must be a number or text")
            if not sample.get("fastq"):
                problems.append(f"{where}.fastq (the sample name) is required")
            continue
        is_pending = pending is not None and files == [] and sample.get("fastq", "") == pending
        if not sample.get("fastq") and not is_pending:
            problems.append(f"{where}.fastq (the sample name) is required")
        if not isinstance(files, list) or not (files or is_pending):
            problems.append(
                f"{where}.sampleFiles must be a non-empty list (empty only for the proband's sample "
                "while its files are pending)"
            )
            continue
        for j, f in enumerate(files):
            fwhere = f"{where}.sampleFiles[{j}]"
            if not isinstance(f, dict):
                problems.append(f"{fwhere} must be an object")
                continue
            for key in ("path", "filename", "storage_id"):
                if f.get(key) in (None, ""):
                    problems.append(f"{fwhere}.{key} is required")
            name = str(f.get("filename", "")).lower()
            if name and sample_type in SAMPLE_TYPES and not name.endswith(allowed):
                problems.append(
                    f"{fwhere}.filename {_show(f.get('filename'))} is not a {sample_type} file "
                    f"(expected {', '.join(allowed)})"
                )
    return problems


def case_problems(case: Any) -> list[str]:
    """Every problem found in a case JSON, as sentences a lab can act on; empty when it looks valid."""
    if not isinstance(case, dict):
        return [f"the case must be a JSON object, not {type(case).__name__}"]
    problems: list[str] = []
    sharing = case.get("sharing_level", 0)
    if isinstance(sharing, bool) or sharing not in (0, 1):  # True == 1, but is not a level
        problems.append(f"sharing_level must be 0 or 1 (got {_show(sharing)})")
    if not isinstance(case.get("should_upload", False), bool):
        problems.append("should_upload must be true or false")
    td = case.get("test_data")
    if not isinstance(td, dict):
        return [*problems, "test_data is required and must be an object"]
    case_type = td.get("type")
    if not _is_name(case_type):
        problems.append(
            f"test_data.type must be a case type's name, e.g. {', '.join(CASE_TYPES)} "
            f"(got {_show(case_type)})"
        )
    if td.get("sample_type") not in SAMPLE_TYPES:
        problems.append(
            f"test_data.sample_type must be one of {', '.join(SAMPLE_TYPES)} "
            f"(got {_show(td.get('sample_type'))})"
        )
    notes = td.get("notes")
    if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES):
        problems.append(f"test_data.notes must be text of at most {MAX_NOTES} characters")
    due = td.get("due_date")
    if due not in (None, "") and (not isinstance(due, str) or not DUE_DATE.match(due)):
        problems.append(f"test_data.due_date must be YYYY-MM-DD (got {_show(due)})")
    if "extra_data" in td and not isinstance(td["extra_data"], dict):
        problems.append("test_data.extra_data must be an object")
    patients = td.get("patients")
    if not isinstance(patients, dict) or not isinstance(patients.get("proband"), dict):
        problems.append("test_data.patients.proband is required")
    else:
        for where, member in members_of(patients):
            problems.extend(_member_problems(f"test_data.{where}", member))
    problems.extend(
        _sample_problems(td.get("samples"), td.get("sample_type"), _pending_proband_sample(patients))
    )
    return problems


def case_warnings(case: Any) -> list[str]:
    """Values of a case JSON that are sent as given although we do not know them: a case type or a
    relationship that is not in our lists. The tenant may know them (its lists grow), so they are
    not refused here; its dry run (``POST ...?dry_run=true``) decides. Empty for any value that
    :func:`case_problems` refuses (it says what is wrong there) and for a case that is not an object.
    """
    td = case.get("test_data") if isinstance(case, dict) else None
    if not isinstance(td, dict):
        return []
    warnings: list[str] = []
    case_type = td.get("type")
    if _is_name(case_type) and case_type not in CASE_TYPES:
        warnings.append(
            f"test_data.type {_show(case_type)} is not a known case type ({', '.join(CASE_TYPES)})"
        )
    patients = td.get("patients")
    if isinstance(patients, dict):
        for where, member in members_of(patients):
            relationship = member.get("relationship") if isinstance(member, dict) else None
            if _is_name(relationship) and relationship not in RELATIONSHIPS:
                warnings.append(
                    f"test_data.{where}.relationship {_show(relationship)} is not a known relationship "
                    f"({', '.join(RELATIONSHIPS)})"
                )
    return warnings
