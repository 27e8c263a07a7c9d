"""Each user-facing error, produced through the public API, with its whole message asserted.

What a user reads when something goes wrong: what happened, to which case and call, the server's
own words, and what to do. The tests below produce those errors the way a DAG would meet them
(config, client, hook, operators, sensor, triggers, batch reader, case builder) and compare the
text; each of them can fail.

How coverage was checked (issue 10, once, by hand; no test greps message text any more). The
former meta-test's collector listed every message given to an error or a trigger event in
``emedgene_provider/`` (the simulator excepted), extended to short messages, ``TypeError`` and the
helpers that build messages (``deadline_passed``, ``too_large``, ``BatchCsvError``,
``CaseProblemsError``). Each message's literal text was then changed in a copy of the package, one
site at a time, and the tests (all but e2e) run against it: a site counts as covered only when a
test failed showing the changed text. Messages passed through from a trigger event (sensor and
operator ``execute_complete``, ``waiting.resume``, ``execute_reconciled``) were checked the same way
by changing the passed text. The result, by module (message -> the test that reads it):

- ``client/config.py``, ``client/auth.py`` (connection): no host, not http(s), plain http, extra
  not JSON / not an object, unknown extras, boolean, number, at least, both credentials,
  ``auth_type``, ``login_url`` over http, ``case_url_template``, password without login, API key
  missing, no token URL -> ``test_connection_errors_say_what_to_fix`` (here); finite number and
  whole number -> test_hostile_config; at most -> test_shared_client; ``custom_statuses`` (not a
  JSON list, not a list, a lifecycle status) -> test_status_fail_closed; credentials in a URL,
  a junk CA bundle -> test_hostile_config; a missing CA bundle -> test_tls.
- ``client/endpoints.py``: invalid case name -> here.
- ``client/polling.py``, ``client/ratelimit.py``: poll interval, max_poll_interval, jitter ->
  test_polling; rate and burst -> test_rate_limit.
- ``client/reconcile.py``: page_size -> here; an endless list, a repeated page -> test_reconcile.
- ``client/responses.py``, ``client/wire.py``, ``client/records.py`` (answers): not JSON, 404 and
  other 4xx, unexpected status, ambiguous create, missing field, refused login, login without a
  token, outlasted retries, refused with a fresh token, a stream broken after valid JSON -> here;
  5xx not worth retrying, a request that cannot be built -> test_client_requests; two differing
  lists, redirects, too large, a dripping answer -> test_hostile_server; no ``status`` ->
  test_status_fail_closed; TLS verification -> test_tls; https to plain http -> test_hostile_config;
  above max_response_mb -> test_streamed_results.
- ``client/sync.py``: an unclear create still in its window -> test_reconcile.
- ``cases/builder.py``, ``cases/batch_csv.py``: ``CaseProblemsError``, a batch source of another kind ->
  here; a date not YYYY-MM-DD -> test_batch_dag; ``BatchCsvError`` -> test_batch_csv.
- ``operators/create.py``, ``operators/results.py``: case text not JSON, case problems, unreadable
  case file, result too big for XCom, the reconcile trigger's error -> here; case not a JSON
  object -> test_batch_dag. Not producible: "create for task ... ended without a case", a guard of
  the operator's own invariant (every path records the case before it returns).
- ``operators/batch.py``: no CSV (skip), unreadable CSV -> test_batch_dag (missing source);
  refused in the dry run -> test_batch_dag.
- ``triggers/emedgene.py`` (events): cannot connect -> here; reached, failed, timed out ->
  test_trigger; reconcile trigger's cannot connect, outage past the window, found, failed earlier
  case, absent -> test_reconcile.
- ``waiting.py``, ``sensors/emedgene.py``: failure status -> test_sensor; blocking timeout ->
  test_operators; no event, unknown event -> here; a timeout or error event's message ->
  test_sensor (``execute_complete``) and test_operators (``execute_complete``).

The validation *problems* listed inside ``CaseProblemsError``, ``BatchCsvError`` and the create
operator's refusal (one line per problem) are another matter: their tests mostly assert which
fields are named rather than the words.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest
from airflow_fixtures import make_context, valid_case
from locations import ROOT

from emedgene_provider.client.config import KNOWN_EXTRAS
from emedgene_provider.testing.fakes import FakeTI

# -- connection and client -----------------------------------------------------------------------
# Each test reads the whole message (or every literal part of it), as a user would see it.

BASE = "https://lab.emedgene.com"
LOGIN_URL = BASE + "/api/auth/v2/api_login/"
CASE = "EMG107903188"
CASE_URL = f"{BASE}/api/test/{CASE}"
CREATE_URL = BASE + "/api/cases/v2/cases"
PASSWORD = "pw-Secret-1"
#: Every extra, in KNOWN_EXTRAS' order; extras added with later features follow case_url_template.
KNOWN_FIRST = (
    "api_key, login_url, auth_type, verify, timeout, session_lifetime, max_retries, retry_max_wait, "
    "allow_http, case_url_template"
)
KNOWN = ", ".join([KNOWN_FIRST, *KNOWN_EXTRAS[KNOWN_EXTRAS.index("case_url_template") + 1 :]])


def _config(host: str | None = BASE, login: str | None = "u", password: str | None = PASSWORD, extra=None):
    from emedgene_provider.client.config import config_from_connection

    return config_from_connection(host=host, login=login, password=password, extra=extra)


def _client(extra: dict | None = None):
    from emedgene_provider.client.sync import EmedgeneClient

    client = EmedgeneClient(_config(extra={"max_retries": 1, **(extra or {})}))
    client.sleep = lambda seconds: None
    return client


CONFIG_ERRORS = {
    "no-host": (
        {"host": "  "},
        "Emedgene connection has no host: set it to the tenant, e.g. https://lab.emedgene.com.",
    ),
    "not-http": (
        {"host": "ftp://lab.emedgene.com"},
        "Emedgene connection host 'ftp://lab.emedgene.com' is not an http(s) URL or host name.",
    ),
    "plain-http": (
        {"host": "http://lab.example.org"},
        "Emedgene connection host 'http://lab.example.org' uses plain http to a non-loopback host; "
        "use https, or set the extra 'allow_http': true if you really mean it.",
    ),
    "extra-not-json": ({"extra": "{verify: false"}, "Emedgene connection extra is not valid JSON."),
    "extra-not-object": ({"extra": "[1]"}, "Emedgene connection extra must be a JSON object."),
    "unknown-extra": (
        {"extra": {"verfy": "false", "timout": 3}},
        "Emedgene connection has unknown extra(s) 'timout' (did you mean 'timeout'?), 'verfy' (did you "
        f"mean 'verify'?); known extras: {KNOWN}.",
    ),
    "renamed-extra": (
        {"extra": {"token_url": "https://lab.login.illumina.com/t", "colour": 1}},
        "Emedgene connection has unknown extra(s) 'colour', 'token_url' (renamed 'login_url': Airflow "
        f"masks names holding 'token'); known extras: {KNOWN}.",
    ),
    "bad-boolean": (
        {"extra": {"allow_http": "maybe"}},
        "Emedgene connection extra 'allow_http' must be true or false, not 'maybe'.",
    ),
    "bad-number": (
        {"extra": {"timeout": "soon"}},
        "Emedgene connection extra 'timeout' must be a number, not 'soon'.",
    ),
    "number-too-small": (
        {"extra": {"session_lifetime": "0.5"}},
        "Emedgene connection extra 'session_lifetime' must be at least 1.",
    ),
    "bad-auth-type": (
        {"extra": {"auth_type": "oauth"}},
        "Emedgene connection extra 'auth_type' must be 'password' or 'api_key', not 'oauth'.",
    ),
    "both-credentials": (
        {"extra": {"api_key": "k"}},
        "Emedgene connection has both a login/password and an api_key: set the extra 'auth_type' to "
        "'password' or 'api_key' to say which to use.",
    ),
    "http-token-url": (
        {"login": None, "password": None, "extra": {"api_key": "k", "login_url": "http://sso.example.org/T"}},
        "Emedgene connection extra 'login_url' 'http://sso.example.org/T' uses plain http to a "
        "non-loopback host; use https, or set 'allow_http': true.",
    ),
    "bad-case-url-template": (
        {"extra": {"case_url_template": "{base}/cases/{case_name}"}},
        "Emedgene connection extra 'case_url_template' '{base}/cases/{case_name}' may use only "
        "{base_url} and {case_name}.",
    ),
    "password-without-login": (
        {"login": None},
        "Emedgene connection to https://lab.emedgene.com: password auth needs both login and password.",
    ),
    "api-key-auth-without-key": (
        {"login": None, "password": None, "extra": {"auth_type": "api_key"}},
        "Emedgene connection to https://lab.emedgene.com: API-key auth needs the extra 'api_key'.",
    ),
    "api-key-without-token-url": (
        {"login": None, "password": None, "extra": {"api_key": "k"}},
        "Emedgene connection to https://lab.emedgene.com: cannot derive where to exchange the API key "
        "(only <tenant>.emg.illumina.com hosts have a known login host); set the extra 'login_url', "
        "e.g. https://<tenant>.login.illumina.com/platform-services-manager/Token.",
    ),
}


@pytest.mark.parametrize(("fields", "message"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_connection_errors_say_what_to_fix(fields: dict, message: str) -> None:
    from emedgene_provider.client.errors import EmedgeneConfigError

    with pytest.raises(EmedgeneConfigError) as raised:
        _config(**fields)
    assert str(raised.value) == message


def test_invalid_case_name_shows_the_name_and_the_rule() -> None:
    from emedgene_provider.client.endpoints import case_path_segment
    from emedgene_provider.client.errors import EmedgeneInvalidCaseNameError

    with pytest.raises(EmedgeneInvalidCaseNameError) as raised:
        case_path_segment("../storage")
    assert str(raised.value) == (
        "Invalid Emedgene case name '../storage': expected letters, digits, '_', '.' or '-' "
        "(such as EMG107903188), with no '/', '..', '?', '#', '%' or whitespace."
    )


def test_page_size_below_one(requests_mock) -> None:
    with pytest.raises(ValueError) as raised:
        next(_client().iter_cases(page_size=0))
    assert str(raised.value) == "page_size must be at least 1, not 0"
    assert requests_mock.request_history == []


def _login_ok(requests_mock, token: str = "tok-1"):
    return requests_mock.post(LOGIN_URL, json={"access_token": token, "token_type": "bearer"})


@pytest.mark.parametrize("status", [500, 503])
def test_ambiguous_create_says_it_was_not_resent_and_what_to_do(requests_mock, status: int) -> None:
    from emedgene_provider.client.errors import EmedgeneAmbiguousCreateError

    _login_ok(requests_mock)
    create = requests_mock.post(CREATE_URL, status_code=status, json={"message": "upstream died"})
    with pytest.raises(EmedgeneAmbiguousCreateError) as raised:
        _client().create_case({"test_data": {}})
    assert create.call_count == 1
    assert str(raised.value) == (
        f"Emedgene create_case: the request may have been applied but its answer was lost (HTTP {status} "
        "from POST /api/cases/v2/cases: upstream died). It was not sent again, so that no second case "
        "is created: look the case up before creating it again."
    )


def test_missing_field_names_the_call_and_the_keys_that_came(requests_mock) -> None:
    from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError

    _login_ok(requests_mock)
    requests_mock.get(CASE_URL + "/export", json={"records": [], "total": 0})
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        _client().export_case(CASE)
    assert str(raised.value) == (
        f"Emedgene export_case({CASE}): the answer to GET /api/test/{CASE}/export has no 'hits' or "
        "'variants' (keys: records, total)"
    )


@pytest.mark.parametrize(("status", "hint"), [(401, ""), (403, ""), (404, " (check the host)")])
def test_refused_login_names_the_flow_and_the_user_never_the_password(
    requests_mock, status: int, hint: str
) -> None:
    from emedgene_provider.client.errors import EmedgeneAuthError

    requests_mock.post(LOGIN_URL, status_code=status, json={"message": "Invalid username or password"})
    with pytest.raises(EmedgeneAuthError) as raised:
        _client().get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene login as 'u' at {LOGIN_URL} failed: HTTP {status}: Invalid username or password{hint}"
    )


@pytest.mark.parametrize(
    ("status", "hint"), [(401, ""), (404, " (check the host and the extra 'login_url')")]
)
def test_refused_api_key_exchange_names_the_login_url_where_it_may_be_wrong(
    requests_mock, status: int, hint: str
) -> None:
    """Only the API-key exchange is sent to the extra 'login_url', so only its 404 names it."""
    from emedgene_provider.client.errors import EmedgeneAuthError
    from emedgene_provider.client.sync import EmedgeneClient

    token_url = "https://lab.login.illumina.com/platform-services-manager/Token"
    requests_mock.post(token_url, status_code=status, json={"message": "Unknown key"})
    extra = {"api_key": "k-Secret-9", "login_url": token_url, "max_retries": 0}
    client = EmedgeneClient(_config(login=None, password=None, extra=extra))
    with pytest.raises(EmedgeneAuthError) as raised:
        client.get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene API-key token exchange at {token_url} failed: HTTP {status}: Unknown key{hint}"
    )


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"json": {"token_type": "bearer"}}, "(no access_token in the answer)"),
        ({"text": "<html><title>Sign in</title></html>"}, "HTML page: Sign in"),
    ],
    ids=["json-without-token", "html"],
)
def test_login_success_without_a_token(requests_mock, answer: dict, words: str) -> None:
    from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError

    requests_mock.post(LOGIN_URL, status_code=200, **answer)
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        _client().get_case_status(CASE)
    assert (
        str(raised.value)
        == f"Emedgene login as 'u' at {LOGIN_URL}: HTTP 200 without an access_token: {words}"
    )


def test_outlasted_retries_say_how_many_attempts(requests_mock) -> None:
    from emedgene_provider.client.errors import EmedgeneRateLimitedError, EmedgeneUnavailableError

    _login_ok(requests_mock)
    requests_mock.get(CASE_URL, status_code=503, json={"message": "down for maintenance"})
    with pytest.raises(EmedgeneUnavailableError) as raised:
        _client().get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene get_case_status({CASE}): still failing after 2 attempt(s): "
        f"HTTP 503 from GET /api/test/{CASE}: down for maintenance"
    )
    requests_mock.get(CASE_URL, status_code=429, headers={"Retry-After": "0"}, text="slow down")
    with pytest.raises(EmedgeneRateLimitedError) as limited:
        _client().get_case_status(CASE)
    assert str(limited.value) == (
        f"Emedgene get_case_status({CASE}): still failing after 2 attempt(s): "
        f"HTTP 429 from GET /api/test/{CASE}: slow down"
    )


def test_login_outage_names_the_login(requests_mock) -> None:
    from emedgene_provider.client.errors import EmedgeneUnavailableError

    requests_mock.post(LOGIN_URL, status_code=502, text="<html><title>502 Bad Gateway</title></html>")
    with pytest.raises(EmedgeneUnavailableError) as raised:
        _client().get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene login: still failing after 2 attempt(s): HTTP 502 from login as 'u' at {LOGIN_URL}: "
        "HTML page: 502 Bad Gateway"
    )


def test_refused_with_a_fresh_token_asks_about_access(requests_mock) -> None:
    from emedgene_provider.client.errors import EmedgeneAuthError

    login = requests_mock.post(
        LOGIN_URL, [{"json": {"access_token": "tok-1"}}, {"json": {"access_token": "tok-2"}}]
    )
    requests_mock.get(CASE_URL, status_code=403, json={"message": "Forbidden for this lab"})
    with pytest.raises(EmedgeneAuthError) as raised:
        _client().get_case_status(CASE)
    assert login.call_count == 2
    assert str(raised.value) == (
        f"Emedgene get_case_status({CASE}): HTTP 403 from GET /api/test/{CASE} even with a fresh token: "
        "Forbidden for this lab (does this user have access?)"
    )


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [(404, "not found", "Case EMG107903188 not found"), (409, "rejected", "Case is locked")],
)
def test_final_4xx_names_call_status_path_and_server_words(
    requests_mock, status: int, kind: str, words: str
) -> None:
    from emedgene_provider.client.errors import EmedgeneError

    _login_ok(requests_mock)
    requests_mock.get(CASE_URL, status_code=status, json={"message": words})
    with pytest.raises(EmedgeneError) as raised:
        _client().get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene get_case_status({CASE}): {kind} (HTTP {status} from GET /api/test/{CASE}: {words})"
    )


def test_unexpected_status_is_named(requests_mock) -> None:
    from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError

    _login_ok(requests_mock)
    requests_mock.get(CASE_URL, status_code=304, text="")
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        _client().get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene get_case_status({CASE}): unexpected HTTP 304 from GET /api/test/{CASE}: (empty body)"
    )


def test_success_that_is_not_json_shows_the_content_type_and_page_title(requests_mock) -> None:
    from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError

    _login_ok(requests_mock)
    page = "<!DOCTYPE html><html><head><title>Sign in - Emedgene</title></head><body></body></html>"
    requests_mock.get(CASE_URL, status_code=200, text=page, headers={"Content-Type": "text/html"})
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        _client().get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene get_case_status({CASE}): HTTP 200 from GET /api/test/{CASE} was not JSON "
        "(content-type 'text/html'): HTML page: Sign in - Emedgene"
    )


def test_create_answered_with_an_empty_name(requests_mock) -> None:
    """The case may exist all the same: ambiguous (looked up by key), never 'nothing happened'."""
    from emedgene_provider.client.errors import EmedgeneAmbiguousCreateError

    _login_ok(requests_mock)
    requests_mock.post(CREATE_URL, status_code=201, json={"name": ""})
    with pytest.raises(EmedgeneAmbiguousCreateError) as raised:
        _client().create_case({"test_data": {}})
    assert str(raised.value) == (
        "Emedgene create_case: the request may have been applied but its answer was lost (the server "
        "answered success with an empty case name). It was not sent again, so that no second case is "
        "created: look the case up before creating it again."
    )


def test_streamed_answer_that_breaks_after_valid_json(requests_mock) -> None:
    """Streamed to a file, an answer whose first 64 KB are whole JSON but whose rest is not: the
    streamed path's own words (the in-memory path would quote the server)."""
    from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError

    _login_ok(requests_mock)
    body = b'{"hits": []}' + b" " * 70_000 + b"garbage"
    requests_mock.get(CASE_URL + "/export", content=body, headers={"Content-Type": "application/json"})
    written = io.BytesIO()
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        _client().export_case_to(CASE, lambda: contextlib.nullcontext(written))
    assert str(raised.value) == (
        f"Emedgene export_case({CASE}): HTTP 200 from GET /api/test/{CASE}/export was not JSON "
        "(content-type 'application/json')"
    )


