"""What a case JSON for ``POST /api/cases/v2/cases`` must look like, checked before sending.

The rules are those the vendor's batch case creator and guide show [cli][doc]; the server may
check more. :func:`case_problems` lists *every* problem at once, so that a lab fixes a manifest
in one round; the simulator answers invalid cases with the first of them, as the server does.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
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


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a problem quotes what it found, not 100 kB of it."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _members(patients: dict[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for role in ("proband", "mother", "father"):
        if role in patients:
            found.append((f"patients.{role}", patients[role]))
    other = patients.get("other", [])
    if isinstance(other, list):
        found.extend((f"patients.other[{i}]", m) for i, m in enumerate(other))
    return found


def _member_problems(where: str, member: Any) -> list[str]:
    if not isinstance(member, dict):
        return [f"{where} must be an object, not {type(member).__name__}"]
    problems = []
    if not member.get("fastq_sample"):
        problems.append(f"{where}.fastq_sample is required")
    if member.get("gender", "Unknown") not in GENDERS:
        problems.append(
            f"{where}.gender must be one of {', '.join(GENDERS)} (got {_show(member.get('gender'))})"
        )
    if "relationship" in member and member["relationship"] not in RELATIONSHIPS:
        problems.append(
            f"{where}.relationship must be one of {', '.join(RELATIONSHIPS)} "
            f"(got {_show(member['relationship'])})"
        )
    phenotypes = member.get("phenotypes", [])
    if not isinstance(phenotypes, list):
        problems.append(f"{where}.phenotypes must be a list")
    else:
        if len(phenotypes) > MAX_PHENOTYPES:
            problems.append(f"{where} has {len(phenotypes)} phenotypes; at most {MAX_PHENOTYPES} are allowed")
        for i, p in enumerate(phenotypes):
            pid = p.get("id") if isinstance(p, dict) else None
            if not isinstance(pid, str) or not PHENOTYPE_ID.match(pid):
                problems.append(
                    f'{where}.phenotypes[{i}] must be {{"id": "phenotypes/EMG_PHENOTYPE_<digits>"}} '
                    f"(HPO HP:0001250 is phenotypes/EMG_PHENOTYPE_0001250), got {_show(p)}"[:300]
                )
    return problems


def _sample_problems(samples: Any, sample_type: Any) -> list[str]:
    if not isinstance(samples, list) or not samples:
        return ["test_data.samples must be a non-empty list"]
    problems = []
    allowed = VCF_EXTENSIONS if sample_type == "vcf" else FASTQ_EXTENSIONS
    for i, sample in enumerate(samples):
        where = f"test_data.samples[{i}]"
        if not isinstance(sample, dict):
            problems.append(f"{where} must be an object")
            continue
        if not sample.get("fastq"):
            problems.append(f"{where}.fastq (the sample name) is required")
        files = sample.get("sampleFiles")
        if not isinstance(files, list) or not files:
            problems.append(f"{where}.sampleFiles must be a non-empty list")
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
    if td.get("type") not in CASE_TYPES:
        problems.append(
            f"test_data.type must be one of {', '.join(CASE_TYPES)} (got {_show(td.get('type'))})"
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
        for where, member in _members(patients):
            problems.extend(_member_problems(f"test_data.{where}", member))
    problems.extend(_sample_problems(td.get("samples"), td.get("sample_type")))
    return problems


_HPO = re.compile(r"^HP:(\d{7})$")


def phenotype_id(term: str) -> str:
    """Emedgene's id for an HPO term: ``HP:0001250`` → ``phenotypes/EMG_PHENOTYPE_0001250`` [py];
    an id already in Emedgene's form passes through."""
    text = term.strip()
    if PHENOTYPE_ID.match(text):
        return text
    match = _HPO.match(text.upper())
    if not match:
        raise ValueError(f"{_show(term)} is neither an HPO term (HP:0001250) nor an Emedgene phenotype id")
    return f"phenotypes/EMG_PHENOTYPE_{match.group(1)}"


#: Where a case carries the key of the request that made it: ``test_data.extra_data`` is the case
#: JSON's free-form object [cli][doc] that the server keeps and returns with the case (the
#: simulator returns it as ``extra_data`` of ``GET /api/test/{name}``) [assumed]. ``notes`` is
#: not used: lab staff edit it, and it is shown on reports.
IDEMPOTENCY_FIELD = "airflow_idempotency_key"


def with_idempotency_key(case: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of ``case`` stamped with ``key`` in ``test_data.extra_data``; ``case`` is untouched."""
    stamped = dict(case)
    test_data = dict(stamped.get("test_data") or {})
    extra = dict(test_data.get("extra_data") or {})
    extra[IDEMPOTENCY_FIELD] = key
    test_data["extra_data"] = extra
    stamped["test_data"] = test_data
    return stamped


def idempotency_key_of(case_json: Any) -> str | None:
    """The key a case was stamped with, wherever the server returns ``extra_data``: at the top of
    the case JSON or inside ``test_data``."""
    if not isinstance(case_json, dict):
        return None
    for holder in (case_json, case_json.get("test_data")):
        extra = holder.get("extra_data") if isinstance(holder, dict) else None
        if isinstance(extra, dict) and isinstance(extra.get(IDEMPOTENCY_FIELD), str):
            return str(extra[IDEMPOTENCY_FIELD])
    return None


#: Allowance, in seconds, for the server's clock running behind ours when filtering by ``created``.
CLOCK_SKEW = 600.0


def parse_created(value: Any) -> float | None:
    """Epoch seconds of a list entry's ``created`` (ISO 8601 [assumed]); None when absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
