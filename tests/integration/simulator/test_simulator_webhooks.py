"""The simulator's status webhooks (emedgene_provider/testing/webhooks.py), received over real HTTP
by a plain stdlib server here, and checked with an HMAC computed here: one signed hint per status a
case enters, in its shape, and each fault doing what it says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from airflow_fixtures import valid_case

from emedgene_provider.client import status as st
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator, Webhooks
from emedgene_provider.testing.simulator import main, parse_webhooks
from emedgene_provider.testing.state import lifecycle

SECRET = "whsec-test-0123456789"


@dataclass
class Received:
    body: bytes
    signature: str | None
    at: float


@dataclass
class Receiver:
    url: str
    hints: list[Received] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(hint.body) for hint in self.hints]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(Received(body, self.headers.get("X-Emedgene-Signature"), time.monotonic()))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_port}/emedgene/webhooks/emedgene_default", got)
    finally:
        server.shutdown()
        server.server_close()


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _run_case(sim: EmedgeneSimulator, receiver: Receiver, hints: int) -> str:
    """Create a case and move it through its lifecycle on a clock this test moves, one stage once
    the simulator has drawn the hint of the stage before: no stage can pass unseen, however slow
    the machine. Returns once what was sent has been received."""
    now = [1000.0]
    sim.set_clock(lambda: now[0])
    client = EmedgeneClient(
        config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=None)
    )
    try:
        name = client.create_case(valid_case())
    finally:
        client.close()
    for drawn in range(1, hints + 1):
        _until(lambda n=drawn: len(sim.webhooks_sent()) >= n)
        now[0] += STAGE
    _until(lambda: all(s.http_status or s.error or _never_sent(s, sim) for s in sim.webhooks_sent()))
    return name


def _never_sent(sent: Any, sim: EmedgeneSimulator) -> bool:
    """A dropped hint, or a last one held back for a next hint that never comes."""
    return "drop" in sent.faults or ("reorder" in sent.faults and sent == sim.webhooks_sent()[-1])


def _until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the simulator did not send its hints"
        time.sleep(0.01)


STAGE = 1.0
STATUSES = lifecycle(valid_case().get("should_upload") is True, st.DELIVERED)


def _sim(receiver: Receiver, **options: Any) -> EmedgeneSimulator:
    hooks = Webhooks(url=receiver.url, secret=SECRET, interval=0.02, **options)
    return EmedgeneSimulator(stage_seconds=STAGE, webhooks=hooks)


def test_one_signed_hint_per_status_the_case_enters_in_order(receiver: Receiver) -> None:
    with _sim(receiver) as sim:
        name = _run_case(sim, receiver, len(STATUSES))
        sent = sim.webhooks_sent()
    assert [b["status"] for b in receiver.bodies()] == STATUSES
    assert {b["case_name"] for b in receiver.bodies()} == {name}
    assert all(b["event"] == "case.status_changed" for b in receiver.bodies())
    assert all(hint.signature == _signed(hint.body) for hint in receiver.hints)
    assert [hint.http_status for hint in sent] == [202] * len(STATUSES)


@pytest.mark.parametrize(
    ("shape", "where"),
    [
        ("nested", lambda body: (body["data"]["case"]["name"], body["data"]["case"]["status"])),
        ("list", lambda body: (body["events"][0]["case_name"], body["events"][0]["status"])),
    ],
)
def test_the_other_shapes_carry_the_name_and_status_where_documented(
    receiver: Receiver, shape, where
) -> None:
    with _sim(receiver, shape=shape) as sim:
        name = _run_case(sim, receiver, len(STATUSES))
    assert [where(body) for body in receiver.bodies()] == [(name, status) for status in STATUSES]


def test_dropped_hints_are_logged_and_never_sent(receiver: Receiver) -> None:
    with _sim(receiver, drop=1.0) as sim:
        _run_case(sim, receiver, len(STATUSES))
        sent = sim.webhooks_sent()
    assert receiver.hints == []
    assert [s.faults for s in sent] == [("drop",)] * len(STATUSES)
    assert all(s.http_status is None for s in sent)


def test_duplicated_hints_arrive_twice_alike(receiver: Receiver) -> None:
    with _sim(receiver, duplicate=1.0) as sim:
        _run_case(sim, receiver, len(STATUSES))
    bodies = [hint.body for hint in receiver.hints]
    assert len(bodies) == 2 * len(STATUSES)
    assert sorted(set(bodies), key=bodies.index) == bodies[::2] == bodies[1::2]


def test_unsigned_forged_and_false_status_hints(receiver: Receiver) -> None:
    with _sim(receiver, unsigned=1.0) as sim:
        _run_case(sim, receiver, len(STATUSES))
    assert receiver.hints and all(hint.signature is None for hint in receiver.hints)

    receiver.hints.clear()
    with _sim(receiver, forged=1.0) as sim:
        _run_case(sim, receiver, len(STATUSES))
    assert receiver.hints
    assert all(hint.signature and hint.signature != _signed(hint.body) for hint in receiver.hints)

    receiver.hints.clear()
    with _sim(receiver, false_status=1.0) as sim:
        _run_case(sim, receiver, len(STATUSES))
    told = [b["status"] for b in receiver.bodies()]
    assert all(hint.signature == _signed(hint.body) for hint in receiver.hints)  # signed, and lying
    assert len(told) == len(STATUSES) and all(t != real for t, real in zip(told, STATUSES, strict=True))


def test_delayed_hints_arrive_after_the_delay(receiver: Receiver) -> None:
    with _sim(receiver, delay=1.0, delay_seconds=0.5) as sim:
        started = time.monotonic()
        _run_case(sim, receiver, len(STATUSES))
        time.sleep(0.6)
    assert [b["status"] for b in receiver.bodies()] == STATUSES
    assert receiver.hints[0].at - started >= 0.5  # a lower bound: a delay is never shorter


def test_reordered_hints_arrive_after_the_next_one(receiver: Receiver) -> None:
    seed = next(s for s in range(100) if _reorders_some(s))
    with _sim(receiver, reorder=0.5, seed=seed) as sim:
        _run_case(sim, receiver, len(STATUSES))
        sent = sim.webhooks_sent()
    drawn = [s.status for s in sent]
    received = [b["status"] for b in receiver.bodies()]
    assert drawn == STATUSES
    assert received != drawn  # some came out of order
    held_last = bool(sent[-1].faults)  # a held last hint has no next one to follow
    assert sorted(received) == sorted(drawn[:-1] if held_last else drawn)
    for i, s in enumerate(sent[:-1]):
        if "reorder" in s.faults:
            later = next(t.status for t in sent[i + 1 :] if "reorder" not in t.faults)
            assert received.index(s.status) > received.index(later)


def _reorders_some(seed: int) -> bool:
    import random

    rng = random.Random(seed)
    draws = [rng.random() < 0.5 for _ in STATUSES]  # reorder is the only fault drawn with a chance
    return any(draws[:-2]) and not all(draws[:-1]) and not draws[-1]


def test_reset_forgets_the_hints_sent(receiver: Receiver) -> None:
    with _sim(receiver) as sim:
        _run_case(sim, receiver, len(STATUSES))
        assert sim.webhooks_sent()
        sim.reset()
        assert sim.webhooks_sent() == []


def test_cli_options_and_their_errors() -> None:
    hooks = parse_webhooks(["url=http://127.0.0.1:8080/emedgene/webhooks/x", "secret=123", "drop=0.25"])
    assert hooks is not None
    assert (hooks.secret, hooks.drop, hooks.shape) == ("123", 0.25, "flat")
    assert "123" not in repr(hooks)
    assert parse_webhooks([]) is None
    with pytest.raises(ValueError, match=r"unknown webhook option.*colour"):
        parse_webhooks(["url=http://x", "colour=red"])
    with pytest.raises(ValueError, match="need a url"):
        parse_webhooks(["secret=x"])
    with pytest.raises(ValueError, match="fault drop must be a probability"):
        Webhooks(url="http://x", drop=2)
    with pytest.raises(ValueError, match="shape must be one of flat, nested, list"):
        Webhooks(url="http://x", shape="xml")
    with pytest.raises(ValueError, match="http"):
        Webhooks(url="ftp://x")


def test_the_cli_refuses_a_bad_webhook_option_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--webhook", "url=http://127.0.0.1:1/x", "--webhook", "reorder=yes"]) == 2
    assert "webhook fault reorder must be a probability from 0 to 1, not 'yes'" in capsys.readouterr().err


# -- the provider's checks (client/webhooks.py) on the simulator's hints ------------------------------


@pytest.mark.parametrize("shape", ["flat", "nested", "list"])
def test_the_provider_finds_the_case_in_every_shape_and_trusts_only_signed_hints(
    receiver: Receiver, shape: str
) -> None:
    from emedgene_provider.client.webhooks import case_names_in, signature_matches

    seed = 7
    with _sim(receiver, shape=shape, unsigned=0.3, forged=0.3, seed=seed) as sim:
        name = _run_case(sim, receiver, len(STATUSES))
        sent = sim.webhooks_sent()
    assert len(receiver.hints) == len(sent) == len(STATUSES)
    # by status (each status comes once): hints may arrive in another order than drawn
    trusted = {
        _status(shape, hint.body): signature_matches(SECRET, hint.body, hint.signature)
        for hint in receiver.hints
    }
    genuine = {s.status: not ({"unsigned", "forged"} & set(s.faults)) for s in sent}
    assert trusted == genuine
    assert any(trusted.values()) and not all(trusted.values())  # the seed gives both kinds
    assert all(case_names_in(json.loads(hint.body)) == [name] for hint in receiver.hints)


def _status(shape: str, body: bytes) -> str:
    data = json.loads(body)
    return {"flat": lambda: data["status"], "nested": lambda: data["data"]["case"]["status"],
            "list": lambda: data["events"][0]["status"]}[shape]()  # fmt: skip
