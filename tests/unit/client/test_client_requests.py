"""The client and the hook on the wire: exact request shapes, tokens, retries and errors.

Every HTTP exchange is answered by ``requests_mock``; nothing sleeps (each client's ``sleep`` is a
recorder, so the waits tenacity asks for can be asserted exactly).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from pathlib import Path
from unittest import mock

import certifi
import pytest
import requests
import urllib3

from emedgene_provider.client import auth as auth_module
from emedgene_provider.client import retry as retry_module
from emedgene_provider.client.auth import Token
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneAuthError,
    EmedgeneConfigError,
    EmedgeneInvalidCaseNameError,
    EmedgeneInvalidRequestError,
    EmedgeneNotFoundError,
    EmedgeneRateLimitedError,
    EmedgeneUnavailableError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.process import PROCESS
from emedgene_provider.client.sync import EmedgeneClient

BASE = "https://lab.emedgene.com"
LOGIN_URL = BASE + "/api/auth/v2/api_login/"
ILLUMINA = "https://lab.emg.illumina.com"
ILLUMINA_TOKEN_URL = "https://lab.login.illumina.com/platform-services-manager/Token"
USER = "lab-user"
PASSWORD = "s3cret-Passw0rd!"
API_KEY = "ak-0123456789abcdef"
CASE = "EMG107903188"
CASE_URL = f"{BASE}/api/test/{CASE}"
CREATE_URL = BASE + "/api/cases/v2/cases"
STORAGE_URL = BASE + "/api/storage"
LIST_URL = BASE + "/api/test"
HTML_502 = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
CASE_JSON = {"sharing_level": 0, "should_upload": False, "test_data": {"type": "Exome"}}


def make_client(
    host: str = BASE,
    login: str | None = USER,
    password: str | None = PASSWORD,
    extra: dict | None = None,
    *,
    waits: list | None = None,
    on_secret=None,
) -> EmedgeneClient:
    config = config_from_connection(
        host=host, login=login, password=password, extra=extra or {}, on_secret=on_secret
    )
    client = EmedgeneClient(config)
    client.sleep = (waits if waits is not None else []).append
    return client


def token_answer(token: str = "tok-1", **more) -> dict:
    return {"json": {"access_token": token, "token_type": "bearer", **more}, "status_code": 200}


def mock_login(rm, *tokens: str, url: str = LOGIN_URL):
    return rm.post(url, [token_answer(t) for t in (tokens or ("tok-1",))])


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"emedgene:{key}".encode()).decode()


def jwt_with_exp(exp: float) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': exp, 'sub': 'x'})}.c2lnbmF0dXJl"


def set_conn(monkeypatch, **fields) -> None:
    conn = {"conn_type": "emedgene", "host": BASE, "login": USER, "password": PASSWORD, "extra": {}}
    conn.update(fields)
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))


@pytest.fixture
def fake_clock(monkeypatch):
    """Wall-clock seconds under the test's control (token expiry is wall-clock, like a JWT ``exp``)."""
    clock = [1_800_000_000.0]
    monkeypatch.setattr(auth_module.time, "time", lambda: clock[0])
    return clock


# ---------------------------------------------------------------------------------------------
class TestAuthShapes:
    def test_password_login_posts_exact_json_then_sends_bearer(self, requests_mock):
        login = mock_login(requests_mock, "tok-1")
        storage = requests_mock.get(STORAGE_URL, json={"hits": [{"id": 1}]})

        assert make_client().list_storage_providers() == [{"id": 1}]

        assert login.call_count == 1
        sent = login.last_request
        assert sent.method == "POST"
        assert sent.url == LOGIN_URL
        assert sent.json() == {"username": USER, "password": PASSWORD}
        assert sent.headers["Content-Type"] == "application/json"
        assert "Authorization" not in sent.headers
        assert storage.last_request.headers["Authorization"] == "Bearer tok-1"
        assert storage.last_request.headers["Accept"] == "application/json"

    @pytest.mark.parametrize("token_type", ["bearer", "BEARER", None])
    def test_token_type_is_capitalised_and_defaults_to_bearer(self, requests_mock, token_type):
        body = {"access_token": "abc"} | ({"token_type": token_type} if token_type else {})
        requests_mock.post(LOGIN_URL, json=body)
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        make_client().list_storage_providers()
        assert storage.last_request.headers["Authorization"] == "Bearer abc"

    def test_api_key_exchanged_on_the_illumina_login_host(self, requests_mock):
        exchange = requests_mock.post(
            ILLUMINA_TOKEN_URL, json={"access_token": "tok-k", "token_type": "bearer"}
        )
        storage = requests_mock.get(ILLUMINA + "/api/storage", json={"hits": []})

        client = make_client("lab.emg.illumina.com", None, None, {"api_key": API_KEY})
        assert client.list_storage_providers() == []

        assert exchange.call_count == 1
        sent = exchange.last_request
        assert sent.method == "POST"
        assert sent.url == ILLUMINA_TOKEN_URL + "?audience=emedgene&grant_type=api_key"
        assert sent.body is None
        assert sent.headers["Authorization"] == basic(API_KEY)
        assert sent.headers["Authorization"] == "Basic ZW1lZGdlbmU6YWstMDEyMzQ1Njc4OWFiY2RlZg=="
        assert storage.last_request.headers["Authorization"] == "Bearer tok-k"
        assert [r.url for r in requests_mock.request_history] == [
            ILLUMINA_TOKEN_URL + "?audience=emedgene&grant_type=api_key",
            ILLUMINA + "/api/storage",
        ]

    def test_explicit_token_url_wins(self, requests_mock):
        custom = "https://sso.example.org/platform-services-manager/Token"
        exchange = requests_mock.post(custom, json={"access_token": "tok-c", "token_type": "bearer"})
        storage = requests_mock.get(ILLUMINA + "/api/storage", json={"hits": []})

        make_client(ILLUMINA, None, None, {"api_key": API_KEY, "login_url": custom}).list_storage_providers()

        assert exchange.call_count == 1
        assert exchange.last_request.url == custom + "?audience=emedgene&grant_type=api_key"
        assert storage.last_request.headers["Authorization"] == "Bearer tok-c"

    def test_api_key_on_another_host_needs_token_url(self):
        with pytest.raises(EmedgeneConfigError, match="login_url"):
            make_client(BASE, None, None, {"api_key": API_KEY})

    def test_login_and_api_key_without_auth_type_is_refused(self):
        with pytest.raises(EmedgeneConfigError, match="auth_type"):
            make_client(ILLUMINA, USER, PASSWORD, {"api_key": API_KEY})

    def test_auth_type_api_key_picks_the_key(self, requests_mock):
        exchange = requests_mock.post(ILLUMINA_TOKEN_URL, json={"access_token": "k", "token_type": "bearer"})
        requests_mock.get(ILLUMINA + "/api/storage", json={"hits": []})
        make_client(
            ILLUMINA, USER, PASSWORD, {"api_key": API_KEY, "auth_type": "api_key"}
        ).list_storage_providers()
        assert exchange.call_count == 1
        assert exchange.last_request.headers["Authorization"] == basic(API_KEY)
        assert all("api_login" not in r.url for r in requests_mock.request_history)

    def test_auth_type_password_picks_the_password(self, requests_mock):
        login = requests_mock.post(ILLUMINA + "/api/auth/v2/api_login/", json={"access_token": "p"})
        requests_mock.get(ILLUMINA + "/api/storage", json={"hits": []})
        make_client(
            ILLUMINA, USER, PASSWORD, {"api_key": API_KEY, "auth_type": "password"}
        ).list_storage_providers()
        assert login.call_count == 1
        assert login.last_request.json() == {"username": USER, "password": PASSWORD}
        assert all("Token" not in r.url for r in requests_mock.request_history)

    def test_legacy_authorization_answer_is_accepted(self, requests_mock):
        requests_mock.post(LOGIN_URL, json={"Authorization": "Bearer legacy-X"})
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        make_client().list_storage_providers()
        assert storage.last_request.headers["Authorization"] == "Bearer legacy-X"

    def test_login_answer_without_a_token_is_unexpected(self, requests_mock):
        requests_mock.post(LOGIN_URL, json={"detail": "ok but no token"})
        with pytest.raises(EmedgeneUnexpectedResponseError, match="without an access_token"):
            make_client().list_storage_providers()


