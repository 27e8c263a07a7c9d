"""Exports and candidates streamed to ``output_path``: the file equals what the in-memory path
returns, errors are today's errors, and no partial file is ever left where the export belongs.

Three levels: :class:`~emedgene_provider.client.records.RecordStream` against the in-memory path
(``interpret`` + ``records_of``) on generated answers cut into random chunks (hypothesis); the hook
and the operators against the simulator; and a small scripted HTTP server for what the simulator
does not send (broken or truncated JSON, a connection cut mid-answer). The memory test runs the
simulator in its own process, so that only the client's allocations are traced.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import connect, make_context, valid_case
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emedgene_provider.client import endpoints, records
from emedgene_provider.client.errors import (
    EmedgeneError,
    EmedgeneInvalidRequestError,
    EmedgeneNotFoundError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.records import RecordStream
from emedgene_provider.client.responses import interpret, records_of
from emedgene_provider.hooks.emedgene import PARTIAL_SUFFIX, EmedgeneHook
from emedgene_provider.operators.emedgene import EmedgeneExportCaseOperator, EmedgeneGetCandidatesOperator
from emedgene_provider.testing.fakes import FakeTI

CALL = endpoints.export_case("EMG100000001")
EXPORT_KEYS = ("hits", "variants")
HEADERS = {"Content-Type": "application/json"}
MB = 1024 * 1024


def _keep(text: str) -> str:
    return text


def _same(a: Any, b: Any) -> bool:
    """Equal JSON values, NaN included (NaN != NaN in Python)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _in_memory(body: bytes, keys: tuple[str, ...] = EXPORT_KEYS) -> tuple[Any, ...]:
    """What the in-memory path makes of a 200 answer: ("ok", list) or ("error", type, message)."""
    try:
        return "ok", records_of(CALL, interpret(CALL, 200, HEADERS, body, _keep), *keys)
    except EmedgeneError as exc:
        return "error", type(exc), str(exc)


class _Output:
    """An in-memory output that counts how often it was opened (truncating it each time)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.opened = 0

    def __call__(self) -> contextlib.AbstractContextManager[io.BytesIO]:
        self.opened += 1
        self.buffer.seek(0)
        self.buffer.truncate()
        return contextlib.nullcontext(self.buffer)

    def value(self) -> Any:
        return json.loads(self.buffer.getvalue())


def _streamed(
    body: bytes, sizes: list[int] | None = None, keys: tuple[str, ...] = EXPORT_KEYS, cap: int = 512 * MB
) -> tuple[Any, ...]:
    """What RecordStream makes of the same answer, fed in chunks of ``sizes`` (cycled)."""
    out = _Output()
    sizes = sizes or [64 * 1024]
    try:
        with RecordStream(CALL, 200, HEADERS, keys, out, _keep, cap=cap) as stream:
            position, turn = 0, 0
            while position < len(body):
                size = sizes[turn % len(sizes)]
                stream.feed(body[position : position + size])
                position, turn = position + size, turn + 1
            count = stream.finish()
    except EmedgeneError as exc:
        return "error", type(exc), str(exc)
    return "ok", out.value(), count


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of a few dozen bytes, so that small answers are cut (and checked) many times."""
    monkeypatch.setattr(records, "SEGMENT_BYTES", 48)
    monkeypatch.setattr(records, "WINDOW_BYTES", 200)
    monkeypatch.setattr(records, "_FIRST_CUT_BYTES", 24)


# -- RecordStream against the in-memory path ------------------------------------------------------

_text = st.text(alphabet=st.sampled_from([*'ab é"\\,:{}[]\n\t', "\u2028", "😀", "\x01"]), max_size=8)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_records = st.lists(st.one_of(st.dictionaries(_text, _values, max_size=5), _values), max_size=12)


