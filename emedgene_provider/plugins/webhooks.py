"""The status webhook receiver, served by the Airflow 3 api-server: ``POST /emedgene/webhooks/{conn_id}``.

Airflow gives a plugin's app no authentication of its own, so the signature is the only door:
the body must carry ``X-Emedgene-Signature: sha256=<HMAC-SHA256 of the raw body>`` keyed with the
connection's ``webhook_secret`` extra. A missing or wrong signature, an unknown connection, a
connection of another type or one without a secret are all answered ``401`` with the same body,
and nothing is done. A body over 64 KiB: ``413``, unread past the limit. More than
:data:`FLOOD_RATE` a second on one connection id, or :data:`TOTAL_RATE` on all: ``429``. What
passes is a hint, never a truth: after the ``202`` is sent, the case names found in it go on
the hint board (:mod:`emedgene_provider.hints`), where every wait on those cases sees them and
reads the tenant itself; then the receiver reads each case from the tenant and records an asset
event for each change the tenant confirms (:func:`emedgene_provider.case_events.announce`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from emedgene_provider.case_events import announce
from emedgene_provider.client.ratelimit import RateLimiter
from emedgene_provider.client.webhooks import (
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    case_names_in,
    signature_matches,
)
from emedgene_provider.hints import record_hints

log = logging.getLogger(__name__)

#: Webhooks a second one connection id may send before ``429`` (a burst of twice that first).
FLOOD_RATE = 20.0
#: Webhooks a second on all connection ids together before ``429``.
TOTAL_RATE = 200.0
#: Connection ids whose flood limiters are kept; past this many they start again (the total
#: rate bounds how fast that can happen: 1,000 ids take 5 s).
MAX_LIMITERS = 1000

_REFUSED = {"detail": "unauthorized"}


class _Floodgates:
    """One request schedule per connection id, so a flood on one does not silence another, and
    one for them all (:data:`TOTAL_RATE`): a flood spread over made-up connection ids can neither
    hammer the connection look-ups nor, by filling the table, reset a real connection's gate."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._total = RateLimiter(TOTAL_RATE, burst=2 * TOTAL_RATE)
        self._lock = threading.Lock()

    def admit(self, conn_id: str) -> bool:
        with self._lock:
            if len(self._limiters) >= MAX_LIMITERS and conn_id not in self._limiters:
                self._limiters.clear()
            limiter = self._limiters.setdefault(conn_id, RateLimiter(FLOOD_RATE, burst=2 * FLOOD_RATE))
        if self._total.delay() > 0 or limiter.delay() > 0:
            return False
        self._total.reserve()
        limiter.reserve()
        return True


def _secret_of(conn_id: str) -> str | None:
    """The connection's webhook secret (masked from here on), or None for any reason at all."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection
    from airflow.sdk.log import mask_secret

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    if conn.conn_type != "emedgene":
        return None
    secret = conn.extra_dejson.get("webhook_secret")
    if not isinstance(secret, str) or not secret:
        return None
    mask_secret(secret)
    return secret


async def _body(request: Request) -> bytes | None:
    """The raw body, or None once it passes :data:`MAX_BODY_BYTES` (read no further)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    secret_of: Any = _secret_of, record: Any = record_hints, clock: Any = time.time, confirm: Any = announce
) -> FastAPI:
    """The receiver app; the look-ups are parameters so tests can run it without a metadata DB."""
    app = FastAPI(title="Emedgene webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    gates = _Floodgates()
    confirming = _KeyedLocks()

    @app.post("/webhooks/{conn_id}", status_code=202)
    async def receive(conn_id: str, request: Request, background: BackgroundTasks) -> JSONResponse:
        if not gates.admit(conn_id):
            return JSONResponse({"detail": "too many webhooks"}, status_code=429)
        body = await _body(request)
        if body is None:
            return JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        secret = await run_in_threadpool(secret_of, conn_id)
        if secret is None or not signature_matches(secret, body, request.headers.get(SIGNATURE_HEADER)):
            return JSONResponse(_REFUSED, status_code=401)
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"detail": "the body is not JSON"}, status_code=400)
        names = case_names_in(payload)
        if names:
            background.add_task(_record, record, conn_id, names, clock())
            background.add_task(_confirm, confirm, confirming, conn_id, names)
        return JSONResponse({"cases": len(names)}, status_code=202)

    return app


def _record(record: Any, conn_id: str, names: list[str], now: float) -> None:
    try:
        record(conn_id, names, now)
    except Exception:  # the sender has its 202; the waits' slow poll still ends them
        log.exception("Emedgene webhook on %s: could not record hints for %d case(s)", conn_id, len(names))


class _KeyedLocks:
    """One lock per connection id that passed the signature check: one process confirms a
    connection's hints one webhook at a time, so its record of statuses is not raced."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())


def _confirm(confirm: Any, locks: _KeyedLocks, conn_id: str, names: list[str]) -> None:
    try:
        with locks(conn_id):
            confirm(conn_id, names)
    except Exception:  # the waits read the tenant anyway; no event is better than a false one
        log.exception("Emedgene webhook on %s: could not confirm %d case(s)", conn_id, len(names))
