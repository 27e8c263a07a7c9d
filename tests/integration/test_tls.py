"""TLS against the simulator's own CA: verification is on unless the connection turns it off, the
connection's ``verify`` wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, and plain http is
refused for anything but loopback.

Every test runs the sync client (and the hook), and the async client where it applies, against
``emedgene_simulator_factory(tls=True)``: a real HTTPS server whose certificate no system trust
store knows.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import certifi
import pytest
from locations import ROOT

from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.errors import EmedgeneConfigError
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.hooks.emedgene import EmedgeneHook

TRIO = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
ENV_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
#: The environment a container image often has, and none: the connection's ``verify`` must win.
ENVIRONMENTS = {"no-ca-env": None, "other-ca-env": certifi.where()}


@pytest.fixture(params=ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def ca_env(request, monkeypatch) -> str | None:
    for name in ENV_BUNDLES:
        if request.param is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, request.param)
    return request.param


@pytest.fixture
def sim(emedgene_simulator_factory):
    return emedgene_simulator_factory(tls=True, stage_seconds=0.1)


def _conn(sim, **extra: Any) -> dict[str, Any]:
    """The simulator's password connection, with ``extra`` instead of its own ``verify``."""
    conn = sim.connection_json()
    conn["extra"].pop("verify", None)
    conn["extra"].update(extra)
    return conn


def _config(conn: dict[str, Any]):
    return config_from_connection(
        host=conn["host"], login=conn.get("login"), password=conn.get("password"), extra=conn["extra"]
    )


def _sync_client(conn: dict[str, Any]) -> EmedgeneClient:
    client = EmedgeneClient(_config(conn))
    client.sleep = lambda seconds: None
    return client


def _hook(monkeypatch, conn: dict[str, Any]) -> EmedgeneHook:
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    hook = EmedgeneHook()
    hook.client.sleep = lambda seconds: None
    return hook


def _untouched(sim) -> None:
    counters = sim.counters()
    assert counters["logins"] == 0
    assert counters["cases_created"] == 0
    assert counters["requests"] == {}


def _assert_verify_advice(exc: EmedgeneConfigError, sim, operation: str = "login") -> None:
    text = str(exc)
    assert text.startswith(f"Emedgene {operation}: TLS verification failed for {sim.url}: ")
    assert text.endswith(
        ". For a lab proxy or the simulator's certificate set the connection extra 'verify' to the CA "
        "bundle's path."
    )
    assert "verify" in text
    assert "CA bundle" in text
    assert "certificate" in text.lower()
    assert sim.password not in text
    assert exc.operation == operation


# -- verification is on by default --------------------------------------------------------------


def test_default_verification_refuses_the_unknown_ca_sync(sim, ca_env) -> None:
    client = _sync_client(_conn(sim))
    assert client.config.verify is True
    with pytest.raises(EmedgeneConfigError) as raised:
        client.create_case(TRIO)
    _assert_verify_advice(raised.value, sim)
    _untouched(sim)


def test_default_verification_refuses_the_unknown_ca_hook(sim, ca_env, monkeypatch) -> None:
    hook = _hook(monkeypatch, _conn(sim))
    with pytest.raises(EmedgeneConfigError) as raised:
        hook.client.create_case(TRIO)
    _assert_verify_advice(raised.value, sim)
    ok, message = hook.test_connection()
    assert ok is False
    assert "TLS verification failed" in message
    _untouched(sim)


def test_explicit_verify_true_is_the_default(sim, ca_env) -> None:
    client = _sync_client(_conn(sim, verify="true"))
    with pytest.raises(EmedgeneConfigError, match="TLS verification failed"):
        client.get_case_status("EMG000000001")
    _untouched(sim)


def test_default_verification_refuses_the_unknown_ca_async(sim, ca_env) -> None:
    async def attempt() -> None:
        async with AsyncEmedgeneClient(_config(_conn(sim))) as client:
            client.sleep = _no_wait
            await client.get_case_status("EMG000000001")

    with pytest.raises(EmedgeneConfigError) as raised:
        asyncio.run(attempt())
    _assert_verify_advice(raised.value, sim)
    _untouched(sim)


async def _no_wait(seconds: float) -> None:
    return None


# -- verify = the CA bundle ---------------------------------------------------------------------


def test_ca_bundle_sync_login_create_status(sim, ca_env) -> None:
    client = _sync_client(_conn(sim, verify=sim.ca_file))
    name = client.create_case(TRIO)
    assert client.get_case_status(name) in ("Uploading", "In progress", "Delivered")
    counters = sim.counters()
    assert counters["logins"] == 1
    assert counters["cases_created"] == 1
    if ca_env is not None:
        assert os.environ["REQUESTS_CA_BUNDLE"] == ca_env  # the environment did not get its way


def test_ca_bundle_through_the_hook(sim, ca_env, monkeypatch) -> None:
    hook = _hook(monkeypatch, sim.connection_json())  # connection_json() names its CA itself
    assert hook.config.verify == sim.ca_file
    name = hook.client.create_case(TRIO)
    assert hook.get_case_status(name)
    ok, message = hook.test_connection()
    assert ok, message
    assert sim.counters()["cases_created"] == 1


def test_ca_bundle_async_login_and_status(sim, ca_env) -> None:
    name = _sync_client(_conn(sim, verify=sim.ca_file)).create_case(TRIO)

    async def status() -> str:
        async with AsyncEmedgeneClient(_config(_conn(sim, verify=sim.ca_file))) as client:
            return await client.get_case_status(name)

    assert asyncio.run(status()) in ("Uploading", "In progress", "Delivered")
    counters = sim.counters()
    assert counters["logins"] == 1  # the async client reused the token the sync one got
    assert counters["requests"]["GET /api/test/{name}"] == 1