# ---------------------------------------------------------------------------------------------
class TestTokens:
    def test_token_renewed_before_expires_in(self, requests_mock, fake_clock):
        t0 = fake_clock[0]
        login = requests_mock.post(
            LOGIN_URL, [token_answer("tok-1", expires_in=1000), token_answer("tok-2", expires_in=1000)]
        )
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        client = make_client()

        client.list_storage_providers()
        fake_clock[0] = t0 + 899  # renew_at = expires_at - min(300, 10% of 1000) = t0 + 900
        client.list_storage_providers()
        assert login.call_count == 1
        assert storage.last_request.headers["Authorization"] == "Bearer tok-1"

        fake_clock[0] = t0 + 901
        client.list_storage_providers()
        assert login.call_count == 2
        assert storage.last_request.headers["Authorization"] == "Bearer tok-2"

    def test_token_renewed_before_jwt_exp(self, requests_mock, fake_clock):
        t0 = fake_clock[0]
        first, second = jwt_with_exp(t0 + 600), jwt_with_exp(t0 + 1200)
        login = requests_mock.post(LOGIN_URL, [token_answer(first), token_answer(second)])
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        client = make_client()

        client.list_storage_providers()
        fake_clock[0] = t0 + 539  # renew_at = exp - 60
        client.list_storage_providers()
        assert login.call_count == 1
        fake_clock[0] = t0 + 541
        client.list_storage_providers()
        assert login.call_count == 2
        assert storage.last_request.headers["Authorization"] == f"Bearer {second}"

    def test_token_lifetime_extra_when_the_answer_says_nothing(self, requests_mock, fake_clock):
        t0 = fake_clock[0]
        login = mock_login(requests_mock, "tok-1", "tok-2")
        requests_mock.get(STORAGE_URL, json={"hits": []})
        client = make_client(extra={"session_lifetime": "120"})

        client.list_storage_providers()
        fake_clock[0] = t0 + 107  # renew_at = t0 + 120 - 12
        client.list_storage_providers()
        assert login.call_count == 1
        fake_clock[0] = t0 + 109
        client.list_storage_providers()
        assert login.call_count == 2

    def test_stale_cached_token_is_not_used(self, requests_mock):
        client = make_client()
        PROCESS.tokens.put(client.config.credentials.cache_key(), Token("old", "Bearer old", 10.0, 5.0))
        login = mock_login(requests_mock, "fresh")
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        client.list_storage_providers()
        assert login.call_count == 1
        assert storage.last_request.headers["Authorization"] == "Bearer fresh"

    def test_valid_cached_token_means_no_login(self, requests_mock):
        client = make_client()
        far = 4_000_000_000.0
        PROCESS.tokens.put(client.config.credentials.cache_key(), Token("cached", "Bearer cached", far, far))
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        client.list_storage_providers()
        assert [r.url for r in requests_mock.request_history] == [STORAGE_URL]
        assert storage.last_request.headers["Authorization"] == "Bearer cached"

    @pytest.mark.parametrize("status", [401, 403])
    def test_refused_token_means_one_relogin_and_one_replay(self, requests_mock, status):
        login = mock_login(requests_mock, "tok-1", "tok-2")
        case = requests_mock.get(
            CASE_URL,
            [{"status_code": status, "json": {"message": "expired"}}, {"json": {"status": "Delivered"}}],
        )
        waits: list = []
        assert make_client(waits=waits).get_case_status(CASE) == "Delivered"
        assert login.call_count == 2
        assert case.call_count == 2
        assert [r.headers["Authorization"] for r in case.request_history] == ["Bearer tok-1", "Bearer tok-2"]
        assert waits == []

    @pytest.mark.parametrize("status", [401, 403])
    def test_refused_again_with_a_fresh_token_is_an_auth_error(self, requests_mock, status):
        login = mock_login(requests_mock, "tok-1", "tok-2")
        case = requests_mock.get(CASE_URL, status_code=status, json={"message": "no access to this case"})
        with pytest.raises(EmedgeneAuthError) as info:
            make_client().get_case_status(CASE)
        assert login.call_count == 2
        assert case.call_count == 2
        assert info.value.status_code == status
        assert info.value.operation == "get_case_status"
        assert info.value.case_name == CASE
        assert info.value.server_message == "no access to this case"
        assert f"get_case_status({CASE})" in str(info.value)
        assert f"HTTP {status}" in str(info.value)
        assert "no access to this case" in str(info.value)

    def test_login_refused_is_an_auth_error_without_retry(self, requests_mock):
        login = requests_mock.post(
            LOGIN_URL, status_code=401, json={"message": "Invalid username or password"}
        )
        waits: list = []
        with pytest.raises(EmedgeneAuthError) as info:
            make_client(waits=waits).get_case_status(CASE)
        assert login.call_count == 1
        assert waits == []
        assert info.value.status_code == 401
        assert info.value.server_message == "Invalid username or password"
        assert "HTTP 401: Invalid username or password" in str(info.value)
        assert [r.url for r in requests_mock.request_history] == [LOGIN_URL]

    def test_login_503_is_retried(self, requests_mock):
        login = requests_mock.post(LOGIN_URL, [{"status_code": 503, "text": "busy"}, token_answer("tok-1")])
        requests_mock.get(STORAGE_URL, json={"hits": []})
        waits: list = []
        make_client(waits=waits).list_storage_providers()
        assert login.call_count == 2
        assert len(waits) == 1

    @pytest.mark.parametrize(
        "exc", [requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout], ids=["reset", "read"]
    )
    def test_login_transport_failure_is_retried_not_ambiguous(self, requests_mock, exc):
        """A login creates nothing: a reset or read timeout on it must be retried like a read."""
        login = requests_mock.post(LOGIN_URL, [{"exc": exc}, token_answer("tok-1")])
        storage = requests_mock.get(STORAGE_URL, json={"hits": [{"id": 7}]})
        waits: list = []
        assert make_client(waits=waits).list_storage_providers() == [{"id": 7}]
        assert login.call_count == 2
        assert storage.call_count == 1
        assert len(waits) == 1

    def test_one_login_for_sixteen_threads_with_their_own_clients(self, requests_mock):
        count, lock, slow = [0], threading.Lock(), threading.Event()

        def answer(request, context):
            with lock:
                count[0] += 1
            slow.wait(0.05)  # widen the window in which a second login could start
            return {"access_token": "shared", "token_type": "bearer"}

        requests_mock.post(LOGIN_URL, json=answer)
        case = requests_mock.get(CASE_URL, json={"status": "Uploading"})
        clients = [make_client() for _ in range(16)]
        start = threading.Barrier(16)
        results: list = []
        errors: list = []

        def run(client):
            start.wait()
            try:
                results.append(client.get_case_status(CASE))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert errors == []
        assert results == ["Uploading"] * 16
        assert count[0] == 1
        assert case.call_count == 16
        assert {r.headers["Authorization"] for r in case.request_history} == {"Bearer shared"}
        assert len({id(c.session) for c in clients}) == 16

    def test_one_login_for_sixteen_threads_with_their_own_hooks(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch)
        count, lock = [0], threading.Lock()

        def answer(request, context):
            with lock:
                count[0] += 1
            threading.Event().wait(0.05)
            return {"access_token": "shared-h", "token_type": "bearer"}

        requests_mock.post(LOGIN_URL, json=answer)
        case = requests_mock.get(CASE_URL, json={"status": "Delivered"})
        hooks = [EmedgeneHook() for _ in range(16)]
        start = threading.Barrier(16)
        results: list = []

        def run(hook):
            start.wait()
            results.append(hook.get_case_status(CASE))

        threads = [threading.Thread(target=run, args=(h,)) for h in hooks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert results == ["Delivered"] * 16
        assert count[0] == 1
        assert {r.headers["Authorization"] for r in case.request_history} == {"Bearer shared-h"}

    def test_different_credentials_get_different_tokens(self, requests_mock):
        def answer(request, context):
            return {"access_token": "tok-" + request.json()["username"], "token_type": "bearer"}

        login = requests_mock.post(LOGIN_URL, json=answer)
        storage = requests_mock.get(STORAGE_URL, json={"hits": []})
        alice, bob = make_client(login="alice"), make_client(login="bob")
        alice.list_storage_providers()
        assert storage.last_request.headers["Authorization"] == "Bearer tok-alice"
        bob.list_storage_providers()
        assert storage.last_request.headers["Authorization"] == "Bearer tok-bob"
        make_client(login="alice").list_storage_providers()
        assert storage.last_request.headers["Authorization"] == "Bearer tok-alice"
        other_password = make_client(login="alice", password="another-password")
        other_password.list_storage_providers()
        assert login.call_count == 3

    def test_every_secret_goes_to_on_secret(self, requests_mock):
        seen: list[str] = []
        mock_login(requests_mock, "tok-1", "tok-2")
        requests_mock.get(CASE_URL, [{"status_code": 401}, {"json": {"status": "Delivered"}}])
        client = make_client(on_secret=seen.append)
        assert seen == [PASSWORD]
        client.get_case_status(CASE)
        assert seen == [PASSWORD, "tok-1", "tok-2"]

    def test_hook_masks_password_api_key_and_issued_token(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks import emedgene as hook_module

        masked = mock.MagicMock()
        monkeypatch.setattr(hook_module, "mask_secret", masked)
        set_conn(monkeypatch, host=ILLUMINA, extra={"api_key": API_KEY, "auth_type": "api_key"})
        requests_mock.post(ILLUMINA_TOKEN_URL, json={"access_token": "issued-tok-9", "token_type": "bearer"})
        requests_mock.get(ILLUMINA + "/api/storage", json={"hits": []})

        hook_module.EmedgeneHook().client.list_storage_providers()

        secrets = [c.args[0] for c in masked.call_args_list]
        assert PASSWORD in secrets
        assert API_KEY in secrets
        assert "issued-tok-9" in secrets


# ---------------------------------------------------------------------------------------------
class TestTransport:
    def test_one_session_and_a_timeout_on_every_request(self, requests_mock, monkeypatch):
        mock_login(requests_mock)
        requests_mock.get(STORAGE_URL, json={"hits": []})
        requests_mock.get(CASE_URL, json={"status": "Delivered"})
        client = make_client(extra={"timeout": "12.5"})
        session = client.session
        spy = mock.Mock(wraps=session.request)
        monkeypatch.setattr(session, "request", spy)

        client.list_storage_providers()
        client.get_case_status(CASE)
        client.list_storage_providers()

        assert client.session is session
        assert spy.call_count == 4  # login + 3 calls, all through the one session
        assert [c.kwargs["timeout"] for c in spy.call_args_list] == [12.5] * 4
        assert [r.timeout for r in requests_mock.request_history] == [12.5] * 4

    def test_api_key_exchange_has_the_timeout_too(self, requests_mock):
        requests_mock.post(ILLUMINA_TOKEN_URL, json={"access_token": "k"})
        requests_mock.get(ILLUMINA + "/api/storage", json={"hits": []})
        make_client(ILLUMINA, None, None, {"api_key": API_KEY}).list_storage_providers()
        assert [r.timeout for r in requests_mock.request_history] == [30.0, 30.0]

    @pytest.mark.parametrize("verify", ["false", "CA_FILE"])
    @pytest.mark.parametrize(
        "ca_bundle_env", [None, "/etc/ssl/certs/ca-certificates.crt"], ids=["no-env", "env"]
    )
    def test_verify_extra_reaches_every_request(
        self, requests_mock, monkeypatch, tmp_path, verify, ca_bundle_env
    ):
        """The connection's ``verify`` must win even where REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE are set
        (common in container images): requests lets those override ``Session.verify``."""
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if ca_bundle_env is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, ca_bundle_env)
        if verify == "CA_FILE":  # a CA bundle must exist, and hold PEM certificates, to be accepted
            verify = str(tmp_path / "simulator-ca.pem")
            (tmp_path / "simulator-ca.pem").write_text(Path(certifi.where()).read_text())
        mock_login(requests_mock)
        requests_mock.get(STORAGE_URL, json={"hits": []})
        make_client(extra={"verify": verify}).list_storage_providers()
        expected = False if verify == "false" else verify
        assert [r.verify for r in requests_mock.request_history] == [expected, expected]

    def test_hook_caches_its_client(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch, extra={"timeout": "9"})
        mock_login(requests_mock)
        requests_mock.get(STORAGE_URL, json={"hits": []})
        hook = EmedgeneHook()
        client = hook.get_conn()
        assert isinstance(client, EmedgeneClient)
        assert hook.client is client
        assert hook.get_conn() is client
        session = client.session
        hook.client.list_storage_providers()
        hook.client.list_storage_providers()
        assert hook.client.session is session
        assert [r.timeout for r in requests_mock.request_history] == [9.0, 9.0, 9.0]


# ---------------------------------------------------------------------------------------------
TRANSIENT_GET_FAILURES = {
    "connection-error": {"exc": requests.exceptions.ConnectionError},
    "connect-timeout": {"exc": requests.exceptions.ConnectTimeout},
    "read-timeout": {"exc": requests.exceptions.ReadTimeout},
    "502-html": {"status_code": 502, "text": HTML_502, "headers": {"Content-Type": "text/html"}},
    "503": {"status_code": 503, "json": {"message": "maintenance"}},
    "504": {"status_code": 504, "text": "Gateway Timeout"},
    "500": {"status_code": 500, "json": {"message": "oops"}},
    "429-no-retry-after": {"status_code": 429, "text": "slow down"},
}


class TestRetries:
    @pytest.mark.parametrize("failure", TRANSIENT_GET_FAILURES.values(), ids=TRANSIENT_GET_FAILURES.keys())
    def test_transient_failure_on_a_read_is_retried(self, requests_mock, failure):
        mock_login(requests_mock)
        case = requests_mock.get(CASE_URL, [failure, failure, {"json": {"status": "Delivered"}}])
        waits: list = []
        assert make_client(waits=waits).get_case_status(CASE) == "Delivered"
        assert case.call_count == 3
        assert len(waits) == 2
        assert 0 <= waits[0] <= 1.0
        assert 0 <= waits[1] <= 2.0

    def test_429_retry_after_is_the_wait(self, requests_mock):
        mock_login(requests_mock)
        limited = {"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"message": "rate"}}
        case = requests_mock.get(CASE_URL, [limited, {"json": {"status": "Delivered"}}])
        waits: list = []
        assert make_client(waits=waits).get_case_status(CASE) == "Delivered"
        assert case.call_count == 2
        assert waits == [7.0]

    def test_429_retry_after_is_capped_by_retry_max_wait(self, requests_mock):
        mock_login(requests_mock)
        limited = {"status_code": 429, "headers": {"Retry-After": "3600"}}
        requests_mock.get(CASE_URL, [limited, limited, {"json": {"status": "Delivered"}}])
        waits: list = []
        make_client(extra={"retry_max_wait": "30"}, waits=waits).get_case_status(CASE)
        assert waits == [30.0, 30.0]

    def test_backoff_doubles_and_is_capped(self, requests_mock, monkeypatch):
        monkeypatch.setattr(retry_module.random, "uniform", lambda low, high: high)  # jitter at its top
        mock_login(requests_mock)
        limited = {"status_code": 429}
        requests_mock.get(CASE_URL, [limited] * 5 + [{"json": {"status": "Delivered"}}])
        waits: list = []
        make_client(extra={"retry_max_wait": "5"}, waits=waits).get_case_status(CASE)
        assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]

    def test_backoff_jitter_stays_within_bounds(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, [{"status_code": 503}] * 5 + [{"json": {"status": "Delivered"}}])
        waits: list = []
        make_client(extra={"retry_max_wait": "3"}, waits=waits).get_case_status(CASE)
        assert len(waits) == 5
        for attempt, wait in enumerate(waits, start=1):
            assert 0 <= wait <= min(3.0, 2 ** (attempt - 1))

    def test_exhausted_5xx_is_unavailable_naming_everything(self, requests_mock):
        mock_login(requests_mock)
        case = requests_mock.get(CASE_URL, status_code=503, json={"message": "Service down for maintenance"})
        waits: list = []
        with pytest.raises(EmedgeneUnavailableError) as info:
            make_client(waits=waits).get_case_status(CASE)
        exc = info.value
        assert type(exc) is EmedgeneUnavailableError
        assert case.call_count == 6  # max_retries default 5, plus the first
        assert len(waits) == 5
        assert (exc.operation, exc.case_name, exc.status_code) == ("get_case_status", CASE, 503)
        assert exc.server_message == "Service down for maintenance"
        text = str(exc)
        assert f"get_case_status({CASE})" in text
        assert "after 6 attempt(s)" in text
        assert "HTTP 503" in text
        assert "Service down for maintenance" in text

    def test_exhausted_502_html_names_the_page_title(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, status_code=502, text=HTML_502, headers={"Content-Type": "text/html"})
        with pytest.raises(EmedgeneUnavailableError) as info:
            make_client(extra={"max_retries": "1"}).get_case_status(CASE)
        assert info.value.server_message == "HTML page: 502 Bad Gateway"
        assert "HTML page: 502 Bad Gateway" in str(info.value)
        assert "<" not in str(info.value)

    def test_exhausted_connection_errors_are_unavailable(self, requests_mock):
        mock_login(requests_mock)
        case = requests_mock.get(CASE_URL, exc=requests.exceptions.ConnectionError("connection refused"))
        with pytest.raises(EmedgeneUnavailableError) as info:
            make_client(extra={"max_retries": "2"}).get_case_status(CASE)
        assert case.call_count == 3
        assert info.value.status_code is None
        assert "ConnectionError" in str(info.value)
        assert "connection refused" in str(info.value)
        assert f"get_case_status({CASE})" in str(info.value)

    def test_exhausted_429_is_rate_limited_with_retry_after(self, requests_mock):
        mock_login(requests_mock)
        case = requests_mock.get(
            CASE_URL, status_code=429, headers={"Retry-After": "7"}, json={"message": "Too many requests"}
        )
        waits: list = []
        with pytest.raises(EmedgeneRateLimitedError) as info:
            make_client(waits=waits).get_case_status(CASE)
        exc = info.value
        assert isinstance(exc, EmedgeneUnavailableError)
        assert exc.retry_after == 7.0
        assert exc.status_code == 429
        assert case.call_count == 6
        assert waits == [7.0] * 5
        assert "HTTP 429" in str(exc)
        assert "Too many requests" in str(exc)
        assert f"get_case_status({CASE})" in str(exc)

    @pytest.mark.parametrize(("max_retries", "attempts"), [("0", 1), ("2", 3), (7, 8)])
    def test_max_retries_extra_sets_the_attempt_count(self, requests_mock, max_retries, attempts):
        mock_login(requests_mock)
        case = requests_mock.get(CASE_URL, status_code=504)
        waits: list = []
        with pytest.raises(EmedgeneUnavailableError, match=f"after {attempts} attempt"):
            make_client(extra={"max_retries": max_retries}, waits=waits).get_case_status(CASE)
        assert case.call_count == attempts
        assert len(waits) == attempts - 1

    # -- POST create: never re-sent once it may have reached the server -------------------------

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_create_5xx_is_ambiguous_after_one_post(self, requests_mock, status):
        mock_login(requests_mock)
        create = requests_mock.post(CREATE_URL, status_code=status, json={"message": "upstream died"})
        waits: list = []
        with pytest.raises(EmedgeneAmbiguousCreateError) as info:
            make_client(waits=waits).create_case(CASE_JSON)
        assert create.call_count == 1
        assert waits == []
        assert info.value.status_code == status
        assert info.value.operation == "create_case"
        assert f"HTTP {status}" in str(info.value)
        assert "upstream died" in str(info.value)
        assert "not sent again" in str(info.value)

    @pytest.mark.parametrize(
        ("exc", "kind"),
        [
            (requests.exceptions.ReadTimeout, "ReadTimeout (timeout 30 s)"),
            (requests.exceptions.ConnectionError("Connection reset by peer"), "ConnectionError"),
        ],
        ids=["read-timeout", "reset"],
    )
    def test_create_lost_answer_is_ambiguous_after_one_post(self, requests_mock, exc, kind):
        mock_login(requests_mock)
        create = requests_mock.post(CREATE_URL, exc=exc)
        with pytest.raises(EmedgeneAmbiguousCreateError) as info:
            make_client().create_case(CASE_JSON)
        assert create.call_count == 1
        assert f"({kind} on POST /api/cases/v2/cases" in str(info.value)
        assert info.value.operation == "create_case"

    def test_create_connect_timeout_is_retried(self, requests_mock):
        mock_login(requests_mock)
        create = requests_mock.post(
            CREATE_URL,
            [{"exc": requests.exceptions.ConnectTimeout}, {"status_code": 201, "json": {"name": CASE}}],
        )
        waits: list = []
        assert make_client(waits=waits).create_case(CASE_JSON) == CASE
        assert create.call_count == 2
        assert len(waits) == 1

    def test_create_connection_never_made_is_retried(self, requests_mock):
        refused = requests.exceptions.ConnectionError(
            urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")
        )
        mock_login(requests_mock)
        create = requests_mock.post(
            CREATE_URL, [{"exc": refused}, {"status_code": 201, "json": {"name": CASE}}]
        )
        assert make_client().create_case(CASE_JSON) == CASE
        assert create.call_count == 2

    def test_create_429_is_retried(self, requests_mock):
        mock_login(requests_mock)
        create = requests_mock.post(
            CREATE_URL,
            [
                {"status_code": 429, "headers": {"Retry-After": "2"}},
                {"status_code": 201, "json": {"name": CASE}},
            ],
        )
        waits: list = []
        assert make_client(waits=waits).create_case(CASE_JSON) == CASE
        assert create.call_count == 2
        assert waits == [2.0]

    @pytest.mark.parametrize("status", [400, 404, 409, 422])
    @pytest.mark.parametrize("method", ["GET", "POST"])
    def test_other_4xx_fail_at_once(self, requests_mock, status, method):
        mock_login(requests_mock)
        body = {"message": f"server says {status}"}
        waits: list = []
        client = make_client(waits=waits)
        if method == "GET":
            target = requests_mock.get(CASE_URL, status_code=status, json=body)
            run = lambda: client.get_case_status(CASE)  # noqa: E731
        else:
            target = requests_mock.post(CREATE_URL, status_code=status, json=body)
            run = lambda: client.create_case(CASE_JSON)  # noqa: E731
        expected = EmedgeneNotFoundError if status == 404 else EmedgeneInvalidRequestError
        with pytest.raises(expected) as info:
            run()
        assert type(info.value) is expected
        assert target.call_count == 1
        assert waits == []
        assert info.value.status_code == status
        assert info.value.server_message == f"server says {status}"
        assert f"HTTP {status}" in str(info.value)
        assert f"server says {status}" in str(info.value)

    def test_validate_case_400_raises_the_server_message(self, requests_mock):
        mock_login(requests_mock)
        words = "Unmatched phenotype(s) found: phenotypes/EMG_PHENOTYPE_0011438"
        dry = requests_mock.post(CREATE_URL, status_code=400, json={"message": words})
        with pytest.raises(EmedgeneInvalidRequestError) as info:
            make_client().validate_case(CASE_JSON)
        assert dry.call_count == 1
        assert dry.last_request.url == CREATE_URL + "?dry_run=true"
        assert dry.last_request.json() == CASE_JSON
        assert info.value.operation == "validate_case"
        assert info.value.server_message == words
        assert words in str(info.value)

    def test_validate_case_is_retried_on_503(self, requests_mock):
        mock_login(requests_mock)
        dry = requests_mock.post(CREATE_URL, [{"status_code": 503}, {"status_code": 200, "json": {}}])
        waits: list = []
        assert make_client(waits=waits).validate_case(CASE_JSON) is None
        assert dry.call_count == 2
        assert len(waits) == 1
        assert {r.url for r in dry.request_history} == {CREATE_URL + "?dry_run=true"}


# ---------------------------------------------------------------------------------------------
class TestErrorMessages:
    def test_huge_server_body_is_trimmed(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, status_code=400, json={"message": "x" * 20_000})
        with pytest.raises(EmedgeneInvalidRequestError) as info:
            make_client().get_case_status(CASE)
        assert len(info.value.server_message) == 300
        assert info.value.server_message.endswith("...")
        assert len(str(info.value)) < 500

    def test_huge_plain_text_body_is_trimmed(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, status_code=409, text="conflict " * 3000)
        with pytest.raises(EmedgeneInvalidRequestError) as info:
            make_client().get_case_status(CASE)
        assert len(info.value.server_message) <= 300
        assert len(str(info.value)) < 500

    def test_html_error_page_reduced_to_its_title(self, requests_mock):
        mock_login(requests_mock)
        page = "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>" + "<p>x</p>" * 500
        requests_mock.get(CASE_URL, status_code=404, text=page, headers={"Content-Type": "text/html"})
        with pytest.raises(EmedgeneNotFoundError) as info:
            make_client().get_case_status(CASE)
        assert info.value.server_message == "HTML page: 404 Not Found"
        assert "<" not in str(info.value)
        assert f"get_case_status({CASE})" in str(info.value)

    def test_echoed_password_and_token_are_scrubbed(self, requests_mock):
        mock_login(requests_mock, "tok-SECRET-123")
        echo = f"bad request from {USER}/{PASSWORD} using Bearer tok-SECRET-123"
        requests_mock.get(CASE_URL, status_code=400, json={"message": echo})
        with pytest.raises(EmedgeneInvalidRequestError) as info:
            make_client().get_case_status(CASE)
        text = str(info.value)
        assert PASSWORD not in text
        assert "tok-SECRET-123" not in text
        assert f"bad request from {USER}/*** using Bearer ***" in text
        assert info.value.server_message == f"bad request from {USER}/*** using Bearer ***"

    def test_echoed_password_in_login_refusal_is_scrubbed(self, requests_mock):
        requests_mock.post(LOGIN_URL, status_code=401, text=f"wrong password {PASSWORD} for {USER}")
        with pytest.raises(EmedgeneAuthError) as info:
            make_client().list_storage_providers()
        assert PASSWORD not in str(info.value)
        assert f"wrong password *** for {USER}" in str(info.value)

    def test_echoed_api_key_is_scrubbed(self, requests_mock):
        encoded = basic(API_KEY).split(" ", 1)[1]
        requests_mock.post(
            ILLUMINA_TOKEN_URL, status_code=403, json={"message": f"key {API_KEY} (header {encoded}) revoked"}
        )
        with pytest.raises(EmedgeneAuthError) as info:
            make_client(ILLUMINA, None, None, {"api_key": API_KEY}).list_storage_providers()
        assert API_KEY not in str(info.value)
        assert encoded not in str(info.value)
        assert "key *** (header ***) revoked" in str(info.value)

    def test_secret_cut_by_the_trim_is_not_shown_in_part(self, requests_mock):
        """Trimming must not cut a secret in two before scrubbing: the shown half would leak."""
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, status_code=400, json={"message": "x" * 290 + PASSWORD + " rejected"})
        with pytest.raises(EmedgeneInvalidRequestError) as info:
            make_client().get_case_status(CASE)
        assert len(info.value.server_message) <= 300
        assert PASSWORD[:7] not in str(info.value)

    @pytest.mark.parametrize(
        "body",
        [
            {"message": "{secret} is wrong"},
            {"error": {"field": "password", "value": "{secret}"}},
            ["{secret} is wrong"],
        ],
        ids=["message", "error-object", "json-list"],
    )
    def test_echoed_password_with_quote_and_accent_is_scrubbed(self, requests_mock, body):
        secret = 'Tr0ub4dor"P\u00e4ss&3'  # a quote and a non-ASCII letter, as strong passwords have
        mock_login(requests_mock)
        echoed = json.loads(json.dumps(body).replace("{secret}", json.dumps(secret)[1:-1]))
        requests_mock.get(CASE_URL, status_code=422, json=echoed)
        with pytest.raises(EmedgeneInvalidRequestError) as info:
            make_client(password=secret).get_case_status(CASE)
        text = str(info.value)
        assert secret not in text
        assert json.dumps(secret)[1:-1] not in text  # nor its JSON-escaped spelling
        assert json.dumps(secret, ensure_ascii=False)[1:-1] not in text
        assert "***" in text

    def test_secrets_never_reach_the_log_or_the_final_error(self, requests_mock, caplog):
        mock_login(requests_mock, "tok-SECRET-123")
        echo = {"message": f"upstream got password={PASSWORD} token=tok-SECRET-123"}
        requests_mock.get(CASE_URL, status_code=503, json=echo)
        caplog.set_level(logging.DEBUG, logger="emedgene_provider")
        with pytest.raises(EmedgeneUnavailableError) as info:
            make_client(extra={"max_retries": "2"}).get_case_status(CASE)
        retry_lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
        assert len(retry_lines) == 2
        assert all("password=*** token=***" in line for line in retry_lines)
        assert PASSWORD not in caplog.text
        assert "tok-SECRET-123" not in caplog.text
        assert PASSWORD not in str(info.value)
        assert "tok-SECRET-123" not in str(info.value)
        assert "password=*** token=***" in str(info.value)

    def test_secret_in_a_transport_error_is_scrubbed(self, requests_mock, caplog):
        mock_login(requests_mock)
        requests_mock.get(
            CASE_URL, exc=requests.exceptions.ConnectionError(f"proxy rejected credentials {PASSWORD}")
        )
        caplog.set_level(logging.DEBUG, logger="emedgene_provider")
        with pytest.raises(EmedgeneUnavailableError) as info:
            make_client(extra={"max_retries": "1"}).get_case_status(CASE)
        assert PASSWORD not in str(info.value)
        assert "proxy rejected credentials ***" in str(info.value)
        assert PASSWORD not in caplog.text

    def test_html_with_200_where_json_is_due_is_unexpected(self, requests_mock):
        mock_login(requests_mock)
        page = "<!DOCTYPE html><html><head><title>Sign in - Emedgene</title></head><body>x</body></html>"
        requests_mock.get(CASE_URL, status_code=200, text=page, headers={"Content-Type": "text/html"})
        with pytest.raises(EmedgeneUnexpectedResponseError) as info:
            make_client().get_case_status(CASE)
        assert info.value.status_code == 200
        assert "was not JSON" in str(info.value)
        assert "Sign in - Emedgene" in str(info.value)
        assert f"get_case_status({CASE})" in str(info.value)

    def test_json_without_hits_is_unexpected_listing_the_keys(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(STORAGE_URL, json={"items": [], "count": 0})
        with pytest.raises(EmedgeneUnexpectedResponseError) as info:
            make_client().list_storage_providers()
        assert "no 'hits'" in str(info.value)
        assert "(keys: count, items)" in str(info.value)
        assert info.value.operation == "list_storage_providers"

    def test_json_list_where_an_object_is_due_is_unexpected(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, json=["Delivered"])
        with pytest.raises(EmedgeneUnexpectedResponseError, match="a JSON list"):
            make_client().get_case_status(CASE)

    def test_create_without_a_name_is_ambiguous_and_names_what_came(self, requests_mock):
        """A success without a name may still have made the case: ambiguous, never 'nothing'."""
        mock_login(requests_mock)
        requests_mock.post(CREATE_URL, status_code=201, json={"id": 5})
        with pytest.raises(EmedgeneAmbiguousCreateError, match=r"no 'name' \(keys: id\)"):
            make_client().create_case(CASE_JSON)


# ---------------------------------------------------------------------------------------------
BAD_CASE_NAMES = [
    "../storage",
    "EMG1?x",
    "EMG1#x",
    "a/b",
    "%2e%2e",
    "EMG 1",
    "EMG1\n",
    "EMG\u00e91",
    "EMG\u0661\u0662",
    "",
    None,
    107903188,
    "..",
    "EMG..1",
    ".hidden",
    "x" * 200,
]
CASE_OPERATIONS = ["get_case", "get_case_status", "get_candidates", "export_case"]


class TestCaseNames:
    @pytest.mark.parametrize("operation", CASE_OPERATIONS)
    @pytest.mark.parametrize("name", BAD_CASE_NAMES, ids=repr)
    def test_bad_name_is_refused_before_any_request(self, requests_mock, operation, name):
        login = mock_login(requests_mock)
        with pytest.raises(EmedgeneInvalidCaseNameError) as info:
            getattr(make_client(), operation)(name)
        assert requests_mock.request_history == []
        assert login.call_count == 0
        assert "Invalid Emedgene case name" in str(info.value)
        assert isinstance(info.value, ValueError)

    def test_bad_name_through_the_hook(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch)
        mock_login(requests_mock)
        with pytest.raises(EmedgeneInvalidCaseNameError):
            EmedgeneHook().get_case_status("../storage")
        assert requests_mock.request_history == []

    @pytest.mark.parametrize(
        ("operation", "url"),
        [
            ("get_case", f"{BASE}/api/test/Lab-case_1.v2"),
            ("get_case_status", f"{BASE}/api/test/Lab-case_1.v2?test_fields=status"),
            ("get_candidates", f"{BASE}/api/candidates/Lab-case_1.v2"),
            ("export_case", f"{BASE}/api/test/Lab-case_1.v2/export"),
        ],
    )
    def test_valid_name_lands_in_the_path(self, requests_mock, operation, url):
        mock_login(requests_mock)
        target = requests_mock.get(url.split("?")[0], json={"status": "Delivered", "hits": []})
        getattr(make_client(), operation)("Lab-case_1.v2")
        assert target.call_count == 1
        assert target.last_request.url == url


# ---------------------------------------------------------------------------------------------
class TestCalls:
    @staticmethod
    def paged_server(requests_mock, cases: list[dict], *, cap: int, with_total: bool):
        def answer(request, context):
            start, size = int(request.qs["from"][0]), int(request.qs["size"][0])
            body: dict = {"hits": cases[start : start + min(size, cap)]}
            if with_total:
                body["total"] = len(cases)
            return body

        return requests_mock.get(LIST_URL, json=answer)

    def test_iter_cases_advances_by_what_came_when_the_server_caps_size(self, requests_mock):
        mock_login(requests_mock)
        cases = [{"name": f"EMG{i:09d}"} for i in range(7)]
        listing = self.paged_server(requests_mock, cases, cap=3, with_total=True)
        assert list(make_client().iter_cases(page_size=10)) == cases
        assert [r.qs["from"] for r in listing.request_history] == [["0"], ["3"], ["6"]]
        assert [r.qs["size"] for r in listing.request_history] == [["10"]] * 3

    def test_iter_cases_stops_on_an_empty_page(self, requests_mock):
        mock_login(requests_mock)
        cases = [{"name": f"EMG{i:09d}"} for i in range(5)]
        listing = self.paged_server(requests_mock, cases, cap=3, with_total=False)
        assert list(make_client().iter_cases(page_size=3)) == cases
        assert [r.qs["from"] for r in listing.request_history] == [["0"], ["3"], ["5"]]

    def test_iter_cases_stops_at_total(self, requests_mock):
        mock_login(requests_mock)
        listing = requests_mock.get(
            LIST_URL,
            [
                {"json": {"hits": [{"name": "a"}, {"name": "b"}], "total": 4}},
                {"json": {"hits": [{"name": "c"}, {"name": "d"}], "total": 4}},
                {"json": {"hits": [{"name": "never"}], "total": 4}},
            ],
        )
        assert [c["name"] for c in make_client().iter_cases(page_size=2)] == ["a", "b", "c", "d"]
        assert listing.call_count == 2

    def test_iter_cases_is_lazy(self, requests_mock):
        mock_login(requests_mock)
        listing = self.paged_server(
            requests_mock, [{"name": str(i)} for i in range(10)], cap=2, with_total=True
        )
        first = next(make_client().iter_cases(page_size=2))
        assert first == {"name": "0"}
        assert listing.call_count == 1

    @pytest.mark.parametrize("page_size", [0, -1])
    def test_iter_cases_refuses_a_page_size_below_one(self, requests_mock, page_size):
        with pytest.raises(ValueError, match="page_size"):
            list(make_client().iter_cases(page_size=page_size))
        assert requests_mock.request_history == []

    def test_get_case_with_test_fields_repeats_the_key(self, requests_mock):
        mock_login(requests_mock)
        target = requests_mock.get(CASE_URL, json={"status": "Delivered", "patients": {}})
        assert make_client().get_case(CASE, ["status", "patients"]) == {"status": "Delivered", "patients": {}}
        assert target.last_request.url == f"{CASE_URL}?test_fields=status&test_fields=patients"

    def test_get_case_whole(self, requests_mock):
        mock_login(requests_mock)
        target = requests_mock.get(CASE_URL, json={"name": CASE, "notes": "n"})
        assert make_client().get_case(CASE) == {"name": CASE, "notes": "n"}
        assert target.last_request.url == CASE_URL

    def test_get_case_status_returns_the_status(self, requests_mock):
        mock_login(requests_mock)
        target = requests_mock.get(CASE_URL, json={"status": "In progress", "name": CASE})
        assert make_client().get_case_status(CASE) == "In progress"
        assert target.last_request.url == f"{CASE_URL}?test_fields=status"

    @pytest.mark.parametrize("key", ["hits", "variants"])
    def test_export_accepts_hits_or_variants(self, requests_mock, key):
        mock_login(requests_mock)
        target = requests_mock.get(CASE_URL + "/export", json={key: [{"gene": "BRCA1"}]})
        assert make_client().export_case(CASE) == [{"gene": "BRCA1"}]
        assert target.last_request.method == "GET"

    def test_get_candidates_returns_hits(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(f"{BASE}/api/candidates/{CASE}", json={"hits": [{"id": "v1"}], "total": 1})
        assert make_client().get_candidates(CASE) == [{"id": "v1"}]

    def test_list_storage_providers_returns_hits(self, requests_mock):
        mock_login(requests_mock)
        target = requests_mock.get(STORAGE_URL, json={"hits": [{"id": 3, "name": "basespace"}], "total": 1})
        assert make_client().list_storage_providers() == [{"id": 3, "name": "basespace"}]
        assert target.last_request.url == STORAGE_URL

    def test_create_case_posts_the_case_and_returns_the_name(self, requests_mock):
        mock_login(requests_mock)
        create = requests_mock.post(CREATE_URL, status_code=201, json={"name": CASE, "id": 9})
        assert make_client().create_case(CASE_JSON) == CASE
        assert create.call_count == 1
        assert create.last_request.url == CREATE_URL
        assert create.last_request.json() == CASE_JSON
        assert create.last_request.headers["Authorization"] == "Bearer tok-1"


# ---------------------------------------------------------------------------------------------
class TestHookTestConnection:
    def test_success(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch)
        mock_login(requests_mock)
        listing = requests_mock.get(LIST_URL, json={"hits": [{"name": CASE}], "total": 42})
        assert EmedgeneHook().test_connection() == (
            True,
            "Connected to Emedgene at https://lab.emedgene.com: 42 case(s) visible.",
        )
        assert listing.last_request.url == LIST_URL + "?from=0&size=1"

    def test_bad_credentials_answer_false(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch)
        login = requests_mock.post(LOGIN_URL, status_code=401, json={"message": "Invalid credentials"})
        ok, message = EmedgeneHook().test_connection()
        assert ok is False
        assert "HTTP 401: Invalid credentials" in message
        assert PASSWORD not in message
        assert login.call_count == 1

    def test_bad_connection_answers_false(self, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch, extra={"verfy": "false"})
        ok, message = EmedgeneHook().test_connection()
        assert ok is False
        assert "verfy" in message

    def test_unreachable_answers_false(self, requests_mock, monkeypatch):
        from emedgene_provider.hooks.emedgene import EmedgeneHook

        set_conn(monkeypatch, extra={"max_retries": "1"})
        requests_mock.post(LOGIN_URL, exc=requests.exceptions.ConnectTimeout("timed out"))
        hook = EmedgeneHook()
        waits: list = []
        hook.client.sleep = waits.append
        ok, message = hook.test_connection()
        assert ok is False
        assert "cannot connect to https://lab.emedgene.com:443 for POST /api/auth/v2/api_login/: " in message
        assert "connecting timed out after 30 s" in message
        assert "ConnectTimeout" not in message
        assert len(waits) == 1


class TestRequestsThatCannotBeSentOrPaged:
    def test_a_5xx_not_worth_retrying_on_a_read_is_unavailable_not_ambiguous(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, status_code=501, json={"message": "Not Implemented"})
        client = make_client()
        with pytest.raises(EmedgeneUnavailableError) as info:
            client.get_case_status(CASE)
        assert str(info.value) == (
            f"Emedgene get_case_status({CASE}): server error "
            f"(HTTP 501 from GET /api/test/{CASE}: Not Implemented)"
        )
        assert len([r for r in requests_mock.request_history if r.method == "GET"]) == 1

    def test_a_header_requests_refuses_is_a_config_error_not_an_ambiguous_create(
        self, requests_mock, monkeypatch
    ):
        mock_login(requests_mock)
        client = make_client()
        client.token()  # logged in; only the create is refused

        def refuse(*args, **kwargs):
            raise requests.exceptions.InvalidHeader("Invalid leading whitespace in header value")

        monkeypatch.setattr(requests.Session, "request", refuse)  # a create has a session of its own
        with pytest.raises(EmedgeneConfigError) as info:
            client.create_case(CASE_JSON)
        assert str(info.value) == (
            "Emedgene create_case: the request to POST /api/cases/v2/cases could not be built: "
            "Invalid leading whitespace in header value"
        )

    def test_the_async_client_reports_a_refused_header_the_same_way(self, emedgene_simulator):
        import asyncio

        from emedgene_provider.client.aio import AsyncEmedgeneClient
        from emedgene_provider.client.auth import Token
        from emedgene_provider.client.config import config_from_connection
        from emedgene_provider.client.errors import EmedgeneConfigError

        sim = emedgene_simulator
        config = config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=None)
        PROCESS.tokens.put(
            config.credentials.cache_key(),
            Token(access_token="tok", header_value="Bearer tok\r\nX: 1", expires_at=2e9, renew_at=2e9),
        )

        async def run() -> None:
            async with AsyncEmedgeneClient(config) as client:
                await client.get_case_status(CASE)

        with pytest.raises(EmedgeneConfigError) as info:
            asyncio.run(run())
        assert str(info.value).startswith(
            f"Emedgene get_case_status({CASE}): the request to GET /api/test/{CASE} could not be built: "
        )

    def test_a_server_that_ignores_from_is_reported_not_paged_forever(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(LIST_URL, json={"hits": [{"name": "EMG000000001"}]})  # no total, same page
        client = make_client()
        with pytest.raises(EmedgeneUnexpectedResponseError) as info:
            list(client.iter_cases(page_size=1))
        assert str(info.value) == (
            "Emedgene iter_cases: the page at from=1 repeats the previous one; the server seems to "
            "ignore 'from'"
        )


class TestUnclearCreatesFoundInReview:
    """A create that may have reached the server is never reported as 'nothing happened'."""

    def test_tls_failure_after_a_create_was_sent_is_ambiguous(self, requests_mock):
        mock_login(requests_mock)
        post = requests_mock.post(CREATE_URL, exc=requests.exceptions.SSLError("bad record mac"))
        with pytest.raises(EmedgeneAmbiguousCreateError, match="bad record mac"):
            make_client().create_case(CASE_JSON)
        assert post.call_count == 1

    def test_tls_failure_on_a_read_is_a_settings_error(self, requests_mock):
        mock_login(requests_mock)
        requests_mock.get(CASE_URL, exc=requests.exceptions.SSLError("bad record mac"))
        with pytest.raises(EmedgeneConfigError) as raised:
            make_client().get_case_status(CASE)
        assert not isinstance(raised.value, EmedgeneAmbiguousCreateError)

    @pytest.mark.parametrize(
        "answer",
        [{"text": "created", "status_code": 201}, {"json": {"name": ""}, "status_code": 201}],
        ids=["not-json", "empty-name"],
    )
    def test_a_success_without_a_readable_name_is_ambiguous(self, requests_mock, answer):
        mock_login(requests_mock)
        post = requests_mock.post(CREATE_URL, **answer)
        with pytest.raises(EmedgeneAmbiguousCreateError, match="may have been applied"):
            make_client().create_case(CASE_JSON)
        assert post.call_count == 1
