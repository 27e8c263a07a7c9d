"""Answers that lie: a key twice in one JSON object, a UTF-8 byte order mark, a short result.

A key twice is refused wherever its value decides something (status, case, create, login, list
pages, at any depth), with an unexpected-response error naming the call, the key and what came,
and it is not retried; a byte order mark is tolerated, in memory and streamed; an export or
candidates answer whose ``total`` claims more records than it holds is an error naming the case,
the call, the count and the total, and a streamed one leaves no file. Exact shapes use
``requests_mock``; the public hook and the async client run against the simulator's quirks.
"""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow_fixtures import connect, valid_case
from hypothesis import given, settings
from hypothesis import strategies as st

from emedgene_provider.client import endpoints
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.errors import EmedgeneAmbiguousCreateError, EmedgeneUnexpectedResponseError
from emedgene_provider.client.records import RecordStream
from emedgene_provider.client.responses import DuplicateKey, parse_json
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing import EmedgeneSimulator, Quirks

BASE = "https://lab.emedgene.com"
LOGIN_URL = BASE + "/api/auth/v2/api_login/"
CASE = "EMG107903188"
CASE_URL = f"{BASE}/api/test/{CASE}"
EXPORT_URL = CASE_URL + "/export"
CANDIDATES_URL = f"{BASE}/api/candidates/{CASE}"
PASSWORD = "s3cret-Passw0rd!"
BOM = codecs.BOM_UTF8
LIE = b'{"status": "Issue reported", "status": "Delivered"}'


def _client(requests_mock: Any, token: bytes | None = None) -> EmedgeneClient:
    body = token or b'{"access_token": "tok-1", "token_type": "bearer"}'
    requests_mock.post(LOGIN_URL, content=body, headers={"Content-Type": "application/json"})
    config = config_from_connection(host=BASE, login="lab-user", password=PASSWORD, extra={})
    client = EmedgeneClient(config)
    client.sleep = lambda seconds: None
    return client


def _answer(requests_mock: Any, url: str, body: bytes, *, method: str = "GET", status: int = 200) -> Any:
    headers = {"Content-Type": "application/json"}
    return requests_mock.register_uri(method, url, content=body, status_code=status, headers=headers)


def _hook_on(monkeypatch: pytest.MonkeyPatch) -> EmedgeneHook:
    conn = {"conn_type": "emedgene", "host": BASE, "login": "lab-user", "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    hook = EmedgeneHook()
    hook.client.sleep = lambda seconds: None
    return hook


def _records(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "gene": f"G{i}", "hgvs": f"chr1:{1000 + i}A>G"} for i in range(n)]


# -- a key twice -----------------------------------------------------------------------------------


def test_a_status_named_twice_is_refused_not_read_as_the_last(requests_mock) -> None:
    client = _client(requests_mock)
    status = _answer(requests_mock, CASE_URL, LIE)
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        client.get_case_status(CASE)
    assert str(raised.value) == (
        f"Emedgene get_case_status({CASE}): the HTTP 200 answer to GET /api/test/{CASE} names the key "
        "'status' twice in one object; refusing to choose a value: " + LIE.decode()
    )
    assert (raised.value.case_name, raised.value.status_code) == (CASE, 200)
    assert status.call_count == 1  # a lie is not retried as a transient failure


def test_a_key_spelt_with_an_escape_is_the_same_key(requests_mock) -> None:
    client = _client(requests_mock)
    _answer(requests_mock, CASE_URL, b'{"status": "Issue reported", "st\\u0061tus": "Delivered"}')
    with pytest.raises(EmedgeneUnexpectedResponseError, match="names the key 'status' twice"):
        client.get_case_status(CASE)


def test_a_key_twice_deep_in_a_case_is_refused(requests_mock) -> None:
    client = _client(requests_mock)
    body = b'{"name": "EMG107903188", "patients": {"proband": {"id": 1, "gender": "F", "gender": "M"}}}'
    _answer(requests_mock, CASE_URL, body)
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_case\({CASE}\).*'gender' twice"):
        client.get_case(CASE)


