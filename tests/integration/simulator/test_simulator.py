"""The Emedgene simulator, exercised over real HTTP the way a client meets it.

Timing: no test asserts that something happens *within* a time; lifecycle and expiry tests poll
in bounded loops with generous deadlines, so a slow machine makes them slower, never red.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from emedgene_provider.cases.validation import case_problems
from emedgene_provider.client import status as st
from emedgene_provider.client.endpoints import (
    API_KEY_TOKEN_PATH,
    CREATE_CASE_PATH,
    LEGACY_LOGIN_PATH,
    LOGIN_PATH,
)
from emedgene_provider.testing import EmedgeneSimulator

DEADLINE = 20.0  # seconds a polling loop may take before the test gives up
Factory = Callable[..., EmedgeneSimulator]

CASE: dict[str, Any] = {
    "sharing_level": 0,
    "should_upload": False,
    "test_data": {
        "type": "Exome",
        "sample_type": "vcf",
        "notes": "Proband with seizures",
        "extra_data": {"lims_id": "LIMS-1"},
        "patients": {
            "proband": {
                "id": "proband",
                "fastq_sample": "NA12878",
                "gender": "Female",
                "relationship": "Test Subject",
                "healthy": False,
                "phenotypes": [{"id": "phenotypes/EMG_PHENOTYPE_0001250"}],
            },
            "other": [],
        },
        "samples": [
            {
                "fastq": "NA12878",
                "status": "uploaded",
                "sampleFiles": [
                    {
                        "path": "/runs/1/NA12878.vcf.gz",
                        "filename": "NA12878.vcf.gz",
                        "size": 0,
                        "status": "uploaded",
                        "storage_id": 7,
                    }
                ],
            }
        ],
    },
}


def make_case(*, should_upload: bool = False, outcome: str | None = None) -> dict[str, Any]:
    case = copy.deepcopy(CASE)
    case["should_upload"] = should_upload
    if outcome is not None:
        case["test_data"]["extra_data"]["simulator_outcome"] = outcome
    return case


def login(sim: EmedgeneSimulator) -> requests.Session:
    """A session that sends the simulator's bearer token (and trusts its CA, if any)."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override session.verify
    if sim.ca_file:
        session.verify = sim.ca_file
    answer = session.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password})
    assert answer.status_code == 200, answer.text
    session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return session


def create(sim: EmedgeneSimulator, session: requests.Session, case: dict[str, Any] | None = None) -> str:
    answer = session.post(sim.url + CREATE_CASE_PATH, json=case or make_case())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["name"])


