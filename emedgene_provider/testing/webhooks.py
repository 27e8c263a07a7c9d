"""The simulator's status webhooks: a POST to a lab's receiver each time a case's status changes.

Emedgene's manual has a "Webhook Integration" page, but the payload, its authentication and the
retries are not published, so all of it here is [assumed] and an option: the target URL, the
secret (``X-Emedgene-Signature: sha256=<hex HMAC-SHA256 of the raw body>``), the payload's shape,
and the faults a receiver must survive: hints dropped, duplicated, delayed, reordered, sent
unsigned, signed with a wrong secret (forged), or correctly signed but naming a status the
tenant does not show (a stale or lying hint). The signature is computed here with the standard
library, not with the provider's receiver code: the simulator is the receiver's oracle.

The sender watches the cases every ``interval`` seconds on the simulator's loop, and sends one
hint per status it sees a case enter (its first status included). :attr:`WebhookSender.log`
records every hint and what was done to it, for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from emedgene_provider.client import status as st

SHAPES: tuple[str, ...] = ("flat", "nested", "list")
FAULTS: tuple[str, ...] = ("drop", "duplicate", "delay", "reorder", "unsigned", "forged", "false_status")
SIGNATURE_HEADER = "X-Emedgene-Signature"


@dataclass(frozen=True)
class Webhooks:
    """Where and how the simulator sends status hints; every fault is a probability per hint.

    :param url: the receiver, e.g. ``http://127.0.0.1:8080/emedgene/webhooks/emedgene_default``.
    :param secret: the HMAC key; empty sends every hint unsigned.
    :param shape: ``flat`` (``{"event", "case_name", "status", "sent_at"}``), ``nested``
        (``{"type", "data": {"case": {"name", "status"}}}``) or ``list`` (``{"events": [...]}``
        holding one flat event).
    :param interval: seconds between two looks at the cases' statuses.
    :param delay_seconds: how long a ``delay`` fault holds a hint back.
    :param timeout: seconds one POST may take before it counts as failed (a hint is never retried).
    :param drop: the hint is not sent.
    :param duplicate: the hint is sent twice.
    :param delay: the hint is sent ``delay_seconds`` late.
    :param reorder: the hint is held back until after the next one has been sent.
    :param unsigned: the hint carries no signature header.
    :param forged: the hint is signed with a wrong secret.
    :param false_status: the hint is signed correctly but names a status the case does not have.
    :param seed: makes the faults reproducible.
    """

    url: str
    secret: str = ""
    shape: str = "flat"
    interval: float = 0.1
    delay_seconds: float = 2.0
    timeout: float = 5.0
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    unsigned: float = 0.0
    forged: float = 0.0
    false_status: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be an http(s) URL, not {self.url!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"webhook shape must be one of {', '.join(SHAPES)}, not {self.shape!r}")
        for name in ("interval", "delay_seconds", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"webhook {name} must be a positive number of seconds, not {value!r}")
        for name in FAULTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"webhook fault {name} must be a probability from 0 to 1, not {value!r}")

    @classmethod
    def from_json(cls, options: dict[str, Any]) -> Webhooks:
        """From ``--webhook NAME=VALUE`` options; ValueError names an unknown option."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown webhook option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "url" not in options:
            raise ValueError("webhook options need a url")
        return cls(**options)

    def __repr__(self) -> str:  # the secret stays out of reprs, logs and error messages
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "secret"}
        return f"Webhooks({', '.join(f'{k}={v!r}' for k, v in shown.items())}, secret=***)"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(shape: str, case_name: str, status: str, sent_at: float) -> dict[str, Any]:
    """One hint in the given shape."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent_at))
    flat = {"event": "case.status_changed", "case_name": case_name, "status": status, "sent_at": stamp}
    if shape == "nested":
        return {
            "type": "case.status_changed",
            "sent_at": stamp,
            "data": {"case": {"name": case_name, "status": status}},
        }
    if shape == "list":
        return {"events": [flat]}
    return flat


@dataclass
class Sent:
    """One hint and what became of it: ``faults`` applied, ``http_status`` answered (None: no
    answer, or not sent)."""

    case_name: str
    status: str
    faults: tuple[str, ...]
    http_status: int | None = None
    error: str | None = None


class WebhookSender:
    """Watches ``state``'s cases and POSTs a hint per status change, on the running loop."""

    def __init__(self, state: Any, options: Webhooks) -> None:
        self.state = state
        self.options = options
        self.log: list[Sent] = []
        self._seen: dict[str, str] = {}
        self._held: list[tuple[bytes, dict[str, str], Sent]] = []
        self._rng = random.Random(options.seed)  # noqa: S311 - fault draws, not secrets
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._session: Any = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in list(self._pending):
            pending.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def forget(self) -> None:
        """Forget the statuses seen and the hints sent (the simulator's reset)."""
        self._seen.clear()
        self._held.clear()
        self.log.clear()

    async def _watch(self) -> None:
        while True:
            for case in list(self.state.cases.values()):
                status = self.state.status_of(case)
                if self._seen.get(case.name) != status:
                    self._seen[case.name] = status
                    self._hint(case.name, status)
            await asyncio.sleep(self.options.interval)

    def _draw(self, fault: str) -> bool:
        chance = float(getattr(self.options, fault))
        return chance > 0 and self._rng.random() < chance

    def _hint(self, case_name: str, status: str) -> None:
        faults = tuple(fault for fault in FAULTS if self._draw(fault))
        told = status
        if "false_status" in faults:
            told = next(s for s in (st.FINALIZED, st.DELIVERED, st.ISSUE_REPORTED) if s != status)
        record = Sent(case_name, told, faults)
        self.log.append(record)
        if "drop" in faults:
            return
        body = json.dumps(payload(self.options.shape, case_name, told, time.time())).encode()
        headers = {"Content-Type": "application/json"}
        if self.options.secret and "unsigned" not in faults:
            key = "not-the-secret" if "forged" in faults else self.options.secret
            headers[SIGNATURE_HEADER] = sign(key, body)
        if "reorder" in faults:
            self._held.append((body, headers, record))
            return
        delay = self.options.delay_seconds if "delay" in faults else 0.0
        self._spawn(self._post(body, headers, record, delay, copies=2 if "duplicate" in faults else 1))
        held, self._held = self._held, []
        for held_body, held_headers, held_record in held:  # sent after the hint that overtook them
            self._spawn(self._post(held_body, held_headers, held_record, delay + 0.05))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(
        self, body: bytes, headers: dict[str, str], record: Sent, delay: float, copies: int = 1
    ) -> None:
        import aiohttp

        if delay:
            await asyncio.sleep(delay)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.options.timeout))
        answered, error = None, None
        for _ in range(copies):  # the record shows an answer once every copy has had its own
            try:
                async with self._session.post(self.options.url, data=body, headers=headers) as answer:
                    answered = answer.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = type(exc).__name__
        record.http_status, record.error = answered, error
