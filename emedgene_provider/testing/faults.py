"""Failures the simulator can play: queued one-shot faults and a random fault rate.

Each kind imitates something a client meets in production: a rate limit with or without
``Retry-After``, a load balancer's HTML error page, a dropped connection before or after the
server acted, a slow answer. ``lost_create`` and ``lost_answer`` are the dangerous ones: the
server *did* the work but the client never hears so, which is how duplicate cases are born.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Iterable
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
}
#: Kinds that act before the request is handled, answering in its place.
_ANSWERING = frozenset({"429", "429_no_retry_after", "500_html", "502_html", "503", "504_html"})
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
    """

    kind: str
    times: int = 1
    method: str | None = None
    path: str | None = None
    delay: float = 1.0
    retry_after: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.kind == "lost_create":
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
            if kind == "lost_create" and not (method == "POST" and path.startswith(CREATE_CASE_PATH)):
                return None
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
