"""Every user-facing error message is covered by a test that reads it.

:func:`test_every_error_message_is_read_by_some_test` parses every module of the provider (the
simulator under ``emedgene_provider/testing/`` excepted), collects each message given to an error
constructor (the provider's ``EmedgeneError`` family, Airflow's task exceptions, ``ValueError``)
and each message of a trigger event, and checks that a distinctive piece of it (its longest
literal run between ``{...}`` placeholders, whitespace-normalised, at least
:data:`MIN_FRAGMENT` characters) appears in some test file. The tests below it trigger, for real,
the messages no other test file reads, and assert on their text.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

import pytest

from emedgene_provider.client.config import KNOWN_EXTRAS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "emedgene_provider"
TESTS = ROOT / "tests"
MIN_FRAGMENT = 12

#: Exception classes whose first argument is a user-facing message; subclasses defined in the
#: provider (``EmedgeneCaseFailedError``, every ``Emedgene*Error``) are added by walking the AST.
ROOT_ERRORS = frozenset(
    {
        "EmedgeneError",
        "AirflowException",
        "AirflowFailException",
        "AirflowSkipException",
        "AirflowSensorTimeout",
        "ValueError",
    }
)
#: Other calls that carry a user-facing message, with the index of the message argument: a
#: trigger's event message becomes the failed task's error.
MESSAGE_CALLS = {"_event": 1}
_BLANKS = re.compile(r"\s+")
_LEADING = string.whitespace + ":;,.()"
_TRAILING = string.whitespace + ":;,.("


@dataclass(frozen=True)
class Message:
    where: str  # file:line
    fragments: tuple[str, ...]


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts)


def _error_classes(trees: dict[Path, ast.Module]) -> set[str]:
    known = set(ROOT_ERRORS)
    classes = [n for tree in trees.values() for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for cls in classes:
            if cls.name not in known and any(_name(b) in known for b in cls.bases):
                known.add(cls.name)
                grew = True
    return known


def _pieces(node: ast.expr) -> list[str | None] | None:
    """A message as literal pieces and ``None`` placeholders; None if it holds no literal at all."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):  # implicit concatenation across lines is one JoinedStr
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pieces(node.left), _pieces(node.right)
        if left is None and right is None:
            return None
        return [*(left or [None]), *(right or [None])]
    if isinstance(node, ast.BoolOp):  # ``message or f"..."``: the literal alternative
        found = [p for p in (_pieces(v) for v in node.values) if p]
        return max(found, key=lambda p: sum(map(len, fragments_of(p))), default=None)
    return None


def runs_of(pieces: list[str | None]) -> list[str]:
    """The literal runs between placeholders, whitespace-normalised and stripped of the
    punctuation that joins them to a placeholder (``": "``, ``" ("``, a final ``"."``)."""
    runs: list[str] = []
    current = ""
    for piece in pieces:
        if piece is None:
            runs.append(current)
            current = ""
        else:
            current += piece
    runs.append(current)
    return [_BLANKS.sub(" ", r).lstrip(_LEADING).rstrip(_TRAILING) for r in runs]


def fragments_of(pieces: list[str | None]) -> tuple[str, ...]:
    """The distinctive pieces of a message: every run of at least :data:`MIN_FRAGMENT` characters
    (not only the longest, which is often a prefix many messages share)."""
    return tuple(r for r in runs_of(pieces) if len(r) >= MIN_FRAGMENT)


def _assigned_strings(function: ast.AST) -> dict[str, ast.expr]:
    """``name = f"..."`` inside a function, so that ``raise X(message)`` finds its text."""
    found: dict[str, ast.expr] = {}
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and _pieces(node.value) is not None
        ):
            found[node.targets[0].id] = node.value
    return found


def collect_messages() -> list[Message]:
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in _modules()}
    errors = _error_classes(trees)
    messages: list[Message] = []
    for path, tree in trees.items():
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        scope_of: dict[int, dict[str, ast.expr]] = {}
        for function in functions:
            local = _assigned_strings(function)
            for node in ast.walk(function):
                scope_of[id(node)] = local  # outer functions come first: the innermost one wins
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            if name in errors:
                index = 0
            elif name in MESSAGE_CALLS:
                index = MESSAGE_CALLS[name]
            else:
                continue
            if len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.Name):
                arg = scope_of.get(id(node), {}).get(arg.id, arg)
            pieces = _pieces(arg)
            if pieces is None:
                continue
            fragments = fragments_of(pieces)
            if fragments:
                messages.append(Message(f"{path.relative_to(ROOT)}:{node.lineno}", fragments))
    return messages


def _string_constants(source: str) -> str:
    """Every string literal of a test file, decoded (so escapes and quotes compare as text)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a file mid-edit by someone else: its raw text still counts
        return ""
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append(node.value)
    return "\n".join(_BLANKS.sub(" ", t) for t in texts)


def _other_test_texts() -> str:
    """The text every other test file offers: raw source and decoded string literals."""
    parts = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        source = path.read_text()
        parts.append(_BLANKS.sub(" ", source))
        parts.append(_string_constants(source))
    return "\n".join(parts)


def _this_file_texts() -> str:
    """This file's tests count too, except the collector itself and its constants."""
    source = Path(__file__).read_text()
    start = source.rindex("# -- the messages, triggered")
    body = source[start:]
    return _BLANKS.sub(" ", body) + "\n" + _string_constants(body)


