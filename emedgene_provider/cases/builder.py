"""Build a case JSON for ``POST /api/cases/v2/cases`` from what a lab's LIMS knows.

A :class:`Case` holds typed values (a case type, family :class:`Member` s with their
:class:`SampleFile` s, notes, labels, ...). :meth:`Case.problems` lists **every** problem at
once, so a lab fixes its data in one round; :meth:`Case.to_json` builds the JSON in the shape
Illumina's batch case creator sends (``batchCasesCreator.js`` 36.0.0, read and run against a stub
for the format notes summarised in ``docs/batch-csv.md``).

Only what is certainly wrong is a problem: a missing proband, two mothers, an HPO id that is not
one, more than 100 phenotypes, notes over 4000 characters, files of no known type or of mixed
types. What the server may know better than we do (a case type or a relationship we have not
seen) is a :attr:`Case.warnings` entry: the server's dry run (``?dry_run=true``) is the
authority on those.

Airflow-free, like the rest of :mod:`emedgene_provider.cases`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from emedgene_provider.cases.validation import (
    CASE_TYPES,
    FASTQ_EXTENSIONS,
    MAX_NOTES,
    MAX_PHENOTYPES,
    PHENOTYPE_ID,
    SAMPLE_TYPES,
    VCF_EXTENSIONS,
    VISUALIZATION_KINDS,
)

__all__ = [
    "RELATIONSHIP_OF_ROLE",
    "ROLES",
    "SEXES",
    "Case",
    "CaseProblemsError",
    "Member",
    "Problem",
    "SampleFile",
    "file_kind",
    "parse_date",
]

#: The roles a member may have [cli]. Another role is sent as given, with a warning.
ROLES = ("proband", "mother", "father", "sibling")
#: ``patients.<m>.relationship`` for each role [cli].
RELATIONSHIP_OF_ROLE = {
    "proband": "Test Subject",
    "mother": "Mother",
    "father": "Father",
    "sibling": "Sibling",
}
#: Spellings of a sex the batch format accepts, in any case [doc][cli], and what is sent.
SEXES = {
    "m": "Male",
    "male": "Male",
    "f": "Female",
    "female": "Female",
    "u": "Unknown",
    "unknown": "Unknown",
    "": "Unknown",
}
_HPO = re.compile(r"^HP:\d{7}$")
_DATE = re.compile(r"^(\d{4})([-/])(\d{1,2})\2(\d{1,2})$")
_WHITESPACE = re.compile(r"\s")


def file_kind(filename: str) -> str | None:
    """``"fastq"`` or ``"vcf"`` by the name's ending [cli] (``.bam``/``.cram`` count as FASTQ-type,
    reads to be re-analysed), or None when it is neither."""
    name = filename.lower()
    if name.endswith(VCF_EXTENSIONS):
        return "vcf"
    if name.endswith(FASTQ_EXTENSIONS):
        return "fastq"
    return None


def _visualization_kind(filename: str) -> str | None:
    name = filename.lower()
    return next((kind for end, kind in VISUALIZATION_KINDS if name.endswith(end)), None)


def parse_date(value: date | str) -> date:
    """A calendar date from a :class:`~datetime.date` or from ``YYYY-MM-DD`` text; ``/`` as the
    separator and one-digit months and days are accepted too, as the vendor's CLI accepts them.

    :raises ValueError: the text is not such a date, or the date does not exist (2023-02-29).
    """
    if isinstance(value, date):
        return value
    match = _DATE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a date written YYYY-MM-DD")
    return date(int(match.group(1)), int(match.group(3)), int(match.group(4)))


def _last_segment(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _emedgene_phenotype(term: str) -> str:
    """``HP:0001250`` -> ``phenotypes/EMG_PHENOTYPE_0001250``; an Emedgene id passes through."""
    text = term.strip()
    return "phenotypes/EMG_PHENOTYPE_" + text[3:] if _HPO.match(text) else text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a :class:`Case`.

    :param field: the :class:`Case` or :class:`Member` attribute at fault (``"notes"``,
        ``"hpo"``, ``"role"``, ...), so a caller can point at its own source (a CSV column).
    :param message: a sentence a lab can act on.
    :param members: indexes into :attr:`Case.members` of the members concerned; empty for a
        case-level value.
    :param family: a problem of the family as a whole (no proband, mixed sample types): it
        concerns every member, including any a caller could not turn into a :class:`Member`.
    """

    field: str
    message: str
    members: tuple[int, ...] = ()
    family: bool = False

    def __str__(self) -> str:
        where = ", ".join(f"members[{i}]" for i in self.members)
        return f"{where}: {self.message}" if where else self.message


