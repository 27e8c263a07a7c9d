"""Failures the simulator can play: queued one-shot faults and a random fault rate.

Each kind imitates something a client meets in production: a rate limit with or without
``Retry-After``, a load balancer's HTML error page, a dropped connection before or after the
server acted, a slow answer. ``lost_create`` and ``lost_answer`` are the dangerous ones: the
server *did* the work but the client never hears so, which is how duplicate cases are born.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emedgene_provider.client.endpoints import CREATE_CASE_PATH

#: Every kind, and what happens.
FAULT_KINDS: dict[str, str] = {
    "429": "429 Too Many Requests with Retry-After",
    "429_no_retry_after": "429 Too Many Requests without Retry-After",
    "500_html": "500 with an HTML error page",
    "502_html": "502 Bad Gateway HTML page, as a load balancer sends",
    "503": 'JSON 503 {"message": "Service Unavailable"}',
    "504_html": "504 Gateway Timeout HTML page",
    "reset": "connection reset before the request is processed",
    "slow": "answer normally after `delay` seconds",
    "lost_create": "POST create is applied, then the connection is dropped unanswered",
    "lost_answer": "any request is processed, then the connection is dropped unanswered",
    "gateway_then_apply": "POST create answers 504 HTML at once; the case is created `delay` seconds later",
    "slow_create": "POST create is applied at once, answered only after `delay` seconds",
    "redirect": "answers `status` (default 302) with `Location: <location>`; the request is not processed",
    "drip": "processed, then answered one byte every `interval` seconds (`phase`: headers or body), "
    "the body padded with spaces to `size` bytes",
    "huge": "processed, then answered with its status and a JSON body padded to `size` bytes, streamed",
}
#: Statuses a ``redirect`` fault may answer.
REDIRECT_STATUSES = frozenset({300, 301, 302, 303, 305, 307, 308})
#: Where a ``redirect`` fault points by default: an address nothing listens on.
DEFAULT_REDIRECT_LOCATION = "https://redirect-target.invalid/api/elsewhere?token=not-for-you"
#: The default size of a ``huge`` answer: above the client's default cap (256 MB).
DEFAULT_HUGE_SIZE = 300 * 1024 * 1024
DRIP_PHASES = ("headers", "body")
#: Seconds (low, high) a randomly picked ``gateway_then_apply`` or ``slow_create`` waits.
RATE_CREATE_DELAY = (0.5, 5.0)
#: Kinds that only a create can meet; pinned to ``POST /api/cases/v2/cases`` when queued.
CREATE_ONLY_KINDS = frozenset({"lost_create", "gateway_then_apply", "slow_create"})
#: Kinds that act before the request is handled, answering in its place.
_ANSWERING = frozenset({"429", "429_no_retry_after", "500_html", "502_html", "503", "504_html", "redirect"})
#: Kinds a fault rate picks from by default: failures that happen before the server acts, so a
#: client with sensible retries always recovers and a create is never ambiguous.
DEFAULT_RATE_KINDS: tuple[str, ...] = ("429", "502_html", "503", "504_html")

_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 504: "Gateway Timeout"}


@dataclass
class Fault:
    """A queued fault: applies to the next ``times`` requests matching ``method`` and ``path``.

    :param kind: one of :data:`FAULT_KINDS`.
    :param times: how many matching requests it hits.
    :param method: only requests with this HTTP method (any when None).
    :param path: only requests whose path starts with this (any non-admin path when None).
    :param delay: seconds to wait, for ``slow``.
    :param retry_after: the ``Retry-After`` value, for ``429``.
    :param status: the redirect status, for ``redirect``.
    :param location: the ``Location`` header, for ``redirect``.
    :param interval: seconds between two bytes, for ``drip``.
    :param phase: ``headers`` (status line and headers dripped, then the body) or ``body`` (headers
        at once, the body dripped), for ``drip``.
    :param size: bytes of the body, for ``huge``, and for ``drip`` (padded with spaces, which JSON
        allows: by default a drip never ends in any test's lifetime).
    :param chunked: send ``huge`` chunked, without a ``Content-Length``.
    """

    kind: str
    times: int = 1
    method: str | None = None
    path: str | None = None
    delay: float = 1.0
    retry_after: float = 1.0
    status: int = 302
    location: str = DEFAULT_REDIRECT_LOCATION
    interval: float = 1.0
    phase: str = "body"
    size: int = DEFAULT_HUGE_SIZE
    chunked: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.status not in REDIRECT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(str, sorted(REDIRECT_STATUSES)))}")
        if self.phase not in DRIP_PHASES:
            raise ValueError(f"phase must be one of {', '.join(DRIP_PHASES)}")
        if not self.interval > 0 or self.size < 0:
            raise ValueError("interval must be above 0 and size at least 0")
        if self.kind in CREATE_ONLY_KINDS:
            # Only a create can be "lost"; pin it there so it never fires on a poll by accident.
            self.method = "POST"
            self.path = self.path or CREATE_CASE_PATH
        if self.method:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )

    @property
    def answers_instead(self) -> bool:
        """Whether this fault replaces the answer (so the request is never handled)."""
        return self.kind in _ANSWERING

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        """Build from the admin endpoint's JSON; ValueError with a readable message if wrong."""
        if not isinstance(body, dict) or "kind" not in body:
            raise ValueError('expected a JSON object with at least "kind"')
        try:
            return cls(
                kind=str(body["kind"]),
                times=int(body.get("times") or 1),
                method=body.get("method") or None,
                path=body.get("path") or None,
                delay=float(body.get("delay", 1.0)),
                retry_after=float(body.get("retry_after", 1.0)),
                status=int(body.get("status", 302)),
                location=str(body.get("location") or DEFAULT_REDIRECT_LOCATION),
                interval=float(body.get("interval", 1.0)),
                phase=str(body.get("phase", "body")),
                size=int(body.get("size", DEFAULT_HUGE_SIZE)),
                chunked=bool(body.get("chunked", False)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


class FaultPlan:
    """The queued faults and the random rate, consulted once per non-admin request."""

    def __init__(self) -> None:
        self.queue: list[Fault] = []
        self.rate = 0.0
        self.rate_kinds: tuple[str, ...] = DEFAULT_RATE_KINDS
        self._rng = random.Random()  # noqa: S311 - chaos, not crypto

    def clear(self) -> None:
        self.queue.clear()
        self.rate = 0.0
        self.rate_kinds = DEFAULT_RATE_KINDS

    def add(self, fault: Fault) -> None:
        self.queue.append(fault)

    def set_rate(self, rate: float, kinds: Iterable[str] | None = None, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        chosen = tuple(kinds) if kinds else DEFAULT_RATE_KINDS
        unknown = [k for k in chosen if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; kinds: {', '.join(FAULT_KINDS)}")
        self.rate, self.rate_kinds = rate, chosen
        self._rng = random.Random(seed)  # noqa: S311

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any: queued ones first, then the random rate (``/api`` only)."""
        for fault in self.queue:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.queue.remove(fault)
                return Fault(**{**fault.__dict__, "times": 1})
        if self.rate and path.startswith("/api/") and self._rng.random() < self.rate:
            kind = self._rng.choice(self.rate_kinds)
            if kind in CREATE_ONLY_KINDS and not (method == "POST" and path.startswith(CREATE_CASE_PATH)):
                return None
            if kind in ("gateway_then_apply", "slow_create"):
                return Fault(kind=kind, delay=self._rng.uniform(*RATE_CREATE_DELAY))
            return Fault(kind=kind)
        return None


def _html_page(status: int) -> web.Response:
    reason = _REASONS[status]
    body = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>awselb/2.0</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=body, content_type="text/html")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def fault_response(fault: Fault) -> web.Response:
    """The answer an answering fault sends in place of the real one."""
    if fault.kind == "429":
        return web.json_response(
            {"message": "Too Many Requests"}, status=429, headers={"Retry-After": _seconds(fault.retry_after)}
        )
    if fault.kind == "429_no_retry_after":
        return web.json_response({"message": "Too Many Requests"}, status=429)
    if fault.kind == "503":
        return web.json_response({"message": "Service Unavailable"}, status=503)
    if fault.kind == "redirect":
        return web.json_response(
            {"message": f"Moved to {fault.location}"},
            status=fault.status,
            headers={"Location": fault.location},
        )
    if fault.kind == "gateway_then_apply":
        return _html_page(504)
    return _html_page(int(fault.kind.split("_", 1)[0]))


def drop_connection(request: web.Request) -> None:
    """Close the request's TCP connection with a reset (SO_LINGER 0), sending nothing more.

    The client sees ``ConnectionResetError``/"remote end closed", never a clean answer, which is
    what a crashed proxy or a NAT timeout looks like.
    """
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _closed(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _body_of(response: web.StreamResponse) -> bytes:
    body = response.body if isinstance(response, web.Response) else None
    return body if isinstance(body, bytes) else b""


def _one_by_one(data: bytes, padding: int = 0) -> Iterator[bytes]:
    """``data`` a byte at a time, then ``padding`` spaces, never all in memory."""
    for index in range(len(data)):
        yield data[index : index + 1]
    for _ in range(padding):
        yield b" "


async def drip(request: web.Request, response: web.StreamResponse, fault: Fault) -> web.StreamResponse | None:
    """Send ``response`` one byte every ``fault.interval`` seconds: from the status line on
    (``phase="headers"``, written on the raw connection, which is closed after; None is returned)
    or after headers sent at once (``phase="body"``). The body is padded with spaces to
    ``fault.size`` bytes. Stops when the client goes away."""
    body = _body_of(response)
    padding = max(0, fault.size - len(body))
    if fault.phase == "headers":
        skip = {"content-length", "transfer-encoding", "connection"}
        head = f"HTTP/1.1 {response.status} {response.reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in response.headers.items() if name.lower() not in skip
        )
        head += f"Content-Length: {len(body) + padding}\r\nConnection: close\r\n\r\n"
        for byte in _one_by_one(head.encode("latin-1") + body, padding):
            if request.transport is None or request.transport.is_closing():
                return None
            request.transport.write(byte)
            await asyncio.sleep(fault.interval)
        if request.transport is not None:
            request.transport.close()
        return None
    skip = {"content-length", "transfer-encoding"}
    headers = {name: value for name, value in response.headers.items() if name.lower() not in skip}
    stream = web.StreamResponse(status=response.status, reason=response.reason, headers=headers)
    stream.content_length = len(body) + padding
    await stream.prepare(request)
    try:
        for byte in _one_by_one(body, padding):
            if _closed(request):
                return stream
            await stream.write(byte)
            await asyncio.sleep(fault.interval)
        await stream.write_eof()
    except ConnectionError:
        pass  # the client gave up, as it should
    return stream


async def huge(request: web.Request, response: web.StreamResponse, fault: Fault) -> web.StreamResponse:
    """Answer with ``response``'s status and its JSON object padded (``"pad": "xxx..."``) to
    ``fault.size`` bytes, streamed 64 KiB at a time so that the simulator itself stays small."""
    real = _body_of(response).strip()
    if real.startswith(b"{") and real.endswith(b"}") and real != b"{}":
        head = real[:-1] + b', "pad": "'
    else:
        head = b'{"pad": "'
    tail = b'"}'
    padding = max(0, fault.size - len(head) - len(tail))
    stream = web.StreamResponse(status=response.status, headers={"Content-Type": "application/json"})
    if fault.chunked:
        stream.enable_chunked_encoding()
    else:
        stream.content_length = len(head) + padding + len(tail)
    await stream.prepare(request)
    chunk = b"x" * 65536
    try:
        await stream.write(head)
        while padding > 0:
            if _closed(request):
                return stream
            piece = chunk[: min(padding, len(chunk))]
            await stream.write(piece)
            padding -= len(piece)
        await stream.write(tail)
        await stream.write_eof()
    except ConnectionError:
        pass  # the client stopped reading, as it should
    return stream
