"""Case events (Airflow 3): one Asset per tenant, ``emedgene://<tenant host>``, and an asset event
on it for each status change the tenant confirmed, so a results DAG is scheduled on deliveries
instead of holding a seven-day wait.

Two sources record them, with one event shape (:func:`case_event`):
- the webhook receiver (api-server), which reads each hinted case from the tenant and records an
  event only when the status differs from the last one it confirmed (:func:`announce`), so a
  forged, stale, repeated or reordered hint records nothing the tenant does not say;
- :class:`~emedgene_provider.triggers.case_events.EmedgeneCaseEventTrigger`, an ``AssetWatcher``
  trigger for tenants that cannot send webhooks.

An event's ``extra``: ``case_name``, ``status``, ``previous_status`` (None the first time the case
is seen), ``delivered`` (true once per case: on the change into a delivered status), ``conn_id``
and ``source`` (``webhook`` or ``poll``). No secret, no token, nothing but the case's name and status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from emedgene_provider.client import status as st
from emedgene_provider.hints import case_key, stored_mapping

log = logging.getLogger(__name__)

SCHEME = "emedgene"
#: Prefix of the Variables where the receiver keeps the last status it confirmed, per connection.
STATUS_VARIABLE_PREFIX = "emedgene_statuses."
#: Cases kept per connection, and for how long: a case quiet for a month that changes again is
#: announced with ``previous_status`` None, never lost.
MAX_STATUSES = 20_000
STATUS_SECONDS = 30 * 24 * 3600.0
#: Cases one webhook may make the receiver read: a signed body naming a thousand cases costs the
#: tenant no more than this.
MAX_CASES_PER_HINT = 50


def tenant_asset_uri(host_or_url: str) -> str:
    """``emedgene://<host[:port]>`` of a tenant, from its host or any URL on it (lower case)."""
    text = host_or_url.strip()
    netloc = urlsplit(text if "://" in text else f"//{text}").netloc.lower()
    if not netloc or "@" in netloc:
        raise ValueError(f"Not an Emedgene tenant host: {host_or_url!r}")
    return f"{SCHEME}://{netloc}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """The ``asset-uris`` handler Airflow calls on every ``emedgene://`` URI a DAG declares: one
    tenant is one asset, however it is spelled (case, a trailing slash, a path)."""
    if not uri.netloc or "@" in uri.netloc:
        raise ValueError("An emedgene:// asset URI names a tenant host: emedgene://<tenant host>")
    return SplitResult(SCHEME, uri.netloc.lower(), "", "", "")


def tenant_asset(host_or_url: str, **kwargs: Any) -> Any:
    """The tenant's Asset (``kwargs`` go to ``Asset``, e.g. ``watchers=``)."""
    from airflow.sdk import Asset

    return Asset(uri=tenant_asset_uri(host_or_url), **kwargs)


def is_new_delivery(previous: str | None, status: str, custom: Iterable[str] = ()) -> bool:
    """Whether the change ``previous`` -> ``status`` is the case's delivery (once per case)."""
    was_delivered = previous is not None and st.is_delivered(previous, custom)
    return st.is_delivered(status, custom) and not was_delivered


def case_event(
    conn_id: str, case_name: str, status: str, previous: str | None, source: str, custom: Iterable[str] = ()
) -> dict[str, Any]:
    """The ``extra`` of a case's asset event (the one shape both sources record)."""
    return {
        "case_name": case_name,
        "status": status,
        "previous_status": previous,
        "delivered": is_new_delivery(previous, status, custom),
        "conn_id": conn_id,
        "source": source,
    }


def changed(previous: str | None, status: str) -> bool:
    return previous is None or st.normalise(previous) != st.normalise(status)


# -- the receiver's record of confirmed statuses (api-server) ------------------------------------


def parse_statuses(raw: Any) -> dict[str, tuple[str, float]]:
    """Case key -> (status, epoch) from the Variable's value; {} for anything damaged."""
    entries = stored_mapping(raw, "statuses")
    parsed = {}
    for key, value in entries.items():
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
            continue
        if isinstance(value[1], (int, float)) and not isinstance(value[1], bool):
            parsed[str(key)] = (value[0], float(value[1]))
    return parsed


