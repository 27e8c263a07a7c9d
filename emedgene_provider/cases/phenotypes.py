"""Every phenotype of a case checked against the HPO (:mod:`emedgene_provider.cases.hpo`).

Two callers, two rules, for one reason: a case JSON must be the same every time a create task
runs (its idempotency key and the server's duplicate check rest on it).

- :func:`check_case` is for a :class:`~emedgene_provider.cases.builder.Case` (the builder, the
  batch CSV reader): the provider writes that case JSON, once, so it **replaces** an obsolete id
  by the HPO's replacement (and a secondary id by its term) and **maps** phenotype names to ids,
  each with a warning that names both; unknown ids, obsolete ids without a replacement, and
  unknown or ambiguous names are problems.
- :func:`case_json_problems` is for a case JSON a lab wrote (the create operator's local check):
  it is sent as written, so an unknown or obsolete id is a problem that names the replacement to
  write, and an unknown name is a problem; a name several terms share is left to the server.

Without an ontology (no ``[hpo]`` extra, no ``EMEDGENE_HPO_OBO``) both check nothing more than
the format, and say so through :func:`emedgene_provider.cases.hpo.not_checked_note`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from emedgene_provider.cases.builder import Case, Problem
from emedgene_provider.cases.hpo import HPO_ID, Ontology, default_ontology, not_checked_note
from emedgene_provider.cases.validation import members_of

__all__ = [
    "DEFAULT",
    "CheckedCase",
    "case_json_problems",
    "check_case",
    "ontology_and_note",
    "resolve_ontology",
]

#: "The ontology :func:`~emedgene_provider.cases.hpo.default_ontology` finds" (None means none).
DEFAULT: Any = "default"
_EMEDGENE_HPO = re.compile(r"^phenotypes/EMG_PHENOTYPE_(\d{7})$")


def resolve_ontology(ontology: Ontology | str | None = DEFAULT) -> Ontology | None:
    return default_ontology() if ontology == DEFAULT else ontology  # type: ignore[return-value]


def _hpo_id(term: str) -> str | None:
    """``HP:0001250`` from ``HP:0001250`` or ``phenotypes/EMG_PHENOTYPE_0001250``; None otherwise
    (a malformed id is the format check's to report)."""
    text = term.strip()
    if HPO_ID.match(text):
        return text
    match = _EMEDGENE_HPO.match(text)
    return f"HP:{match.group(1)}" if match else None


@dataclass(frozen=True)
class CheckedCase:
    """:func:`check_case`'s answer: the case to send, and what checking it found."""

    case: Case
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The ontology used; None when none was at hand (format check only).
    ontology: Ontology | None = None


def check_case(case: Case, ontology: Ontology | str | None = DEFAULT) -> CheckedCase:
    """``case`` with its phenotypes as HPO ids of ``ontology``'s release: obsolete and secondary ids
    replaced, names mapped, duplicates dropped (order kept). A member with a problem keeps its
    phenotypes as written; the case is not to be sent while :attr:`CheckedCase.problems` holds any.
    """
    found = resolve_ontology(ontology)
    if found is None:
        return CheckedCase(case)
    problems: list[Problem] = []
    warnings: list[str] = []
    members = list(case.members)
    for i, member in enumerate(case.members):
        who = f"{member.role} {member.sample_name}".strip()
        ids: list[str] = []
        bad = False
        verdicts = [("hpo", found.check_id(hpo_id)) for t in member.hpo if (hpo_id := _hpo_id(t))]
        verdicts += [("phenotype_names", found.check_name(n)) for n in member.phenotype_names if n.strip()]
        for column, verdict in verdicts:
            if verdict.problem:
                problems.append(Problem(column, verdict.problem, (i,)))
                bad = True
            elif verdict.id:
                if verdict.change:
                    warnings.append(f"{who}: {verdict.change}: sent as {verdict.id}")
                if verdict.id not in ids:
                    ids.append(verdict.id)
        malformed = [t for t in member.hpo if _hpo_id(t) is None]
        if not bad and not malformed:
            members[i] = replace(member, hpo=tuple(ids), phenotype_names=())
    return CheckedCase(replace(case, members=tuple(members)), problems, warnings, found)


def case_json_problems(case: Any, ontology: Ontology | str | None = DEFAULT) -> list[str]:
    """The phenotypes of a case JSON that ``ontology``'s release refuses, each named by where it
    is (``test_data.patients.proband.phenotypes[0]``); empty without an ontology."""
    found = resolve_ontology(ontology)
    td = case.get("test_data") if isinstance(case, dict) else None
    patients = td.get("patients") if isinstance(td, dict) else None
    if found is None or not isinstance(patients, dict):
        return []
    problems: list[str] = []
    for where, member in members_of(patients):
        entries = member.get("phenotypes") if isinstance(member, dict) else None
        for j, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            at = f"test_data.{where}.phenotypes[{j}]"
            hpo_id = _hpo_id(entry["id"]) if isinstance(entry.get("id"), str) else None
            if hpo_id is not None:
                verdict = found.check_id(hpo_id)
                if verdict.problem:
                    problems.append(f"{at}: {verdict.problem}")
                elif verdict.id != hpo_id:
                    replacement = "phenotypes/EMG_PHENOTYPE_" + str(verdict.id)[3:]
                    problems.append(f"{at}: {verdict.change}: write {replacement}")
            elif isinstance(entry.get("name"), str) and entry["name"].strip():
                verdict = found.check_name(entry["name"])
                if verdict.id is None and not verdict.candidates:  # a shared name: the server's call
                    problems.append(f"{at}: {verdict.problem}")
    return problems


def ontology_and_note() -> tuple[Ontology | None, str]:
    """The default ontology and the line an operator logs about it (the release, or that there is
    none and only the format is checked).

    :raises emedgene_provider.cases.hpo.HpoFileError: ``EMEDGENE_HPO_OBO`` names a file that
        cannot serve.
    """
    found = default_ontology()
    return found, (f"phenotypes are checked against {found.describe()}" if found else not_checked_note())