def test_ca_bundle_async_logs_in_itself(sim, ca_env) -> None:
    async def status() -> str:
        async with AsyncEmedgeneClient(_config(_conn(sim, verify=sim.ca_file))) as client:
            return (await client.get_case("Unknown-1", ["status"]))["status"]

    from emedgene_provider.client.errors import EmedgeneNotFoundError

    with pytest.raises(EmedgeneNotFoundError, match="HTTP 404"):
        asyncio.run(status())
    assert sim.counters()["logins"] == 1


# -- verify = false: an explicit opt-out --------------------------------------------------------


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("off", [False, "false", "0", "no"])
def test_verify_off_works_sync(sim, ca_env, off) -> None:
    client = _sync_client(_conn(sim, verify=off))
    assert client.config.verify is False
    name = client.create_case(TRIO)
    assert client.get_case_status(name)
    assert sim.counters()["cases_created"] == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_off_works_async(sim, ca_env) -> None:
    name = _sync_client(_conn(sim, verify=False)).create_case(TRIO)

    async def run() -> tuple[str, dict]:
        async with AsyncEmedgeneClient(_config(_conn(sim, verify=False))) as client:
            return await client.get_case_status(name), await client.get_case(name)

    status, case = asyncio.run(run())
    assert status
    assert case["name"] == name
    assert sim.counters()["requests"]["GET /api/test/{name}"] == 2


# -- a CA bundle that is not there --------------------------------------------------------------


def test_missing_ca_bundle_is_a_config_error_naming_the_path(sim, tmp_path) -> None:
    """A typo in ``verify`` ("ture") or a bundle path that does not exist is a connection mistake:
    it must surface as EmedgeneConfigError naming 'verify' and the path, from both clients, not as
    requests' bare OSError or ssl's FileNotFoundError."""
    missing = str(tmp_path / "no-such-ca.pem")
    conn = _conn(sim, verify=missing)
    with pytest.raises(EmedgeneConfigError) as raised:
        _sync_client(conn).get_case_status("EMG000000001")
    assert "verify" in str(raised.value)
    assert missing in str(raised.value)

    async def attempt() -> None:
        async with AsyncEmedgeneClient(_config(conn)) as client:
            await client.get_case_status("EMG000000001")

    with pytest.raises(EmedgeneConfigError) as raised_async:
        asyncio.run(attempt())
    assert missing in str(raised_async.value)
    _untouched(sim)


# -- http and https -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "http://lab.emedgene.com",
        "http://10.0.0.5:8080",
        "http://0.0.0.0:8080",
        "http://localhost.example.org",
        "http://127.0.0.1.nip.io",
        "HTTP://lab.emedgene.com",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused_before_any_request(requests_mock, host) -> None:
    with pytest.raises(EmedgeneConfigError) as raised:
        config_from_connection(host=host, login="u", password="pw-Secret-1", extra={})
    assert "uses plain http to a non-loopback host" in str(raised.value)
    assert "'allow_http': true" in str(raised.value)
    assert "pw-Secret-1" not in str(raised.value)
    assert requests_mock.request_history == []


@pytest.mark.parametrize("host", ["http://lab.emedgene.com", "http://10.0.0.5:8080"])
@pytest.mark.parametrize("allow", [True, "true", "yes"])
def test_plain_http_when_allowed(requests_mock, host, allow) -> None:
    cfg = config_from_connection(host=host, login="u", password="pw-Secret-1", extra={"allow_http": allow})
    assert cfg.base_url == host
    requests_mock.post(host + "/api/auth/v2/api_login/", json={"access_token": "t"})
    requests_mock.get(host + "/api/test/EMG1", json={"status": "Delivered"})
    assert EmedgeneClient(cfg).get_case_status("EMG1") == "Delivered"


@pytest.mark.parametrize("allow", [False, "false", "no"])
def test_allow_http_false_still_refuses(allow) -> None:
    with pytest.raises(EmedgeneConfigError, match="allow_http"):
        config_from_connection(
            host="http://lab.emedgene.com", login="u", password="p", extra={"allow_http": allow}
        )


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:9", "http://127.8.9.10:9", "http://localhost:9", "http://[::1]:9"]
)
def test_plain_http_to_loopback_is_accepted(host) -> None:
    assert config_from_connection(host=host, login="u", password="p", extra={}).base_url == host


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("lab.emedgene.com", "https://lab.emedgene.com"),
        ("lab.emedgene.com:8443", "https://lab.emedgene.com:8443"),
        ("127.0.0.1:8443", "https://127.0.0.1:8443"),
        ("localhost", "https://localhost"),
    ],
)
def test_a_bare_host_means_https(requests_mock, host, base_url) -> None:
    cfg = config_from_connection(host=host, login="u", password="p", extra={})
    assert cfg.base_url == base_url
    login = requests_mock.post(base_url + "/api/auth/v2/api_login/", json={"access_token": "t"})
    requests_mock.get(base_url + "/api/storage", json={"hits": []})
    EmedgeneClient(cfg).list_storage_providers()
    assert login.last_request.url.startswith("https://")


def test_bare_simulator_host_talks_tls_with_its_ca(sim, ca_env) -> None:
    """``127.0.0.1:PORT`` without a scheme is https: it reaches the TLS simulator."""
    conn = _conn(sim, verify=sim.ca_file)
    conn["host"] = sim.url.removeprefix("https://")
    client = _sync_client(conn)
    assert client.config.base_url == sim.url
    assert client.create_case(TRIO)
    assert sim.counters()["cases_created"] == 1