# -- case builder and batch CSV reader ----------------------------------------------------------


def test_refused_case_lists_every_problem() -> None:
    from emedgene_provider.cases.builder import Case, CaseProblemsError

    with pytest.raises(CaseProblemsError) as raised:
        Case(case_type="", members=()).to_json()
    assert str(raised.value) == (
        "the case is not valid:\n"
        "- a case type is required (e.g. Exome, Whole Genome)\n"
        "- a case needs at least one member, the proband"
    )


def test_batch_csv_source_of_another_kind() -> None:
    from emedgene_provider.cases.batch_csv import read_batch_csv

    with pytest.raises(TypeError) as raised:
        read_batch_csv(42)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "read_batch_csv needs a path, an ObjectStoragePath or a stream, not <class 'int'>"
    )


# -- operators ----------------------------------------------------------------------------------


def _create_operator(case):
    from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator

    return EmedgeneCreateCaseOperator(task_id="create_trio", case=case, wait_for_completion=False)


def test_case_text_that_is_not_json() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException) as raised:
        _create_operator('{"test_data": ').load_case()
    assert str(raised.value) == (
        "Emedgene case for task create_trio is not valid JSON (Expecting value: line 1 column 15 "
        "(char 14)): '{\"test_data\": '"
    )


def test_case_problems_are_listed_one_per_line() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException) as raised:
        _create_operator({"sharing_level": 2}).load_case()
    assert str(raised.value) == (
        "Emedgene case for task create_trio has 2 problem(s); nothing was sent:\n"
        "  - sharing_level must be 0 or 1 (got 2)\n"
        "  - test_data is required and must be an object"
    )


