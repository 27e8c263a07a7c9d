"""Read an Emedgene batch case CSV (the UI's and Illumina's batch CLI's format) into case JSONs.

:func:`read_batch_csv` takes the file a lab already uploads to Emedgene and returns one
:class:`BatchCase` per ``Family Id``, in the file's order, each with the case JSON that
``POST /api/cases/v2/cases`` takes. It checks everything that can be checked without the tenant
and raises :class:`BatchCsvError` listing **every** problem at once, each named by data row (the
first sample row after the column-name row is 1), file line, column and family.

The rules, their sources and our ``[assumed]`` choices are in ``docs/batch-csv.md`` (from the
design note ``batch-csv.md``); the case JSON is built by :mod:`emedgene_provider.cases.builder`.

No Airflow import here: a DAG file, a notebook or a LIMS script can validate a manifest alike.
Whatever the tenant alone knows (whether a case type, a phenotype, a gene list is accepted) is
left to the server's dry run (``POST /api/cases/v2/cases?dry_run=true``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol, Union

from emedgene_provider.cases.builder import (
    ROLES,
    SEXES,
    Case,
    Member,
    Problem,
    SampleFile,
)
from emedgene_provider.cases.extra_data import FAMILY_ID_KEY, IDEMPOTENCY_FIELD

if TYPE_CHECKING:
    from emedgene_provider.cases.hpo import Ontology

__all__ = [
    "MAX_CASES",
    "BatchCase",
    "BatchCsvError",
    "BatchProblem",
    "SampleNotResolved",
    "SampleResolver",
    "read_batch_csv",
]

#: At most this many cases (distinct Family Ids) per file [doc][cli].
MAX_CASES = 50
#: A manifest of 50 cases is a few tens of kB; anything past this is not one.
MAX_BYTES = 16 * 1024 * 1024

SourceType = Union[str, "os.PathLike[str]", IO[str], IO[bytes], Any]

FAMILY_ID = "Family Id"
CASE_TYPE = "Case Type"
FILES = "Files Names"
SAMPLE_TYPE = "Sample Type"
BIOSAMPLE = "BioSample Name"
STORAGE = "Storage Provider Id"
PROJECT = "Default Project"
EXECUTE = ("Execute now", "Execute Now")  # the doc's and the CLI's spelling [assumed: both]
RELATION = "Relation"
GENDER, SEX = "Gender", "Sex"
PHENOTYPES = "Phenotypes"
PHENOTYPE_IDS = "Phenotypes Id"
BOOST = "Boost Genes"
GENE_LIST = "Gene List Id"
KIT = "Kit Id"
BED = "Intersect Bed Id"
LABELS = "Label Id"
PRESET = "Selected Preset"
DUE = "Due Date"
BIRTH = "Date Of Birth"
NOTES = "Clinical Notes"
OPT_IN = "Opt In"
VISUALIZATION = "Visualization Files"
CASE_ID = "Case Id"
ERRORS = "Errors"  # the CLI's results file has it; not a custom field

KNOWN_COLUMNS = frozenset(
    {
        FAMILY_ID, CASE_TYPE, FILES, SAMPLE_TYPE, BIOSAMPLE, STORAGE, PROJECT, *EXECUTE, RELATION,
        GENDER, SEX, PHENOTYPES, PHENOTYPE_IDS, BOOST, GENE_LIST, KIT, BED, LABELS, PRESET, DUE,
        BIRTH, NOTES, OPT_IN, VISUALIZATION, CASE_ID, ERRORS,
    }
)  # fmt: skip
#: Columns the header row must have [doc][cli] (G10); each tuple is "one of".
REQUIRED_COLUMNS = ((FAMILY_ID,), (CASE_TYPE,), (FILES,), (GENDER, SEX), (PHENOTYPES, PHENOTYPE_IDS))

#: The builder's fields, as the batch format's columns (``sex`` depends on the row).
_COLUMN_OF_FIELD = {
    "case_type": CASE_TYPE,
    "sample_type": SAMPLE_TYPE,
    "notes": NOTES,
    "gene_list_id": GENE_LIST,
    "kit_id": KIT,
    "intersect_bed_id": BED,
    "labels": LABELS,
    "due_date": DUE,
    "preset": PRESET,
    "members": FAMILY_ID,
    "role": RELATION,
    "sample_name": BIOSAMPLE,
    "hpo": PHENOTYPE_IDS,
    "phenotype_names": PHENOTYPES,
    "date_of_birth": BIRTH,
    "files": FILES,
    "storage_id": STORAGE,
    "visualization_files": VISUALIZATION,
}
_DIGITS = re.compile(r"^\d+$")
_SECTION = re.compile(r"^\[.*\]$")
_AUTO, _EXISTING = "auto", "existing"


class SampleNotResolved(LookupError):
    """A resolver's answer for a row that names no single sample (two samples of one name): a
    problem of that row, reported with the others."""


class SampleResolver(Protocol):
    """What only the tenant knows, for ``existing`` and ``auto`` rows and BaseSpace paths.

    Without one, :func:`read_batch_csv` reports such rows as problems; give it an object that asks
    the tenant (``GET /api/sample/``, ``GET /api/storage/{id}``, ``.../fs/list``) to accept them:
    :class:`emedgene_provider.cases.tenant_samples.TenantSamples`. :class:`SampleNotResolved`
    becomes a problem of the row; its other errors (the tenant unreachable) propagate: they are
    not a problem of the file.
    """

    def existing_sample_id(self, name: str) -> int | str | None:
        """The id of the platform's FASTQ sample called ``name``, or None when there is none."""

    def storage_scheme(self, storage_id: int) -> str | None:
        """The storage provider's ``scheme`` (``basespace``, ...), or None when it does not exist."""

    def find_files(self, storage_id: int, project: str, biosample: str) -> list[str]:
        """The FASTQ paths of ``biosample`` in BaseSpace ``project`` (``Files Names`` ``auto``)."""

    def file_name(self, storage_id: int, path: str) -> str | None:
        """The name (alias) of the file at ``path`` when the path does not end in it (BaseSpace)."""


