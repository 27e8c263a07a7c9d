"""What a status webhook from Emedgene may be trusted for: its signature, and the case it names.

Emedgene's payload, authentication and retries are not published [assumed], so a hint is never
the truth: a receiver checks who sent it (:func:`signature_matches`: HMAC-SHA256 of the raw body,
keyed with the connection's secret, compared in constant time), finds the case names it mentions
(:func:`case_names_in`: common field names, nested objects, configurable), and then reads each
case's status from the tenant before acting on it. Nothing here trusts the status a body states.

Airflow-free and I/O-free: the receiver (an api-server plugin) and the tests share it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from emedgene_provider.client.endpoints import CASE_NAME_PATTERN

#: The header carrying ``sha256=<hex HMAC-SHA256 of the raw body>`` [assumed].
SIGNATURE_HEADER = "X-Emedgene-Signature"
#: The largest body a receiver reads; a status hint is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
#: Keys whose string value names a case, at any depth [assumed: the payload is not published].
CASE_NAME_FIELDS: tuple[str, ...] = ("case_name", "caseName", "test_name", "testName", "case_id", "caseId")
#: Objects whose ``name`` is a case's name (``{"case": {"name": "EMG..."}}``).
CASE_OBJECTS: tuple[str, ...] = ("case", "test")
#: A hint naming more cases than this is not a status hint; the rest are ignored.
MAX_CASES_PER_HINT = 100
_MAX_DEPTH = 8


def signature_of(secret: str, body: bytes) -> str:
    """The header value a sender holding ``secret`` puts on ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``body``'s signature under ``secret``, in constant time.

    No secret, no header, another scheme than ``sha256=`` or a wrong digest: False, all alike, so
    a caller answers every refusal the same way.
    """
    if not secret or not header:
        return False
    scheme, _, digest = header.strip().partition("=")
    if scheme.lower() != "sha256":
        return False
    return hmac.compare_digest(digest.lower().encode(), signature_of(secret, body)[7:].encode())


def case_names_in(
    payload: Any,
    fields: Sequence[str] = CASE_NAME_FIELDS,
    objects: Sequence[str] = CASE_OBJECTS,
) -> list[str]:
    """The valid case names ``payload`` mentions, first seen first, each once, at most
    :data:`MAX_CASES_PER_HINT`. A value that is not a valid case name is passed over (it will
    never reach a URL), and so is anything deeper than eight levels."""
    names: dict[str, None] = {}
    for value in _candidates(payload, frozenset(fields), frozenset(objects), 0):
        if len(names) >= MAX_CASES_PER_HINT:
            break
        if isinstance(value, str) and CASE_NAME_PATTERN.fullmatch(value) and ".." not in value:
            names.setdefault(value, None)
    return list(names)


def _candidates(node: Any, fields: frozenset[str], objects: frozenset[str], depth: int) -> Iterable[Any]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in fields:
                yield value
            elif key in objects and isinstance(value, dict) and "name" in value:
                yield value["name"]
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from _candidates(value, fields, objects, depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from _candidates(item, fields, objects, depth + 1)
