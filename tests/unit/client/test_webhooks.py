"""What a status webhook may be trusted for (client/webhooks.py): its signature and the cases it
names, never the status it states. The simulator's real hints are checked in
tests/integration/test_webhook_hints.py."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as s

from emedgene_provider.client.webhooks import (
    MAX_CASES_PER_HINT,
    case_names_in,
    signature_matches,
    signature_of,
)

SECRET = "whsec-unit"
BODY = b'{"case_name": "EMG107903188", "status": "Delivered"}'


def _hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body() -> None:
    assert signature_of(SECRET, BODY) == "sha256=" + _hmac(SECRET, BODY)
    assert signature_matches(SECRET, BODY, "sha256=" + _hmac(SECRET, BODY))
    assert signature_matches(SECRET, BODY, " SHA256=" + _hmac(SECRET, BODY).upper() + " ")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        _hmac(SECRET, BODY),  # no scheme
        "sha1=" + _hmac(SECRET, BODY),
        "sha256=" + _hmac("another-secret", BODY),
        "sha256=" + _hmac(SECRET, BODY + b" "),  # signed another body
        "sha256=" + _hmac(SECRET, BODY)[:-1],
        "sha256=",
        "sha256=é" + _hmac(SECRET, BODY)[1:],
    ],
)
def test_every_wrong_or_missing_signature_is_refused(header: str | None) -> None:
    assert signature_matches(SECRET, BODY, header) is False


def test_no_secret_refuses_even_a_signature_made_with_an_empty_key() -> None:
    assert signature_matches("", BODY, "sha256=" + _hmac("", BODY)) is False


@given(s.binary(max_size=512), s.text(min_size=1, max_size=40))
def test_a_body_changed_by_one_byte_is_refused(body: bytes, secret: str) -> None:
    header = signature_of(secret, body)
    assert signature_matches(secret, body, header)
    assert not signature_matches(secret, body + b"\x00", header)


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({"case_name": "EMG1", "status": "Delivered"}, ["EMG1"]),
        ({"type": "x", "data": {"case": {"name": "EMG2", "status": "Delivered"}}}, ["EMG2"]),
        ({"events": [{"caseName": "EMG3"}, {"testName": "EMG4"}, {"caseName": "EMG3"}]}, ["EMG3", "EMG4"]),
        ({"test": {"name": "EMG5"}, "case_id": "EMG6"}, ["EMG5", "EMG6"]),
        ({"case_name": "../storage"}, []),  # never reaches a URL
        ({"case_name": "EMG1?x=1"}, []),
        ({"case_name": 107903188}, []),
        ({"status": "Delivered", "name": "EMG7"}, []),  # a bare name is not a case's
        ([], []),
        ("EMG8", []),
        (None, []),
    ],
)
def test_case_names_are_found_where_a_sender_may_put_them(payload: Any, names: list[str]) -> None:
    assert case_names_in(payload) == names


def test_the_fields_are_configurable() -> None:
    payload = {"sample": {"emgId": "EMG9"}, "case_name": "EMG1"}
    assert case_names_in(payload, fields=("emgId",)) == ["EMG9"]


def test_a_hint_names_a_bounded_number_of_cases_and_depth() -> None:
    many = {"events": [{"case_name": f"EMG{i}"} for i in range(MAX_CASES_PER_HINT + 50)]}
    assert len(case_names_in(many)) == MAX_CASES_PER_HINT
    deep: Any = {"case_name": "EMG_DEEP"}
    for _ in range(20):
        deep = {"wrap": deep}
    assert case_names_in(deep) == []
