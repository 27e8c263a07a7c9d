"""The webhook receiver (plugins/webhooks.py) as Airflow 3's api-server serves it: the signature
is the only door, so every way of knocking without the key is tried and must change nothing.

Run through FastAPI's TestClient with the connection read from Airflow's secrets (an environment
variable) and the hint board replaced by a recorder; over a real socket, with the simulator as the
sender, in tests/integration/test_webhook_delivery.py.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import airflow
import pytest

pytestmark = pytest.mark.skipif(
    not airflow.__version__.startswith("3."), reason="the receiver runs on Airflow 3's api-server"
)

SECRET = "whsec-receiver-test-5b1d"
CONN = "emedgene_lab"
BODY = json.dumps(
    {"event": "case.status_changed", "case_name": "EMG107903188", "status": "Delivered"}
).encode()


def _sign(body: bytes, secret: str = SECRET) -> str:
    from emedgene_provider.client.webhooks import signature_of

    return signature_of(secret, body)


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str = "emedgene", **extra: Any) -> None:
    uri = {
        "conn_type": conn_type,
        "host": "https://lab.emedgene.com",
        "login": "u",
        "password": "p",
        "extra": extra,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(uri))


@pytest.fixture
def recorded() -> list[tuple[str, list[str]]]:
    return []


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, recorded: list[tuple[str, list[str]]]) -> Any:
    from fastapi.testclient import TestClient

    from emedgene_provider.plugins.webhooks import create_app

    _conn(monkeypatch, CONN, webhook_secret=SECRET)
    _conn(monkeypatch, "emedgene_nosecret")
    _conn(monkeypatch, "emedgene_blank", webhook_secret="")
    _conn(monkeypatch, "http_other", conn_type="http", webhook_secret=SECRET)
    app = create_app(
        record=lambda conn_id, names, now: recorded.append((conn_id, names)),
        confirm=lambda conn_id, names: recorded.append(("confirm", conn_id, names)),
    )
    return TestClient(app)


def _post(client: Any, conn_id: str = CONN, body: bytes = BODY, signature: str | None = "sign") -> Any:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        signature = _sign(body)
    if signature is not None:
        headers["X-Emedgene-Signature"] = signature
    return client.post(f"/webhooks/{conn_id}", content=body, headers=headers)


def test_a_signed_hint_is_accepted_and_its_case_goes_on_the_board(client: Any, recorded: list) -> None:
    answer = _post(client)
    assert (answer.status_code, answer.json()) == (202, {"cases": 1})
    # the name only, the stated status is not kept; then the tenant is asked (after the answer)
    assert recorded == [(CONN, ["EMG107903188"]), ("confirm", CONN, ["EMG107903188"])]


@pytest.mark.parametrize(
    ("conn_id", "signature"),
    [
        (CONN, None),
        (CONN, ""),
        (CONN, "sha256=" + "0" * 64),
        (CONN, _sign(BODY, "another-secret")),
        (CONN, _sign(BODY).replace("sha256=", "sha1=")),
        (CONN, _sign(BODY + b" ")),
        ("no_such_connection", "sign"),
        ("emedgene_nosecret", "sign"),
        ("emedgene_blank", "sign"),
        ("http_other", "sign"),  # a secret, but not an Emedgene connection
    ],
)
def test_every_knock_without_the_key_is_refused_alike_and_changes_nothing(
    client: Any, recorded: list, conn_id: str, signature: str | None
) -> None:
    answer = _post(client, conn_id, signature=signature)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "unauthorized"}
    assert recorded == []


def test_a_body_over_64_kib_is_refused_signed_or_not(client: Any, recorded: list) -> None:
    big = json.dumps({"case_name": "EMG1", "pad": "x" * 70_000}).encode()
    assert _post(client, body=big).status_code == 413
    assert _post(client, body=big, signature=None).status_code == 413
    just = json.dumps({"case_name": "EMG1", "pad": "x" * (64 * 1024 - 40)}).encode()
    assert len(just) <= 64 * 1024 and _post(client, body=just).status_code == 202
    assert recorded == [(CONN, ["EMG1"]), ("confirm", CONN, ["EMG1"])]


def test_a_flood_on_one_connection_is_answered_429_and_another_still_gets_in(client: Any) -> None:
    codes = [_post(client).status_code for _ in range(120)]
    assert 429 in codes and codes[0] == 202
    assert codes.index(429) >= 40  # the burst goes through first
    assert _post(client, "emedgene_nosecret").status_code == 401  # its own gate: still let in, then refused


def test_a_signed_body_that_is_not_json_is_a_400_and_one_naming_no_case_records_nothing(
    client: Any, recorded: list
) -> None:
    assert _post(client, body=b"not json").status_code == 400
    answer = _post(client, body=b'{"event": "ping"}')
    assert (answer.status_code, answer.json()) == (202, {"cases": 0})
    assert recorded == []


def test_the_secret_is_masked_and_never_in_an_answer_or_a_log(
    client: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import log as sdk_log

    import emedgene_provider.plugins.webhooks  # noqa: F401 - the module whose masker is watched

    masked: list[str] = []
    monkeypatch.setattr(sdk_log, "mask_secret", masked.append)
    caplog.set_level(logging.DEBUG)
    answers = [_post(client), _post(client, signature=None), _post(client, "emedgene_nosecret")]
    assert SECRET in masked
    assert all(SECRET not in a.text for a in answers)
    assert SECRET not in caplog.text


def test_a_failing_board_write_is_logged_and_the_sender_still_gets_its_202(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from emedgene_provider.plugins.webhooks import create_app

    _conn(monkeypatch, CONN, webhook_secret=SECRET)

    def broken(conn_id: str, names: list[str], now: float) -> None:
        raise RuntimeError("database is locked")

    def broken_confirm(conn_id: str, names: list[str]) -> None:
        raise RuntimeError("tenant unreachable")

    answer = _post(TestClient(create_app(record=broken, confirm=broken_confirm)))
    assert answer.status_code == 202
    assert "could not record hints for 1 case(s)" in caplog.text and "database is locked" in caplog.text
    assert "could not confirm 1 case(s)" in caplog.text and "tenant unreachable" in caplog.text


def test_a_flood_spread_over_made_up_connection_ids_meets_the_total_gate(
    monkeypatch: pytest.MonkeyPatch, recorded: list
) -> None:
    from fastapi.testclient import TestClient

    from emedgene_provider.plugins import webhooks

    monkeypatch.setattr(webhooks, "TOTAL_RATE", 2.0)  # so the test outruns it on any machine
    client = TestClient(
        webhooks.create_app(record=lambda *args: recorded.append(args), confirm=lambda *a: recorded.append(a))
    )
    codes = [_post(client, f"made_up_{i}").status_code for i in range(40)]
    assert codes[:4] == [401] * 4  # the total burst (twice the rate) goes through, unknown ids
    assert codes.count(429) >= 30  # then the total gate holds, whatever the id
    assert recorded == []