def test_unreadable_case_file(tmp_path: Path) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    missing = tmp_path / "nowhere" / "case.json"
    with pytest.raises(AirflowFailException) as raised:
        _create_operator(str(missing)).load_case()
    assert str(raised.value).startswith(f"Emedgene case file {str(missing)!r} cannot be read: ")
    assert "No such file" in str(raised.value)


def test_result_too_big_for_xcom_says_how_to_store_it(emedgene_simulator_factory, monkeypatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from emedgene_provider.hooks.emedgene import EmedgeneHook
    from emedgene_provider.operators.emedgene import EmedgeneGetCandidatesOperator

    sim = emedgene_simulator_factory(stage_seconds=0)
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(sim.connection_json()))
    trio = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
    name = EmedgeneHook().client.create_case(trio)
    records = EmedgeneHook().get_candidates(name)
    size = len(json.dumps(records, sort_keys=True).encode())
    operator = EmedgeneGetCandidatesOperator(task_id="candidates", case_name=name, max_xcom_bytes=100)
    with pytest.raises(AirflowFailException) as raised:
        operator.execute(make_context(FakeTI()))
    assert str(raised.value) == (
        f"Emedgene case {name}: {len(records)} candidates ({size} bytes of JSON) are more than "
        "max_xcom_bytes=100 allows in XCom; set output_path (file://, s3://, gs://, ...) to write them "
        "to storage instead."
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"status": "error", "message": "Emedgene create (idempotency key 'k'): cannot connect: refused"},
            "Emedgene create (idempotency key 'k'): cannot connect: refused",
        ),
        ({"status": "strange"}, "Emedgene reconcile trigger failed: {'status': 'strange'}"),
    ],
    ids=["trigger-error", "unknown-event"],
)
def test_reconcile_trigger_failure_reaches_the_task(event: dict, message: str) -> None:
    """The reconcile trigger's error (its message, or the event itself) is the task's error."""
    from airflow.providers.common.compat.sdk import AirflowException

    operator = _create_operator(valid_case())
    with pytest.raises(AirflowException) as raised:
        operator.execute_reconciled(make_context(FakeTI()), event)
    assert str(raised.value) == message


