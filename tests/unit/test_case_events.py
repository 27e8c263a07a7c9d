"""Case events' pure parts (case_events.py): the tenant's asset URI, the event shape, the one
delivery per case, and the receiver's record of statuses read back whatever it holds."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from emedgene_provider import case_events as ce
from emedgene_provider.client import status as st


@pytest.mark.parametrize(
    ("given", "uri"),
    [
        ("lab.emedgene.com", "emedgene://lab.emedgene.com"),
        ("https://Lab.Emedgene.com/", "emedgene://lab.emedgene.com"),
        ("https://lab.emg.illumina.com/api/test?x=1", "emedgene://lab.emg.illumina.com"),
        ("http://127.0.0.1:8765", "emedgene://127.0.0.1:8765"),
    ],
)
def test_one_asset_uri_per_tenant_however_it_is_spelled(given: str, uri: str) -> None:
    assert ce.tenant_asset_uri(given) == uri


@pytest.mark.parametrize("bad", ["", "https://", "https://user:pw@lab.emedgene.com"])
def test_no_asset_uri_without_a_host_or_with_credentials_in_it(bad: str) -> None:
    with pytest.raises(ValueError, match="tenant host"):
        ce.tenant_asset_uri(bad)


def test_the_asset_uri_handler_folds_case_and_drops_paths_and_refuses_user_info() -> None:
    assert ce.sanitize_uri(urlsplit("emedgene://LAB.emedgene.com/cases/?q#f")).geturl() == (
        "emedgene://lab.emedgene.com"
    )
    with pytest.raises(ValueError, match="tenant host"):
        ce.sanitize_uri(urlsplit("emedgene://key@lab.emedgene.com"))
    with pytest.raises(ValueError, match="tenant host"):
        ce.sanitize_uri(urlsplit("emedgene:///nothing"))


@pytest.mark.parametrize(
    ("previous", "status", "delivered"),
    [
        (None, st.IN_PROGRESS, False),
        (st.IN_PROGRESS, st.DELIVERED, True),
        (None, st.FINALIZED, True),  # first seen already past delivery: delivered once, now
        (st.DELIVERED, st.FINALIZED, False),  # the delivery was announced already
        (st.IN_PROGRESS, "Validated", True),  # a declared custom status is a delivery
        (st.IN_PROGRESS, st.ISSUE_REPORTED, False),
        (st.IN_PROGRESS, "Analysis failed", False),  # unknown: never a delivery
    ],
)
def test_a_case_is_delivered_once(previous: str | None, status: str, delivered: bool) -> None:
    assert ce.is_new_delivery(previous, status, ("Validated",)) is delivered


def test_the_event_names_the_case_its_status_and_nothing_else() -> None:
    event = ce.case_event("emedgene_lab", "EMG1", "Delivered", "In progress", "webhook")
    assert event == {
        "case_name": "EMG1",
        "status": "Delivered",
        "previous_status": "In progress",
        "delivered": True,
        "conn_id": "emedgene_lab",
        "source": "webhook",
    }
    json.dumps(event)  # an asset event's extra is JSON


def test_a_change_is_a_change_of_the_folded_status() -> None:
    assert ce.changed(None, "In progress")
    assert not ce.changed("In progress", "IN_PROGRESS")
    assert ce.changed("In progress", "Delivered")


@pytest.mark.parametrize("raw", [None, "", "not json", "[]", '{"statuses": []}', '{"v": 1}', 7])
def test_a_damaged_record_of_statuses_reads_as_empty(raw: object) -> None:
    assert ce.parse_statuses(raw) == {}


def test_the_record_keeps_good_entries_drops_bad_ones_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = json.dumps({"statuses": {"a": ["Delivered", 10.0], "b": ["x"], "c": [3, 1.0], "d": ["y", True]}})
    assert ce.parse_statuses(raw) == {"a": ("Delivered", 10.0)}
    monkeypatch.setattr(ce, "MAX_STATUSES", 3)
    entries = {f"k{i}": ("In progress", float(i)) for i in range(6)}
    entries["old"] = ("Delivered", -ce.STATUS_SECONDS)
    kept = ce.parse_statuses(ce.statuses_value(entries, now=6.0))
    assert set(kept) == {"k3", "k4", "k5"}  # the newest three; the month-old one first of all


def test_a_run_reads_its_case_events_from_both_sources_each_once_oldest_first() -> None:
    from types import SimpleNamespace

    webhook = ce.case_event("lab", "EMG2", "Delivered", "In progress", "webhook")
    polled = ce.case_event("lab", "EMG1", "Delivered", None, "poll")
    events = {
        "emedgene://lab.emedgene.com": [
            SimpleNamespace(timestamp="2026-12-03T10:00:02", extra=webhook),
            SimpleNamespace(timestamp="2026-12-03T10:00:01", extra={"from_trigger": True, "payload": polled}),
            SimpleNamespace(timestamp="2026-12-03T10:00:03", extra=dict(webhook)),  # the same change again
            SimpleNamespace(timestamp="2026-12-03T10:00:04", extra={"path": "/x.json"}),  # another shape
        ]
    }
    found = ce.triggering_case_events({"triggering_asset_events": events})
    assert [(e["case_name"], e["source"]) for e in found] == [("EMG1", "poll"), ("EMG2", "webhook")]
    assert ce.triggering_case_events({}) == []
