"""The simulated tenant's storage and samples: what ``auto`` and ``existing`` batch rows resolve to.

- ``GET /api/storage/{id}/fs/list?path=&from=&size=`` browses a BaseSpace storage the way the
  vendor's batch CLI walks it [py][cli], one folder per call, ``{resources: [{name, alias}],
  has_more}``: ``name`` is the id (the next path segment), ``alias`` what a lab calls it [assumed]:
  ``/projects/`` (projects), ``/projects/<p>/biosamples/``, ``/projects/<p>/biosamples/<b>/datasets/``,
  ``/projects/<p>/biosamples/<b>/datasets/<d>/sequenced files/`` (the files). At most
  :data:`PAGE_CAP` resources per page, whatever ``size`` asks, so a client must page.
- ``GET /api/sample/?query=&sampleType=fastq`` finds the platform's FASTQ samples whose name
  *contains* the query, case ignored [assumed: a search, not an exact match], as
  ``{total, hits: [{id, note}]}`` with the name in ``note`` [py]: a client must pick the exact name.
- The tenant refuses an obsolete HPO term as it refuses any it does not know: ``Unmatched
  phenotype(s) found: phenotypes/EMG_PHENOTYPE_<digits>`` [py] (that it treats obsolete terms so
  is [assumed]); :data:`RETIRED_PHENOTYPES` are the ones it knows to be obsolete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Obsolete HPO terms (HPO release 2025-11-24) the simulated tenant answers "Unmatched" for.
RETIRED_PHENOTYPES = frozenset(f"phenotypes/EMG_PHENOTYPE_{n}" for n in ("0000057", "0001425", "0011398"))
PAGE_CAP = 25
#: The BaseSpace storage of the simulator's storage list (``GET /api/storage``).
BASESPACE_STORAGE_ID = 3


@dataclass(frozen=True)
class StoredSample:
    """One dataset of a biosample in a BaseSpace project; the same project and biosample twice
    are two datasets (a re-run)."""

    project: str
    biosample: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class PlatformSample:
    """A FASTQ sample already on the platform, which an ``existing`` row reuses."""

    name: str
    id: int


#: What the simulator's BaseSpace holds by default (the example batch's ``auto`` row finds LAB-3050).
def _lanes(sample: str, lane: int, *extra: str) -> tuple[str, ...]:
    return (f"{sample}_S1_L00{lane}_R1_001.fastq.gz", f"{sample}_S1_L00{lane}_R2_001.fastq.gz", *extra)


DEFAULT_BASESPACE: tuple[StoredSample, ...] = (
    StoredSample("Run-2026-11-28", "LAB-3050", _lanes("LAB-3050", 1)),
    StoredSample("Run-2026-11-28", "LAB-3051", _lanes("LAB-3051", 1)),
    StoredSample("Run-2026-11-28", "LAB-3050", _lanes("LAB-3050", 2, "LAB-3050.metrics.json")),
    StoredSample("Run-2026-11-29", "LAB-3050-B", _lanes("LAB-3050-B", 1)),
    # enough biosamples in one project that its folder takes two pages
    *(StoredSample("Run-2026-11-28", f"LAB-31{n:02d}", _lanes(f"LAB-31{n:02d}", 1)) for n in range(30)),
)
DEFAULT_PLATFORM_SAMPLES: tuple[PlatformSample, ...] = (
    PlatformSample("LAB-0990", 5001),
    PlatformSample("LAB-0990-RERUN", 5002),  # a search for LAB-0990 finds both
    PlatformSample("LAB-0991", 5003),
)


def storage_from_json(data: Any) -> tuple[tuple[StoredSample, ...], tuple[PlatformSample, ...]]:
    """``{"basespace": [{"project", "biosample", "files": [...]}], "platform_samples": [{"name",
    "id"}]}`` (either key may be left out: the defaults stay) as the simulator's two options.

    :raises ValueError: naming the entry that is not of that shape.
    """
    if not isinstance(data, dict) or set(data) - {"basespace", "platform_samples"}:
        raise ValueError('a storage file is {"basespace": [...], "platform_samples": [...]}')
    basespace, samples = DEFAULT_BASESPACE, DEFAULT_PLATFORM_SAMPLES
    try:
        if "basespace" in data:
            basespace = tuple(
                StoredSample(str(e["project"]), str(e["biosample"]), tuple(map(str, e["files"])))
                for e in data["basespace"]
            )
        if "platform_samples" in data:
            samples = tuple(PlatformSample(str(e["name"]), int(e["id"])) for e in data["platform_samples"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            "storage file: each basespace entry needs project, biosample and files (a list), each "
            f"platform sample a name and an integer id ({exc!r})"
        ) from None
    return basespace, samples


class Storage:
    """The folders of the BaseSpace storage and the platform's samples, built once."""

    def __init__(self, basespace: tuple[StoredSample, ...], samples: tuple[PlatformSample, ...]) -> None:
        self.samples = samples
        self.folders: dict[str, list[dict[str, str]]] = {"/projects": []}
        ids: dict[str, int] = {}

        def enter(folder: str, alias: str, base: int) -> str:
            key = f"{folder}/{alias}"
            if key not in ids:
                ids[key] = base + len(ids)
                self.folders.setdefault(folder, []).append({"name": str(ids[key]), "alias": alias})
            return f"{folder}/{ids[key]}"

        for n, stored in enumerate(basespace):
            project = enter("/projects", stored.project, 1000)
            biosample = enter(f"{project}/biosamples", stored.biosample, 2000)
            dataset = f"{biosample}/datasets/{9000 + n}"
            self.folders.setdefault(f"{biosample}/datasets", []).append(
                {"name": str(9000 + n), "alias": f"{stored.biosample}-{n}"}
            )
            files = self.folders.setdefault(f"{dataset}/sequenced files", [])
            files.extend({"name": str(40000 + 10 * n + i), "alias": f} for i, f in enumerate(stored.files))

    def listing(self, storage_id: int, path: str, offset: int, size: int) -> dict[str, Any] | None:
        """One page of a folder, or None when the storage or the folder does not exist."""
        folder = self.folders.get("/" + path.strip("/")) if storage_id == BASESPACE_STORAGE_ID else None
        if folder is None:
            return None
        page = folder[offset : offset + max(1, min(size, PAGE_CAP))]
        return {"resources": page, "has_more": offset + len(page) < len(folder)}

    def find(self, query: str) -> dict[str, Any]:
        hits = [{"id": s.id, "note": s.name} for s in self.samples if query.casefold() in s.name.casefold()]
        return {"total": len(hits), "hits": hits}


def unmatched_phenotypes(case: Any) -> str | None:
    """The tenant's refusal of a case naming retired phenotypes, or None."""
    patients = (case.get("test_data") or {}).get("patients") if isinstance(case, dict) else None
    if not isinstance(patients, dict):
        return None
    other = patients.get("other")
    members = [*(patients.get(r) for r in ("proband", "mother", "father"))]
    members.extend(other if isinstance(other, list) else [])
    found = [
        entry["id"]
        for member in members
        if isinstance(member, dict) and isinstance(member.get("phenotypes"), list)
        for entry in member["phenotypes"]
        if isinstance(entry, dict) and entry.get("id") in RETIRED_PHENOTYPES
    ]
    return f"Unmatched phenotype(s) found: {', '.join(dict.fromkeys(found))}" if found else None
