"""A hostile or broken server: redirects, dripping answers, huge answers, TLS to plain http.

Every test runs over real HTTP against the simulator's faults (``redirect``, ``drip``, ``huge``),
through the public hook, the async client the trigger uses, an operator or the sensor. Where a
redirect points somewhere, it points at a *second* simulator that counts what reaches it: nothing
may. Deadlines are proved by the error the call ends with (a 0.5 s timeout against a drip that
would take minutes), never by measuring time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from airflow_fixtures import make_context
from locations import ROOT

from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.endpoints import API_KEY_TOKEN_PATH, CASES_PATH, CREATE_CASE_PATH, LOGIN_PATH
from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneNotFoundError,
    EmedgeneRedirectError,
    EmedgeneUnavailableError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.emedgene import EmedgeneExportCaseOperator, EmedgeneGetCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor
from emedgene_provider.testing.fakes import FakeTI

TRIO = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
REDIRECT_ADVICE = (
    "Redirects are never followed (they would carry credentials or case data to another address): "
    "check the connection's host{hint} (scheme, host, port and path), e.g. https rather than http."
)
MB = 1024 * 1024


@pytest.fixture
def sim(emedgene_simulator_factory):
    return emedgene_simulator_factory(stage_seconds=0.05)


@pytest.fixture
def elsewhere(emedgene_simulator_factory):
    """Where redirects point: it must never see a request."""
    return emedgene_simulator_factory()


def _hook(monkeypatch, sim, auth_type: str = "password", **extra: Any) -> EmedgeneHook:
    conn = sim.connection_json(auth_type)
    conn["extra"].update({"max_retries": 0, **extra})
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    hook = EmedgeneHook()
    hook.client.sleep = lambda seconds: None
    return hook


def _run_async(hook: EmedgeneHook, method: str, *args: Any) -> Any:
    """``method`` of the async client (what the trigger runs), on the hook's connection."""

    async def run() -> Any:
        async with AsyncEmedgeneClient(hook.config) as client:
            client.sleep = _no_wait
            return await getattr(client, method)(*args)

    return asyncio.run(run())


async def _no_wait(seconds: float) -> None:
    return None


def _untouched(sim) -> None:
    counters = sim.counters()
    assert counters["requests"] == {}
    assert counters["logins"] == 0
    assert counters["login_failures"] == 0
    assert counters["cases_created"] == 0


def _origin(url: str) -> str:
    scheme, _, hostport = url.partition("://")
    return url if ":" in hostport else f"{url}:{443 if scheme == 'https' else 80}"


# -- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("client", ["sync", "async"])
@pytest.mark.parametrize(
    ("auth_type", "path", "hint"),
    [("password", LOGIN_PATH, ""), ("api_key", API_KEY_TOKEN_PATH, " and the extra 'login_url'")],
    ids=["password", "api-key"],
)
def test_a_redirected_login_sends_the_password_nowhere(
    monkeypatch, sim, elsewhere, status, client, auth_type, path, hint
) -> None:
    """Only the API-key exchange goes to the extra 'login_url'; a password login's advice names
    the host alone."""
    hook = _hook(monkeypatch, sim, auth_type)
    target = elsewhere.url + path + "?session=abc-query-secret"
    sim.inject("redirect", status=status, location=target, path=path)
    with pytest.raises(EmedgeneRedirectError) as raised:
        if client == "sync":
            hook.get_case_status("EMG000000001")
        else:
            _run_async(hook, "get_case_status", "EMG000000001")
    assert str(raised.value) == (
        f"Emedgene login: HTTP {status} from POST {path} redirects to {elsewhere.url}. "
        + REDIRECT_ADVICE.format(hint=hint)
    )
    assert raised.value.status_code == status
    assert raised.value.location_origin == elsewhere.url
    assert "abc-query-secret" not in str(raised.value)
    _untouched(elsewhere)
    assert sim.counters()["logins"] == 0
    assert sim.counters()["faults_injected"] == 1  # one answer, not retried


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_redirected_api_key_exchange_sends_the_key_nowhere(monkeypatch, sim, elsewhere, client) -> None:
    hook = _hook(monkeypatch, sim, auth_type="api_key")
    sim.inject("redirect", status=307, location=elsewhere.login_url, path="/platform-services-manager")
    with pytest.raises(EmedgeneRedirectError, match=f"redirects to {elsewhere.url}\\. Redirects are never"):
        if client == "sync":
            hook.client.list_storage_providers()
        else:
            _run_async(hook, "get_case", "EMG000000001")
    _untouched(elsewhere)