def test_a_key_twice_in_a_list_hit_is_refused(requests_mock) -> None:
    client = _client(requests_mock)
    hit = b'{"name": "EMG000000001", "status": "Pending", "status": "Delivered"}'
    _answer(requests_mock, BASE + "/api/test", b'{"total": 1, "hits": [' + hit + b"]}")
    with pytest.raises(EmedgeneUnexpectedResponseError, match=r"GET /api/test names the key 'status' twice"):
        list(client.iter_cases())


def test_a_create_answer_naming_two_cases_is_an_ambiguous_create(requests_mock) -> None:
    client = _client(requests_mock)
    _answer(
        requests_mock,
        BASE + "/api/cases/v2/cases",
        b'{"name": "EMG1", "name": "EMG2"}',
        method="POST",
        status=201,
    )
    with pytest.raises(EmedgeneAmbiguousCreateError, match="names the key 'name' twice"):
        client.create_case(valid_case())


def test_a_login_answer_with_two_tokens_is_refused_without_showing_either(requests_mock) -> None:
    client = _client(requests_mock, token=b'{"access_token": "tok-AAA", "access_token": "tok-BBB"}')
    _answer(requests_mock, CASE_URL, b'{"status": "Delivered"}')
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        client.get_case_status(CASE)
    message = str(raised.value)
    assert "names the key 'access_token' twice" in message
    assert raised.value.operation == "login"
    assert "tok-AAA" not in message and "tok-BBB" not in message and PASSWORD not in message
    assert requests_mock.call_count == 1  # one login, not retried; the status was never asked


def test_what_the_server_sent_is_scrubbed_and_trimmed(requests_mock) -> None:
    client = _client(requests_mock)
    body = json.dumps({"note": f"password {PASSWORD} " + "x" * 1000}).encode()[:-1] + b', "note": 1}'
    _answer(requests_mock, CASE_URL, body)
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        client.get_case(CASE)
    assert PASSWORD not in str(raised.value) and PASSWORD not in (raised.value.server_message or "")
    assert str(raised.value).endswith("...") and len(raised.value.server_message or "") == 300


def test_the_same_key_in_two_objects_is_no_lie(requests_mock) -> None:
    client = _client(requests_mock)
    hits = [{"name": f"EMG00000000{i}", "created": "2024-01-01T10:00:00Z"} for i in (1, 2)]
    _answer(requests_mock, CANDIDATES_URL, json.dumps({"total": 2, "hits": hits}).encode())
    assert client.get_candidates(CASE) == hits


_scalars = st.none() | st.booleans() | st.integers() | st.text(alphabet=':ab"\\{}', max_size=4)
_keys = st.sampled_from(["a", "b", "a:b", ":", "c"])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(_keys, inner), max_size=4),
    max_leaves=12,
)


