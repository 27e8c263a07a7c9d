"""Ways the simulator can behave like an imperfect SaaS tenant: it lags, skews and lies.

Each option imitates something a real tenant plausibly does (a read replica behind the write, a
clock or a date format a client did not expect, a list that reorders or miscounts, a short answer,
a duplicated JSON key, a slow login, an idle connection closed under a client). Every default is
the well-behaved simulator. ``docs/simulator.md`` has the table, with what is assumed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

CREATED_STYLES: tuple[str, ...] = ("iso", "naive_local", "date", "epoch_ms", "missing", "garbage")
LIST_TOTALS: tuple[str, ...] = ("exact", "missing", "negative", "zero", "page", "null")
LIST_ORDERS: tuple[str, ...] = ("oldest_first", "newest_first")
LIST_CHURNS: tuple[str, ...] = ("insert", "delete")


def _number(name: str, value: Any, *, low: float | None = 0.0, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"quirk {name} must be a finite number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"quirk {name} must be {bounds}, not {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...], *, optional: bool = False) -> None:
    if (value is None and optional) or value in choices:
        return
    allowed = ", ".join(choices) + (" or None" if optional else "")
    raise ValueError(f"quirk {name} must be one of {allowed}, not {value!r}")


@dataclass(frozen=True)
class Quirks:
    """The simulator's misbehaviours; each default is the behaviour without quirks.

    :param read_lag: seconds after its creation during which a case's reads by name (the case,
        its export, its candidates) answer 404, as a read replica behind the write would.
    :param created_style: how ``created`` is written in list hits and case details: ``iso`` (UTC
        with a zone), ``naive_local`` (ISO without zone, tenant local time), ``date`` (tenant local
        date), ``epoch_ms`` (a number), ``missing`` (no key) or ``garbage`` (an unparseable string).
    :param tenant_utc_offset_hours: the tenant's local time zone, for ``naive_local`` and ``date``.
    :param clock_skew: seconds the tenant's clock is ahead of ours (negative: behind), in every
        ``created`` and in the HTTP ``Date`` header.
    :param list_total: the list's ``total``: ``exact``, ``missing``, ``negative`` (-1), ``zero``,
        ``page`` (the length of the page answered) or ``null``.
    :param ignore_from: every list request answers page one.
    :param shuffle_first_page: page one comes in a new seeded-random order at each request.
    :param list_order: ``oldest_first`` (creation order) or ``newest_first``.
    :param list_churn: ``insert``: after each list page served, a filler case is created (and
        listed at once); ``delete``: after each list page served, the newest listed case leaves the
        list (it stays readable by name).
    :param results_short: export and candidates answers hold at most this many records, with a
        ``total`` saying how many there are.
    :param duplicate_status: the case, its ``test_fields`` answer and every list hit carry a second
        ``status`` key with this value, after the real one.
    :param bom: every JSON answer starts with a UTF-8 byte order mark.
    :param login_delay: seconds the three login endpoints wait before answering (other requests
        are served meanwhile).
    :param stale_keepalive: a request arriving on a kept-alive connection idle for longer than this
        many seconds is dropped unread; the first request of a connection is always served.
    """

    read_lag: float = 0.0
    created_style: str = "iso"
    tenant_utc_offset_hours: float = -5.0
    clock_skew: float = 0.0
    list_total: str = "exact"
    ignore_from: bool = False
    shuffle_first_page: bool = False
    list_order: str = "oldest_first"
    list_churn: str | None = None
    results_short: int | None = None
    duplicate_status: str | None = None
    bom: bool = False
    login_delay: float = 0.0
    stale_keepalive: float | None = None

    def __post_init__(self) -> None:
        _number("read_lag", self.read_lag)
        _number("login_delay", self.login_delay)
        _number("clock_skew", self.clock_skew, low=None)
        _number("tenant_utc_offset_hours", self.tenant_utc_offset_hours, low=-14.0, high=14.0)
        if self.stale_keepalive is not None:
            _number("stale_keepalive", self.stale_keepalive)
        _choice("created_style", self.created_style, CREATED_STYLES)
        _choice("list_total", self.list_total, LIST_TOTALS)
        _choice("list_order", self.list_order, LIST_ORDERS)
        _choice("list_churn", self.list_churn, LIST_CHURNS, optional=True)
        for flag in ("ignore_from", "shuffle_first_page", "bom"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"quirk {flag} must be true or false, not {getattr(self, flag)!r}")
        short = self.results_short
        if short is not None and (isinstance(short, bool) or not isinstance(short, int) or short < 0):
            raise ValueError(f"quirk results_short must be a whole number >= 0 or None, not {short!r}")
        lie = self.duplicate_status
        if lie is not None and not isinstance(lie, str):
            raise ValueError(f"quirk duplicate_status must be a string or None, not {lie!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_json(cls, data: Any) -> Quirks:
        """Quirks from a JSON object; ValueError for a non-object, an unknown name or a bad value."""
        if not isinstance(data, dict):
            raise ValueError(f"quirks must be a JSON object of names and values, not {type(data).__name__}")
        return cls().replace(**data)

    def replace(self, **changes: Any) -> Quirks:
        """These quirks with the named ones changed; ValueError for an unknown name or a bad value."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown quirk(s) {', '.join(unknown)}; known: {', '.join(self.names())}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["CREATED_STYLES", "LIST_CHURNS", "LIST_ORDERS", "LIST_TOTALS", "Quirks"]