def test_https_redirected_to_plain_http_is_refused(
    monkeypatch, emedgene_simulator_factory, elsewhere
) -> None:
    secure = emedgene_simulator_factory(tls=True)
    hook = _hook(monkeypatch, secure)
    secure.inject("redirect", status=308, location=elsewhere.url + LOGIN_PATH, path=LOGIN_PATH)
    with pytest.raises(EmedgeneRedirectError) as raised:
        hook.get_case_status("EMG000000001")
    assert raised.value.location_origin == elsewhere.url
    assert elsewhere.url.startswith("http://")
    _untouched(elsewhere)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirected_create_sends_the_case_nowhere_and_creates_nothing(
    monkeypatch, sim, elsewhere, status
) -> None:
    hook = _hook(monkeypatch, sim)
    hook.get_conn().token()  # logged in: only the create meets the redirect
    sim.inject("redirect", status=status, location=elsewhere.url + CREATE_CASE_PATH, path=CREATE_CASE_PATH)
    with pytest.raises(EmedgeneRedirectError) as raised:
        hook.client.create_case(TRIO)
    assert str(raised.value) == (
        f"Emedgene create_case: HTTP {status} from POST {CREATE_CASE_PATH} redirects to {elsewhere.url}. "
        + REDIRECT_ADVICE.format(hint="")
    )
    _untouched(elsewhere)
    assert sim.counters()["cases_created"] == 0


def test_a_303_on_a_create_is_ambiguous_so_the_case_is_looked_up(monkeypatch, sim, elsewhere) -> None:
    """303 See Other answers a POST that *was* processed: never reported as "not created"."""
    hook = _hook(monkeypatch, sim)
    hook.get_conn().token()
    sim.inject("redirect", status=303, location=elsewhere.url + "/api/test/EMG1", path=CREATE_CASE_PATH)
    with pytest.raises(EmedgeneAmbiguousCreateError) as raised:
        hook.client.create_case(TRIO)
    assert (
        f"(HTTP 303 from POST {CREATE_CASE_PATH} redirects to {elsewhere.url}, which means the server did it)"
        in str(raised.value)
    )
    _untouched(elsewhere)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_relative_redirect_names_the_servers_own_origin(monkeypatch, sim, client) -> None:
    hook = _hook(monkeypatch, sim)
    name = hook.client.create_case(TRIO)
    sim.inject("redirect", status=302, location="/login?next=/api/test", path=CASES_PATH)
    with pytest.raises(EmedgeneRedirectError) as raised:
        if client == "sync":
            hook.get_case(name)
        else:
            _run_async(hook, "get_case", name)
    assert raised.value.location_origin == sim.url
    assert f"Emedgene get_case({name}): HTTP 302 from GET /api/test/{name} redirects to {sim.url}." in str(
        raised.value
    )
    assert "next=" not in str(raised.value)
    assert sim.counters()["requests"].get("GET (unmatched)") is None  # /login was never asked for


def test_a_redirect_fails_the_get_case_operator(monkeypatch, sim, elsewhere) -> None:
    hook = _hook(monkeypatch, sim)
    name = hook.client.create_case(TRIO)
    sim.inject("redirect", status=301, location=elsewhere.url + "/api/test/" + name, path=CASES_PATH)
    with pytest.raises(EmedgeneRedirectError, match=f"HTTP 301 from GET /api/test/{name} redirects to"):
        EmedgeneGetCaseOperator(task_id="get", case_name=name).execute(make_context(FakeTI()))
    _untouched(elsewhere)


# -- every call bounded in time -------------------------------------------------------------------


def _deadline_words(method: str, path: str) -> str:
    return (
        f"no complete answer to {method} {path} within 2 s "
        "(the call's deadline: 4 x the connection's timeout of 0.5 s)"
    )