@dataclass(frozen=True)
class BatchProblem:
    """One problem of a batch CSV.

    :param data_row: the sample row, counted from 1 at the first row after the column-name row
        (empty rows count); None for a problem of the whole file.
    :param column: the column at fault, when one is.
    :param family_id: the row's Family Id, when it has one.
    :param message: what is wrong, in words a lab can act on.
    :param line: the physical line of the file where the row starts (1-based), when known.
    """

    data_row: int | None
    column: str | None
    family_id: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.data_row is not None:
            parts.append(f"data row {self.data_row}" + (f" (line {self.line})" if self.line else ""))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.column:
            parts.append(f"column {self.column!r}")
        if self.family_id:
            parts.append(f"family {self.family_id}")
        return f"{', '.join(parts) or 'file'}: {self.message}"


class BatchCsvError(ValueError):
    """A batch CSV was refused; :attr:`problems` holds every problem found, in file order."""

    def __init__(self, problems: list[BatchProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"batch CSV {source}" if source else "batch CSV"
        count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
        super().__init__(f"{head}: {count}\n" + "\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class BatchCase:
    """One case of a batch CSV.

    :param family_id: the rows' Family Id.
    :param data_rows: the data rows (see :class:`BatchProblem`) the case was built from.
    :param payload: the case JSON for ``POST /api/cases/v2/cases``.
    :param warnings: values sent as written that the server may refuse (its dry run decides).
    """

    family_id: str
    data_rows: tuple[int, ...]
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass
class _Row:
    data_row: int
    line: int
    cells: dict[str, str]
    family_id: str = ""

    def get(self, column: str) -> str:
        return self.cells.get(column, "")


@dataclass
class _Reading:
    """Problems found so far, and helpers to add them."""

    problems: list[BatchProblem] = field(default_factory=list)

    def file(self, message: str, line: int | None = None) -> None:
        self.problems.append(BatchProblem(None, None, None, message, line))

    def row(self, row: _Row, column: str | None, message: str) -> None:
        self.problems.append(BatchProblem(row.data_row, column, row.family_id or None, message, row.line))


# -- reading the text --------------------------------------------------------------------------


def _decode(data: bytes | str, reading: _Reading) -> str | None:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reading.file(f"the file is not UTF-8 text (byte {exc.start}): save it as 'CSV UTF-8'")
        return None


def _read_source(source: SourceType, reading: _Reading) -> tuple[str | None, str | None]:
    """(text, name) of ``source``: a path, an object with ``.open()`` (ObjectStoragePath), or a
    stream. The name, when there is one, must end in ``.csv`` (G1)."""
    name: str | None = None
    if isinstance(source, (str, os.PathLike)) and not hasattr(source, "open"):
        name = os.fspath(source)
        with open(name, "rb") as fh:
            data: bytes | str = fh.read(MAX_BYTES + 1)
    elif hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        name = None  # a stream's name (if any) is not the manifest's: no suffix check
    elif hasattr(source, "open"):
        name = str(source)
        with source.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    else:
        raise TypeError(
            f"read_batch_csv needs a path, an ObjectStoragePath or a stream, not {type(source)!r}"
        )
    if name is not None and not name.lower().endswith(".csv"):
        reading.file(f"the file name must end in .csv ({os.path.basename(name)!r})")
    if len(data) > MAX_BYTES:
        reading.file(
            f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB: not a batch of {MAX_CASES} cases"
        )
        return None, name
    return _decode(data, reading), name


def _records(text: str, reading: _Reading) -> list[tuple[int, list[str]]]:
    """(first line, trimmed cells) of every CSV record (RFC 4180: quoted cells may hold commas,
    quotes and line breaks)."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    records: list[tuple[int, list[str]]] = []
    previous = 0
    try:
        for cells in reader:
            records.append((previous + 1, [c.strip() for c in cells]))
            previous = reader.line_num
    except csv.Error as exc:
        reading.file(f"the file is not valid CSV: {exc}", previous + 1)
    return records


def _split(value: str) -> list[str]:
    """Several values of one cell: ``;``-separated, trimmed, empty ones dropped (G9)."""
    return [v.strip() for v in value.split(";") if v.strip()]


# -- the file's shape --------------------------------------------------------------------------


def _table(records: list[tuple[int, list[str]]], reading: _Reading) -> tuple[list[str], list[_Row]] | None:
    """The column names and the sample rows under ``[Data]``, or None after a file problem."""
    start = next((i for i, (_, cells) in enumerate(records) if cells and cells[0] == "[Data]"), None)
    if start is None:
        reading.file('there is no "[Data]" row: the table starts at a row whose first cell is [Data]')
        return None
    if start + 1 >= len(records) or not any(records[start + 1][1]):
        reading.file('there are no column names in the row after "[Data]"', records[start][0])
        return None
    header_line, header = records[start + 1]
    columns: list[str] = []
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            reading.file(f"column {name!r} appears twice", header_line)
        seen.add(name)
        columns.append(name)
    if all(e in seen for e in EXECUTE):
        reading.file(f"both {EXECUTE[0]!r} and {EXECUTE[1]!r} are present: keep one", header_line)
    missing = [" or ".join(group) for group in REQUIRED_COLUMNS if not any(c in seen for c in group)]
    if missing:
        reading.file(f"missing column(s): {'; '.join(missing)} (names are case-sensitive)", header_line)
    rows: list[_Row] = []
    blank_at: int | None = None
    for n, (line, cells) in enumerate(records[start + 2 :], start=1):
        if cells and _SECTION.match(cells[0]) and not any(cells[1:]):
            if cells[0] == "[Data]":
                reading.file('a second "[Data]" section: one file holds one table', line)
            break  # another section ends the table [cli]
        if not any(cells):
            blank_at = blank_at or n
            continue
        values = {col: (cells[i] if i < len(cells) else "") for i, col in enumerate(columns) if col}
        row = _Row(n, line, values, values.get(FAMILY_ID, ""))
        if blank_at is not None:
            reading.row(
                row,
                None,
                f"a sample row after the empty data row {blank_at}: the table ends at an empty row, "
                "so remove the empty row (Illumina's tools would silently drop this sample)",
            )
        rows.append(row)
    if not rows:
        reading.file("there are no sample rows under the column names", header_line)
        return None
    if missing:
        return None  # the rows cannot be read without those columns
    return columns, rows


# -- one family --------------------------------------------------------------------------------


def _flag(row: _Row, column: str, default: bool, reading: _Reading) -> bool:
    value = row.get(column)
    if not value:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    reading.row(row, column, f'{column} is not "true" or "false" ({value!r})')
    return default


def _number(row: _Row, column: str, reading: _Reading) -> int | None:
    value = row.get(column)
    if not value:
        return None
    if _DIGITS.match(value):
        return int(value)
    reading.row(row, column, f"{column} {value!r} is not valid: digits only")
    return None


def _execute_column(columns: Iterable[str]) -> str:
    return next((c for c in EXECUTE if c in columns), EXECUTE[0])


def _sex_column(row: _Row) -> str:
    """Sex wins over Gender when it has a value [cli]; an empty Sex leaves Gender's [assumed]."""
    return SEX if row.get(SEX) or GENDER not in row.cells else GENDER


@dataclass
class _MemberRow:
    row: _Row
    member: Member


def _member(row: _Row, role: str, resolver: SampleResolver | None, reading: _Reading) -> Member:
    """The member of one row; the row's problems that the builder cannot name are added here."""
    try:
        return _member_of(row, role, resolver, reading)
    except SampleNotResolved as unresolved:
        column = BIOSAMPLE if row.get(FILES).lower() == _EXISTING else FILES
        reading.row(row, column, f"{BIOSAMPLE} {row.get(BIOSAMPLE)!r}: {unresolved}")
        return Member(role=role, sample_name=row.get(BIOSAMPLE))


def _member_of(row: _Row, role: str, resolver: SampleResolver | None, reading: _Reading) -> Member:
    sex_column = _sex_column(row)
    sex = row.get(sex_column)
    if sex.lower() not in SEXES:
        reading.row(row, sex_column, f"{sex_column} {sex!r} is not valid: M, F, U, Male, Female or Unknown")
        sex = ""
    hpo, names = _split(row.get(PHENOTYPE_IDS)), []
    if not hpo:
        text = row.get(PHENOTYPES)
        if text.lower() != "unaffected":
            names = _split(text)
        if not names and text.lower() != "unaffected":
            reading.row(
                row, PHENOTYPES, f"one of {PHENOTYPES} or {PHENOTYPE_IDS} is required ('unaffected' for none)"
            )
    sample_type = row.get(SAMPLE_TYPE)
    if sample_type and sample_type.lower() not in ("fastq", "vcf"):
        reading.row(row, SAMPLE_TYPE, f"{SAMPLE_TYPE} {sample_type!r} is not valid: FASTQ or VCF")

    paths = _split(row.get(FILES))
    biosample = row.get(BIOSAMPLE)
    storage_text = row.get(STORAGE)
    special = next((p.lower() for p in paths if p.lower() in (_AUTO, _EXISTING)), None)
    if special and len(paths) > 1:
        reading.row(row, FILES, f"{special!r} must be alone in {FILES}")
    storage_id = 0
    if paths and special != _EXISTING:
        if not storage_text:
            reading.row(row, STORAGE, f"{STORAGE} is required when {FILES} is given")
        elif not _DIGITS.match(storage_text):
            reading.row(row, STORAGE, f"{STORAGE} {storage_text!r} is not valid: digits only")
        else:
            storage_id = int(storage_text)
    files: list[SampleFile] = []
    existing: int | str | None = None
    storage_ok = bool(storage_text) and _DIGITS.match(storage_text) is not None
    if special and not biosample:
        reading.row(row, BIOSAMPLE, f"{BIOSAMPLE} is required when {FILES} is {special}")
    if special == _EXISTING and biosample:
        if resolver is None:
            reading.row(row, FILES, f"{FILES} 'existing' needs the tenant to find sample {biosample!r}: "
                        "call read_batch_csv with resolver=")  # fmt: skip
        else:
            existing = resolver.existing_sample_id(biosample)
            if existing is None:
                reading.row(row, BIOSAMPLE, f"{BIOSAMPLE} {biosample!r} is not an existing sample")
    elif special == _AUTO:
        project = row.get(PROJECT)
        if not project:
            reading.row(row, PROJECT, f"{PROJECT} is required when {FILES} is auto")
        if resolver is None:
            reading.row(row, FILES, f"{FILES} 'auto' needs the tenant to list the BaseSpace project: "
                        "call read_batch_csv with resolver=")  # fmt: skip
        elif storage_ok and project and biosample:
            if resolver.storage_scheme(storage_id) != "basespace":
                reading.row(row, STORAGE, f"{STORAGE} {storage_id} should be a basespace storage for 'auto'")
            else:
                found = resolver.find_files(storage_id, project, biosample)
                if not found:
                    reading.row(
                        row,
                        FILES,
                        f"no sample files found for {BIOSAMPLE} {biosample!r} in project {project!r}",
                    )
                files = [SampleFile(p, storage_id, resolver.file_name(storage_id, p)) for p in found]
    else:
        for path in paths:
            name = None
            if resolver is not None and storage_ok and "." not in path.rstrip("/").rsplit("/", 1)[-1]:
                name = resolver.file_name(storage_id, path)
            files.append(SampleFile(path, storage_id, name))
    visualization = [SampleFile(p, storage_id) for p in _split(row.get(VISUALIZATION))]
    return Member(
        role=role,
        sample_name=biosample,
        sex=sex,
        hpo=tuple(hpo),
        phenotype_names=tuple(names),
        files=tuple(files),
        visualization_files=tuple(visualization),
        existing_sample_id=existing,
        date_of_birth=row.get(BIRTH) or None,
    )


def _family(
    family_id: str,
    rows: list[_Row],
    columns: list[str],
    family_id_key: str | None,
    resolver: SampleResolver | None,
    ontology: Ontology | None,
    reading: _Reading,
) -> BatchCase | None:
    from emedgene_provider.cases.phenotypes import check_case

    """The case of one family, or None when it has problems (added to ``reading``)."""
    before = len(reading.problems)
    members: list[_MemberRow] = []
    for row in rows:
        role = row.get(RELATION) or "proband"
        if role not in ROLES:
            reading.row(
                row,
                RELATION,
                f"{RELATION} {role!r} is not valid: proband, mother, father or sibling, in lowercase",
            )
            # The row's other columns are still checked, so that the manifest's author gets every
            # problem at once: as a sibling, the one role that changes nothing of the family's
            # shape (no second proband, no missing mother). The case is refused either way.
            role = "sibling"
        members.append(_MemberRow(row, _member(row, role, resolver, reading)))
    probands = [m.row for m in members if m.member.role == "proband"]
    case_row = probands[0] if probands else rows[0]
    execute = _flag(case_row, _execute_column(columns), True, reading)
    boost = _flag(case_row, BOOST, False, reading)
    opt_in = _flag(case_row, OPT_IN, True, reading)
    numbers = {column: _number(case_row, column, reading) for column in (GENE_LIST, KIT, BED)}
    labels: list[int] = []
    bad_labels = [v for v in _split(case_row.get(LABELS)) if not _DIGITS.match(v)]
    if bad_labels:
        reading.row(case_row, LABELS, f"Label Id(s) {', '.join(bad_labels)} not valid: whole numbers only")
    else:
        labels = [int(v) for v in _split(case_row.get(LABELS))]
    extra = {c: case_row.get(c) for c in columns if c and c not in KNOWN_COLUMNS and case_row.get(c)}
    if family_id_key:
        extra[family_id_key] = family_id
    proband_files = [p.lower() for p in _split(case_row.get(FILES))]
    sample_type = case_row.get(SAMPLE_TYPE)
    if _AUTO in proband_files or _EXISTING in proband_files:
        sample_type = "fastq"  # auto and existing are FASTQ [cli], also while their files are unknown
        proband_files = []
    case = Case(
        case_type=case_row.get(CASE_TYPE),
        members=tuple(m.member for m in members),
        sample_type=_case_sample_type(proband_files, sample_type),
        notes=case_row.get(NOTES) or None,
        labels=tuple(labels),
        gene_list_id=numbers[GENE_LIST],
        kit_id=numbers[KIT],
        intersect_bed_id=numbers[BED],
        preset=case_row.get(PRESET) or None,
        due_date=case_row.get(DUE) or None,
        execute_now=execute,
        opt_in=opt_in,
        boost_genes=boost,
        extra_data=extra,
    )
    checked = check_case(case, ontology)
    for problem in [*case.problems(), *checked.problems]:
        _add_builder_problem(problem, members, rows, case_row, reading)
    if len(reading.problems) > before:
        return None
    return BatchCase(
        family_id=family_id,
        data_rows=tuple(r.data_row for r in rows),
        payload=checked.case.to_json(),
        warnings=(*case.warnings, *checked.warnings),
    )


def _case_sample_type(proband_files: list[str], sample_type: str) -> str | None:
    """Sample Type counts only when the proband has no files [cli]. A value that is not FASTQ or
    VCF was reported by :func:`_member`: a stand-in keeps the builder from reporting it again."""
    if proband_files or not sample_type:
        return None
    return sample_type if sample_type.lower() in ("fastq", "vcf") else "fastq"


def _add_builder_problem(
    problem: Problem, members: list[_MemberRow], rows: list[_Row], case_row: _Row, reading: _Reading
) -> None:
    if problem.family:
        targets = rows
    elif problem.members:
        targets = [members[i].row for i in problem.members]
    else:
        targets = [case_row]
    for row in targets:
        column = _sex_column(row) if problem.field == "sex" else _COLUMN_OF_FIELD.get(problem.field)
        reading.row(row, column, problem.message)


# -- the whole file ----------------------------------------------------------------------------


def read_batch_csv(
    source: SourceType,
    *,
    family_id_key: str | None = FAMILY_ID_KEY,
    resolver: SampleResolver | None = None,
    ontology: Ontology | str | None = "default",
) -> list[BatchCase]:
    """One :class:`BatchCase` per Family Id of a batch CSV, in the order the families first appear.

    :param source: a path (``str`` or ``os.PathLike``), an object with ``.open()`` such as
        Airflow's ``ObjectStoragePath``, or a text or binary stream. UTF-8, with or without BOM.
    :param family_id_key: the ``test_data.extra_data`` key that carries each case's Family Id;
        None sends no Family Id.
    :param resolver: asks the tenant what only it knows (``existing`` and ``auto`` rows, BaseSpace
        paths without a file name); without it such rows are problems.
    :param ontology: the HPO release phenotypes are checked against
        (:mod:`emedgene_provider.cases.phenotypes`: obsolete ids replaced, names mapped to ids,
        unknown ones problems); by default the lab's ``EMEDGENE_HPO_OBO`` or the ``[hpo]`` extra's
        bundled release, if either is there; None checks their format only.
    :raises BatchCsvError: with every problem found, when there is any.

    A family whose proband row carries a ``Case Id`` (the vendor CLI's results file) was created
    already and is skipped, so a results file can be read again safely [cli].
    """
    reading = _Reading()
    text, name = _read_source(source, reading)
    table = _table(_records(text, reading), reading) if text is not None else None
    if table is None:
        raise BatchCsvError(reading.problems, name)
    columns, rows = table
    for column in (family_id_key, IDEMPOTENCY_FIELD):
        if column and column in columns and column not in KNOWN_COLUMNS:
            reading.file(f"column {column!r} would overwrite the key this provider sets in extra_data")

    families: dict[str, list[_Row]] = {}
    for row in rows:
        if not row.family_id:
            reading.row(row, FAMILY_ID, f"{FAMILY_ID} is required")
            continue
        families.setdefault(row.family_id, []).append(row)
    skipped = {
        fid
        for fid, members in families.items()
        if any(r.get(CASE_ID) for r in members if (r.get(RELATION) or "proband") == "proband")
    }
    todo = {fid: members for fid, members in families.items() if fid not in skipped}
    if not families:
        reading.file("the file has 0 cases (no Family Id)")
    elif len(todo) > MAX_CASES:
        reading.file(f"the file has {len(todo)} cases; at most {MAX_CASES} are allowed")

    from emedgene_provider.cases.phenotypes import resolve_ontology

    hpo = resolve_ontology(ontology) if todo else None
    cases = [
        _family(fid, members, columns, family_id_key, resolver, hpo, reading) for fid, members in todo.items()
    ]
    if reading.problems:
        reading.problems.sort(key=lambda p: (p.data_row is not None, p.data_row or 0))
        raise BatchCsvError(reading.problems, name)
    return [c for c in cases if c is not None]