def test_collector_finds_the_messages() -> None:
    """The collector must see the messages it exists for, or the coverage check proves nothing."""
    fragments = {f for m in collect_messages() for f in m.fragments}
    assert len(fragments) >= 30
    expected = [
        "was not JSON (content-type",  # decode_json: one implicit concatenation of f-strings
        "is in failure status",  # waiting.failed: message assigned to a name first
        "Emedgene trigger for case",  # waiting.resume: ``message or f"..."``
        "password auth needs both login and password",  # raised in a dataclass's __post_init__
        "timed out waiting for",  # a trigger event
    ]
    for piece in expected:
        assert any(piece in f for f in fragments), piece


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        (
            'raise ValueError(f"page_size must be at least 1, not {n}")',
            ("page_size must be at least 1, not",),
        ),
        ('raise ValueError("a" f"{x} bbbbbbbbbbbb\\n" f"  cc{y}.")', ("bbbbbbbbbbbb cc",)),
        ('raise ValueError(m or f"{x}: " + "short" + f"{y} long literal one")', ("long literal one",)),
        (
            'raise ValueError(f"Emedgene thing {a!r}: must be a number, not {b}.")',
            ("Emedgene thing", "must be a number, not"),
        ),
    ],
)
def test_fragment_extraction(source: str, fragments: tuple[str, ...]) -> None:
    call = ast.parse(source).body[0].exc  # type: ignore[attr-defined]
    pieces = _pieces(call.args[0])
    assert pieces is not None
    assert fragments_of(pieces) == fragments


def test_every_error_message_is_read_by_some_test() -> None:
    corpus = _other_test_texts() + "\n" + _this_file_texts()
    uncovered = [(m.where, f) for m in collect_messages() for f in m.fragments if f not in corpus]
    assert not uncovered, "error messages no test reads:\n" + "\n".join(
        f"  {where}: {fragment!r}" for where, fragment in uncovered
    )


# -- the messages, triggered -------------------------------------------------------------------
# Each test reads the whole message (or every literal part of it), as a user would see it.

BASE = "https://lab.emedgene.com"
LOGIN_URL = BASE + "/api/auth/v2/api_login/"
CASE = "EMG107903188"
CASE_URL = f"{BASE}/api/test/{CASE}"
CREATE_URL = BASE + "/api/cases/v2/cases"
PASSWORD = "pw-Secret-1"
#: Every extra, in KNOWN_EXTRAS' order; extras added with later features follow case_url_template.
KNOWN_FIRST = (
    "api_key, token_url, auth_type, verify, timeout, token_lifetime, max_retries, retry_max_wait, "
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
        f"Emedgene connection has unknown extra(s) timout, verfy; known extras: {KNOWN}.",
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
        {"extra": {"token_lifetime": "0.5"}},
        "Emedgene connection extra 'token_lifetime' must be at least 1.",
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
        {"login": None, "password": None, "extra": {"api_key": "k", "token_url": "http://sso.example.org/T"}},
        "Emedgene connection extra 'token_url' 'http://sso.example.org/T' uses plain http to a "
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
        "(only <tenant>.emg.illumina.com hosts have a known login host); set the extra 'token_url', "
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


def test_unknown_phenotype_term_names_both_accepted_forms() -> None:
    from emedgene_provider.client.payload import phenotype_id

    with pytest.raises(ValueError) as raised:
        phenotype_id("seizures")
    assert str(raised.value) == (
        "'seizures' is neither an HPO term (HP:0001250) nor an Emedgene phenotype id"
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


@pytest.mark.parametrize(
    ("status", "hint"), [(401, ""), (403, ""), (404, " (check the host and the extra 'token_url')")]
)
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


# -- operators ----------------------------------------------------------------------------------


def _create_operator(case):
    from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator

    return EmedgeneCreateCaseOperator(task_id="create_trio", case=case)


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


class _TI:
    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def test_result_too_big_for_xcom_says_how_to_store_it(emedgene_simulator_factory, monkeypatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from emedgene_provider.hooks.emedgene import EmedgeneHook
    from emedgene_provider.operators.emedgene import EmedgeneGetCandidatesOperator

    sim = emedgene_simulator_factory(stage_seconds=0)
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(sim.connection_json()))
    trio = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
    name = EmedgeneHook().create_case(trio)
    records = EmedgeneHook().get_candidates(name)
    size = len(json.dumps(records, sort_keys=True).encode())
    operator = EmedgeneGetCandidatesOperator(task_id="candidates", case_name=name, max_xcom_bytes=100)
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({"ti": _TI()})
    assert str(raised.value) == (
        f"Emedgene case {name}: {len(records)} candidates ({size} bytes of JSON) are more than "
        "max_xcom_bytes=100 allows in XCom; set output_path (file://, s3://, gs://, ...) to write them "
        "to storage instead."
    )


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