def _spell(value: Any) -> str:
    """JSON text of ``value``, where a list of pairs is spelt as an object (keys may repeat)."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ", ".join(f"{json.dumps(k)}: {_spell(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_spell(v) for v in value) + "]"
    return json.dumps(value)


def _strict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise DuplicateKey("?")
    return dict(pairs)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_parse_json_refuses_exactly_the_texts_with_a_key_twice(value: Any) -> None:
    text = _spell(value)
    try:
        expected: Any = json.loads(text, object_pairs_hook=_strict)
    except DuplicateKey:
        with pytest.raises(DuplicateKey):
            parse_json(text)
    else:
        assert parse_json(text) == expected


# -- a byte order mark ------------------------------------------------------------------------------


def test_a_byte_order_mark_is_tolerated_in_login_and_answers(requests_mock) -> None:
    client = _client(requests_mock, token=BOM + b'{"access_token": "tok-1", "token_type": "bearer"}')
    _answer(requests_mock, CASE_URL, BOM + b'{"status": "Delivered"}')
    _answer(requests_mock, EXPORT_URL, BOM + json.dumps({"hits": _records(3)}).encode())
    assert client.get_case_status(CASE) == "Delivered"
    assert client.export_case(CASE) == _records(3)


def test_a_byte_order_mark_is_tolerated_when_streamed(requests_mock, monkeypatch, tmp_path: Path) -> None:
    hook = _hook_on(monkeypatch)
    _client(requests_mock)
    _answer(requests_mock, EXPORT_URL, BOM + json.dumps({"hits": _records(3)}).encode())
    assert hook.export_case_to(CASE, str(tmp_path / "export.json")) == 3
    assert json.loads((tmp_path / "export.json").read_bytes()) == _records(3)


def test_a_byte_order_mark_does_not_stop_an_answer_streaming() -> None:
    """Records are written as they arrive, not held until the end as an odd answer would be."""
    written: list[bytes] = []

    @contextlib.contextmanager
    def open_output() -> Iterator[Any]:
        yield SimpleNamespace(write=lambda data: written.append(bytes(data)))

    body = BOM + json.dumps({"hits": _records(20_000)}).encode()
    headers = {"Content-Type": "application/json"}
    with RecordStream(
        endpoints.export_case(CASE), 200, headers, ("hits",), open_output, str, cap=len(body)
    ) as stream:
        for start in range(0, len(body) - 1024, 1024):
            stream.feed(body[start : start + 1024])
        assert written  # records written before the answer ended
        stream.feed(body[start + 1024 :])
        assert stream.finish() == 20_000
    assert json.loads(b"".join(written)) == _records(20_000)


# -- short results ----------------------------------------------------------------------------------


def test_an_export_shorter_than_its_total_is_refused_in_memory(requests_mock) -> None:
    client = _client(requests_mock)
    _answer(requests_mock, EXPORT_URL, json.dumps({"hits": _records(100), "total": 500}).encode())
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        client.export_case(CASE)
    assert str(raised.value) == (
        f"Emedgene export_case({CASE}): the answer to GET /api/test/{CASE}/export holds 100 record(s) "
        "but its 'total' is 500: an incomplete result, refused rather than taken as the whole"
    )
    assert raised.value.case_name == CASE


def test_candidates_shorter_than_their_total_are_refused_in_memory(requests_mock) -> None:
    client = _client(requests_mock)
    _answer(requests_mock, CANDIDATES_URL, json.dumps({"total": 2, "hits": _records(1)}).encode())
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_candidates\({CASE}\).* 1 record.* 2:"):
        client.get_candidates(CASE)


@pytest.mark.parametrize("total", [None, 3, 2, "500", True])
def test_a_total_that_does_not_claim_more_is_accepted(requests_mock, total: Any) -> None:
    client = _client(requests_mock)
    answer: dict[str, Any] = {"hits": _records(3)}
    if total is not None:
        answer["total"] = total
    _answer(requests_mock, EXPORT_URL, json.dumps(answer).encode())
    assert client.export_case(CASE) == _records(3)


@pytest.mark.parametrize("total_first", [True, False], ids=["total-before", "total-after"])
@pytest.mark.parametrize("what", ["export", "candidates"])
def test_a_short_streamed_result_is_refused_and_leaves_no_file(
    requests_mock, monkeypatch, tmp_path: Path, total_first: bool, what: str
) -> None:
    hook = _hook_on(monkeypatch)
    _client(requests_mock)
    # Enough records to stream in segments, so that the list is written before ``total`` is read.
    records = _records(20_000)
    parts = ['"total": 20001', '"hits": ' + json.dumps(records)]
    body = ("{" + ", ".join(parts if total_first else parts[::-1]) + "}").encode()
    url, read = (
        (EXPORT_URL, hook.export_case_to) if what == "export" else (CANDIDATES_URL, hook.get_candidates_to)
    )
    _answer(requests_mock, url, body)
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"{what}.*\({CASE}\).*20000 record.*20001"):
        read(CASE, str(tmp_path / "out.json"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"total": 3, "hits": [1, 2, 3], "total": 9}',
        b'{"hits": [1, 2, 3], "total": 3, "total": 9}',
        b'{"hits": [1, 2, 3], "hits": [1, 2, 3]}',
        b'{"total": 3, "total": 9, "hits": [1, 2, 3]}',
    ],
    ids=["around-the-list", "after-the-list", "the-list-twice", "before-the-list"],
)
def test_a_top_level_key_twice_is_refused_when_streamed(
    requests_mock, monkeypatch, tmp_path: Path, body: bytes
) -> None:
    hook = _hook_on(monkeypatch)
    _client(requests_mock)
    _answer(requests_mock, EXPORT_URL, body)
    with pytest.raises(
        EmedgeneUnexpectedResponseError, match=r"export_case\(.*names the key '(total|hits)' twice"
    ):
        hook.export_case_to(CASE, str(tmp_path / "out.json"))
    assert list(tmp_path.iterdir()) == []


def test_a_key_twice_inside_a_streamed_record_is_data_written_as_sent(
    requests_mock, monkeypatch, tmp_path: Path
) -> None:
    """Records are data, not decisions: streamed, they are written byte for byte, unchecked (in
    memory the same answer is refused, since the whole answer is parsed there anyway)."""
    hook = _hook_on(monkeypatch)
    _client(requests_mock)
    body = b'{"hits": [{"id": 1, "gene": "A", "gene": "B"}, {"id": 2}]}'
    _answer(requests_mock, EXPORT_URL, body)
    assert hook.export_case_to(CASE, str(tmp_path / "out.json")) == 2
    assert (tmp_path / "out.json").read_bytes() == b'[{"id": 1, "gene": "A", "gene": "B"}, {"id": 2}]'
    with pytest.raises(EmedgeneUnexpectedResponseError, match="'gene' twice"):
        hook.export_case(CASE)


# -- through the public hook and the async client, against the simulator ---------------------------


@pytest.fixture
def lying_sim(emedgene_simulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> EmedgeneSimulator:
    sim = emedgene_simulator_factory(stage_seconds=0)
    connect(monkeypatch, sim)
    return sim


def _delivered(sim: EmedgeneSimulator, variants: int | None = None) -> str:
    name = EmedgeneHook().client.create_case(
        valid_case(**({} if variants is None else {"simulator_variants": variants}))
    )
    sim.set_status(name, "Delivered")
    return name


def test_the_hook_refuses_a_status_the_simulator_names_twice(lying_sim: EmedgeneSimulator) -> None:
    name = _delivered(lying_sim)
    lying_sim.set_status(name, "Issue reported")
    lying_sim.set_quirks(duplicate_status="Delivered")
    hook = EmedgeneHook()
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_case_status\({name}\).*'status' twice"):
        hook.get_case_status(name)
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_case\({name}\).*'status' twice"):
        hook.get_case(name)
    lying_sim.set_quirks(duplicate_status=None)
    assert hook.get_case_status(name) == "Issue reported"


async def test_the_async_client_refuses_a_status_named_twice(lying_sim: EmedgeneSimulator) -> None:
    name = _delivered(lying_sim)
    lying_sim.set_status(name, "Issue reported")
    lying_sim.set_quirks(duplicate_status="Delivered")
    async with AsyncEmedgeneClient(EmedgeneHook().config) as client:
        with pytest.raises(
            EmedgeneUnexpectedResponseError, match=rf"get_case_status\({name}\).*'status' twice"
        ):
            await client.get_case_status(name)


async def test_every_answer_with_a_byte_order_mark_is_read(
    emedgene_simulator_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0, quirks=Quirks(bom=True))
    connect(monkeypatch, sim)
    name = _delivered(sim, variants=3000)  # several streamed segments
    hook = EmedgeneHook()
    assert hook.get_case_status(name) == "Delivered"
    assert hook.get_case(name)["name"] == name
    exported = hook.export_case(name)
    assert hook.export_case_to(name, str(tmp_path / "export.json")) == len(exported) == 3000
    assert json.loads((tmp_path / "export.json").read_bytes()) == exported
    assert hook.get_candidates_to(name, str(tmp_path / "candidates.json")) == len(hook.get_candidates(name))
    async with AsyncEmedgeneClient(hook.config) as client:
        assert await client.get_case_status(name) == "Delivered"


def test_the_hook_refuses_short_results_and_writes_no_file(
    lying_sim: EmedgeneSimulator, tmp_path: Path
) -> None:
    name = _delivered(lying_sim, variants=500)
    hook = EmedgeneHook()
    complete = hook.export_case(name)
    lying_sim.set_quirks(results_short=100)
    held = rf"\({name}\).* 100 record\(s\) but its 'total' is"
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"export_case{held} 500"):
        hook.export_case(name)
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"export_case{held} 500"):
        hook.export_case_to(name, str(tmp_path / "export.json"))
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_candidates{held}"):
        hook.get_candidates_to(name, str(tmp_path / "candidates.json"))
    assert list(tmp_path.iterdir()) == []
    lying_sim.set_quirks(results_short=len(complete))  # a total that matches: a complete result
    assert hook.export_case_to(name, str(tmp_path / "export.json")) == 500