@pytest.mark.parametrize("phase", ["headers", "body"])
@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_dripping_answer_ends_at_the_deadline(monkeypatch, sim, phase, client) -> None:
    """One byte every 0.05 s never trips the 0.5 s timeout of a single read; the deadline ends it."""
    hook = _hook(monkeypatch, sim, timeout=0.5)
    name = hook.client.create_case(TRIO)
    sim.inject("drip", phase=phase, interval=0.05, size=10_000, path=f"{CASES_PATH}/{name}")
    with pytest.raises(EmedgeneUnavailableError) as raised:
        if client == "sync":
            hook.get_case_status(name)
        else:
            _run_async(hook, "get_case_status", name)
    assert str(raised.value) == (
        f"Emedgene get_case_status({name}): still failing after 1 attempt(s): "
        + _deadline_words("GET", f"/api/test/{name}")
    )
    assert hook.get_case_status(name)  # the client (and its connection pool) still works after


def test_a_dripping_login_ends_at_the_deadline(monkeypatch, sim) -> None:
    hook = _hook(monkeypatch, sim, timeout=0.5)
    sim.inject("drip", phase="headers", interval=0.05, size=10_000, path=LOGIN_PATH)
    with pytest.raises(EmedgeneUnavailableError) as raised:
        hook.client.list_storage_providers()
    assert str(raised.value) == (
        "Emedgene login: still failing after 1 attempt(s): " + _deadline_words("POST", LOGIN_PATH)
    )
    assert hook.client.list_storage_providers()  # the drip was one answer; the next login works


def test_a_dripped_create_answer_is_ambiguous_and_the_case_exists(monkeypatch, sim) -> None:
    hook = _hook(monkeypatch, sim, timeout=0.5)
    hook.get_conn().token()
    sim.inject("drip", phase="body", interval=0.05, size=10_000, path=CREATE_CASE_PATH)
    with pytest.raises(EmedgeneAmbiguousCreateError) as raised:
        hook.client.create_case(TRIO)
    assert _deadline_words("POST", CREATE_CASE_PATH) in str(raised.value)
    assert sim.counters()["cases_created"] == 1  # applied: which is why it must be looked up, not re-sent
    assert sim.counters()["requests"]["POST /api/cases/v2/cases"] == 1


def test_the_sensor_treats_a_dripping_status_read_as_not_yet(monkeypatch, sim, caplog) -> None:
    hook = _hook(monkeypatch, sim, timeout=0.5)
    name = hook.client.create_case(TRIO)
    sim.set_status(name, "Delivered")
    sim.inject("drip", phase="body", interval=0.05, size=10_000, path=f"{CASES_PATH}/{name}")
    sensor = EmedgeneCaseStatusSensor(task_id="wait", case_name=name)
    with caplog.at_level(logging.WARNING):
        assert sensor.poke(make_context(FakeTI())) is False
    assert _deadline_words("GET", f"/api/test/{name}") in caplog.text
    done = sensor.poke(make_context(FakeTI()))  # the next poke reads the status
    assert done.is_done is True
    assert done.xcom_value == "Delivered"


# -- every answer bounded in memory ---------------------------------------------------------------