class CaseProblemsError(ValueError):
    """:meth:`Case.to_json` refused a case; :attr:`problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("the case is not valid:\n" + "\n".join(f"- {p}" for p in problems))


@dataclass(frozen=True)
class SampleFile:
    """A file of a sample, in one of the tenant's storage providers.

    :param path: the file's path inside the storage, as the storage lists it.
    :param storage_id: the storage provider's id (``GET /api/storage``).
    :param filename: the file's name; defaults to the path's last segment. Give it when the path
        does not end in the name (BaseSpace paths end in a dataset file id).
    """

    path: str
    storage_id: int
    filename: str | None = None

    @property
    def name(self) -> str:
        """The file name the type is read from and that is sent as ``filename``."""
        return self.filename if self.filename else _last_segment(self.path)


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # one term, not its characters
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Member:
    """One family member and their sample.

    :param role: ``proband``, ``mother``, ``father`` or ``sibling``. Another role is sent as given
        (a warning): the server decides.
    :param sample_name: the sample's name (the batch format's BioSample Name); the VCF column
        name in VCF cases. No whitespace.
    :param sex: ``M``/``F``/``U`` or ``Male``/``Female``/``Unknown``, any case; empty is Unknown.
    :param hpo: HPO ids (``HP:0001250``) or Emedgene phenotype ids.
    :param phenotype_names: phenotype names, as the platform's phenotype list spells them.
    :param affected: whether the member is affected. None (the default) derives it as the
        vendor's CLI does: the proband is affected when it has a phenotype; a relative when it
        shares one (same id or name) with the proband.
    :param files: the sample's files (all FASTQ-type or all VCF-type). None for a member whose
        sample is not sequenced yet: it is sent as ``pending_sample_name``.
    :param visualization_files: VCF cases only: at most one BAM/CRAM, plus ``.tn.bw``,
        ``.baf.bw``, ``.roh.bed``, ``.target.counts.bw``, ``.metrics.tar.gz`` files.
    :param existing_sample_id: reuse a FASTQ sample already on the platform (its id, as
        ``GET /api/sample/?query=<name>`` returns it) instead of files.
    :param date_of_birth: a date or ``YYYY-MM-DD``.
    """

    role: str
    sample_name: str = ""
    sex: str = "Unknown"
    hpo: tuple[str, ...] = ()
    phenotype_names: tuple[str, ...] = ()
    affected: bool | None = None
    files: tuple[SampleFile, ...] = ()
    visualization_files: tuple[SampleFile, ...] = ()
    existing_sample_id: int | str | None = None
    date_of_birth: date | str | None = None

    def __post_init__(self) -> None:
        # Lists are welcome from callers; tuples keep the frozen dataclass hashable and immutable.
        for name in ("hpo", "phenotype_names", "files", "visualization_files"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))

    @property
    def phenotype_keys(self) -> tuple[str, ...]:
        """The member's phenotypes as sent: Emedgene ids first, then names."""
        return (*(_emedgene_phenotype(t) for t in self.hpo), *(n.strip() for n in self.phenotype_names))

    @property
    def file_kinds(self) -> set[str | None]:
        """The types of the member's files (None for a file of no known type)."""
        if self.existing_sample_id is not None:
            return {"fastq"}
        return {file_kind(f.name) for f in self.files}

    @property
    def has_sample(self) -> bool:
        """Whether the member's sample is sent in ``samples`` (it has files or reuses a sample)."""
        return bool(self.files) or self.existing_sample_id is not None