@st.composite
def _answers(draw: st.DrawFn) -> bytes:
    """An export answer as a server might send it: the list under ``hits`` and/or ``variants``
    (equal or not), other keys around it, any JSON layout; sometimes damaged."""
    hits = draw(_records)
    members: list[tuple[str, Any]] = [(draw(st.sampled_from(["hits", "variants"])), hits)]
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(["total", "hits", "variants", "pad", "genes"]))
        value = draw(st.one_of(st.just(hits), _records, _values))
        members.insert(draw(st.integers(0, len(members))), (key, value))
    indent = draw(st.sampled_from([None, 0, 2]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    ensure_ascii = draw(st.booleans())
    body = "{" + ", ".join(
        json.dumps(key)
        + ": "
        + json.dumps(value, indent=indent, separators=separators, ensure_ascii=ensure_ascii)
        for key, value in members
    )
    body = draw(st.sampled_from(["", " ", "\n"])) + body + draw(st.sampled_from(["}", " }\n", "}x", "}}"]))
    data = body.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "drop"]))
    if damage != "none" and data:
        at = draw(st.integers(0, len(data) - 1))
        if damage == "cut":
            data = data[:at]
        elif damage == "insert":
            data = (
                data[:at] + draw(st.sampled_from([b",", b"]", b"}", b'"', b"\xff", b"1", b" "])) + data[at:]
            )
        else:
            data = data[:at] + data[at + 1 :]
    return data


def _names_a_key_twice(body: bytes) -> bool:
    """Whether ``body`` is JSON with an object that names a key twice."""
    seen: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append(len({k for k, _ in items}) < len(items))
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except ValueError:
        return False
    return any(seen)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_answers(), sizes=st.lists(st.integers(1, 97), min_size=1, max_size=4))