def statuses_value(statuses: dict[str, tuple[str, float]], now: float) -> str:
    kept = {k: v for k, v in statuses.items() if now - v[1] < STATUS_SECONDS}
    if len(kept) > MAX_STATUSES:
        kept = dict(sorted(kept.items(), key=lambda item: item[1][1])[-MAX_STATUSES:])
    return json.dumps({"v": 1, "statuses": {k: list(v) for k, v in kept.items()}}, separators=(",", ":"))


def record_event(uri: str, extra: dict[str, Any], partition_key: str | None) -> bool:
    """Record an asset event on the asset ``uri`` (api-server side, with its DB session); False
    when no DAG declares the asset, so Airflow has no row to record it on."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_2_PLUS
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == uri).limit(1))
        if asset is None:
            return False
        partitioned = partition_key and AIRFLOW_V_3_2_PLUS  # no partitions before Airflow 3.2
        kwargs: dict[str, Any] = {"partition_key": partition_key} if partitioned else {}
        event = asset_manager.register_asset_change(asset=asset, extra=extra, session=session, **kwargs)
        return event is not None


def _hook(conn_id: str, now: float) -> Any:
    """The connection's confirming hook, made anew every :data:`CONNECTION_READ_SECONDS` (so an
    edited connection counts within that), shared by the webhooks in between."""
    from emedgene_provider.client.process import PROCESS
    from emedgene_provider.hooks.emedgene import CONNECTION_READ_SECONDS, EmedgeneHook

    held = PROCESS.webhook_hooks.get(conn_id)
    if held is None or held[0] <= now:
        held = (now + CONNECTION_READ_SECONDS, EmedgeneHook(emedgene_conn_id=conn_id))
        PROCESS.webhook_hooks[conn_id] = held
    return held[1]


def announce(
    conn_id: str,
    case_names: Iterable[str],
    *,
    read_status: Callable[[str], str] | None = None,
    record: Callable[[str, dict[str, Any], str | None], bool] = record_event,
    now: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """Read each hinted case from the tenant and record an event for each confirmed change;
    returns the events' extras. A case the tenant does not know or cannot answer for is logged
    and skipped: the waits' slow poll still reads it."""
    from airflow.models.variable import Variable

    from emedgene_provider.client.errors import EmedgeneError

    hook = _hook(conn_id, now())
    config = hook.config
    read = read_status or hook.get_case_status
    uri = tenant_asset_uri(config.base_url)
    key = STATUS_VARIABLE_PREFIX + conn_id
    statuses = parse_statuses(Variable.get(key, default_var=None))
    announced = []
    for name in list(dict.fromkeys(case_names))[:MAX_CASES_PER_HINT]:
        try:
            status = read(name)
        except EmedgeneError as exc:
            log.warning("Emedgene webhook for case %s on %s not confirmed: %s", name, conn_id, exc)
            continue
        ckey = case_key(conn_id, name)
        previous = statuses.get(ckey, (None, 0.0))[0]
        if not changed(previous, status):
            continue
        extra = case_event(conn_id, name, status, previous, "webhook", config.custom_statuses)
        if not record(uri, extra, name if config.case_event_partitions else None):
            log.info("No DAG is scheduled on %s: the change of case %s is not recorded.", uri, name)
        statuses[ckey] = (status, now())
        announced.append(extra)
    if announced:
        Variable.set(key, statuses_value(statuses, now()), description="Emedgene confirmed case statuses")
    return announced


def triggering_case_events(context: Any) -> list[dict[str, Any]]:
    """The case events that started a DAG run scheduled on tenant Assets, oldest first, each once.

    The receiver records an event's fields as its ``extra``; an ``AssetWatcher``'s trigger has
    Airflow record them under ``extra["payload"]``: both read alike here. Events of other assets
    and extras of another shape are left out.
    """
    by_asset = context.get("triggering_asset_events") or {}
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for events in by_asset.values():
        for event in events:
            extra: dict[str, Any] = dict(event.extra or {})
            payload = extra.get("payload")
            fields: dict[str, Any] = payload if isinstance(payload, dict) else extra
            if not isinstance(fields.get("case_name"), str) or not isinstance(fields.get("status"), str):
                continue
            key = (fields.get("conn_id"), fields["case_name"], fields["status"])
            found.setdefault(key, {**fields, "timestamp": str(event.timestamp)})
    return sorted(found.values(), key=lambda fields: fields["timestamp"])