@dataclass(frozen=True)
class Case:
    """A case as a lab describes it; :meth:`to_json` is what ``POST /api/cases/v2/cases`` takes.

    :param case_type: ``Exome``, ``Whole Genome``, ``Custom Panel`` or ``Array``, sent as
        written; another value is a warning (the server decides).
    :param members: the family, exactly one proband among them.
    :param sample_type: ``fastq`` or ``vcf``. Derived from the proband's file names when it has
        files; required when it has none (its files will come later).
    :param execute_now: False makes the case wait for sequencing (``should_upload: true``).
    :param opt_in: data sharing (``sharing_level`` 1, or 0 when False).
    :param gene_list_id: a gene list on the tenant; None (or 1) means all genes.
    :param extra_data: free-form values the server keeps with the case (``test_data.extra_data``).
    """

    case_type: str
    members: tuple[Member, ...]
    sample_type: str | None = None
    notes: str | None = None
    labels: tuple[int, ...] = ()
    gene_list_id: int | None = None
    kit_id: int | None = None
    intersect_bed_id: int | None = None
    preset: str | None = None
    due_date: date | str | None = None
    execute_now: bool = True
    opt_in: bool = True
    boost_genes: bool = False
    extra_data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", _tuple(self.members))
        object.__setattr__(self, "labels", _tuple(self.labels))
        object.__setattr__(self, "extra_data", dict(self.extra_data or {}))

    # -- the family ----------------------------------------------------------------------------

    def _indexes(self, role: str) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.role == role]

    @property
    def proband(self) -> Member | None:
        """The proband, when there is exactly one."""
        found = self._indexes("proband")
        return self.members[found[0]] if len(found) == 1 else None

    @property
    def resolved_sample_type(self) -> str | None:
        """The case's sample type: from the proband's files, else :attr:`sample_type` [cli]."""
        proband = self.proband
        if proband is not None and proband.has_sample:
            kinds = [k for k in proband.file_kinds if k is not None]
            if kinds and len(set(kinds)) == 1:
                return kinds[0]
        if isinstance(self.sample_type, str) and self.sample_type.lower() in SAMPLE_TYPES:
            return self.sample_type.lower()
        return None

    # -- checks --------------------------------------------------------------------------------

    @property
    def warnings(self) -> list[str]:
        """Values sent as given that the server may refuse; its dry run decides."""
        found: list[str] = []
        if self.case_type and self.case_type not in CASE_TYPES:
            found.append(
                f"case type {self.case_type!r} is not one we know ({', '.join(CASE_TYPES)}); "
                "it is sent as given and the server decides"
            )
        for i, member in enumerate(self.members):
            if member.role not in ROLES:
                found.append(
                    f"members[{i}]: role {member.role!r} is not one we know ({', '.join(ROLES)}); "
                    "it is sent as a relative with that relationship and the server decides"
                )
            if member.visualization_files and (self.resolved_sample_type != "vcf" or not member.files):
                found.append(
                    f"members[{i}]: visualization files are used only for a member with VCF files; "
                    "they are not sent"
                )
        return found

    def problems(self) -> list[Problem]:
        """Every problem of the case, in a stable order; empty when it can be sent."""
        found: list[Problem] = []
        found.extend(self._case_problems())
        found.extend(self._family_problems())
        for i, member in enumerate(self.members):
            found.extend(self._member_problems(i, member))
        return found

    def _case_problems(self) -> list[Problem]:
        found: list[Problem] = []
        if not isinstance(self.case_type, str) or not self.case_type.strip():
            found.append(Problem("case_type", "a case type is required (e.g. Exome, Whole Genome)"))
        if self.sample_type is not None and (
            not isinstance(self.sample_type, str) or self.sample_type.lower() not in SAMPLE_TYPES
        ):
            found.append(Problem("sample_type", f"sample type {self.sample_type!r} is not FASTQ or VCF"))
        if self.notes is not None and (not isinstance(self.notes, str) or len(self.notes) > MAX_NOTES):
            length = len(self.notes) if isinstance(self.notes, str) else "not text"
            found.append(Problem("notes", f"notes must be at most {MAX_NOTES} characters ({length})"))
        for name in ("gene_list_id", "kit_id", "intersect_bed_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                found.append(Problem(name, f"{name} must be a whole number >= 0 (got {value!r})"))
        bad_labels = [v for v in self.labels if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad_labels:
            found.append(Problem("labels", f"label ids must be whole numbers >= 0 (got {bad_labels!r})"))
        if self.due_date is not None:
            try:
                parse_date(self.due_date)
            except ValueError:
                found.append(Problem("due_date", f"due date {self.due_date!r} is not a YYYY-MM-DD date"))
        if self.preset is not None and not isinstance(self.preset, str):
            found.append(Problem("preset", "the preset must be its name"))
        if any(not isinstance(k, str) or not k for k in self.extra_data):
            found.append(Problem("extra_data", "extra_data keys must be non-empty text"))
        return found

    def _family_problems(self) -> list[Problem]:
        found: list[Problem] = []
        everyone = tuple(range(len(self.members)))
        if not self.members:
            return [Problem("members", "a case needs at least one member, the proband")]
        probands = self._indexes("proband")
        if not probands:
            found.append(
                Problem("role", "the family has no proband; exactly one is required", everyone, family=True)
            )
        for role in ("proband", "mother", "father"):
            same = self._indexes(role)
            if len(same) > 1:
                found.append(Problem("role", f"the family has {len(same)} {role}s; at most one", tuple(same)))
        names: dict[str, list[int]] = {}
        for i, m in enumerate(self.members):
            if m.sample_name:
                names.setdefault(m.sample_name, []).append(i)
        for name, where in names.items():
            if len(where) > 1:
                found.append(
                    Problem("sample_name", f"sample name {name!r} is given to several members", tuple(where))
                )
        proband = self.proband
        if proband is not None and not proband.has_sample and self.sample_type is None:
            found.append(
                Problem(
                    "sample_type",
                    "the proband has no files: say which are coming (sample type FASTQ or VCF)",
                    (probands[0],),
                )
            )
        case_kind = self.resolved_sample_type
        explicit = self.sample_type.lower() if isinstance(self.sample_type, str) else None
        if proband is not None and case_kind and explicit in SAMPLE_TYPES and explicit != case_kind:
            found.append(
                Problem(
                    "sample_type",
                    f"sample type {self.sample_type!r} disagrees with the proband's {case_kind} files",
                    (probands[0],),
                )
            )
        kinds = {k for m in self.members if m.has_sample for k in m.file_kinds if k is not None}
        if case_kind is not None:
            kinds.add(case_kind)
        if len(kinds) > 1:
            found.append(
                Problem(
                    "files",
                    "the family mixes FASTQ-type and VCF-type samples; one case has one sample type",
                    everyone,
                    family=True,
                )
            )
        return found

    def _member_problems(self, i: int, m: Member) -> list[Problem]:
        found: list[Problem] = []
        at = (i,)
        if not isinstance(m.role, str) or not m.role.strip():
            found.append(Problem("role", "a role is required (proband, mother, father or sibling)", at))
        if m.sample_name and _WHITESPACE.search(m.sample_name):
            found.append(Problem("sample_name", f"sample name {m.sample_name!r} contains whitespace", at))
        if m.has_sample and not m.sample_name:
            found.append(Problem("sample_name", "a member with files needs a sample name", at))
        if not isinstance(m.sex, str) or m.sex.strip().lower() not in SEXES:
            found.append(Problem("sex", f"sex {m.sex!r} is not M, F, U, Male, Female or Unknown", at))
        bad_hpo = [t for t in m.hpo if not (_HPO.match(t.strip()) or PHENOTYPE_ID.match(t.strip()))]
        if bad_hpo:
            found.append(
                Problem("hpo", f"not HPO ids (HP: and 7 digits): {', '.join(map(repr, bad_hpo))}", at)
            )
        if any(not n.strip() for n in m.phenotype_names):
            found.append(Problem("phenotype_names", "a phenotype name is empty", at))
        count = len(m.hpo) + len(m.phenotype_names)
        if count > MAX_PHENOTYPES:
            which = "hpo" if m.hpo else "phenotype_names"
            found.append(Problem(which, f"{count} phenotypes; at most {MAX_PHENOTYPES} per member", at))
        if m.date_of_birth is not None:
            try:
                parse_date(m.date_of_birth)
            except ValueError:
                found.append(
                    Problem(
                        "date_of_birth", f"date of birth {m.date_of_birth!r} is not a YYYY-MM-DD date", at
                    )
                )
        if m.existing_sample_id is not None and m.files:
            found.append(Problem("files", "a member reuses an existing sample or has files, not both", at))
        for f in m.files:
            if not isinstance(f.path, str) or not f.path.strip():
                found.append(Problem("files", "a file path is empty", at))
            if isinstance(f.storage_id, bool) or not isinstance(f.storage_id, int) or f.storage_id < 0:
                found.append(Problem("storage_id", f"storage id {f.storage_id!r} is not a whole number", at))
        unknown = [f.name for f in m.files if f.path and file_kind(f.name) is None]
        if unknown:
            found.append(
                Problem(
                    "files",
                    f"files of no known type: {', '.join(unknown)} (FASTQ-type: "
                    f"{' '.join(FASTQ_EXTENSIONS)}; VCF-type: {' '.join(VCF_EXTENSIONS)})",
                    at,
                )
            )
        if len({file_kind(f.name) for f in m.files} - {None}) > 1:
            found.append(Problem("files", "the member's files mix FASTQ-type and VCF-type", at))
        if self.resolved_sample_type == "vcf" and m.files:
            bad = [f.name for f in m.visualization_files if _visualization_kind(f.name) is None]
            if bad:
                found.append(Problem("visualization_files", f"not visualization files: {', '.join(bad)}", at))
            bams = [f.name for f in m.visualization_files if _visualization_kind(f.name) == "bam"]
            if len(bams) > 1:
                found.append(Problem("visualization_files", f"more than one BAM/CRAM: {', '.join(bams)}", at))
        return found

    # -- the JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The case JSON: ``{should_upload, sharing_level, test_data}``.

        :raises CaseProblemsError: with every problem, when :meth:`problems` finds any.
        """
        problems = self.problems()
        if problems:
            raise CaseProblemsError(problems)
        sample_type = self.resolved_sample_type
        assert sample_type is not None  # problems() refused a case without one
        test_data: dict[str, Any] = {
            "type": self.case_type.strip(),
            "sample_type": sample_type,
            "gene_list": (
                {"id": 1, "type": "all"}
                if self.gene_list_id in (None, 1)
                else {"id": self.gene_list_id, "type": "existing"}
            ),
            "boostGenes": self.boost_genes,
            "labels": list(self.labels),
        }
        if self.preset:
            test_data["selected_preset_set"] = self.preset
        if self.due_date is not None:
            test_data["due_date"] = parse_date(self.due_date).isoformat()
        sequence_info = {
            k: v
            for k, v in (("kit_id", self.kit_id), ("intersect_bed_id", self.intersect_bed_id))
            if v is not None
        }
        if sequence_info:
            test_data["sequence_info"] = sequence_info
        if self.notes:
            test_data["notes"] = self.notes
        if self.extra_data:
            test_data["extra_data"] = dict(self.extra_data)
        test_data["patients"] = self._patients()
        test_data["samples"] = self._samples(sample_type)
        return {
            "should_upload": not self.execute_now,
            "sharing_level": 1 if self.opt_in else 0,
            "test_data": test_data,
        }

    def _ordered(self) -> list[tuple[str, Member]]:
        """(patient id, member) for the proband, mother, father, then the others in given order;
        siblings are ``sibling``, ``sibling_1``, ``sibling_2``, ... [cli]."""
        ordered = [
            (role, self.members[self._indexes(role)[0]])
            for role in ("proband", "mother", "father")
            if self._indexes(role)
        ]
        seen: dict[str, int] = {}
        for m in self.members:
            if m.role in ("proband", "mother", "father"):
                continue
            base = re.sub(r"\W+", "_", m.role.strip().lower()).strip("_") or "other"
            n = seen.get(base, 0)
            seen[base] = n + 1
            ordered.append((f"{base}_{n}" if n else base, m))
        return ordered

    def _patients(self) -> dict[str, Any]:
        proband = self.proband
        assert proband is not None
        proband_keys = set(proband.phenotype_keys)
        has_mother, has_father = bool(self._indexes("mother")), bool(self._indexes("father"))
        patients: dict[str, Any] = {}
        others: list[dict[str, Any]] = []
        for pid, m in self._ordered():
            is_proband = m.role == "proband"
            phenotypes: list[dict[str, Any]] = []
            for j, key in enumerate(m.phenotype_keys):
                entry: dict[str, Any] = {"id": key} if j < len(m.hpo) else {"name": key}
                if not is_proband:
                    entry["related"] = key in proband_keys
                phenotypes.append(entry)
            if m.affected is not None:
                healthy = not m.affected
            elif is_proband:
                healthy = not phenotypes
            else:
                healthy = not any(p["related"] for p in phenotypes)
            patient: dict[str, Any] = {
                "id": pid,
                # Both keys, one empty, as the vendor's CLI sends them [cli].
                "fastq_sample": m.sample_name if m.has_sample else "",
                "pending_sample_name": "" if m.has_sample else m.sample_name,
                "gender": SEXES[m.sex.strip().lower()],
                "relationship": RELATIONSHIP_OF_ROLE.get(m.role, m.role),
                "healthy": healthy,
                "phenotypes": phenotypes,
            }
            if m.date_of_birth is not None:
                patient["date_of_birth"] = parse_date(m.date_of_birth).isoformat()
            if m.role not in ("mother", "father"):
                if has_mother:
                    patient["mother"] = "mother"
                if has_father:
                    patient["father"] = "father"
            if m.role in ("proband", "mother", "father"):
                patients[m.role] = patient
            else:
                others.append(patient)
        patients["other"] = others
        return patients

    def _samples(self, sample_type: str) -> list[dict[str, Any]]:
        samples = []
        for _pid, m in self._ordered():
            if m.role != "proband" and not m.has_sample:
                continue  # the proband's sample is always listed, even without files [cli]
            if m.existing_sample_id is not None:
                samples.append({"id": m.existing_sample_id, "fastq": m.sample_name})
                continue
            files: list[dict[str, Any]] = []
            for f in m.files:
                entry: dict[str, Any] = {
                    "path": f.path,
                    "filename": f.name,
                    "size": 0,
                    "status": "uploaded",
                    "storage_id": f.storage_id,
                }
                if sample_type == "vcf":
                    entry["vcf_column_name"] = m.sample_name
                files.append(entry)
            sample: dict[str, Any] = {"fastq": m.sample_name, "status": "uploaded", "sampleFiles": files}
            if sample_type == "vcf" and m.files:
                for f in m.visualization_files:
                    if _visualization_kind(f.name) == "bam":
                        sample["bam_location"] = f.path
                        sample["storage_id"] = f.storage_id
                    else:
                        files.append(
                            {
                                "path": f.path,
                                "filename": f.name,
                                "size": 0,
                                "status": "uploaded",
                                "storage_id": f.storage_id,
                            }
                        )
            samples.append(sample)
        return samples
