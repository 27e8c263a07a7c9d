"""What the provider keeps in a case's ``test_data.extra_data``, and how it reads it back.

``extra_data`` is the case JSON's free-form object [cli][doc] that the server keeps and returns
with the case (the simulator returns it as ``extra_data`` of ``GET /api/test/{name}``)
[assumed]. The provider stamps two values there: the idempotency key of the request that made a
case, which is how a retried create finds the case an earlier try made, and the Family Id of a
case read from a batch CSV, which is how a lab maps its families to the case names the server
gives them. ``notes`` is not used for either: lab staff edit it, and it is shown on reports.

Airflow-free and free of the CSV reader, so that the client and the operators import it cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "FAMILY_ID_KEY",
    "IDEMPOTENCY_FIELD",
    "family_of",
    "idempotency_key_of",
    "with_idempotency_key",
]

#: The ``extra_data`` key that carries the idempotency key of the request that made a case.
IDEMPOTENCY_FIELD = "airflow_idempotency_key"
#: The ``extra_data`` key that carries the Family Id of a case read from a batch CSV [assumed].
FAMILY_ID_KEY = "family_id"


def with_idempotency_key(case: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of ``case`` stamped with ``key`` in ``test_data.extra_data``; ``case`` is untouched."""
    stamped = dict(case)
    test_data = dict(stamped.get("test_data") or {})
    extra = dict(test_data.get("extra_data") or {})
    extra[IDEMPOTENCY_FIELD] = key
    test_data["extra_data"] = extra
    stamped["test_data"] = test_data
    return stamped


def _extra_data(case_json: Any) -> Iterator[dict[str, Any]]:
    """The ``extra_data`` objects of a case JSON, wherever the server returns them: at the top of
    the case JSON, then inside ``test_data``."""
    if not isinstance(case_json, dict):
        return
    for holder in (case_json, case_json.get("test_data")):
        extra = holder.get("extra_data") if isinstance(holder, dict) else None
        if isinstance(extra, dict):
            yield extra


def idempotency_key_of(case_json: Any) -> str | None:
    """The key a case was stamped with; None when it carries none."""
    for extra in _extra_data(case_json):
        if isinstance(extra.get(IDEMPOTENCY_FIELD), str):
            return str(extra[IDEMPOTENCY_FIELD])
    return None


def family_of(case_json: Any, key: str = FAMILY_ID_KEY) -> str | None:
    """The Family Id a case carries under ``key`` (text or a number, not empty); None when it has
    none."""
    for extra in _extra_data(case_json):
        value = extra.get(key)
        if isinstance(value, (str, int)) and str(value):
            return str(value)
    return None
