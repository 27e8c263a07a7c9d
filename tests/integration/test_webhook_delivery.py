"""Webhooks across a real socket: the simulator sends status hints, with every fault it has, to
the provider's receiver served by uvicorn (as Airflow 3's api-server serves a plugin app); only
the genuine hints reach the board, and each names the case.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import airflow
import pytest
from airflow_fixtures import free_port, valid_case

from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator, Webhooks
from emedgene_provider.testing.state import lifecycle

pytestmark = pytest.mark.skipif(
    not airflow.__version__.startswith("3."), reason="the receiver runs on Airflow 3's api-server"
)

SECRET = "whsec-delivery-test-77"
CONN = "emedgene_delivery"
STAGE = 1.0


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Any:
    import uvicorn

    from emedgene_provider.plugins.webhooks import create_app

    conn = {"conn_type": "emedgene", "host": "https://lab.emedgene.com", "login": "u", "password": "p"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}",
        __import__("json").dumps({**conn, "extra": {"webhook_secret": SECRET}}),
    )
    recorded: list[tuple[str, list[str]]] = []
    app = create_app(
        record=lambda conn_id, names, now: recorded.append((conn_id, names)), confirm=lambda *a: None
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/webhooks/{CONN}", recorded
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("shape", ["flat", "nested", "list"])
def test_only_genuine_hints_reach_the_board(receiver: Any, shape: str) -> None:
    url, recorded = receiver
    hooks = Webhooks(
        url=url, secret=SECRET, shape=shape, interval=0.02, seed=3,
        unsigned=0.25, forged=0.25, duplicate=0.25, false_status=0.25,
    )  # fmt: skip
    statuses = lifecycle(valid_case().get("should_upload") is True, "Delivered")
    with EmedgeneSimulator(stage_seconds=STAGE, webhooks=hooks) as sim:
        now = [1000.0]
        sim.set_clock(lambda: now[0])
        config = config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=None)
        client = EmedgeneClient(config)
        try:
            name = client.create_case(valid_case())
        finally:
            client.close()
        for drawn in range(1, len(statuses) + 1):
            _until(lambda n=drawn: len(sim.webhooks_sent()) >= n)
            now[0] += STAGE
        _until(lambda: all(s.http_status or s.error for s in sim.webhooks_sent()))
        sent = sim.webhooks_sent()
    genuine = [s for s in sent if not {"unsigned", "forged"} & set(s.faults)]
    copies = sum(2 if "duplicate" in s.faults else 1 for s in genuine)
    assert genuine and len(genuine) < len(sent)  # the seed gives both kinds
    assert {s.http_status for s in sent if s not in genuine} == {401}
    assert {s.http_status for s in genuine} == {202}
    _until(lambda: len(recorded) >= copies)  # the board is written after the 202
    assert recorded == [(CONN, [name])] * copies  # a lying status still names the case: a hint only
