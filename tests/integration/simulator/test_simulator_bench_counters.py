"""What the benchmarks read from the simulator: connections accepted, the peak request rate over
any 1 s window, counters reset without losing cases, big exports on request, an injectable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from airflow_fixtures import valid_case

from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.testing.state import SimState


@pytest.fixture
def sim(emedgene_simulator_factory) -> EmedgeneSimulator:
    return emedgene_simulator_factory(tls=True, stage_seconds=0)


def _session(sim: EmedgeneSimulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = sim.ca_file
    token = session.post(
        sim.url + "/api/auth/v2/api_login/", json={"username": sim.username, "password": sim.password}
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture
def session(sim: EmedgeneSimulator) -> Iterator[requests.Session]:
    with _session(sim) as s:
        yield s


def _create(sim: EmedgeneSimulator, session: requests.Session, **extra_data) -> str:
    answer = session.post(sim.url + "/api/cases/v2/cases", json=valid_case(**extra_data))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["name"])


def test_connections_opened_counts_accepted_connections_not_requests(
    sim: EmedgeneSimulator, session: requests.Session
) -> None:
    name = _create(sim, session)
    for _ in range(5):  # one kept-alive connection
        session.get(f"{sim.url}/api/test/{name}", params={"test_fields": "status"}).raise_for_status()
    assert sim.counters()["connections_opened"] == 1
    for _ in range(3):  # a new connection (and TLS handshake) per call
        requests.get(f"{sim.url}/api/test/{name}", headers=session.headers, verify=sim.ca_file)
    assert sim.counters()["connections_opened"] == 4


def test_reset_counters_keeps_cases_and_tokens(sim: EmedgeneSimulator, session: requests.Session) -> None:
    name = _create(sim, session)
    sim.reset_counters()
    counters = sim.counters()
    assert (
        counters["logins"] == 0 and counters["requests"] == {} and counters["peak_requests_per_second"] == 0
    )
    # the case and the token survived
    assert session.get(f"{sim.url}/api/test/{name}").status_code == 200
    after = session.post(sim.url + "/_simulator/counters/reset").json()
    assert after["requests"] == {} and after["connections_opened"] == 0


def test_peak_rate_is_the_busiest_one_second_window_sliding_by_a_tenth() -> None:
    now = [100.0]
    state = SimState(clock=lambda: now[0])
    for t, count in ((100.0, 3), (100.95, 4), (101.05, 5), (102.5, 1)):
        now[0] = t
        for _ in range(count):
            state.note_arrival()
    # 100.95 and 101.05 straddle a second boundary: 9 within one window, though no whole second has 9
    assert state.peak_requests_per_second() == 9
    state.reset_counters()
    assert state.peak_requests_per_second() == 0


def test_peak_rate_counts_requests_over_http(sim: EmedgeneSimulator, session: requests.Session) -> None:
    name = _create(sim, session)
    sim.reset_counters()
    for _ in range(7):
        session.get(f"{sim.url}/api/test/{name}")
    sim.counters()  # admin calls are not counted
    assert 1 <= sim.counters()["peak_requests_per_second"] <= 7
    assert sum(sim.counters()["requests"].values()) == 7


def test_simulator_variants_sizes_export_and_candidates(
    sim: EmedgeneSimulator, session: requests.Session
) -> None:
    big = _create(sim, session, simulator_variants=1234)
    export = session.get(f"{sim.url}/api/test/{big}/export").json()["hits"]
    assert len(export) == 1234
    assert session.get(f"{sim.url}/api/test/{big}/export").json()["hits"] == export  # same every call
    assert len(session.get(f"{sim.url}/api/candidates/{big}").json()["hits"]) == 1234
    usual = _create(sim, session, simulator_variants="lots")  # not a count: the usual 5 to 40
    assert 5 <= len(session.get(f"{sim.url}/api/test/{usual}/export").json()["hits"]) <= 40


def test_set_clock_moves_the_lifecycle(emedgene_simulator_factory) -> None:
    sim = emedgene_simulator_factory(stage_seconds=3600, token_ttl=10**9)  # the clock ages tokens too
    now = [0.0]
    sim.set_clock(lambda: now[0])
    with _session(sim) as session:
        name = _create(sim, session)

        def status() -> str:
            return str(
                session.get(f"{sim.url}/api/test/{name}", params={"test_fields": "status"}).json()["status"]
            )

        assert status() == "Uploading"
        now[0] = 3600.0
        assert status() == "In progress"
        now[0] = 7200.0
        assert status() == "Delivered"
