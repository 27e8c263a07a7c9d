"""The hint board (hints.py): case hashes and times, bounded, tolerant of a damaged Variable. On a
real metadata DB: tests/e2e/test_hints_on_the_db.py."""

from __future__ import annotations

import pytest

from emedgene_provider.hints import (
    HINT_SECONDS,
    MAX_HINTS,
    board_value,
    case_key,
    parse_board,
    with_hints,
)


def test_a_case_key_is_a_hash_per_connection_and_case() -> None:
    key = case_key("emedgene_default", "EMG107903188")
    assert "EMG" not in key and len(key) == 24
    assert key == case_key("emedgene_default", "EMG107903188")
    assert key != case_key("emedgene_other", "EMG107903188") != case_key("emedgene_default", "EMG2")


def test_hints_expire_and_the_board_keeps_the_newest_only() -> None:
    board = with_hints({"old": 0.0, "recent": HINT_SECONDS}, ["new"], now=HINT_SECONDS + 1)
    assert board == {"recent": HINT_SECONDS, "new": HINT_SECONDS + 1}
    full = with_hints({}, [f"k{i}" for i in range(MAX_HINTS)], now=10.0)
    full = with_hints(full, ["newest"], now=11.0)
    assert len(full) == MAX_HINTS and full["newest"] == 11.0


@pytest.mark.parametrize(
    "raw", [None, "", "not json", "[]", '{"hints": []}', '{"hints": {"a": "x", "b": true}}', 42]
)
def test_a_damaged_board_wakes_nobody_and_breaks_nothing(raw: object) -> None:
    assert parse_board(raw) == {}


def test_the_board_reads_back_what_it_wrote() -> None:
    assert parse_board(board_value({"a": 1.5})) == {"a": 1.5}