@example(
    body=b' {"variants": [[1.2143017756390018e+138,1.135992046677213e-175],{"\xe2\x80\xa8\\u0001":-499451," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],"\\"\\u0001bb\xc3\xa9\\u0001\xc3\xa9,":{"\\t}\\\\\\",]\\"\xc3\xa9":[]},"":null}], "pad": [[1.2143017756390018e+138,1.135992046677213e-175],{"\xe2\x80\xa8\\u0001":-499451," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],"\\"\\u0001bb\xc3\xa9\\u0001\xc3\xa9,":{"\\t}\\\\\\",]\\"\xc3\xa9":[]},"{":null}], "total": [[1.2143017756390018e+138,1.135992046677213e-175],{"\xe2\x80\xa8\\u0001":-499451," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],"\\"\\u0001bb\xc3\xa9\\u0001\xc3\xa9,":{"\\t}\\\\\\",]\\"\xc3\xa9":[]},"{":null}], "total": [[1.2143017756390018e+138,1.135992046677213e-175],{"\xe2\x80\xa8\\u0001":-499451," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],"\\"\\u0001bb\xc3\xa9\\u0001\xc3\xa9,":{"\\t}\\\\\\",]\\"\xc3\xa9":[]},"{":null}]}',  # noqa: E501
    sizes=[1],
).via("a server answer naming keys twice and holding lists that differ (found 2026-12-03)")
@example(
    body=b' {"variants": [[1.2143017756331298e+138,1.135992046677213e-175],{"\\u0001\xe2\x80\xa8":-100000," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],":::\\"\\"\\"\\u0001\\u0001":{":::\\"\\"\\"\\"\\"":[]},"":null}], "pad": [[1.2143017756331298e+138,1.135992046677213e-175],{"\\u0001\xe2\x80\xa8":-100000," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],":::\\"\\"\\"\\u0001\\u0001":{":::\\"\\"\\"\\"\\"":[]},"{":null}], "hits": [[1.2143017756331298e+138,1.135992046677213e-175],{"\\u0001\xe2\x80\xa8":-100000," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],":::\\"\\"\\"\\u0001\\u0001":{":::\\"\\"\\"\\"\\"":[]},"{":null}], "total": [[1.2143017756331298e+138,1.135992046677213e-175],{"\\u0001\xe2\x80\xa8":-100000," }{\xe2\x80\xa8\xe2\x80\xa8\\n:":false},{"":[],":::\\"\\"\\"\\u0001\\u0001":{":::\\"\\"\\"\\"\\"":[]},"{":null}]}',  # noqa: E501
    sizes=[1],
).via("a server answer naming keys twice and holding lists that differ (found 2026-12-03)")
def test_the_stream_agrees_with_the_in_memory_path(
    small_segments: None, body: bytes, sizes: list[int]
) -> None:
    """Whatever the answer and however it is chunked: the same records, or the same error."""
    expected = _in_memory(body)
    got = _streamed(body, sizes)
    if expected[0] == got[0] == "error" and expected != got and _names_a_key_twice(body):
        # Several faults, one a key named twice somewhere: both refuse the answer, each naming the
        # first fault its own order meets (the stream reads the envelope's keys before the records).
        assert got[1] is expected[1] is EmedgeneUnexpectedResponseError, (expected, got)
        return
    if got[0] == "error" and "they differ" in got[2] and expected != got:
        # The one divergence, failing closed: both lists present, equal in value, spelt differently
        # (``[1]`` and ``[1.0]``); the stream compares their bytes, having written only one of them,
        # and refuses before anything else it would check (a short ``total``).
        parsed = json.loads(body)
        assert parsed.get("hits") == parsed.get("variants")
        return
    assert got[0] == expected[0], (expected, got)
    if expected[0] == "ok":
        assert _same(got[1], expected[1])
        assert got[2] == len(expected[1])
    else:
        assert got[1:] == expected[1:]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"null",
        b"[1, 2]",
        b'"hits"',
        b"\xef\xbb\xbf{}",
        b"{}",
        b'{"total": 3}',
        b'{"hits": null}',
        b'{"hits": {"a": 1}}',
        b"<html><title>502 Bad Gateway</title></html>",
        b'{"hits": [1, 2',
        b'{"hits": [1, 2]',
        b'{"hits": [1, 2]} []',
        b'{"hits": [1,, 2]}',
        b'{"hits": [1, 2,]}',
        b'{"hits": [1 2]}',
        b'{"hits": [], "variants": [1]}',
        b'{"hits": [1], "variants": [1]}',
        b'{"hits": [1], "hits": [2]}',
        b'{"hits": [1], "hits": null}',
        b'{"hits": null, "hits": [1]}',
        b'{"variants": [{"a": NaN}], "total": 1}',
        b'{"hits": ["\\ud800"]}',
        b'{"hits": ["\xff"]}',
        b'{"hits": [\n  4.2761221279831833e+132\n]}',
        b'{"hits": [1e5, -0.5E-3, 12]}',
    ],
)
@pytest.mark.parametrize("segments", ["small", "default"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_odd_answers_end_as_in_memory(
    request: pytest.FixtureRequest, body: bytes, segments: str, chunk: int
) -> None:
    if segments == "small":
        request.getfixturevalue("small_segments")
    expected, got = _in_memory(body), _streamed(body, [chunk])
    assert got[0] == expected[0]
    if expected[0] == "ok":
        assert _same(got[1], expected[1]) and got[2] == len(expected[1])
    else:
        assert got[1:] == expected[1:]


def _variants(count: int, shape: str = "flat") -> list[dict[str, Any]]:
    made = []
    for i in range(count):
        record: dict[str, Any] = {"id": f"var-{i:06d}", "gene": "SCN1A", "pos": 166_000_000 + i, "af": i / 7}
        if shape == "nested":  # records that hold records: the separator also shows inside them
            record["transcripts"] = [{"id": f"NM_{j}", "hgvs": "c.1A>G, p.(Met1?)"} for j in range(i % 4)]
        elif shape == "nan":  # json accepts NaN, msgspec does not: every cut is found by json
            record["af"] = math.nan
        made.append(record)
    return made


@pytest.mark.parametrize("shape", ["flat", "nested", "nan"])
@pytest.mark.parametrize("layout", [{}, {"indent": 1}, {"separators": (",", ":")}])
def test_a_large_list_is_written_exactly_as_sent(shape: str, layout: dict[str, Any]) -> None:
    """Several segments' worth (3 MB), real segment sizes: the bytes of the list, unchanged."""
    hits = _variants(12_000, shape)
    array = json.dumps(hits, **layout)
    body = ('{"total": 12000, "hits": ' + array + ', "took": 5}').encode()
    out = _Output()
    with RecordStream(CALL, 200, HEADERS, EXPORT_KEYS, out, _keep, cap=64 * MB) as stream:
        for start in range(0, len(body), 256 * 1024):
            stream.feed(body[start : start + 256 * 1024])
        assert stream.finish() == 12_000
    assert out.buffer.getvalue() == array.encode()
    assert out.opened == 1


def test_an_answer_over_the_cap_stops_at_the_cap() -> None:
    body = json.dumps({"hits": _variants(5000)}).encode()
    got = _streamed(body, cap=len(body) - 1)
    assert got[0] == "error" and got[1] is EmedgeneUnexpectedResponseError
    assert "is larger than the connection's max_response_mb" in got[2]
    with pytest.raises(EmedgeneUnexpectedResponseError, match="max_response_mb"):
        RecordStream(CALL, 200, HEADERS, EXPORT_KEYS, _Output(), _keep, cap=100, declared=101)


def test_an_error_before_the_list_opens_no_output() -> None:
    out = _Output()
    with (
        pytest.raises(EmedgeneUnexpectedResponseError),
        RecordStream(CALL, 200, HEADERS, EXPORT_KEYS, out, _keep, cap=MB) as stream,
    ):
        stream.feed(b"<html><title>oops</title>")
        stream.finish()
    assert out.opened == 0


# -- the hook and the operators against the simulator ---------------------------------------------


def _delivered(sim: Any, **extra: Any) -> str:
    name = EmedgeneHook().client.create_case(valid_case(**extra))
    sim.set_status(name, "Delivered")
    return name


def _hook(monkeypatch: pytest.MonkeyPatch, sim: Any, **extra: Any) -> EmedgeneHook:
    conn = sim.connection_json()
    conn["extra"].update(extra)
    connect(monkeypatch, sim, conn)
    hook = EmedgeneHook()
    hook.client.sleep = lambda seconds: None
    return hook


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("export_key", ["hits", "variants"])
@pytest.mark.parametrize("operator", [EmedgeneExportCaseOperator, EmedgeneGetCandidatesOperator])
def test_the_written_file_equals_the_in_memory_result(
    emedgene_simulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    operator: Any,
    export_key: str,
) -> None:
    sim = emedgene_simulator_factory(export_key=export_key)
    connect(monkeypatch, sim)
    name = _delivered(sim, simulator_variants=3000)  # ~1.3 MB of export: several segments
    expected = operator(task_id="fetch", case_name=name, max_xcom_bytes=64 * MB).execute(make_context())
    result = operator(task_id="fetch", case_name=name, output_path=f"file://{tmp_path}/").execute(
        make_context()
    )
    assert result == {
        "case_name": name,
        "path": f"file://{tmp_path}/{name}.json",
        "count": 3000,
        "records": None,
    }
    assert expected["path"] is None and expected["count"] == 3000  # the same shape, records in XCom
    written = (tmp_path / f"{name}.json").read_bytes()
    assert json.loads(written) == expected["records"]
    assert written.startswith(b"[{")  # the server's array, as sent (its key order, not sorted)
    assert _only(tmp_path) == [f"{name}.json"]  # no .partial left behind


def test_the_log_line_and_result_stay(
    sim_conn: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _delivered(sim_conn)
    target = tmp_path / "export.json"
    with caplog.at_level("INFO"):
        result = EmedgeneExportCaseOperator(
            task_id="export", case_name=name, output_path=f"file://{target}"
        ).execute(make_context())
    count = len(json.loads(target.read_text()))
    assert result == {"case_name": name, "path": f"file://{target}", "count": count, "records": None}
    logged = caplog.text + capsys.readouterr().out  # Airflow 3's task logger writes to stdout
    assert f"Wrote {count} exported variants of case {name} to file://{target}" in logged


def test_an_unknown_case_fails_as_in_memory_and_writes_nothing(sim_conn: Any, tmp_path: Path) -> None:
    hook = EmedgeneHook()
    with pytest.raises(EmedgeneNotFoundError) as in_memory:
        hook.export_case("EMG404404404")
    with pytest.raises(EmedgeneNotFoundError) as streamed:
        hook.export_case_to("EMG404404404", f"file://{tmp_path}/out/export.json")
    assert str(streamed.value) == str(in_memory.value)
    assert _only(tmp_path / "out") == []


def test_an_undelivered_case_fails_as_in_memory(sim_conn: Any, tmp_path: Path) -> None:
    hook = EmedgeneHook()
    name = hook.client.create_case(valid_case())
    sim_conn.set_status(name, "In progress")
    with pytest.raises(EmedgeneInvalidRequestError) as in_memory:
        hook.get_candidates(name)
    with pytest.raises(EmedgeneInvalidRequestError) as streamed:
        hook.get_candidates_to(name, f"file://{tmp_path}/c.json")
    assert str(streamed.value) == str(in_memory.value)
    assert _only(tmp_path) == []


def test_a_server_error_then_success_is_retried(
    sim_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = _hook(monkeypatch, sim_conn)
    name = _delivered(sim_conn)
    expected = hook.export_case(name)
    sim_conn.inject("500_html", path=f"{endpoints.CASES_PATH}/{name}/export")
    sim_conn.inject("503", path=f"{endpoints.CASES_PATH}/{name}/export")
    assert hook.export_case_to(name, f"file://{tmp_path}/e.json") == len(expected)
    assert json.loads((tmp_path / "e.json").read_text()) == expected
    assert sim_conn.counters()["requests"]["GET /api/test/{name}/export"] == 4  # 1 + 2 failed + 1


def test_a_refused_token_is_renewed_and_the_call_replayed(sim_conn: Any, tmp_path: Path) -> None:
    hook = EmedgeneHook()
    name = _delivered(sim_conn)
    expected = hook.get_candidates(name)
    logins = sim_conn.counters()["logins"]
    sim_conn.revoke_tokens()  # the cached token now answers 401
    assert hook.get_candidates_to(name, f"file://{tmp_path}/c.json") == len(expected)
    assert json.loads((tmp_path / "c.json").read_text()) == expected
    assert sim_conn.counters()["logins"] == logins + 1


def test_an_answer_over_max_response_mb_fails_and_leaves_the_old_file(
    sim_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _delivered(sim_conn, simulator_variants=5000)  # ~2.2 MB
    hook = _hook(monkeypatch, sim_conn, max_response_mb=1, max_retries=0)
    target = tmp_path / "export.json"
    target.write_text("[]")  # an earlier, complete export
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        hook.export_case_to(name, f"file://{target}")
    assert str(raised.value) == (
        f"Emedgene export_case({name}): the HTTP 200 answer to GET /api/test/{name}/export is larger than "
        "the connection's max_response_mb (1 MB) and was not read further. Raise the extra "
        "'max_response_mb' if this answer is genuine."
    )
    assert _only(tmp_path) == ["export.json"]
    assert target.read_text() == "[]"


@pytest.mark.parametrize("chunked", [False, True])
def test_an_endless_answer_stops_at_the_cap(
    sim_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunked: bool
) -> None:
    name = _delivered(sim_conn)
    _hook(monkeypatch, sim_conn, max_response_mb=2, max_retries=0)
    sim_conn.inject("huge", size=300 * MB, chunked=chunked, path=f"{endpoints.CASES_PATH}/{name}/export")
    with pytest.raises(EmedgeneUnexpectedResponseError, match=r"max_response_mb \(2 MB\)"):
        EmedgeneExportCaseOperator(
            task_id="export", case_name=name, output_path=f"file://{tmp_path}/"
        ).execute(make_context(FakeTI()))
    assert _only(tmp_path) == []


def test_keys_after_the_list_are_read_and_ignored(
    sim_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The ``huge`` fault appends ``"pad": "xxx..."`` (3 MB) after the list: read, not kept."""
    hook = _hook(monkeypatch, sim_conn)
    name = _delivered(sim_conn)
    expected = hook.export_case(name)
    sim_conn.inject("huge", size=3 * MB, path=f"{endpoints.CASES_PATH}/{name}/export")
    assert hook.export_case_to(name, f"file://{tmp_path}/e.json") == len(expected)
    assert json.loads((tmp_path / "e.json").read_text()) == expected


# -- what the simulator does not send: a scripted server ------------------------------------------


class _Scripted(ThreadingHTTPServer):
    """Answers logins with a token and each export GET with the next scripted answer:
    ``(status, body, sent)`` where ``sent`` bytes of the body go out before the connection is
    closed (a cut answer: its ``Content-Length`` promises the whole body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: list[tuple[int, bytes, int | None]] = []
        self.gets = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Scripted
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, sent: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if sent is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body if sent is None else body[:sent])
        if sent is not None:
            self.wfile.flush()
            self.close_connection = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(200, b'{"access_token": "scripted-token", "token_type": "bearer"}')

    def do_GET(self) -> None:
        self.server.gets += 1
        status, body, sent = self.server.answers.pop(0)
        self._answer(status, body, sent)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Scripted]:
    server = _Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = {
        "conn_type": "emedgene",
        "host": f"http://127.0.0.1:{server.server_address[1]}",
        "login": "lab-user",
        "password": "lab-password",
        "extra": {"max_retries": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    yield server
    server.shutdown()
    server.server_close()


def _scripted_hook() -> EmedgeneHook:
    hook = EmedgeneHook()
    hook.client.sleep = lambda seconds: None
    return hook


BIG = json.dumps({"hits": _variants(20_000)}).encode()  # ~1.5 MB: writing starts well before the end


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda body: body[: len(body) * 2 // 3], id="truncated"),
        pytest.param(lambda body: body[:900_000] + b"}garbage" + body[900_000:], id="broken-mid-list"),
        pytest.param(lambda body: body[:-1] + b"]", id="broken-at-the-end"),
    ],
)
def test_a_broken_answer_fails_as_in_memory_and_leaves_no_file(
    scripted: _Scripted, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    body = damage(BIG)
    scripted.answers = [(200, body, None), (200, body, None)]
    hook = _scripted_hook()
    with pytest.raises(EmedgeneUnexpectedResponseError) as in_memory:
        hook.export_case("EMG100000001")
    target = tmp_path / "EMG100000001.json"
    with pytest.raises(EmedgeneUnexpectedResponseError) as streamed:
        EmedgeneExportCaseOperator(
            task_id="export", case_name="EMG100000001", output_path=f"file://{tmp_path}/"
        ).execute(make_context())
    assert str(streamed.value) == str(in_memory.value)
    assert re.match(
        r"Emedgene export_case\(EMG100000001\): HTTP 200 from GET \S+ was not JSON", str(streamed.value)
    )
    assert not target.exists()
    assert _only(tmp_path) == []


def test_an_answer_cut_mid_list_is_retried_from_the_start(scripted: _Scripted, tmp_path: Path) -> None:
    """The first answer stops after 1 MB (records written), the second is whole: the output is
    started over, so every record is there exactly once."""
    scripted.answers = [(200, BIG, 1_000_000), (200, BIG, None)]
    out = _Output()
    assert _scripted_hook().client.export_case_to("EMG100000001", out) == 20_000
    assert out.opened == 2
    assert out.value() == json.loads(BIG)["hits"]
    assert scripted.gets == 2


def test_a_cut_answer_retried_through_the_hook_leaves_one_whole_file(
    scripted: _Scripted, tmp_path: Path
) -> None:
    scripted.answers = [(200, BIG, 1_000_000), (200, BIG, 500_000), (200, BIG, None)]
    target = tmp_path / "e.json"
    assert _scripted_hook().export_case_to("EMG100000001", f"file://{target}") == 20_000
    assert target.read_bytes() == json.dumps(json.loads(BIG)["hits"]).encode()
    assert _only(tmp_path) == ["e.json"]


def test_cut_every_time_fails_and_removes_the_partial_file(scripted: _Scripted, tmp_path: Path) -> None:
    scripted.answers = [(200, BIG, 1_000_000)] * 3
    with pytest.raises(EmedgeneError, match="still failing after 3 attempt"):
        _scripted_hook().export_case_to("EMG100000001", f"file://{tmp_path}/e.json")
    assert _only(tmp_path) == []


def test_a_partial_file_name_is_never_the_export(scripted: _Scripted, tmp_path: Path) -> None:
    """While the list streams, only ``<name>.partial`` exists; the export appears whole."""
    seen: list[list[str]] = []
    scripted.answers = [(200, BIG, None)]
    hook = _scripted_hook()
    real = hook.client.export_case_to

    def watching(case_name: str, open_output: Any) -> int:
        def opening() -> Any:
            seen.append(_only(tmp_path))
            return open_output()

        count = real(case_name, opening)
        seen.append(_only(tmp_path))
        return count

    hook.client.export_case_to = watching  # type: ignore[method-assign]
    hook.export_case_to("EMG100000001", f"file://{tmp_path}/e.json")
    assert seen == [[], ["e.json" + PARTIAL_SUFFIX]]
    assert _only(tmp_path) == ["e.json"]


# -- memory ---------------------------------------------------------------------------------------


@pytest.fixture
def simulator_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The simulator in its own process (its allocations are not traced here); its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emedgene_provider.testing.simulator", "--port", "0", "--stage-seconds", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("listening on ", 1)[1].strip()
        conn = {"conn_type": "emedgene", "host": url, "login": "lab-user", "password": "lab-password"}
        monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_large_export_streams_in_a_small_fraction_of_its_size(
    simulator_process: str, tmp_path: Path
) -> None:
    hook = EmedgeneHook()
    name = hook.client.create_case(valid_case(simulator_variants=50_000))
    # One small export first: the token, the connection, and what a process loads once (msgspec,
    # fsspec, Airflow's lineage plugins on a first write) are not the stream's memory.
    hook.export_case_to(hook.client.create_case(valid_case()), f"file://{tmp_path}/small.json")
    target = tmp_path / "export.json"
    tracemalloc.start()
    try:
        count = hook.export_case_to(name, f"file://{target}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = target.stat().st_size
    assert count == 50_000
    assert size > 20 * MB
    assert peak < size / 5, f"peak traced memory {peak / MB:.1f} MB for a {size / MB:.1f} MB export"