# -- waiting ------------------------------------------------------------------------------------


def test_resume_without_an_event() -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from emedgene_provider.waiting import resume

    with pytest.raises(AirflowException) as raised:
        resume(None)
    assert str(raised.value) == "Emedgene trigger ended without an event"


def test_resume_of_an_unknown_event_shows_it() -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from emedgene_provider.waiting import resume

    event = {"status": "strange", "case_name": CASE}
    with pytest.raises(AirflowException) as raised:
        resume(event)
    assert str(raised.value) == f"Emedgene trigger for case {CASE} failed: {event!r}"


def test_trigger_cannot_connect_names_the_case(monkeypatch) -> None:
    from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

    monkeypatch.setenv(
        "AIRFLOW_CONN_EMEDGENE_DEFAULT",
        json.dumps(
            {"conn_type": "emedgene", "host": "http://lab.example.org", "login": "u", "password": "p"}
        ),
    )
    trigger = EmedgeneCaseStatusTrigger(CASE, "emedgene_default", ["Delivered"], None, 1.0, 0.0)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["status"] == "error"
    assert event["message"] == (
        f"Emedgene case {CASE}: cannot connect: Emedgene connection host 'http://lab.example.org' uses "
        "plain http to a non-loopback host; use https, or set the extra 'allow_http': true if you "
        "really mean it."
    )