def _too_large(operation: str, path: str, mb: int = 1) -> str:
    return (
        f"Emedgene {operation}: the HTTP 200 answer to GET {path} is larger than the connection's "
        f"max_response_mb ({mb} MB) and was not read further. Raise the extra 'max_response_mb' if this "
        "answer is genuine."
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("client", ["sync", "async"])
def test_an_answer_over_the_cap_is_refused(monkeypatch, sim, chunked, client) -> None:
    hook = _hook(monkeypatch, sim, max_response_mb=1)
    name = hook.client.create_case(TRIO)
    sim.inject("huge", size=64 * MB, chunked=chunked, path=f"{CASES_PATH}/{name}")
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        if client == "sync":
            hook.get_case(name)
        else:
            _run_async(hook, "get_case", name)
    assert str(raised.value) == _too_large(f"get_case({name})", f"/api/test/{name}")
    assert raised.value.status_code == 200


@pytest.mark.parametrize("client", ["sync", "async"])
def test_an_answer_under_the_cap_is_read_whole(monkeypatch, sim, client) -> None:
    hook = _hook(monkeypatch, sim, max_response_mb=1)
    name = hook.client.create_case(TRIO)
    sim.inject("huge", size=MB - 100, chunked=True, path=f"{CASES_PATH}/{name}")
    case = hook.get_case(name) if client == "sync" else _run_async(hook, "get_case", name)
    assert case["name"] == name
    assert len(case["pad"]) > MB - 10_000  # the whole answer, near the cap, was read


def test_the_default_cap_holds_a_large_export(monkeypatch, sim) -> None:
    """The default (256 MB) is above the largest real export (~83 MB for 200,000 variants)."""
    hook = _hook(monkeypatch, sim)
    assert hook.config.max_response_bytes == 256 * MB
    name = hook.client.create_case(TRIO)
    sim.set_status(name, "Delivered")
    expected = hook.export_case(name)
    sim.inject("huge", size=90 * MB, path=f"{CASES_PATH}/{name}/export")
    assert hook.export_case(name) == expected  # the padded answer, read whole


def test_a_huge_export_fails_the_export_operator(monkeypatch, sim) -> None:
    hook = _hook(monkeypatch, sim, max_response_mb=2)
    name = hook.client.create_case(TRIO)
    sim.set_status(name, "Delivered")
    sim.inject("huge", size=300 * MB, chunked=True, path=f"{CASES_PATH}/{name}/export")
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        EmedgeneExportCaseOperator(task_id="export", case_name=name).execute(make_context(FakeTI()))
    assert str(raised.value) == _too_large(f"export_case({name})", f"/api/test/{name}/export", mb=2)


def test_a_huge_create_answer_is_ambiguous_and_the_case_exists(monkeypatch, sim) -> None:
    hook = _hook(monkeypatch, sim, max_response_mb=1)
    hook.get_conn().token()
    sim.inject("huge", size=8 * MB, path=CREATE_CASE_PATH)
    with pytest.raises(EmedgeneAmbiguousCreateError) as raised:
        hook.client.create_case(TRIO)
    assert (
        f"(the HTTP 201 answer to POST {CREATE_CASE_PATH} is larger than the connection's max_response_mb "
        "(1 MB) and was not read further)"
    ) in str(raised.value)
    assert sim.counters()["cases_created"] == 1


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_huge_error_page_is_read_only_for_its_first_words(monkeypatch, sim, client) -> None:
    hook = _hook(monkeypatch, sim, max_response_mb=1)
    hook.get_conn().token()
    sim.inject("huge", size=512 * MB, chunked=True, path=f"{CASES_PATH}/EMG404404404")
    with pytest.raises(EmedgeneNotFoundError) as raised:
        if client == "sync":
            hook.get_case("EMG404404404")
        else:
            _run_async(hook, "get_case", "EMG404404404")
    assert '{"message": "Case EMG404404404 not found", "pad": "xxx' in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        ({"hits": [{"v": 1}], "variants": [{"v": 2}]}, False),
        ({"hits": [], "variants": [{"v": 2}]}, False),
        ({"hits": [{"v": 1}], "variants": [{"v": 1}]}, True),
        ({"variants": [{"v": 2}]}, True),
    ],
)
def test_hits_and_variants_that_differ_are_an_unexpected_answer(requests_mock, answer, ok) -> None:
    from emedgene_provider.client.config import config_from_connection
    from emedgene_provider.client.sync import EmedgeneClient

    base = "https://lab.emedgene.com"
    requests_mock.post(base + LOGIN_PATH, json={"access_token": "tok"})
    requests_mock.get(base + "/api/test/EMG1/export", json=answer)
    client = EmedgeneClient(config_from_connection(host=base, login="u", password="p", extra={}))
    if ok:
        assert client.export_case("EMG1") == answer.get("hits", answer.get("variants"))
        return
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        client.export_case("EMG1")
    assert str(raised.value) == (
        "Emedgene export_case(EMG1): the answer to GET /api/test/EMG1/export holds both 'hits' and "
        "'variants', and they differ; refusing to choose one"
    )
