"""Configuration and secrets against a hostile world: absurd numbers, a junk CA bundle, https to a
plain-http server, credentials written into the host, and a server that echoes a secret encoded."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from emedgene_provider.client.aio import AsyncEmedgeneClient, ssl_setting
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.endpoints import API_KEY_TOKEN_PATH, LOGIN_PATH
from emedgene_provider.client.errors import EmedgeneAuthError, EmedgeneConfigError
from emedgene_provider.client.secrets import Scrubber
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.hooks.emedgene import EmedgeneHook

PASSWORD = "pw-Secret-1/+&ä"
BASE = "https://lab.emedgene.com"


def _config(host: str = BASE, **extra: Any):
    return config_from_connection(host=host, login="u", password=PASSWORD, extra=extra)


# -- numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["timeout", "max_retries", "retry_max_wait", "max_response_mb", "session_lifetime"]
)
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("nan", "must be a finite number, not 'nan'."),
        ("NaN", "must be a finite number, not 'NaN'."),
        ("inf", "must be a finite number, not 'inf'."),
        ("-Infinity", "must be a finite number, not '-Infinity'."),
        ("1e400", "must be a finite number, not '1e400'."),
        (True, "must be a number, not True."),
        ("1e12", "must be at most {high}."),
        (-1, "must be at least {low}."),
    ],
)
def test_absurd_numbers_are_a_config_error_naming_the_extra(name, value, words) -> None:
    low, high = {
        "timeout": ("0.001", "3600"),
        "max_retries": ("0", "100"),
        "retry_max_wait": ("0", "3600"),
        "max_response_mb": ("1", "4096"),
        "session_lifetime": ("1", "3.1536e+07"),
    }[name]
    with pytest.raises(EmedgeneConfigError) as raised:
        _config(**{name: value})
    assert str(raised.value) == f"Emedgene connection extra {name!r} " + words.format(low=low, high=high)


def test_max_retries_must_be_whole() -> None:
    with pytest.raises(EmedgeneConfigError) as raised:
        _config(max_retries=2.5)
    assert str(raised.value) == "Emedgene connection extra 'max_retries' must be a whole number, not 2.5."


def test_sane_numbers_at_their_limits_are_kept() -> None:
    cfg = _config(timeout="3600", max_retries=100, retry_max_wait=0, max_response_mb="1.5")
    assert cfg.timeout == 3600.0
    assert cfg.deadline == 4 * 3600.0
    assert cfg.retry.max_attempts == 101
    assert cfg.max_response_bytes == int(1.5 * 1024 * 1024)


def test_an_absurd_timeout_fails_the_hook_before_any_request(monkeypatch, emedgene_simulator) -> None:
    conn = emedgene_simulator.connection_json()
    conn["extra"]["timeout"] = "inf"
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    with pytest.raises(EmedgeneConfigError, match="extra 'timeout' must be a finite number"):
        EmedgeneHook().get_case_status("EMG000000001")
    assert emedgene_simulator.counters()["requests"] == {}


# -- a CA bundle that is no CA bundle ---------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "not a certificate\n", "-----BEGIN CERTIFICATE-----\ngarbage\n"])
def test_a_junk_ca_bundle_is_a_config_error_for_both_clients(tmp_path, content) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text(content)
    with pytest.raises(EmedgeneConfigError) as raised:
        _config(verify=str(junk))
    text = str(raised.value)
    assert text.startswith(
        f"Emedgene connection extra 'verify' is {str(junk)!r}, which is not a CA bundle of PEM certificates ("
    )
    assert text.endswith("): name the PEM file of the CA that signed the server's certificate.")
    # The async client's own loading (a bundle that went bad after the connection was read).
    with pytest.raises(EmedgeneConfigError) as raised_async:
        ssl_setting(str(junk))
    assert str(raised_async.value).startswith(
        f"Emedgene connection extra 'verify' is {str(junk)!r}, which is not a CA bundle of PEM certificates ("
    )


def test_a_junk_ca_bundle_fails_the_hook_before_any_request(
    monkeypatch, tmp_path, emedgene_simulator
) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("junk")
    conn = emedgene_simulator.connection_json()
    conn["extra"]["verify"] = str(junk)
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    with pytest.raises(EmedgeneConfigError, match="which is not a CA bundle of PEM certificates"):
        EmedgeneHook().get_case_status("EMG000000001")
    assert emedgene_simulator.counters()["requests"] == {}


# -- https to a server that speaks plain http ------------------------------------------------------


def _no_tls_message(sim, hint: str = "") -> str:
    """The advice names the extra 'login_url' only for the API-key exchange, the one call sent there."""
    origin = sim.url.replace("http://", "https://")
    return (
        f"Emedgene login: the server at {origin} does not speak TLS (it answered the https handshake in "
        f"plain http): check the scheme and port of the connection's host{hint}. "
        "Only a loopback simulator, or a host allowed by the extra 'allow_http', may use http://."
    )


def test_https_to_plain_http_says_so_sync_and_is_not_retried(emedgene_simulator) -> None:
    sim = emedgene_simulator
    waits: list[float] = []
    client = EmedgeneClient(_config(sim.url.replace("http://", "https://"), max_retries=3))
    client.sleep = waits.append
    with pytest.raises(EmedgeneConfigError) as raised:
        client.list_storage_providers()
    assert str(raised.value) == _no_tls_message(sim)
    assert "verify" not in str(raised.value).replace("'allow_http'", "")
    assert waits == []
    assert sim.counters()["logins"] == 0


def test_https_to_plain_http_says_so_async_and_is_not_retried(emedgene_simulator) -> None:
    sim = emedgene_simulator
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> None:
        async with AsyncEmedgeneClient(_config(sim.url.replace("http://", "https://"), max_retries=3)) as c:
            c.sleep = record
            await c.get_case_status("EMG000000001")

    with pytest.raises(EmedgeneConfigError) as raised:
        asyncio.run(run())
    assert str(raised.value) == _no_tls_message(sim)
    assert waits == []


def test_https_to_plain_http_through_the_hook_test_connection(monkeypatch, emedgene_simulator) -> None:
    conn = emedgene_simulator.connection_json()
    conn["host"] = emedgene_simulator.url.replace("http://", "https://")
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    ok, message = EmedgeneHook().test_connection()
    assert ok is False
    assert message == _no_tls_message(emedgene_simulator)


def test_https_to_plain_http_for_an_api_key_names_the_login_url(monkeypatch, emedgene_simulator) -> None:
    conn = emedgene_simulator.connection_json("api_key")
    https = emedgene_simulator.url.replace("http://", "https://")
    conn["host"] = https
    conn["extra"]["login_url"] = https + API_KEY_TOKEN_PATH
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    ok, message = EmedgeneHook().test_connection()
    assert ok is False
    assert message == _no_tls_message(emedgene_simulator, hint=" (or the extra 'login_url')")


# -- credentials written into the host --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        (f"https://lab-user:{quote(PASSWORD, safe='')}@lab.emedgene.com", "https://lab.emedgene.com"),
        ("https://lab-user:hunter2-secret@lab.emedgene.com:8443/api", "https://lab.emedgene.com:8443/api"),
        ("lab-user:hunter2-secret@lab.emedgene.com", "lab.emedgene.com"),
    ],
)
def test_credentials_in_the_host_are_refused_without_echoing_them(host, shown) -> None:
    masked: list[str] = []
    with pytest.raises(EmedgeneConfigError) as raised:
        config_from_connection(host=host, login="u", password="p", extra={}, on_secret=masked.append)
    assert str(raised.value) == (
        f"Emedgene connection host {shown!r} has credentials written into it ('user:password@'), which are "
        "refused: they would be sent as Basic auth and shown in logs. Put the login and password in the "
        "connection's own fields (an API key in the extra 'api_key')."
    )
    password = host.split("@")[0].rpartition(":")[2]
    assert password not in str(raised.value)
    assert password in masked  # the masker knew it before anything could log it


def test_credentials_in_the_token_url_are_refused(requests_mock) -> None:
    with pytest.raises(EmedgeneConfigError) as raised:
        config_from_connection(
            host=BASE,
            login=None,
            password=None,
            extra={"api_key": "k-123456", "login_url": "https://x:key-in-url@login.example.com/Token"},
        )
    assert "extra 'login_url' 'https://login.example.com/Token' has credentials written into it" in str(
        raised.value
    )
    assert "key-in-url" not in str(raised.value)
    assert requests_mock.request_history == []


def test_credentials_in_the_host_never_reach_the_wire_or_the_log(monkeypatch, caplog, emedgene_simulator):
    conn = emedgene_simulator.connection_json()
    conn["host"] = emedgene_simulator.url.replace("http://", "http://lab-user:leaky-Pass-9@")
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    with caplog.at_level(logging.DEBUG):
        ok, message = EmedgeneHook().test_connection()
    assert ok is False
    assert "has credentials written into it" in message
    assert "leaky-Pass-9" not in message
    assert "leaky-Pass-9" not in caplog.text
    assert emedgene_simulator.counters()["requests"] == {}


# -- a server that echoes a secret encoded ----------------------------------------------------------


def _echoes(secret: str) -> list[str]:
    raw = secret.encode()
    basic = base64.b64encode(b"emedgene:" + raw).decode()
    document = json.dumps({"username": "u", "password": secret})
    return [
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),  # lower-case hex
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        f"Basic {basic}",
        *(base64.b64encode((pad + document).encode()).decode() for pad in ("", "x", "xy")),
        *(base64.urlsafe_b64encode((pad + secret + "tail").encode()).decode() for pad in ("", "x", "xy")),
    ]


@pytest.mark.parametrize("echo", range(len(_echoes(PASSWORD))))
def test_a_secret_echoed_encoded_never_reaches_the_error_or_the_log(requests_mock, caplog, echo) -> None:
    words = _echoes(PASSWORD)[echo]
    requests_mock.post(BASE + LOGIN_PATH, status_code=401, json={"message": f"bad credentials: {words}"})
    client = EmedgeneClient(_config())
    with caplog.at_level(logging.DEBUG), pytest.raises(EmedgeneAuthError) as raised:
        client.list_storage_providers()
    assert str(raised.value).startswith("Emedgene login as 'u' at")
    assert "bad credentials: " in str(raised.value)
    for text in (str(raised.value), raised.value.server_message or "", caplog.text):
        assert words not in text
        assert words.rstrip("=")[4:-4] not in text  # not even its middle


def test_the_scrubber_leaves_ordinary_text_alone() -> None:
    scrub = Scrubber(["pw"])  # too short for its encodings to be told from ordinary text
    assert (
        scrub("cHc= is base64 of the secret; pw itself goes")
        == "cHc= is base64 of the secret; *** itself goes"
    )
    assert (
        Scrubber([PASSWORD])("HTTP 401: Invalid username or password")
        == "HTTP 401: Invalid username or password"
    )
