"""Bad input of every kind: only the provider's own exceptions escape, each with a message a user
can act on.

Property tests (hypothesis) feed arbitrary JSON, statuses, content types and bodies to the pure
parts (``case_problems``, ``interpret``, ``parse_token``, ``interpret_login``) and, end to end, to
the sync client behind ``requests_mock``; hostile case names go through every public method that
takes one, sync, async and through the hook, and must be refused before any request. The plain
tests at the end pin answers the properties found the provider does not handle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import random
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from locations import ROOT

from emedgene_provider.cases.validation import case_problems
from emedgene_provider.client import endpoints
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.auth import Credentials, Token, parse_token
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneError,
    EmedgeneInvalidCaseNameError,
)
from emedgene_provider.client.process import PROCESS
from emedgene_provider.client.responses import AuthRejected, interpret, interpret_login
from emedgene_provider.client.retry import TransientFailure
from emedgene_provider.client.secrets import Scrubber
from emedgene_provider.client.sync import EmedgeneClient

BASE = "https://lab.emedgene.com"
LOGIN_URL = BASE + "/api/auth/v2/api_login/"
CASE = "EMG107903188"
CASE_URL = f"{BASE}/api/test/{CASE}"
CREATE_URL = BASE + "/api/cases/v2/cases"
LIST_URL = BASE + "/api/test"
SECRET = "pw-Secret-1"
MAX_MESSAGE = 1000
EXAMPLE = json.loads((ROOT / "dags_examples/cases/trio-exome-vcf.json").read_text())
FUNCTION_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# -- strategies ---------------------------------------------------------------------------------

#: Integers a JSON answer realistically holds; the answers beyond ±2**63 are pinned by plain tests.
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(),  # NaN and ±Infinity too: Python's json reads and writes them
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _jwt(payload: Any) -> str:
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(payload)}.c2ln"


class Huge(bytes):
    """A 5 MB body that shows itself in a line when hypothesis reports an example."""

    def __repr__(self) -> str:
        return f"Huge({len(self)} bytes: {bytes(self[:40])!r}...)"


def _huge_bodies() -> list[Huge]:
    size = 5 * 1024 * 1024
    bodies = [
        _dumps({"message": "x" * size}),
        _dumps({"hits": [{"name": f"EMG{i:09d}", "status": "Delivered"} for i in range(size // 48)]}),
        b"<!DOCTYPE html><html><head><title>Oops</title></head><body>" + b"<p>x</p>" * (size // 8),
        b"<html><body>" + b"<p>y</p>" * (size // 8) + b"</body></html>",
        random.Random(0).randbytes(size),
        b"word " * (size // 5),
        (SECRET + " ").encode() * (size // 12),
    ]
    return [Huge(body) for body in bodies]


HUGE = _huge_bodies()
html_pages = st.builds(
    lambda title, text: (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{text}</body></html>".encode()
    ),
    st.text(max_size=60),
    st.text(max_size=200),
)
truncated_json = json_values.map(_dumps).flatmap(
    lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda k: b[:k])
)
bodies = st.one_of(
    st.binary(max_size=1024),
    json_values.map(_dumps),
    truncated_json,
    html_pages,
    st.text(max_size=300).map(str.encode),
    st.text(max_size=100).map(lambda s: s.encode("utf-16")),  # not UTF-8
    st.sampled_from([b"", b"  \r\n ", b"null", b"{}", b"[]", b'"x"', b"NaN", b"\xff\xfe\xfd"]),
    st.sampled_from(HUGE),
)
#: Some bodies echo the secret, as careless servers do: it must never reach a message.
echoing_bodies = st.one_of(
    bodies,
    bodies.map(lambda b: SECRET.encode() + b),
    st.builds(lambda v: _dumps({"message": f"bad password {SECRET}", "detail": v}), json_values),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/html",
            "text/html; charset=iso-8859-1",
            "text/plain",
            "",
        ]
    ),
    st.text(max_size=40),
)
retry_afters = st.one_of(
    st.none(),
    st.sampled_from(["0", "7", "-1", "1e400", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"]),
    st.text(max_size=30),
)


@st.composite
def headers(draw) -> dict[str, str]:
    found: dict[str, str] = {}
    content_type = draw(st.none() | content_types)
    if content_type is not None:
        found[draw(st.sampled_from(["Content-Type", "content-type"]))] = content_type
    retry_after = draw(retry_afters)
    if retry_after is not None:
        found[draw(st.sampled_from(["Retry-After", "retry-after"]))] = retry_after
    return found


CALLS = [
    endpoints.get_case_status(CASE),
    endpoints.get_case(CASE, ["status", "extra_data"]),
    endpoints.get_candidates(CASE),
    endpoints.export_case(CASE),
    endpoints.list_cases(0, 100),
    endpoints.list_storage_providers(),
    endpoints.create_case({"test_data": {}}),
    endpoints.create_case({"test_data": {}}, dry_run=True),
]


def _scrub() -> Scrubber:
    return Scrubber([SECRET])


def _check_error_message(exc: EmedgeneError, operation: str, status: int | None) -> None:
    """What every provider error owes its reader: short, names the call and the HTTP status, keeps
    the secret out."""
    text = str(exc)
    assert text, type(exc)
    assert len(text) <= MAX_MESSAGE, (len(text), text[:200])
    assert text.startswith("Emedgene "), text
    assert operation in text, text
    assert exc.operation == operation
    if exc.status_code is not None:
        assert exc.status_code == status
        assert f"HTTP {exc.status_code}" in text, text
    assert SECRET not in text
    if exc.server_message is not None:
        assert SECRET not in exc.server_message
        assert len(exc.server_message) <= 300


# -- case_problems ------------------------------------------------------------------------------


def _assert_problems(problems: Any) -> None:
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, str)
        assert problem.strip()


def test_the_example_case_is_valid() -> None:
    assert case_problems(EXAMPLE) == []
    assert case_problems(copy.deepcopy(EXAMPLE)) == []


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_case_problems_of_any_json_value(value: Any) -> None:
    problems = case_problems(value)
    _assert_problems(problems)
    if not isinstance(value, dict):
        assert problems == [f"the case must be a JSON object, not {type(value).__name__}"]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


PATHS = _paths(EXAMPLE)


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


mutations = st.one_of(
    st.tuples(st.just("drop")),
    st.tuples(st.just("set"), json_values),
    st.tuples(st.just("huge"), st.sampled_from(["x" * 1_000_000, "é" * 300_000, "\n" * 100_000])),
    st.tuples(st.just("deep"), st.integers(50, 300)),
    st.tuples(
        st.just("retype"), st.sampled_from([None, 0, -1, 1.5, True, "", "0", [], {}, [None], {"": None}])
    ),
)


def _mutate(case: Any, path: tuple, mutation: tuple) -> None:
    parent = case
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed or replaced this branch
    key = path[-1]
    if isinstance(parent, list):
        if not isinstance(key, int) or not -len(parent) <= key < len(parent):
            return
    elif not isinstance(parent, dict) or (key not in parent and mutation[0] == "drop"):
        return
    kind = mutation[0]
    if kind == "drop":
        del parent[key]
    elif kind == "deep":
        parent[key] = _nested(mutation[1], "leaf")
    else:
        parent[key] = mutation[1]


@given(st.lists(st.tuples(st.sampled_from(PATHS), mutations), min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_case_problems_of_a_mutated_example(changes: list[tuple[tuple, tuple]]) -> None:
    case = copy.deepcopy(EXAMPLE)
    for path, mutation in changes:
        _mutate(case, path, mutation)
    _assert_problems(case_problems(case))


#: Required fields of the example and a word the problem must name when the field is missing.
REQUIRED = {
    ("test_data",): "test_data",
    ("test_data", "type"): "test_data.type",
    ("test_data", "sample_type"): "test_data.sample_type",
    ("test_data", "patients"): "test_data.patients.proband",
    ("test_data", "patients", "proband"): "test_data.patients.proband",
    ("test_data", "patients", "proband", "fastq_sample"): "test_data.patients.proband.fastq_sample",
    ("test_data", "patients", "mother", "fastq_sample"): "test_data.patients.mother.fastq_sample",
    ("test_data", "samples"): "test_data.samples",
    ("test_data", "samples", 1, "fastq"): "test_data.samples[1].fastq",
    ("test_data", "samples", 2, "sampleFiles"): "test_data.samples[2].sampleFiles",
    ("test_data", "samples", 0, "sampleFiles", 0, "path"): "test_data.samples[0].sampleFiles[0].path",
    ("test_data", "samples", 0, "sampleFiles", 0, "filename"): "test_data.samples[0].sampleFiles[0].filename",
    ("test_data", "samples", 0, "sampleFiles", 0, "storage_id"): (
        "test_data.samples[0].sampleFiles[0].storage_id"
    ),
}


@pytest.mark.parametrize(("path", "named"), REQUIRED.items(), ids=["/".join(map(str, p)) for p in REQUIRED])
def test_a_missing_required_field_is_named(path: tuple, named: str) -> None:
    case = copy.deepcopy(EXAMPLE)
    _mutate(case, path, ("drop",))
    problems = case_problems(case)
    assert problems, path
    assert any(named in problem for problem in problems), problems


# -- interpret ----------------------------------------------------------------------------------


@given(
    call=st.sampled_from(CALLS),
    status=st.integers(100, 599),
    answer_headers=headers(),
    body=echoing_bodies,
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_interpret_raises_only_provider_errors(call, status: int, answer_headers, body: bytes) -> None:
    try:
        interpret(call, status, answer_headers, body, _scrub())
    except EmedgeneError as exc:
        _check_error_message(exc, call.operation, status)
        if call.case_name:
            assert call.case_name in str(exc)
    except AuthRejected as exc:
        assert status in (401, 403)
        assert str(exc).startswith(f"HTTP {status}: ")
        assert SECRET not in str(exc)
    except TransientFailure as exc:
        assert exc.status_code == status
        assert f"HTTP {status}" in exc.detail
        assert SECRET not in exc.detail
        assert len(exc.detail) <= MAX_MESSAGE
        assert exc.retry_after is None or exc.retry_after >= 0
    else:
        assert 200 <= status < 300


# -- tokens -------------------------------------------------------------------------------------

token_answers = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "access_token": st.one_of(
                st.text(max_size=40),
                json_values,
                st.fixed_dictionaries({}, optional={"exp": json_values, "sub": json_values}).map(_jwt),
                json_values.map(_jwt),
            ),
            "token_type": json_values,
            "expires_in": json_values,
            "Authorization": st.one_of(st.text(max_size=40), json_values),
        },
    ),
)


@given(token_answers)
@settings(max_examples=300, deadline=None)
def test_parse_token_returns_a_token_or_none(body: Any) -> None:
    token = parse_token(body, default_lifetime=3600.0, now=1_800_000_000.0)
    if token is not None:
        assert isinstance(token, Token)
        assert isinstance(token.access_token, str)
        assert token.access_token
        assert token.header_value.endswith(token.access_token)
        assert isinstance(token.expires_at, float)


CREDENTIALS = [
    Credentials(BASE, "password", username="lab-user", password=SECRET),
    Credentials(
        "https://lab.emg.illumina.com",
        "api_key",
        api_key=SECRET,
        login_url="https://lab.login.illumina.com/platform-services-manager/Token",
    ),
]


@given(
    creds=st.sampled_from(CREDENTIALS),
    status=st.integers(100, 599),
    answer_headers=headers(),
    body=st.one_of(echoing_bodies, token_answers.map(_dumps)),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_interpret_login_raises_only_provider_errors(creds, status, answer_headers, body) -> None:
    try:
        token = interpret_login(creds, status, answer_headers, body, _scrub(), default_lifetime=60.0)
    except EmedgeneError as exc:
        _check_error_message(exc, "login", status)
        assert creds.describe() in str(exc)
    except TransientFailure as exc:
        assert status == 429 or status >= 500
        assert f"HTTP {status}" in exc.detail
        assert SECRET not in exc.detail
    else:
        assert isinstance(token, Token)
        assert 200 <= status < 300


# -- end to end: the sync client behind requests_mock -------------------------------------------


def _client(**extra: Any) -> EmedgeneClient:
    config = config_from_connection(host=BASE, login="u", password=SECRET, extra={"max_retries": 1, **extra})
    client = EmedgeneClient(config)
    client.sleep = lambda seconds: None
    return client


OPERATIONS = {
    "get_case_status": ("GET", CASE_URL, lambda c: c.get_case_status(CASE)),
    "export_case": ("GET", CASE_URL + "/export", lambda c: c.export_case(CASE)),
    "iter_cases": ("GET", LIST_URL, lambda c: list(itertools.islice(c.iter_cases(page_size=2), 10))),
    "create_case": ("POST", CREATE_URL, lambda c: c.create_case(EXAMPLE)),
}

answers = st.fixed_dictionaries(
    {"status_code": st.integers(100, 599), "content": echoing_bodies},
    optional={
        "headers": st.dictionaries(
            st.sampled_from(["Content-Type", "Retry-After"]),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        )
    },
)


@given(operation=st.sampled_from(sorted(OPERATIONS)), responses=st.lists(answers, min_size=1, max_size=3))
@settings(max_examples=200, deadline=None, suppress_health_check=FUNCTION_FIXTURES)
def test_sync_client_raises_only_provider_errors(requests_mock, operation: str, responses: list) -> None:
    PROCESS.tokens.clear()  # examples share one test, hence one autouse fixture
    requests_mock.post(LOGIN_URL, json={"access_token": "tok-1", "token_type": "bearer"})
    method, url, run = OPERATIONS[operation]
    requests_mock.register_uri(method, url, responses)
    try:
        run(_client())
    except EmedgeneError as exc:
        _check_error_message(exc, operation, exc.status_code)


@given(login=st.lists(answers | token_answers.map(lambda b: {"content": _dumps(b)}), min_size=1, max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=FUNCTION_FIXTURES)
def test_sync_client_survives_any_login_answer(requests_mock, login: list) -> None:
    PROCESS.tokens.clear()
    requests_mock.post(LOGIN_URL, login)
    requests_mock.get(CASE_URL, json={"status": "Delivered"})
    try:
        assert _client().get_case_status(CASE) == "Delivered"
    except EmedgeneError as exc:
        assert "login" in str(exc) or "get_case_status" in str(exc)
        assert len(str(exc)) <= MAX_MESSAGE
        assert SECRET not in str(exc)


# -- hostile case names -------------------------------------------------------------------------

_ALNUM = "abcXYZ0189"
BAD_PIECES = [
    "/", "..", "?", "#", "%", "%2e%2e", "%2F", " ", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\\",
    "@", ":", "&", "=", "+", ";", "é", "ß", "\u0661", "\u200b", "\ufeff", "\u2028", "\U0001f9ec", "/../",
]  # fmt: skip
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _is_valid_name(name: str) -> bool:
    return bool(_VALID.fullmatch(name)) and ".." not in name


bad_names = st.one_of(
    st.builds(
        lambda a, bad, b: a + bad + b,
        st.text(_ALNUM, max_size=8),
        st.sampled_from(BAD_PIECES),
        st.text(_ALNUM + "_.-", max_size=8),
    ),
    st.text(max_size=40).filter(lambda s: not _is_valid_name(s)),
    st.sampled_from(["", ".", "..", "-x", "_x", ".hidden", "x" * 129, "EMG1/", "EMG1.."]),
)
CASE_METHODS = ["get_case", "get_case_status", "get_candidates", "export_case"]


def _assert_refused(exc: EmedgeneInvalidCaseNameError, name: str) -> None:
    text = str(exc)
    assert isinstance(exc, ValueError)
    assert text.startswith("Invalid Emedgene case name ")
    shown = repr(name)
    assert (shown if len(shown) <= 80 else shown[:77] + "...") in text
    assert "such as EMG107903188" in text
    assert len(text) <= 300


@given(name=bad_names)
@settings(max_examples=200, deadline=None, suppress_health_check=FUNCTION_FIXTURES)
def test_bad_case_names_never_reach_the_wire_sync(requests_mock, name: str) -> None:
    PROCESS.tokens.clear()
    requests_mock.post(LOGIN_URL, json={"access_token": "tok-1"})
    client = _client()
    for method in CASE_METHODS:
        with pytest.raises(EmedgeneInvalidCaseNameError) as refused:
            getattr(client, method)(name)
        _assert_refused(refused.value, name)
    with pytest.raises(EmedgeneInvalidCaseNameError) as refused:
        client.config.case_url(name)
    _assert_refused(refused.value, name)
    assert requests_mock.request_history == []


@given(name=bad_names)
@settings(max_examples=100, deadline=None, suppress_health_check=FUNCTION_FIXTURES)
def test_bad_case_names_never_reach_the_simulator_async_and_hook(
    emedgene_simulator, monkeypatch, name
) -> None:
    from emedgene_provider.hooks.emedgene import EmedgeneHook

    sim = emedgene_simulator
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(sim.connection_json()))
    PROCESS.tokens.clear()
    hook = EmedgeneHook()
    for method in CASE_METHODS:
        with pytest.raises(EmedgeneInvalidCaseNameError) as refused:
            getattr(hook, method)(name)
        _assert_refused(refused.value, name)
    with pytest.raises(EmedgeneInvalidCaseNameError):
        hook.config.case_url(name)

    async def ask(method: str) -> None:
        async with AsyncEmedgeneClient(hook.config) as client:
            await getattr(client, method)(name)

    for method in ("get_case", "get_case_status"):
        with pytest.raises(EmedgeneInvalidCaseNameError) as refused:
            asyncio.run(ask(method))
        _assert_refused(refused.value, name)
    counters = sim.counters()
    assert counters["logins"] == 0
    assert counters["requests"] == {}


@given(
    name=st.text(_ALNUM, min_size=1, max_size=1).flatmap(
        lambda a: st.text(_ALNUM + "_-", max_size=20).map(lambda b: a + b)
    )
)
@settings(max_examples=50, deadline=None, suppress_health_check=FUNCTION_FIXTURES)
def test_good_case_names_do_reach_the_wire(requests_mock, name: str) -> None:
    """The refusals above are not refusing everything."""
    assume(_is_valid_name(name))
    PROCESS.tokens.clear()
    requests_mock.post(LOGIN_URL, json={"access_token": "tok-1"})
    target = requests_mock.get(f"{BASE}/api/test/{name}", json={"status": "Delivered"})
    assert _client().get_case_status(name) == "Delivered"
    assert target.call_count == 1


# -- answers the provider does not handle yet (each test shows one bug) -------------------------


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("status", [200, 400, 503])
def test_deeply_nested_json_answer_is_a_provider_error(status: int) -> None:
    """A JSON body nested deeper than the interpreter's recursion limit makes ``json.loads`` raise
    RecursionError, which is neither ValueError nor UnicodeDecodeError: it escapes ``interpret``
    (and ``server_words``/``interpret_login``) instead of becoming a provider error."""
    call = endpoints.get_case_status(CASE)
    with contextlib.suppress(EmedgeneError, TransientFailure):
        interpret(call, status, {"Content-Type": "application/json"}, DEEP, _scrub())
    creds = CREDENTIALS[0]
    with contextlib.suppress(EmedgeneError, TransientFailure):
        interpret_login(creds, status, {}, DEEP, _scrub(), default_lifetime=60.0)


def test_deeply_nested_json_answer_through_the_client(requests_mock) -> None:
    requests_mock.post(LOGIN_URL, json={"access_token": "tok-1"})
    requests_mock.get(CASE_URL, content=DEEP, headers={"Content-Type": "application/json"})
    with pytest.raises(EmedgeneError):
        _client().get_case_status(CASE)


@pytest.mark.parametrize(
    ("call", "status"),
    [(CALLS[0], 501), (CALLS[3], 505), (CALLS[7], 501)],
    ids=["get_case_status-501", "export_case-505", "validate_case-501"],
)
def test_a_read_is_never_reported_as_an_ambiguous_create(call, status: int) -> None:
    """5xx that are not retried (501, 505, ...) on a GET or a dry-run validation say "the request may
    have been applied ... no second case is created: look the case up before creating it again":
    advice about a create, for a call that creates nothing."""
    with pytest.raises(EmedgeneError) as raised:
        interpret(call, status, {}, b'{"message": "Not Implemented"}', _scrub())
    assert not isinstance(raised.value, EmedgeneAmbiguousCreateError), str(raised.value)
    assert "second case" not in str(raised.value)


HUGE_INT = "1" + "0" * 400


def test_token_answer_with_a_huge_integer() -> None:
    """``expires_in`` of 10**400 is valid JSON (Python reads it as an int); ``float()`` of it raises
    OverflowError, which escapes ``parse_token`` and ``interpret_login``."""
    answer = f'{{"access_token": "tok-1", "expires_in": {HUGE_INT}}}'
    token = parse_token(json.loads(answer), default_lifetime=60.0, now=1_800_000_000.0)
    assert token is None or token.access_token == "tok-1"
    with contextlib.suppress(EmedgeneError):
        interpret_login(CREDENTIALS[0], 200, {}, answer.encode(), _scrub(), default_lifetime=60.0)


def test_jwt_exp_that_is_a_huge_integer() -> None:
    access = _jwt({"exp": 10**400})
    token = parse_token({"access_token": access}, default_lifetime=60.0, now=1_800_000_000.0)
    assert token is None or token.access_token == access


def test_huge_expires_in_through_the_client(requests_mock) -> None:
    requests_mock.post(
        LOGIN_URL, text=f'{{"access_token": "tok-1", "expires_in": {HUGE_INT}}}', status_code=200
    )
    requests_mock.get(CASE_URL, json={"status": "Delivered"})
    assert _client().get_case_status(CASE) == "Delivered"  # an absurd lifetime is still a token


BAD_TOKEN = "tok-1\r\nX-Injected: yes"


def test_token_with_control_characters_is_not_an_ambiguous_create(requests_mock) -> None:
    """A login answer whose token holds CR/LF is accepted by ``parse_token``; requests then refuses
    the header (InvalidHeader) before anything is sent, and the client reports a create that
    "may have been applied" although no POST left the process."""
    requests_mock.post(LOGIN_URL, json={"access_token": BAD_TOKEN})
    create = requests_mock.post(CREATE_URL, status_code=201, json={"name": CASE})
    with pytest.raises(EmedgeneError) as raised:
        _client().create_case(EXAMPLE)
    assert create.call_count == 0
    assert not isinstance(raised.value, EmedgeneAmbiguousCreateError), str(raised.value)


def test_token_with_control_characters_async_is_a_provider_error() -> None:
    """The async client lets aiohttp's ValueError ("Forbidden control character detected in
    headers") escape instead of a provider error."""
    from aiohttp import web

    seen: list[str] = []

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"access_token": BAD_TOKEN, "token_type": "bearer"})

    async def case(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"status": "Delivered"})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/api/auth/v2/api_login/", login)
        app.router.add_get("/api/test/{name}", case)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            config = config_from_connection(
                host=f"http://127.0.0.1:{port}", login="u", password=SECRET, extra={"max_retries": 0}
            )
            async with AsyncEmedgeneClient(config) as client:
                await client.get_case_status(CASE)
        finally:
            await runner.cleanup()

    with pytest.raises(EmedgeneError):
        asyncio.run(scenario())
    assert seen == []


def test_problems_quote_huge_values_trimmed() -> None:
    """Each problem is a line a lab reads; a phenotype is quoted trimmed (300 characters), but every
    other field echoes its value whole, so a 100 kB value makes a 100 kB "problem" (and so a
    100 kB task error and simulator answer)."""
    huge = "x" * 100_000
    fields = {
        ("sharing_level",): huge,
        ("test_data", "type"): huge,
        ("test_data", "sample_type"): huge,
        ("test_data", "due_date"): huge,
        ("test_data", "patients", "proband", "gender"): huge,
        ("test_data", "patients", "proband", "relationship"): huge,
        ("test_data", "patients", "proband", "phenotypes", 0): {"id": huge},
        ("test_data", "samples", 0, "sampleFiles", 0, "filename"): huge,
    }
    too_long = []
    for path, value in fields.items():
        case = copy.deepcopy(EXAMPLE)
        _mutate(case, path, ("set", value))
        problems = case_problems(case)
        assert problems, path
        too_long += [f"{'.'.join(map(str, path))}: {len(p)} chars" for p in problems if len(p) > MAX_MESSAGE]
    assert not too_long, too_long