def status_of(sim: EmedgeneSimulator, session: requests.Session, name: str) -> str:
    answer = session.get(f"{sim.url}/api/test/{name}", params={"test_fields": "status"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def watch(sim: EmedgeneSimulator, session: requests.Session, name: str, until: str) -> list[str]:
    """Poll until the case shows ``until``; return the distinct statuses seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        status = status_of(sim, session, name)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == until:
            return seen
        time.sleep(0.01)
    pytest.fail(f"{name} never reached {until}; saw {seen}")


@pytest.fixture
def slow_sim(emedgene_simulator_factory: Factory) -> EmedgeneSimulator:
    """Lifecycle stages of a minute: a new case stays Uploading for the whole test."""
    return emedgene_simulator_factory(stage_seconds=60)


# -- authentication ----------------------------------------------------------------------------


def test_password_login_and_bearer_required(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    ok = requests.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password})
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "bearer"
    assert "expires_in" not in ok.json()
    token = ok.json()["access_token"]

    wrong = requests.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": "nope"})
    assert (wrong.status_code, wrong.json()) == (401, {"message": "Invalid username or password"})
    assert requests.post(sim.url + LOGIN_PATH, data="not json").status_code == 400
    assert requests.post(sim.url + LOGIN_PATH, json={"username": sim.username}).json()["message"]

    assert requests.get(sim.url + "/api/test").json() == {"message": "Unauthorized"}
    assert requests.get(sim.url + "/api/test").status_code == 401
    assert requests.get(sim.url + "/api/test", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert requests.get(sim.url + "/api/test", headers={"Authorization": f"Basic {token}"}).status_code == 401
    # The scheme is case-insensitive; the batch CLI's Emgauthorization header is accepted too.
    assert (
        requests.get(sim.url + "/api/test", headers={"Authorization": f"bearer {token}"}).status_code == 200
    )
    assert requests.get(sim.url + "/api/test", headers={"Emgauthorization": f"Bearer {token}"}).ok

    counters = sim.counters()
    assert counters["logins"] == 1
    assert counters["login_failures"] == 3


def test_legacy_login(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    answer = requests.post(
        sim.url + LEGACY_LOGIN_PATH, json={"username": sim.username, "password": sim.password}
    )
    assert answer.status_code == 200
    header = answer.json()["Authorization"]
    assert header.startswith("Bearer ")
    assert requests.get(sim.url + "/api/storage", headers={"Authorization": header}).status_code == 200
    bad = requests.post(sim.url + LEGACY_LOGIN_PATH, json={"username": "x", "password": sim.password})
    assert bad.status_code == 401


def test_api_key_login(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    assert sim.login_url == sim.url + API_KEY_TOKEN_PATH
    params = {"audience": "emedgene", "grant_type": "api_key"}

    def basic(key: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"emedgene:{key}".encode()).decode()}

    ok = requests.post(sim.login_url, params=params, headers=basic(sim.api_key))
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    assert requests.get(sim.url + "/api/test", headers=bearer).status_code == 200

    wrong = requests.post(sim.login_url, params=params, headers=basic("other-key"))
    assert (wrong.status_code, wrong.json()) == (401, {"message": "Invalid API key"})
    assert requests.post(sim.login_url, params=params).status_code == 401
    no_audience = requests.post(sim.login_url, params={"grant_type": "api_key"}, headers=basic(sim.api_key))
    assert no_audience.status_code == 400
    bad_grant = requests.post(
        sim.login_url, params={**params, "grant_type": "password"}, headers=basic(sim.api_key)
    )
    assert bad_grant.status_code == 400
    assert sim.counters()["logins"] == 1


def test_token_styles(emedgene_simulator_factory: Factory) -> None:
    with_expiry = emedgene_simulator_factory(token_style="expires_in", token_ttl=120)
    body = requests.post(
        with_expiry.url + LOGIN_PATH,
        json={"username": with_expiry.username, "password": with_expiry.password},
    ).json()
    assert body["expires_in"] == 120

    jwt = emedgene_simulator_factory(token_style="jwt", token_ttl=120)
    token = requests.post(
        jwt.url + LOGIN_PATH, json={"username": jwt.username, "password": jwt.password}
    ).json()["access_token"]
    header, payload, _signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert 60 <= claims["exp"] - time.time() <= 121
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["typ"] == "JWT"
    assert requests.get(jwt.url + "/api/test", headers={"Authorization": f"Bearer {token}"}).ok


def test_token_expiry_answers_403(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(token_ttl=0.3)
    session = login(sim)
    deadline = time.monotonic() + DEADLINE
    answer = session.get(sim.url + "/api/test")
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = session.get(sim.url + "/api/test")
    assert (answer.status_code, answer.json()) == (403, {"message": "Token expired"})


def test_expire_and_revoke_tokens(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    assert session.get(sim.url + "/api/test").status_code == 200
    sim.expire_tokens()
    assert session.get(sim.url + "/api/test").status_code == 403
    session = login(sim)
    assert session.get(sim.url + "/api/test").status_code == 200
    assert requests.post(sim.url + "/_simulator/tokens/revoke").status_code == 200
    assert session.get(sim.url + "/api/test").status_code == 401
    session = login(sim)
    sim.revoke_tokens()
    assert session.get(sim.url + "/api/test").status_code == 401
    session = login(sim)
    assert requests.post(sim.url + "/_simulator/tokens/expire").ok
    assert session.get(sim.url + "/api/test").status_code == 403


# -- cases -------------------------------------------------------------------------------------


def test_paging_is_capped_silently(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(page_size_cap=3)
    session = login(sim)
    created = [create(sim, session) for _ in range(7)]
    seen: list[str] = []
    offset = 0
    for _ in range(20):
        page = session.get(sim.url + "/api/test", params={"from": offset, "size": 5}).json()
        assert page["total"] == 7
        assert len(page["hits"]) <= 3
        if not page["hits"]:
            break
        seen += [hit["name"] for hit in page["hits"]]
        offset += len(page["hits"])
    assert seen == created  # creation order, each case once
    first = session.get(sim.url + "/api/test", params={"from": 0, "size": 2}).json()["hits"][0]
    assert set(first) == {"name", "status", "created", "type"}
    for bad in ({"from": "x"}, {"size": "-1"}, {"from": "-3"}, {"size": "1.5"}):
        assert session.get(sim.url + "/api/test", params=bad).status_code == 400


def test_create_dry_run_and_validation(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    dry = session.post(sim.url + CREATE_CASE_PATH, params={"dry_run": "true"}, json=make_case())
    assert (dry.status_code, dry.json()) == (200, {"message": "Case is valid"})
    assert session.get(sim.url + "/api/test").json()["total"] == 0
    assert sim.counters()["cases_created"] == 0

    invalid = make_case()
    invalid["test_data"]["type"] = "Genome-ish"
    del invalid["test_data"]["samples"]
    for params in ({}, {"dry_run": "true"}):
        refused = session.post(sim.url + CREATE_CASE_PATH, params=params, json=invalid)
        assert refused.status_code == 400
        assert refused.json() == {"message": case_problems(invalid)[0]}
    assert session.post(sim.url + CREATE_CASE_PATH, data="{not json").status_code == 400

    names = {create(sim, session) for _ in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"EMG\d{9}", n) for n in names)
    assert sim.counters()["cases_created"] == 3
    assert sim.counters()["requests"]["POST /api/cases/v2/cases"] == 7


def test_seed_makes_names_reproducible(emedgene_simulator_factory: Factory) -> None:
    first, second = (emedgene_simulator_factory(seed=42) for _ in range(2))
    assert create(first, login(first)) == create(second, login(second))


def test_case_details_and_test_fields(slow_sim: EmedgeneSimulator) -> None:
    sim = slow_sim
    session = login(sim)
    name = create(sim, session)
    full = session.get(f"{sim.url}/api/test/{name}").json()
    assert full["name"] == name
    assert full["status"] == st.UPLOADING
    assert full["notes"] == "Proband with seizures"
    assert full["test_data"]["type"] == "Exome"
    assert full["participants"][0]["fastq_sample"] == "NA12878"
    assert full["genes"] and all(isinstance(g, str) for g in full["genes"])
    assert session.get(f"{sim.url}/api/test/{name}?test_fields=status").json() == {
        "name": name,
        "status": st.UPLOADING,
    }
    two = session.get(f"{sim.url}/api/test/{name}?test_fields=status&test_fields=notes").json()
    assert set(two) == {"name", "status", "notes"}


def test_not_found(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    for path in ("/api/test/EMG000000001", "/api/candidates/EMG000000001", "/api/test/EMG000000001/export"):
        answer = session.get(sim.url + path)
        assert (answer.status_code, answer.json()) == (404, {"message": "Case EMG000000001 not found"})
    unknown = session.get(sim.url + "/api/no/such/thing")
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"].startswith("application/json")
    assert "message" in unknown.json()
    assert session.get(sim.url + "/api/storage/99").status_code == 404


def test_storage(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    hits = session.get(sim.url + "/api/storage").json()["hits"]
    assert {h["scheme"] for h in hits} == {"basespace", "s3"}
    assert session.get(sim.url + "/api/storage/3").json() == {
        "id": 3,
        "name": "BaseSpace",
        "scheme": "basespace",
    }


# -- lifecycle ---------------------------------------------------------------------------------


def _in_lifecycle_order(seen: list[str], expected: list[str]) -> bool:
    positions = [expected.index(s) for s in seen]
    return positions == sorted(positions)


def test_lifecycle_advances_with_time(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0.05)
    session = login(sim)
    name = create(sim, session, make_case(should_upload=True))
    seen = watch(sim, session, name, st.DELIVERED)
    order = [st.PENDING_SEQUENCING, st.UPLOADING, st.IN_PROGRESS, st.DELIVERED]
    assert _in_lifecycle_order(seen, order), seen
    # Which stages a poll happens to catch depends on the machine's speed; their order does not.


def test_should_upload_starts_pending_sequencing(slow_sim: EmedgeneSimulator) -> None:
    session = login(slow_sim)
    name = create(slow_sim, session, make_case(should_upload=True))
    assert status_of(slow_sim, session, name) == st.PENDING_SEQUENCING


def test_issue_reported_is_never_delivered(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0.05)
    session = login(sim)
    name = create(sim, session, make_case(outcome=st.ISSUE_REPORTED))
    seen = watch(sim, session, name, st.ISSUE_REPORTED)
    assert st.DELIVERED not in seen
    assert _in_lifecycle_order(seen, [st.UPLOADING, st.IN_PROGRESS, st.ISSUE_REPORTED])
    refused = session.get(f"{sim.url}/api/candidates/{name}")
    assert refused.status_code == 400
    assert "not delivered" in refused.json()["message"]


def test_finalized_and_custom_outcomes(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(
        stage_seconds=0.05, outcome="Awaiting sign-out", custom_statuses=["Awaiting sign-out"]
    )
    session = login(sim)
    finalized = create(sim, session, make_case(outcome=st.FINALIZED))
    custom = create(sim, session)
    seen = watch(sim, session, finalized, st.FINALIZED)
    assert _in_lifecycle_order(seen, [st.UPLOADING, st.IN_PROGRESS, st.DELIVERED, st.FINALIZED])
    seen = watch(sim, session, custom, "Awaiting sign-out")
    assert _in_lifecycle_order(seen, [st.UPLOADING, st.IN_PROGRESS, st.DELIVERED, "Awaiting sign-out"])
    # A declared custom status ranks past Delivered: results are available.
    assert session.get(f"{sim.url}/api/candidates/{custom}").status_code == 200


def test_candidates_and_export_need_delivery(slow_sim: EmedgeneSimulator) -> None:
    sim = slow_sim
    session = login(sim)
    name = create(sim, session)
    for path in (f"/api/candidates/{name}", f"/api/test/{name}/export"):
        refused = session.get(sim.url + path)
        assert refused.status_code == 400
        assert refused.json() == {"message": f"Case {name} is not delivered yet (status: Uploading)"}
    sim.set_status(name, st.DELIVERED)
    candidates = session.get(f"{sim.url}/api/candidates/{name}").json()["hits"]
    export = session.get(f"{sim.url}/api/test/{name}/export").json()["hits"]
    assert 5 <= len(export) <= 40
    assert len(candidates) == len(export)
    record = export[0]
    for key in ("chrom", "pos", "ref", "alt", "gene", "transcript", "hgvs_c", "hgvs_p", "zygosity"):
        assert key in record
    assert record["acmg_classification"] and 0 <= record["pathogenicity_score"] <= 1
    assert all(v["chrom"].startswith("chr") for v in export)
    # Deterministic per case name.
    assert session.get(f"{sim.url}/api/test/{name}/export").json()["hits"] == export


def test_export_key_variants(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(export_key="variants", stage_seconds=0)
    session = login(sim)
    name = create(sim, session)
    body = session.get(f"{sim.url}/api/test/{name}/export").json()
    assert list(body) == ["variants"]


def test_admin_sets_status_over_http(slow_sim: EmedgeneSimulator) -> None:
    sim = slow_sim
    session = login(sim)
    name = create(sim, session)
    answer = requests.post(f"{sim.url}/_simulator/cases/{name}/status", json={"status": st.TRASH_BIN})
    assert answer.status_code == 200
    assert status_of(sim, session, name) == st.TRASH_BIN
    assert requests.post(f"{sim.url}/_simulator/cases/EMG1/status", json={"status": "x"}).status_code == 404
    assert requests.post(f"{sim.url}/_simulator/cases/{name}/status", json={}).status_code == 400
    with pytest.raises(KeyError):
        sim.set_status("EMG000000002", st.DELIVERED)


def test_reset_clears_everything(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    create(sim, session)
    sim.inject("503", times=5)
    assert requests.post(sim.url + "/_simulator/reset").status_code == 200
    counters = requests.get(sim.url + "/_simulator/counters").json()
    assert counters["cases_created"] == counters["logins"] == counters["faults_injected"] == 0
    assert counters["requests"] == {}
    assert session.get(sim.url + "/api/test").status_code == 401  # tokens are gone
    session = login(sim)
    assert session.get(sim.url + "/api/test").json() == {"hits": [], "total": 0}  # fault queue too
    sim.reset()
    assert sim.counters()["logins"] == 0


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "text"),
    [
        ("429", 429, "application/json", "Too Many Requests"),
        ("429_no_retry_after", 429, "application/json", "Too Many Requests"),
        ("500_html", 500, "text/html", "<title>500 Internal Server Error</title>"),
        ("502_html", 502, "text/html", "<title>502 Bad Gateway</title>"),
        ("503", 503, "application/json", '"Service Unavailable"'),
        ("504_html", 504, "text/html", "<title>504 Gateway Timeout</title>"),
    ],
)
def test_answering_faults(
    emedgene_simulator: EmedgeneSimulator, kind: str, status: int, content_type: str, text: str
) -> None:
    sim = emedgene_simulator
    session = login(sim)
    sim.inject(kind, times=2, retry_after=2)
    for _ in range(2):
        answer = session.get(sim.url + "/api/test")
        assert answer.status_code == status
        assert answer.headers["Content-Type"].startswith(content_type)
        assert text in answer.text
        assert answer.headers.get("Retry-After") == ("2" if kind == "429" else None)
    assert session.get(sim.url + "/api/test").status_code == 200
    assert sim.counters()["faults_injected"] == 2


def test_429_retry_after_defaults_to_one_second(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    assert requests.post(sim.url + "/_simulator/faults", json={"kind": "429"}).status_code == 201
    answer = requests.get(sim.url + "/api/storage")
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")


def test_reset_fault_drops_the_connection(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    sim.inject("reset", path="/api/test")
    with pytest.raises(requests.ConnectionError):
        session.get(sim.url + "/api/test")
    assert session.get(sim.url + "/api/test").status_code == 200
    assert sim.counters()["faults_injected"] == 1


def test_lost_create_applies_the_create(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    sim.inject("lost_create")
    assert session.get(sim.url + "/api/test").status_code == 200  # a poll is never "lost"
    with pytest.raises(requests.ConnectionError):
        session.post(sim.url + CREATE_CASE_PATH, json=make_case())
    counters = sim.counters()
    assert counters["cases_created"] == 1
    assert counters["faults_injected"] == 1
    hits = session.get(sim.url + "/api/test").json()["hits"]
    assert len(hits) == 1 and re.fullmatch(r"EMG\d{9}", hits[0]["name"])


def test_lost_answer(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    sim.inject("lost_answer", method="POST", path=LOGIN_PATH)
    with pytest.raises(requests.ConnectionError):
        requests.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password})
    assert sim.counters()["logins"] == 1  # the login happened; its answer was lost


def test_slow_fault_answers_normally(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    sim.inject("slow", delay=0.3)
    started = time.monotonic()
    answer = session.get(sim.url + "/api/storage")
    assert answer.status_code == 200 and answer.json()["hits"]
    assert time.monotonic() - started >= 0.25  # a lower bound only: the delay really happened


def test_fault_matching_by_method_and_path(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    sim.inject("503", method="POST", path="/api/cases")
    assert session.get(sim.url + "/api/test").status_code == 200
    assert session.get(sim.url + "/_simulator/counters").status_code == 200  # admin is exempt
    assert session.post(sim.url + CREATE_CASE_PATH, json=make_case()).status_code == 503
    assert session.post(sim.url + CREATE_CASE_PATH, json=make_case()).status_code == 201
    assert requests.post(sim.url + "/_simulator/faults", json={"kind": "nope"}).status_code == 400
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.inject("teapot")


def test_fault_rate(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    sim.set_fault_rate(1.0, kinds=["503"])
    assert all(session.get(sim.url + "/api/test").status_code == 503 for _ in range(5))
    assert requests.get(sim.url + "/_simulator/counters").status_code == 200  # never on admin
    answer = requests.post(sim.url + "/_simulator/fault-rate", json={"rate": 0.5, "seed": 1})
    assert answer.json()["rate"] == 0.5
    codes = [session.get(sim.url + "/api/test").status_code for _ in range(40)]
    assert 200 in codes and any(code in (429, 502, 503, 504) for code in codes)
    sim.set_fault_rate(0)
    assert all(session.get(sim.url + "/api/test").status_code == 200 for _ in range(5))
    assert sim.counters()["faults_injected"] == 5 + sum(code != 200 for code in codes)


# -- transport ---------------------------------------------------------------------------------


def test_tls_with_generated_ca(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(tls=True)
    assert sim.url.startswith("https://127.0.0.1:")
    assert sim.ca_file and os.path.exists(sim.ca_file)
    answer = requests.post(
        sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password}, verify=sim.ca_file
    )
    assert answer.status_code == 200
    localhost = sim.url.replace("127.0.0.1", "localhost")
    assert requests.get(localhost + "/_simulator/counters", verify=sim.ca_file).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sim.url + "/_simulator/counters")
    extra = sim.connection_json()["extra"]
    assert extra["verify"] == sim.ca_file
    ca_dir = os.path.dirname(sim.ca_file)
    sim.stop()
    assert not os.path.exists(ca_dir)


def test_restart_keeps_state_and_port(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    name = create(sim, session)
    url = sim.url
    sim.restart()
    assert sim.url == url
    fresh = requests.Session()
    fresh.headers.update(session.headers)
    assert fresh.get(f"{sim.url}/api/test/{name}").status_code == 200  # same token, same case
    assert sim.counters()["cases_created"] == 1


def test_200_concurrent_requests(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    session = login(sim)
    name = create(sim, session)
    headers = dict(session.headers)

    def poll(_: int) -> int:
        return requests.get(
            f"{sim.url}/api/test/{name}?test_fields=status", headers=headers, timeout=60
        ).status_code

    with ThreadPoolExecutor(max_workers=200) as pool:
        codes = list(pool.map(poll, range(200)))
    assert codes == [200] * 200
    counters = sim.counters()
    assert counters["requests"]["GET /api/test/{name}"] == 200
    assert counters["in_flight_max"] >= 1


# -- connection helpers and entry points -------------------------------------------------------


def test_connection_json_and_uri(emedgene_simulator: EmedgeneSimulator) -> None:
    sim = emedgene_simulator
    assert sim.connection_json() == {
        "conn_type": "emedgene",
        "host": sim.url,
        "login": "lab-user",
        "password": "lab-password",
        "extra": {"auth_type": "password"},
    }
    assert sim.connection_json("api_key") == {
        "conn_type": "emedgene",
        "host": sim.url,
        "extra": {"api_key": "sim-api-key", "login_url": sim.login_url, "auth_type": "api_key"},
    }
    uri = sim.connection_uri()
    assert uri.startswith("emedgene://http://lab-user:lab-password@")
    rest = urlsplit(uri.split("://", 1)[1])
    assert f"{rest.scheme}://{unquote(rest.netloc.split('@')[1])}" == sim.url
    assert json.loads(parse_qs(rest.query)["__extra__"][0]) == {"auth_type": "password"}


def test_constructor_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="token_style"):
        EmedgeneSimulator(token_style="opaque")
    with pytest.raises(ValueError, match="export_key"):
        EmedgeneSimulator(export_key="rows")
    with pytest.raises(RuntimeError, match="not running"):
        EmedgeneSimulator().counters()


@pytest.fixture
def cli() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "emedgene_provider.testing.simulator", "--port", "0", "--tls", "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=DEADLINE)


def test_cli_serves_until_sigterm(cli: subprocess.Popen[str]) -> None:
    assert cli.stdout is not None
    ca_line = cli.stdout.readline().strip()
    ready = cli.stdout.readline().strip()
    assert ca_line.startswith("CA bundle: ")
    match = re.fullmatch(r"Emedgene simulator listening on (https://127\.0\.0\.1:\d+)", ready)
    assert match, (ca_line, ready)
    url, ca_file = match.group(1), ca_line.removeprefix("CA bundle: ")
    answer = requests.post(
        url + LOGIN_PATH, json={"username": "lab-user", "password": "lab-password"}, verify=ca_file
    )
    assert answer.status_code == 200
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(timeout=DEADLINE) == 0
    assert not os.path.exists(ca_file)  # generated certificates are removed on exit
