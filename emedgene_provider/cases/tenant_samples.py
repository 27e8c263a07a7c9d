"""What only the tenant knows about a batch's samples, asked of it: the batch CSV reader's
:class:`~emedgene_provider.cases.batch_csv.SampleResolver` over the Emedgene API.

- ``existing``: ``GET /api/sample/?query=<BioSample Name>&sampleType=fastq`` [py] is a search
  [assumed], so only a hit whose ``note`` (the sample's name [py]) is exactly the BioSample Name
  counts; two such samples are a problem, never a guess.
- ``auto``: the BaseSpace storage is walked as the vendor's batch CLI walks it [cli], one
  ``GET /api/storage/{id}/fs/list`` folder at a time, each paged (``from``, ``size``,
  ``has_more`` [py]): the project whose alias is the Default Project, its biosample whose alias is
  the BioSample Name, and the FASTQ files (``.fastq.gz``, ``.fq.gz``) of every dataset of that
  biosample [assumed: a re-run's datasets belong to the same sample]. Two projects or biosamples
  of one name are a problem.
- A BaseSpace file path ends in the file's id, not its name: the name is the ``alias`` of its
  entry in the parent folder.

Every answer is kept for the resolver's life (one batch), so a family of three in one project
lists the project once. No Airflow import: a LIMS script resolves a manifest alike, given
``EmedgeneClient(config).call``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emedgene_provider.cases.batch_csv import SampleNotResolved
from emedgene_provider.client import endpoints
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneNotFoundError
from emedgene_provider.client.responses import field_of

__all__ = ["SampleNotResolved", "TenantSamples"]

FASTQ_FILES = (".fastq.gz", ".fq.gz")


class TenantSamples:
    """:class:`~emedgene_provider.cases.batch_csv.SampleResolver` over the tenant.

    :param call: sends one :class:`~emedgene_provider.client.endpoints.ApiCall` and returns the
        decoded answer (``EmedgeneClient.call``; ``hook.get_conn().call`` in a task).
    :param page_size: resources asked per folder page.
    :param max_pages: pages read of one folder before giving up (a server whose ``has_more``
        never ends).
    """

    def __init__(self, call: Callable[[ApiCall], Any], *, page_size: int = 100, max_pages: int = 200) -> None:
        self._call = call
        self.page_size = page_size
        self.max_pages = max_pages
        self._folders: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._schemes: dict[int, str | None] = {}
        #: One line per row resolved, for the task's log (what was found where).
        self.resolved: list[str] = []

    # -- existing -------------------------------------------------------------------------------

    def existing_sample_id(self, name: str) -> int | str | None:
        call = endpoints.find_samples(name)
        hits = field_of(call, self._call(call), "hits")
        exact = [h for h in hits if isinstance(h, dict) and str(h.get("note", "")).strip() == name]
        if len(exact) > 1:
            ids = ", ".join(str(h.get("id")) for h in exact)
            raise SampleNotResolved(f"{len(exact)} platform samples are named {name!r} (ids {ids})")
        if not exact or exact[0].get("id") in (None, ""):
            return None
        self.resolved.append(f"existing sample {name!r} is platform sample {exact[0]['id']}")
        found: int | str = exact[0]["id"]
        return found

    # -- storage --------------------------------------------------------------------------------

    def storage_scheme(self, storage_id: int) -> str | None:
        if storage_id not in self._schemes:
            call = endpoints.get_storage_provider(storage_id)
            try:
                body = self._call(call)
            except EmedgeneNotFoundError:
                body = None
            scheme = body.get("scheme") if isinstance(body, dict) else None
            self._schemes[storage_id] = str(scheme).lower() if scheme else None
        return self._schemes[storage_id]

    def folder(self, storage_id: int, path: str) -> list[dict[str, Any]]:
        """Every entry of a folder (``{name, alias}``), all pages; empty when it does not exist."""
        key = (storage_id, path)
        if key not in self._folders:
            entries: list[dict[str, Any]] = []
            for page in range(self.max_pages):
                call = endpoints.list_storage_folder(storage_id, path, len(entries), self.page_size)
                try:
                    body = self._call(call)
                except EmedgeneNotFoundError:
                    break
                resources = field_of(call, body, "resources")
                entries.extend(
                    r for r in resources if isinstance(r, dict) and r.get("name") not in (None, "")
                )
                if not body.get("has_more") or not resources:
                    break
                if page == self.max_pages - 1:
                    raise SampleNotResolved(
                        f"storage {storage_id} folder {path!r} did not end after {self.max_pages} pages"
                    )
            self._folders[key] = entries
        return self._folders[key]

    def _one(self, storage_id: int, path: str, alias: str, what: str) -> str | None:
        """The entry of ``path`` whose alias is ``alias``: its name, None when there is none."""
        found = [e for e in self.folder(storage_id, path) if str(e.get("alias", "")).strip() == alias]
        if len(found) > 1:
            raise SampleNotResolved(
                f"storage {storage_id} has {len(found)} {what}s named {alias!r} "
                f"(ids {', '.join(str(e['name']) for e in found)})"
            )
        return str(found[0]["name"]) if found else None

    def find_files(self, storage_id: int, project: str, biosample: str) -> list[str]:
        project_id = self._one(storage_id, "/projects/", project, "project")
        if project_id is None:
            return []
        biosamples = f"/projects/{project_id}/biosamples/"
        biosample_id = self._one(storage_id, biosamples, biosample, "biosample")
        if biosample_id is None:
            return []
        datasets = f"{biosamples}{biosample_id}/datasets/"
        paths: list[str] = []
        for dataset in self.folder(storage_id, datasets):
            files = f"{datasets}{dataset['name']}/sequenced files/"
            for entry in self.folder(storage_id, files):
                if str(entry.get("alias", "")).lower().endswith(FASTQ_FILES):
                    paths.append(f"{files}{entry['name']}")
        if paths:
            self.resolved.append(
                f"auto: {len(paths)} FASTQ file(s) of biosample {biosample!r} in project {project!r} "
                f"(storage {storage_id})"
            )
        return paths

    def file_name(self, storage_id: int, path: str) -> str | None:
        parent, _, last = path.rstrip("/").rpartition("/")
        for entry in self.folder(storage_id, parent + "/"):
            if str(entry.get("name")) == last:
                alias = entry.get("alias")
                return str(alias) if alias else None
        return None
