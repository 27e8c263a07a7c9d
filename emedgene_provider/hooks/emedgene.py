"""EmedgeneHook: an Airflow connection in, an :class:`~emedgene_provider.client.sync.EmedgeneClient` out.

Everything about talking to Emedgene (auth, token renewal, retries, error mapping) lives in the
Airflow-free client; the hook reads the connection, registers its secrets with Airflow's masker
before anything can fail, and hands out the client (:meth:`EmedgeneHook.get_conn`, the full API). The
hook's own methods are the calls the operators and sensors make.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from emedgene_provider.client.config import ClientConfig, config_from_conn, load_ca_bundle
from emedgene_provider.client.endpoints import case_path_segment
from emedgene_provider.client.process import PROCESS
from emedgene_provider.connection_fields import form_widgets, hook_field_behaviour

if TYPE_CHECKING:  # the HTTP client (requests, tenacity) is imported when a call is made, not when a
    # DAG file that uses the operators is parsed
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from emedgene_provider.client.aio import AsyncEmedgeneClient
    from emedgene_provider.client.claims import KeyClaims
    from emedgene_provider.client.create import Journal
    from emedgene_provider.client.records import OpenOutput
    from emedgene_provider.client.sync import CreateResult, EmedgeneClient


#: Seconds one read of a connection serves the triggerer's other waits on it (see
#: :meth:`EmedgeneHook.aget_config`); a changed password reaches new waits within this.
CONNECTION_READ_SECONDS = 30.0


async def _imported(name: str) -> ModuleType:
    """The module ``name``, imported in a thread the first time: the async client and Airflow's
    async connection read are imported when a wait starts (not when a DAG is parsed), and an
    import on the triggerer's event loop stalls every other trigger (aiohttp: ~80 modules,
    ~0.17 s)."""
    module = sys.modules.get(name)
    return module if module is not None else await asyncio.to_thread(importlib.import_module, name)


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


class EmedgeneHook(BaseHook):
    """Talks to one Emedgene tenant through an Airflow connection of type ``emedgene``.

    :param emedgene_conn_id: the connection: host is the tenant (``https://lab.emedgene.com``,
        ``lab.emg.illumina.com``, or ``http://127.0.0.1:PORT`` for the simulator); login/password
        for password auth, or the extra ``api_key`` for Illumina API keys. Extras are listed in the
        README.
    """

    conn_name_attr = "emedgene_conn_id"
    default_conn_name = "emedgene_default"
    conn_type = "emedgene"
    hook_name = "Emedgene"

    def __init__(self, emedgene_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emedgene_conn_id = emedgene_conn_id

    # -- connection form (Airflow 2.11-3.1; 3.2+ reads the provider info) ---------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form, from the extras' declaration (as the provider info)."""
        return form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return hook_field_behaviour()

    # -- the client -----------------------------------------------------------------------------

    @cached_property
    def config(self) -> ClientConfig:
        """The connection, read once, its password and API key masked before it is validated."""
        return config_from_conn(self.get_connection(self.emedgene_conn_id), on_secret=mask_secret)

    @cached_property
    def client(self) -> EmedgeneClient:
        """One client, hence one ``requests.Session`` (keep-alive), per hook."""
        from emedgene_provider.client.sync import EmedgeneClient

        return EmedgeneClient(self.config)

    def get_conn(self) -> EmedgeneClient:
        """The full client API (:class:`~emedgene_provider.client.sync.EmedgeneClient`): every call
        the hook has no method for (``create_case``, ``iter_cases``, ``list_storage_providers``,
        ``cases_with_idempotency_key``, ...) is ``hook.get_conn().<call>``. The hook's own methods
        are the ones the operators and sensors make."""
        return self.client

    # -- the async client (triggers) ------------------------------------------------------------

    async def aget_config(self) -> ClientConfig:
        """The connection, read through Airflow's async path (the triggerer may not touch the
        metadata DB synchronously), its password and API key masked before it is validated.

        One read serves every wait of the event loop on this connection id for
        :data:`CONNECTION_READ_SECONDS`: 5,000 waits starting together (a batch, a triggerer
        restart) each sent a read to Airflow's thread pool and the API server, ~1 ms apiece,
        and the last wait polled seconds late (``bench/trigger_scale.py``). A failed read is
        shared by the waits that awaited it, and not kept: the next wait reads again.
        """
        loop = asyncio.get_running_loop()
        reads = PROCESS.connection_reads.current()
        read = reads.get(self.emedgene_conn_id)
        now = loop.time()
        if read is None or read[0] <= now or _failed(read[1]):
            read = (now + CONNECTION_READ_SECONDS, loop.create_task(self._read()))
            reads[self.emedgene_conn_id] = read
        return await asyncio.shield(read[1])

    async def _read(self) -> ClientConfig:
        compat = await _imported("airflow.providers.common.compat.connection")
        conn = await compat.get_async_connection(self.emedgene_conn_id)
        config = config_from_conn(conn, on_secret=mask_secret, load_ca=False)
        if isinstance(config.verify, str):  # a CA bundle to parse (once per file): not on the loop
            await asyncio.to_thread(load_ca_bundle, config.verify)
        return config

    @asynccontextmanager
    async def async_client(self) -> AsyncIterator[AsyncEmedgeneClient]:
        """``async with hook.async_client() as client``: the event loop's shared client for this
        connection (:func:`~emedgene_provider.client.aio.shared_client`): every wait of a triggerer
        on one tenant shares one connection pool and one token, instead of one each.

        The first call of a process imports the async client (aiohttp: ~80 modules, ~0.17 s) in a
        thread (:func:`_imported`): on the event loop it stalled every other trigger, and Airflow's
        triggerer warned that its async thread was blocked "likely caused by a badly-written
        trigger"."""
        aio = await _imported("emedgene_provider.client.aio")
        config = await self.aget_config()
        async with aio.shared_client(config) as client:
            yield client

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: log in and read one page of cases."""
        try:
            return self.client.test_connection()
        except Exception as exc:  # a bad connection must answer False, not crash the UI
            return False, str(exc)

    def create_case_once(
        self,
        case: dict[str, Any],
        key: str,
        *,
        since: float | None = None,
        journal: Journal | None = None,
        wait: bool = True,
        failures: Sequence[str] | None = None,
        retry: bool = False,
        durable: bool = False,
        claims: KeyClaims | None = None,
        owner: str | None = None,
    ) -> CreateResult:
        """Create ``case`` stamped with the idempotency ``key``: one key, one case on the tenant.

        After an unclear create no second POST goes out until the key has stayed absent for the
        connection's ``reconcile_window``, and a case that appears meanwhile is adopted; a second
        call with the same key (this thread or another; with ``claims``, another task) adopts the
        first one's case. ``journal`` keeps what is known about the POSTs across task tries;
        ``wait=False`` raises :class:`~emedgene_provider.client.errors.EmedgeneCreatePendingError`
        instead of waiting out a window. The rules and the other arguments:
        :meth:`emedgene_provider.client.sync.EmedgeneClient.create_case_once`. Returns
        ``(case name, created by this call)``."""
        return self.client.create_case_once(
            case,
            key,
            since=since,
            journal=journal,
            wait=wait,
            failures=failures,
            retry=retry,
            durable=durable,
            claims=claims,
            owner=owner,
        )

    def validate_case(self, case: dict[str, Any]) -> None:
        """Server-side validation (``?dry_run=true``); raises with the server's message."""
        self.client.validate_case(case)

    def get_case(self, case_name: str, test_fields: list[str] | None = None) -> dict[str, Any]:
        """The case's JSON, whole or only ``test_fields``."""
        return self.client.get_case(case_name, test_fields)

    def get_case_status(self, case_name: str) -> str:
        """The case's status string, as the server spells it."""
        return self.client.get_case_status(case_name)

    def get_candidates(self, case_name: str) -> list[dict[str, Any]]:
        """Candidate variants of a delivered case, in memory (for XCom; see :meth:`get_candidates_to`)."""
        return self.client.get_candidates(case_name)

    def export_case(self, case_name: str) -> list[dict[str, Any]]:
        """The case's detailed export (``hits`` or ``variants`` in the answer), in memory (for XCom;
        a large export belongs in :meth:`export_case_to`)."""
        return self.client.export_case(case_name)

    def get_candidates_to(self, case_name: str, path: str | ObjectStoragePath) -> int:
        """Stream a delivered case's candidates into ``path`` (an ObjectStoragePath or its URI) as a
        JSON array; returns how many. See :meth:`export_case_to` for how the file is written."""
        case_path_segment(case_name)  # a bad name is refused before anything is made in the store
        return stream_to_path(path, lambda open_output: self.client.get_candidates_to(case_name, open_output))

    def export_case_to(self, case_name: str, path: str | ObjectStoragePath) -> int:
        """Stream the case's export into ``path`` (an ObjectStoragePath or its URI: ``file://``,
        ``s3://``, ...) as a JSON array of its variants, from the socket to the store, never the
        whole export in memory; returns how many variants.

        The file holds the array exactly as the server sent it (its key order and spacing), so
        ``json.load`` of it equals :meth:`export_case`'s list. It is complete or absent: a local file
        is written as ``<name>.partial`` beside it and renamed when complete; an object store shows
        an object only once its upload completes. On failure the partial file or object is removed.
        An error answer (404, 5xx after retries, ...) raises as :meth:`export_case` does, and so does
        an answer whose ``total`` claims more variants than it holds (a short result is never taken
        for the whole); a bad case name raises before anything is made in the store."""
        case_path_segment(case_name)
        return stream_to_path(path, lambda open_output: self.client.export_case_to(case_name, open_output))


#: Suffix of a local file being written, renamed away once complete.
PARTIAL_SUFFIX = ".partial"


def stream_to_path(path: str | ObjectStoragePath, produce: Callable[[OpenOutput], int]) -> int:
    """Run ``produce(open_output)`` with an ``open_output`` that opens ``path`` (its parent created)
    for binary writing, so that the file is complete or absent (:meth:`EmedgeneHook.export_case_to`).
    Returns what ``produce`` returns."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath
    from fsspec.implementations.local import LocalFileSystem

    final = path if isinstance(path, ObjectStoragePath) else ObjectStoragePath(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # A local rename is atomic and cheap; an object store's is a copy, and needless there: a new
    # object is not visible until its upload completes.
    local = isinstance(final.fs, LocalFileSystem)
    staged = final.with_name(final.name + PARTIAL_SUFFIX) if local else final
    opened = False

    def open_output() -> Any:
        nonlocal opened
        opened = True
        return staged.open("wb")  # truncates: a retried attempt starts the file over

    try:
        count = produce(open_output)
        if local:
            staged.replace(final)
    except BaseException:
        if opened:  # never remove what a failure before any writing left in place
            with contextlib.suppress(Exception):
                staged.unlink(missing_ok=True)
        raise
    return count
