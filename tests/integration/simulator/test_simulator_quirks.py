"""The simulator's quirks (a tenant that lags, skews and lies), observed over real HTTP with plain
``requests``: the simulator is checked without the client code it exists to test.

Time: waits on the lifecycle, the read lag and idle connections run on a clock the test moves
(``set_clock``); the one real wait (the login delay) is only checked from below.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from emedgene_provider.client.endpoints import CREATE_CASE_PATH, LOGIN_PATH
from emedgene_provider.testing import EmedgeneSimulator, Quirks, SimulatorConfig
from emedgene_provider.testing.simulator import main, parse_quirks

Factory = Callable[..., EmedgeneSimulator]
BOM = b"\xef\xbb\xbf"

CASE: dict[str, Any] = {
    "test_data": {
        "type": "Exome",
        "sample_type": "vcf",
        "patients": {
            "proband": {
                "id": "proband", "fastq_sample": "NA12878", "gender": "Female",
                "relationship": "Test Subject", "healthy": False, "phenotypes": [],
            },
            "other": [],
        },
        "samples": [{"fastq": "NA12878", "status": "uploaded", "sampleFiles": [
            {"path": "/runs/1/NA12878.vcf.gz", "filename": "NA12878.vcf.gz", "size": 0,
             "status": "uploaded", "storage_id": 7},
        ]}],
    }
}  # fmt: skip


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_for(sim: EmedgeneSimulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    answer = session.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password})
    assert answer.status_code == 200, answer.text
    token = json.loads(answer.content.decode("utf-8-sig"))["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def create(sim: EmedgeneSimulator, session: requests.Session, count: int = 1) -> list[str]:
    names = []
    for _ in range(count):
        answer = session.post(sim.url + CREATE_CASE_PATH, json=copy.deepcopy(CASE))
        assert answer.status_code == 201, answer.text
        names.append(json.loads(answer.content.decode("utf-8-sig"))["name"])
    return names


def page(sim: EmedgeneSimulator, session: requests.Session, start: int, size: int) -> dict[str, Any]:
    answer = session.get(sim.url + "/api/test", params={"from": start, "size": size})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def names_of(answer: dict[str, Any]) -> list[str]:
    return [hit["name"] for hit in answer["hits"]]


# -- the options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"read_lag": -1}, "read_lag"),
        ({"read_lag": float("inf")}, "read_lag"),
        ({"login_delay": "slow"}, "login_delay"),
        ({"created_style": "rfc2822"}, "created_style"),
        ({"tenant_utc_offset_hours": 20}, "tenant_utc_offset_hours"),
        ({"list_total": "lots"}, "list_total"),
        ({"list_order": "random"}, "list_order"),
        ({"list_churn": "both"}, "list_churn"),
        ({"results_short": -1}, "results_short"),
        ({"results_short": True}, "results_short"),
        ({"duplicate_status": 3}, "duplicate_status"),
        ({"bom": "yes"}, "bom"),
        ({"stale_keepalive": -0.5}, "stale_keepalive"),
        ({"clock_skew": float("nan")}, "clock_skew"),
        ({"read_lagg": 1}, "read_lagg"),
    ],
)
def test_a_bad_quirk_is_refused_by_name(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Quirks.from_json(changes)


def test_quirks_round_trip_and_defaults_change_nothing() -> None:
    quirks = Quirks(read_lag=2, created_style="date", list_churn="insert", results_short=0)
    assert Quirks.from_json(quirks.to_json()) == quirks
    assert set(quirks.to_json()) == set(Quirks.names())
    assert SimulatorConfig().quirks == Quirks()
    with pytest.raises(ValueError, match="JSON object"):
        Quirks.from_json(["read_lag", 2])
    with pytest.raises(ValueError, match="quirks must be a Quirks"):
        SimulatorConfig(quirks={"read_lag": 2})  # type: ignore[arg-type]


def test_cli_quirks_parse_as_json_or_else_a_string(capsys: pytest.CaptureFixture[str]) -> None:
    quirks = parse_quirks(["read_lag=2.5", "created_style=naive_local", "list_churn=null", "bom=true"])
    assert quirks == Quirks(read_lag=2.5, created_style="naive_local", list_churn=None, bom=True)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_quirks(["read_lag"])
    assert main(["--quirk", "read_lagg=1"]) == 2
    assert "read_lagg" in capsys.readouterr().err


def test_set_quirks_the_admin_call_and_reset(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(bom=True))
    assert sim.set_quirks(read_lag=3) == Quirks(bom=True, read_lag=3)
    with pytest.raises(ValueError, match="nope"):
        sim.set_quirks(nope=1)

    answer = requests.post(sim.url + "/_simulator/quirks", json={"list_total": "zero"})
    assert answer.status_code == 200
    assert answer.json() == Quirks(bom=True, read_lag=3, list_total="zero").to_json()
    refused = requests.post(sim.url + "/_simulator/quirks", json={"list_total": "lots"})
    assert refused.status_code == 400
    assert "list_total" in refused.json()["message"]
    assert requests.get(sim.url + "/_simulator/quirks").json()["list_total"] == "zero"

    sim.reset()
    assert sim.quirks == Quirks(bom=True)


# -- lag and skew ------------------------------------------------------------------------------


def test_read_lag_hides_a_new_case_from_reads_by_name_only(emedgene_simulator_factory: Factory) -> None:
    clock = Clock()
    sim = emedgene_simulator_factory(stage_seconds=0, quirks=Quirks(read_lag=5))
    sim.set_clock(clock)
    session = session_for(sim)
    (name,) = create(sim, session)

    for path in (f"/api/test/{name}", f"/api/test/{name}/export", f"/api/candidates/{name}"):
        answer = session.get(sim.url + path)
        assert answer.status_code == 404, path
        assert answer.json() == {"message": f"Case {name} not found"}
    assert session.get(sim.url + f"/api/test/{name}", params={"test_fields": "status"}).status_code == 404
    assert names_of(page(sim, session, 0, 10)) == [name]  # the list is list_lag's business

    clock.now += 5
    for path in (f"/api/test/{name}", f"/api/test/{name}/export", f"/api/candidates/{name}"):
        assert session.get(sim.url + path).status_code == 200, path
    assert sim.counters()["read_lag_404s"] == 4
    sim.reset_counters()
    assert sim.counters()["read_lag_404s"] == 0


def created_pair(sim: EmedgeneSimulator, session: requests.Session, name: str) -> tuple[Any, Any]:
    hit = page(sim, session, 0, 10)["hits"][0]
    case = session.get(sim.url + f"/api/test/{name}").json()
    return hit.get("created", "(missing)"), case.get("created", "(missing)")


def test_created_styles_write_the_same_instant(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(tenant_utc_offset_hours=-5))
    session = session_for(sim)
    (name,) = create(sim, session)
    iso, iso_case = created_pair(sim, session, name)
    assert iso == iso_case and iso.endswith("Z")
    instant = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    local = instant.astimezone(timezone(timedelta(hours=-5))).replace(tzinfo=None)

    expected = {
        "naive_local": local.isoformat(timespec="seconds"),
        "date": local.date().isoformat(),
        "epoch_ms": None,  # checked below: milliseconds of the same second
        "missing": "(missing)",
        "garbage": "sometime last week",
    }
    for style, want in expected.items():
        sim.set_quirks(created_style=style)
        listed, detailed = created_pair(sim, session, name)
        assert listed == detailed, style
        if style == "epoch_ms":
            assert isinstance(listed, int) and listed // 1000 == int(instant.timestamp())
        else:
            assert listed == want, style


def test_clock_skew_moves_created_and_the_date_header(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory()
    session = session_for(sim)
    (name,) = create(sim, session)
    before = session.get(sim.url + "/api/test")
    true_created = before.json()["hits"][0]["created"]

    sim.set_quirks(clock_skew=-86400)
    skewed = session.get(sim.url + "/api/test")
    sim.set_quirks(clock_skew=0)
    after = session.get(sim.url + "/api/test")

    created = datetime.fromisoformat(skewed.json()["hits"][0]["created"].replace("Z", "+00:00"))
    assert created == datetime.fromisoformat(true_created.replace("Z", "+00:00")) - timedelta(days=1)
    day = timedelta(days=1)
    dates = [parsedate_to_datetime(r.headers["Date"]) for r in (before, skewed, after)]
    assert dates[0] - day <= dates[1] <= dates[2] - day
    assert session.get(sim.url + f"/api/test/{name}").json()["created"] == true_created


# -- lists that lie ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "total"),
    [("exact", 3), ("negative", -1), ("zero", 0), ("page", 2), ("null", None), ("missing", "(missing)")],
)
def test_list_total_styles(emedgene_simulator_factory: Factory, style: str, total: Any) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(list_total=style))
    session = session_for(sim)
    create(sim, session, 3)
    answer = page(sim, session, 0, 2)
    assert len(answer["hits"]) == 2
    assert answer.get("total", "(missing)") == total


def test_list_order_ignore_from_and_shuffle(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(seed=7)
    session = session_for(sim)
    names = create(sim, session, 6)
    assert names_of(page(sim, session, 0, 10)) == names

    sim.set_quirks(list_order="newest_first")
    assert names_of(page(sim, session, 0, 10)) == names[::-1]
    assert names_of(page(sim, session, 3, 3)) == names[2::-1]

    sim.set_quirks(list_order="oldest_first", ignore_from=True)
    assert names_of(page(sim, session, 3, 3)) == names[:3]

    sim.set_quirks(ignore_from=False, shuffle_first_page=True)
    orders = [names_of(page(sim, session, 0, 4)) for _ in range(5)]
    for order in orders:
        assert sorted(order) == sorted(names[:4]) and order != names[:4]
    assert names_of(page(sim, session, 4, 4)) == names[4:]  # later pages keep their order


def test_list_churn_insert_repeats_a_case_on_the_next_page(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(list_order="newest_first", list_churn="insert"))
    session = session_for(sim)
    c1, c2, c3 = create(sim, session, 3)
    assert names_of(page(sim, session, 0, 2)) == [c3, c2]
    assert names_of(page(sim, session, 2, 2)) == [c2, c1]  # a filler landed on top: c2 again

    counters = sim.counters()
    assert counters["churn_inserts"] == 2 and counters["cases_created"] == 3
    filler = page(sim, session, 0, 1)["hits"][0]["name"]
    assert filler not in (c1, c2, c3)
    case = session.get(sim.url + f"/api/test/{filler}").json()
    assert "airflow_idempotency_key" not in case["extra_data"]


def test_list_churn_delete_makes_a_scan_skip_a_case(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(list_order="newest_first", list_churn="delete"))
    session = session_for(sim)
    c1, c2, c3, c4 = create(sim, session, 4)
    first = page(sim, session, 0, 2)
    second = page(sim, session, 2, 2)
    assert names_of(first) == [c4, c3]
    assert names_of(second) == [c1]  # c4 left the list: c2 moved onto page one, never seen
    assert c2 not in names_of(first) + names_of(second)
    assert second["total"] == 3
    assert session.get(sim.url + f"/api/test/{c4}").status_code == 200  # off the list, not gone
    assert sim.counters()["churn_deletes"] == 2


# -- answers that lie --------------------------------------------------------------------------


def test_results_short_says_so_in_total(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0)
    session = session_for(sim)
    (name,) = create(sim, session)
    full = {
        "export": session.get(sim.url + f"/api/test/{name}/export").json(),
        "candidates": session.get(sim.url + f"/api/candidates/{name}").json(),
    }
    assert all("total" not in answer for answer in full.values())

    sim.set_quirks(results_short=2)
    short = {
        "export": session.get(sim.url + f"/api/test/{name}/export").json(),
        "candidates": session.get(sim.url + f"/api/candidates/{name}").json(),
    }
    for kind in ("export", "candidates"):
        assert short[kind]["hits"] == full[kind]["hits"][:2], kind
        assert short[kind]["total"] == len(full[kind]["hits"]) > 2, kind


def pairs(raw: bytes) -> list[list[tuple[str, Any]]]:
    """Every JSON object in ``raw`` as its key/value pairs, duplicates kept."""
    objects: list[list[tuple[str, Any]]] = []

    def hook(items: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(items)
        return dict(items)

    json.loads(raw, object_pairs_hook=hook)
    return objects


def test_duplicate_status_carries_the_key_twice(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0, quirks=Quirks(duplicate_status="Delivered"))
    session = session_for(sim)
    sim.set_quirks(duplicate_status=None)
    (name,) = create(sim, session)
    sim.set_status(name, "Issue reported")
    sim.set_quirks(duplicate_status="Delivered")

    for params in ({}, {"test_fields": "status"}):
        raw = session.get(sim.url + f"/api/test/{name}", params=params).content
        top = pairs(raw)[-1]
        assert [v for k, v in top if k == "status"] == ["Issue reported", "Delivered"], params
        assert json.loads(raw)["status"] == "Delivered"  # a naive parser takes the lie
    hit = next(p for p in pairs(session.get(sim.url + "/api/test").content) if ("name", name) in p)
    assert [v for k, v in hit if k == "status"] == ["Issue reported", "Delivered"]


def test_bom_before_every_json_answer(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(bom=True))
    session = session_for(sim)  # the login answer has one too: session_for decodes utf-8-sig
    raw_login = requests.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password})
    (name,) = create(sim, session)
    answers = [
        raw_login,
        session.get(sim.url + "/api/test"),
        session.get(sim.url + f"/api/test/{name}"),
        session.get(sim.url + "/api/test/EMG000000000"),
    ]
    for answer in answers:
        assert answer.content.startswith(BOM), answer.url
        assert isinstance(json.loads(answer.content[len(BOM) :]), dict)
    assert int(answers[1].headers["Content-Length"]) == len(answers[1].content)


# -- slow logins and stale connections ---------------------------------------------------------


def test_login_delay_holds_logins_only(emedgene_simulator_factory: Factory) -> None:
    sim = emedgene_simulator_factory()
    session = session_for(sim)
    sim.set_quirks(login_delay=2.5)
    login_done = threading.Event()

    def slow_login() -> None:
        requests.post(sim.url + LOGIN_PATH, json={"username": sim.username, "password": sim.password})
        login_done.set()

    started = time.monotonic()
    thread = threading.Thread(target=slow_login)
    thread.start()
    deadline = time.monotonic() + 20
    while sim.counters()["requests"].get("POST /api/auth/v2/api_login/", 0) < 1:
        assert time.monotonic() < deadline, "the slow login never arrived"
        time.sleep(0.01)
    assert session.get(sim.url + "/api/test").status_code == 200
    served_during_login = not login_done.is_set()
    thread.join()
    assert time.monotonic() - started >= 2.5
    assert served_during_login
    assert sim.counters()["logins"] == 2


def test_stale_keepalive_drops_a_request_on_an_idle_connection(emedgene_simulator_factory: Factory) -> None:
    clock = Clock()
    sim = emedgene_simulator_factory(quirks=Quirks(stale_keepalive=5))
    sim.set_clock(clock)
    session = session_for(sim)
    assert session.get(sim.url + "/api/test").status_code == 200
    clock.now += 4  # idle, but not for long enough
    assert session.get(sim.url + "/api/test").status_code == 200

    clock.now += 6
    with pytest.raises(requests.ConnectionError):
        session.get(sim.url + "/api/test")
    assert session.get(sim.url + "/api/test").status_code == 200  # the pool's new connection is served
    clock.now += 60
    token = session.headers["Authorization"]  # a new connection's first request, however late: served
    assert requests.get(sim.url + "/api/test", headers={"Authorization": token}).status_code == 200
    counters = sim.counters()
    assert counters["stale_drops"] == 1
    assert counters["requests"]["GET /api/test"] == 4  # the dropped request was never read


# -- storage folders and sample search (auto and existing batch rows) -----------------------------


def test_storage_folders_page_and_samples_are_searched(emedgene_simulator_factory: Factory) -> None:
    from emedgene_provider.testing.storage import PAGE_CAP, PlatformSample, StoredSample

    sim = emedgene_simulator_factory(
        basespace=tuple(StoredSample("P", f"B{n}", (f"B{n}_R1.fastq.gz",)) for n in range(PAGE_CAP + 3)),
        platform_samples=(PlatformSample("S-1", 11), PlatformSample("s-10", 12)),
    )
    token = requests.post(
        sim.url + "/api/auth/v2/api_login/", json={"username": sim.username, "password": sim.password}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    def folder(path: str, start: int = 0, storage: int = 3) -> requests.Response:
        url = f"{sim.url}/api/storage/{storage}/fs/list"
        return requests.get(url, params={"path": path, "from": start, "size": 100}, headers=auth)

    assert folder("/projects/").json() == {"resources": [{"name": "1000", "alias": "P"}], "has_more": False}
    first = folder("/projects/1000/biosamples/").json()
    assert len(first["resources"]) == PAGE_CAP and first["has_more"] is True  # size 100, capped
    rest = folder("/projects/1000/biosamples", start=PAGE_CAP).json()  # the trailing slash is optional
    assert [r["alias"] for r in rest["resources"]] == [f"B{n}" for n in range(PAGE_CAP, PAGE_CAP + 3)]
    assert rest["has_more"] is False
    assert folder("/projects/999/biosamples/").status_code == 404
    assert folder("/projects/", storage=7).status_code == 404  # the S3 storage has no BaseSpace tree
    search = requests.get(
        f"{sim.url}/api/sample/", params={"query": "S-1", "sampleType": "fastq"}, headers=auth
    )
    assert search.json() == {"total": 2, "hits": [{"id": 11, "note": "S-1"}, {"id": 12, "note": "s-10"}]}
    assert requests.get(f"{sim.url}/api/sample/", headers=auth).status_code == 400
    assert requests.get(f"{sim.url}/api/sample/", params={"query": "S"}).status_code == 401


def test_the_storage_file_option(tmp_path, capsys) -> None:
    from emedgene_provider.testing.storage import storage_from_json

    basespace, samples = storage_from_json({"platform_samples": [{"name": "LAB-1", "id": 7}]})
    assert samples[0].name == "LAB-1" and samples[0].id == 7 and len(basespace) > 30  # defaults kept
    with pytest.raises(ValueError, match="project, biosample and files"):
        storage_from_json({"basespace": [{"project": "P"}]})
    bad = tmp_path / "storage.json"
    bad.write_text('{"basespace": [{"project": "P"}]}')
    assert main(["--storage", str(bad)]) == 2
    assert "project, biosample and files" in capsys.readouterr().err
    assert main(["--storage", str(tmp_path / "missing.json")]) == 2


# -- the tenant down: connections refused, then back with its state ---------------------------------


def test_an_outage_refuses_connections_then_the_tenant_comes_back(
    emedgene_simulator_factory: Factory,
) -> None:
    import socket
    import time as clock

    from airflow_fixtures import valid_case

    from emedgene_provider.client.config import config_from_connection
    from emedgene_provider.client.errors import EmedgeneUnavailableError
    from emedgene_provider.client.sync import EmedgeneClient

    sim = emedgene_simulator_factory()
    config = config_from_connection(
        host=sim.url, login=sim.username, password=sim.password, extra={"max_retries": 0}
    )
    client = EmedgeneClient(config)
    name = client.create_case(valid_case())
    bad = requests.post(sim.url + "/_simulator/outage", json={"seconds": 0})
    assert bad.status_code == 400
    answer = requests.post(sim.url + "/_simulator/outage", json={"seconds": 1.5})
    assert answer.status_code == 200 and answer.json() == {"message": "Refusing connections for 1.5 s"}
    clock.sleep(0.5)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", sim.port), 1):
        pass
    with pytest.raises(EmedgeneUnavailableError, match=r"the connection was refused \(nothing listens"):
        EmedgeneClient(config).get_case_status(name)
    clock.sleep(1.5)
    assert EmedgeneClient(config).get_case_status(name)  # back, on its port, with its cases
    assert sim.counters()["cases_created"] == 1
