"""A list answer (an export, candidates) streamed from the socket to a file, never held whole.

:class:`RecordStream` is fed the body of a 2xx answer chunk by chunk and writes the records of its
``hits`` (or ``variants``) list to an output as a JSON array, **byte for byte as the server sent
them**: the written file is the array's own text (the server's key order and spacing), so
``json.loads`` of it equals what the in-memory path (``interpret`` then ``records_of``) returns.

How, and why this way (measured on a 200,000-variant, 87 MB export, one core):

- The bulk of the array is cut into segments of about :data:`SEGMENT_BYTES` at a record boundary
  and each segment is checked by ``msgspec`` decoding it as a list of raw elements (a complete,
  strict JSON syntax check that builds no records: ~1.2 GB/s), then written as is. An incremental
  parser that builds the records (``ijson`` with its C backend, then ``json.dumps``) runs at
  ~26 MB/s, 20x slower than the socket; even ``ijson``'s bare event stream runs at ~90 MB/s.
- A record boundary is found by the separator seen between the first records (``}, {"id":``),
  and proven by the check itself: if a cut fell inside a string or inside a record, the
  segment closed with ``]`` would not be valid JSON. A boundary not found that way (records
  that vary in shape, ``NaN`` which ``json`` accepts and ``msgspec`` does not) is found by
  walking the records with ``json``'s own decoder, which is also what reads the array's first
  and last records and everything around the array: the answer is accepted exactly when
  ``json.loads`` would accept it.
- Until the list starts, every byte is kept: an answer that is not a JSON object, lacks the list,
  or is otherwise odd before the list (a top-level key twice included) is handed whole to
  ``interpret``/``records_of``, so it fails (or succeeds) exactly as in memory. After the list,
  the rest is kept and read at the end (normally ``}``); a second ``hits``/``variants`` list there
  is compared with the streamed one by CRC-32 and length of its text (a server sends the same list
  with the same bytes), and ``field_of`` decides as it does in memory. The one difference, failing
  closed: two lists equal in value but spelt differently (``[1]``, ``[1.0]``) are refused as
  differing.
- The answer's own members are checked as in memory: a top-level key twice is refused, and so is
  a ``total`` (before or after the list) that claims more records than the list holds, once the
  list is written (the caller removes the file). The records are data, written as sent: a key
  twice *inside* a record is not looked for here (in memory, :func:`parse_json` refuses it), as
  that would cost the parse this module avoids. A leading UTF-8 byte order mark is dropped.
- A broken answer's error is the in-memory path's, in the same words (taken from the first
  64 KiB, as many as it reads for them); an error answer (not 2xx) is never streamed.

Memory: the current segment and the chunk in hand (a few MB), whatever the size of the answer.
A broken answer may be buffered up to the connection's ``max_response_mb`` before it is refused.
"""

from __future__ import annotations

import codecs
import json
import re
import zlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any, NoReturn, Protocol

from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import EmedgeneUnexpectedResponseError
from emedgene_provider.client.responses import (
    Scrub,
    check_total,
    decode_json,
    duplicate_key,
    field_of,
    interpret,
    records_of,
)
from emedgene_provider.client.wire import ERROR_BODY_BYTES, too_large

#: About how many bytes of records are checked and written at once.
SEGMENT_BYTES = 1024 * 1024
#: Without a boundary the separator finds, the records are walked with ``json`` once this many
#: bytes wait (records of varying shape still stream, at ``json``'s speed).
WINDOW_BYTES = 4 * SEGMENT_BYTES
#: Bytes of the list read with ``json`` to learn the separator between records.
_FIRST_CUT_BYTES = 32 * 1024
#: Separator occurrences tried, from the end, before a segment waits for more bytes.
_TRIES = 4
#: The most bytes of a record's start that make up the separator pattern.
_HEAD_BYTES = 48
_WS = re.compile(r"[ \t\n\r]*")
#: What may follow the part of a number read so far, up to the end of the bytes in hand.
_NUMBER_GOES_ON = re.compile(r"[0-9eE+\-.]*")
_JSON = json.JSONDecoder()
_PREFIX, _ARRAY, _SUFFIX, _WHOLE, _BROKEN = "prefix", "array", "suffix", "whole", "broken"


class BinarySink(Protocol):
    """Where records are written: a file opened for binary writing."""

    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


#: Opens the output afresh (truncating it) for each attempt at the call.
OpenOutput = Callable[[], AbstractContextManager[BinarySink]]


class _Incomplete(Exception):
    """More bytes are needed (internal)."""


class _Broken(Exception):
    """The bytes are not JSON (internal)."""


class _Streamed:
    """Marker for the list written while streaming, in ``field_of``'s stand-in answer."""


def _ws(text: str, index: int) -> int:
    match = _WS.match(text, index)
    return match.end() if match else index


def _text(data: bytes | bytearray, final: bool) -> str:
    """``data`` as text; an incomplete last character waits for the next chunk (not at the end)."""
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        if final or exc.start < len(data) - 3 or exc.reason != "unexpected end of data":
            raise _Broken from None
        return bytes(data[: exc.start]).decode("utf-8")


def _byte_offset(text: str, index: int) -> int:
    return index if text.isascii() else len(text[:index].encode("utf-8"))


def _raw_decode(text: str, index: int) -> tuple[Any, int]:
    try:
        return _JSON.raw_decode(text, index)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise _Incomplete from None


def _checker() -> Callable[[bytes | bytearray | memoryview], int]:
    """A strict JSON syntax check of a list: its element count, building no element."""
    import msgspec

    decoder = msgspec.json.Decoder(list[msgspec.Raw])

    def check(data: bytes | bytearray | memoryview) -> int:
        try:
            return len(decoder.decode(data))
        except (msgspec.DecodeError, RecursionError):
            return -1

    return check


class RecordStream:
    """Writes the records of a 2xx answer's ``keys`` list to an output, as they arrive.

    Use as a context manager around the feeding: the output is opened (``open_output()``) when the
    first bytes of the list are ready, so an answer that fails early writes nothing, and is closed
    on exit, seeing the exception if any (the caller removes a partial output).

    :param call: the call answered, named in every error.
    :param status: the answer's HTTP status (2xx).
    :param headers: the answer's headers.
    :param keys: the list's key, in order of preference (``field_of``'s rule).
    :param open_output: opens the output for binary writing, truncating it.
    :param scrub: removes secrets from what the server said.
    :param cap: the most bytes of answer read (``max_response_mb``).
    :param declared: the answer's ``Content-Length``, if known.
    """

    def __init__(
        self,
        call: ApiCall,
        status: int,
        headers: Mapping[str, str],
        keys: tuple[str, ...],
        open_output: OpenOutput,
        scrub: Scrub,
        *,
        cap: int,
        declared: int | None = None,
    ) -> None:
        self.call, self.status, self.headers, self.keys = call, status, headers, keys
        self.content_type = headers.get("Content-Type", headers.get("content-type", "")) or ""
        self.scrub, self.cap = scrub, cap
        if declared is not None and declared > cap:
            raise too_large(call, status, cap)
        self.count = 0
        self._open_output = open_output
        self._stack = ExitStack()
        self._out: BinarySink | None = None
        self._phase = _PREFIX
        self._buf = bytearray()  # unconsumed bytes; in _ARRAY it starts with the '[' or ',' before them
        self._head = bytearray()  # the first bytes, for what the server said
        self._size = 0
        self._ascii = True
        self._tried = 0  # the buffer's size at the last look for the list
        # The buffer's size at which records are next written; the first time, soon: the first
        # records are read with json (to learn the separator), the fewer the better.
        self._next_cut = _FIRST_CUT_BYTES
        self._keys_seen: dict[str, Any] = {}  # top-level key -> value ({} stand-in for non-lists)
        self._total: Any = None  # the answer's ``total``, before or after the list
        self._crc = 0
        self._length = 0
        self._separator: bytes | None = None  # the bytes between two records, up to the 2nd's first key
        self._comma = 0  # where the comma is in ``_separator``
        self._check = _checker()
        self._first = True  # no record of the list seen yet

    # -- context ------------------------------------------------------------------------------

    def __enter__(self) -> RecordStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the answer; write whatever records they complete."""
        self._size += len(chunk)
        if self._size > self.cap:
            raise too_large(self.call, self.status, self.cap)
        if len(self._head) < ERROR_BODY_BYTES:
            self._head += chunk[: ERROR_BODY_BYTES - len(self._head)]
        if self._phase == _BROKEN:
            if len(self._head) >= ERROR_BODY_BYTES:
                self._not_json()
            return
        self._ascii = self._ascii and chunk.isascii()
        self._buf += chunk
        try:
            if self._phase == _PREFIX and len(self._buf) >= 2 * self._tried:
                self._tried = len(self._buf)
                self._find_list(final=False)
            if self._phase == _ARRAY and len(self._buf) >= self._next_cut:
                self._cut()
        except _Broken:
            # Not JSON: said in the in-memory path's words, from as many first bytes as it reads.
            self._phase = _BROKEN
            self._buf.clear()
            if len(self._head) >= ERROR_BODY_BYTES:
                self._not_json()

    def finish(self) -> int:
        """The answer is complete: write the rest, check it, and return the number of records."""
        try:
            if self._phase == _BROKEN:
                raise _Broken
            if self._phase == _PREFIX:
                self._find_list(final=True)
            if self._phase == _WHOLE or self._phase == _PREFIX:
                return self._in_memory()
            if self._phase == _ARRAY:
                self._cut_at_separator()  # so that json reads only the last record or so
                self._walk(final=True)
            if self._phase != _SUFFIX:
                raise _Broken
            count = self._after_list()
            check_total(self.call, count, self._total)
            return count
        except (_Broken, _Incomplete):
            self._not_json()

    # -- before the list: keep everything -----------------------------------------------------

    def _find_list(self, *, final: bool) -> None:
        """Read the top-level object's members up to the list, which then starts streaming."""
        if self._buf.startswith(codecs.BOM_UTF8):  # a byte order mark: dropped, as in memory
            del self._buf[:3]
            self._ascii = self._buf.isascii()
        try:
            text = _text(self._buf, final)
        except _Broken:
            self._phase = _WHOLE  # not UTF-8: the in-memory path says so, in its words
            return
        seen: set[str] = set()
        try:
            i = _ws(text, 0)
            if i == len(text):
                raise _Incomplete
            if text[i] != "{":
                self._phase = _WHOLE
                return
            i = _ws(text, i + 1)
            while True:
                if i == len(text):
                    raise _Incomplete
                if text[i] != '"':
                    self._phase = _WHOLE  # '}' (no list at all) or not JSON: said as in memory
                    return
                key, i = self._string(text, i)
                i = self._colon(text, i)
                if key in seen:
                    self._phase = _WHOLE  # a repeated key: refused in memory's words
                    return
                seen.add(key)
                if key in self.keys and text[i] == "[":
                    self._keys_seen[key] = _Streamed
                    del self._buf[: _byte_offset(text, i)]
                    self._phase = _ARRAY
                    return
                value, i = _raw_decode(text, i)
                if key == "total":
                    self._total = value
                self._keys_seen[key] = {}  # not a list, or not one of ``keys``: not the answer
                i = _ws(text, i)
                if i == len(text):
                    raise _Incomplete
                if text[i] != ",":
                    self._phase = _WHOLE
                    return
                i = _ws(text, i + 1)
        except _Incomplete:
            if final:
                self._phase = _WHOLE
        except _Broken:
            self._phase = _WHOLE

    @staticmethod
    def _string(text: str, index: int) -> tuple[str, int]:
        try:
            key, end = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
        except ValueError:
            raise _Incomplete from None
        return str(key), end

    @staticmethod
    def _colon(text: str, index: int) -> int:
        index = _ws(text, index)
        if index == len(text):
            raise _Incomplete
        if text[index] != ":":
            raise _Broken
        index = _ws(text, index + 1)
        if index == len(text):
            raise _Incomplete
        return index

    def _in_memory(self) -> int:
        """The whole answer, kept: what ``interpret`` and ``records_of`` make of it, written as JSON."""
        body = bytes(self._buf)
        parsed = interpret(self.call, self.status, self.headers, body, self.scrub)
        records = records_of(self.call, parsed, *self.keys)
        self._write(json.dumps(records).encode("utf-8"))
        self.count = len(records)
        return self.count

    # -- the list -------------------------------------------------------------------------------

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._out is None:
            self._out = self._stack.enter_context(self._open_output())
        self._out.write(data)

    def _emit(self, end: int, records: int) -> None:
        """Write the first ``end`` bytes of the buffer (records complete, a separator follows)."""
        with memoryview(self._buf) as view, view[:end] as piece:
            self._write(piece)
            self._crc = zlib.crc32(piece, self._crc)
        self._length += end
        self.count += records
        del self._buf[:end]
        self._next_cut = len(self._buf) + SEGMENT_BYTES

    def _cut(self) -> None:
        """Write the records the buffer holds, up to a boundary found by the separator (or by
        walking the records when there is none yet, or it finds none for too long)."""
        self._next_cut = len(self._buf) + SEGMENT_BYTES
        if self._separator is None:
            self._walk(final=False)  # learns the separator from the first records
        elif not self._cut_at_separator() and len(self._buf) >= WINDOW_BYTES:
            self._walk(final=False)

    def _cut_at_separator(self) -> bool:
        """Write up to the last of the last few separators that the check proves a boundary."""
        if self._separator is None:
            return False
        high = len(self._buf)
        for _ in range(_TRIES):
            found = self._buf.rfind(self._separator, 1, high)
            if found < 0:
                break
            comma = found + self._comma
            records = self._checked(comma)
            if records > 0:
                self._emit(comma, records)
                return True
            high = found + len(self._separator) - 1
        return False

    def _checked(self, comma: int) -> int:
        """How many records ``buffer[1:comma]`` holds if it is a valid list's content, else -1."""
        buf = self._buf
        if not self._ascii:
            try:
                bytes(buf[1:comma]).decode("utf-8")
            except UnicodeDecodeError:
                return -1
        first = buf[0]
        buf[0], buf[comma] = 0x5B, 0x5D  # '[' ... ']' around the records, in place: no copy
        try:
            with memoryview(buf) as view, view[: comma + 1] as segment:
                return self._check(segment)
        finally:
            buf[0], buf[comma] = first, 0x2C

    def _walk(self, *, final: bool) -> None:
        """Read records with ``json`` from the buffer's start; write those complete. At the list's
        ``]``, go on to what follows it. Learns the separator between two records."""
        text = _text(self._buf, final)
        i, cut, records, ends = 0, 0, 0, []
        closed: int | None = None
        try:
            while True:
                start = _ws(text, i + 1)  # past the '[' or ','
                if start == len(text):
                    raise _Incomplete
                if text[i] == "[" and text[start] == "]":
                    closed = start
                    break
                _, end = _raw_decode(text, start)
                after = _ws(text, end)
                if after == len(text) or (not final and _NUMBER_GOES_ON.fullmatch(text, end)):
                    raise _Incomplete  # a number may go on (``1`` of ``1e+5``): a separator must be seen
                if text[after] not in ",]":
                    raise _Broken
                records += 1
                ends.append((end, after, start))
                if text[after] == "]":
                    closed = after
                    break
                i = cut = after
        except _Incomplete:
            if final:
                raise _Broken from None
        if self._separator is None and len(ends) >= 2:
            self._learn(text, ends[-2][0], ends[-1][2])
        if closed is not None:
            self._emit(_byte_offset(text, closed), records)
            self._write(b"]")
            self._crc = zlib.crc32(b"]", self._crc)
            self._length += 1
            del self._buf[:1]
            self._phase = _SUFFIX
        elif cut:
            self._emit(_byte_offset(text, cut), records)
        else:  # not one whole record yet (a huge one): look again once the buffer has doubled
            self._next_cut = max(self._next_cut, 2 * len(self._buf))

    def _learn(self, text: str, end: int, start: int) -> None:
        """Keep the bytes from one record's end to the next one's first key as the separator."""
        head = text[start : start + _HEAD_BYTES]
        if head.startswith("{"):
            colon = head.find(":")
            head = head[: colon + 1] if colon > 0 else head[:1]
        else:
            head = head[:1]
        separator = (text[end - 1 : start] + head).encode("utf-8")  # from the record's last byte
        self._separator = separator
        self._comma = separator.index(b",")

    # -- after the list -------------------------------------------------------------------------

    def _after_list(self) -> int:
        """Read the rest of the object; ``field_of`` chooses between the lists, as in memory."""
        text = _text(self._buf, True)
        twice: str | None = None
        try:
            i = _ws(text, 0)
            while text[i] == ",":
                i = _ws(text, i + 1)
                if text[i] != '"':
                    raise _Broken
                key, i = self._string(text, i)
                i = self._colon(text, i)
                value, end = _raw_decode(text, i)
                if key in self._keys_seen and twice is None:
                    twice = key  # a contradiction: refused as in memory, once the rest is JSON
                if key == "total":
                    self._total = value
                if key in self.keys and isinstance(value, list):
                    self._keys_seen[key] = (value, text[i:end])
                else:
                    self._keys_seen[key] = {}
                i = _ws(text, end)
            if text[i] != "}" or _ws(text, i + 1) != len(text):
                raise _Broken
        except IndexError:
            raise _Broken from None
        if twice is not None:
            raise duplicate_key(self.call, self.status, twice, bytes(self._head), self.scrub)
        return self._choose()

    def _choose(self) -> int:
        """Which list is the answer (``field_of`` decides), rewriting the output if not the one
        streamed."""
        classes: list[Any] = []  # what tells each distinct list apart

        def same(identity: Any) -> int:
            for number, known in enumerate(classes):
                if known == identity:
                    return number
            classes.append(identity)
            return len(classes) - 1

        stand_in: dict[str, Any] = {}
        chosen: dict[int, Any] = {}
        for key, value in self._keys_seen.items():
            if value is _Streamed:
                number = same(("streamed", self._crc, self._length))
                chosen[number] = _Streamed
            elif isinstance(value, tuple):
                records, text = value
                raw = text.encode("utf-8")
                streamed = (zlib.crc32(raw), len(raw)) == (self._crc, self._length)
                number = same(("streamed", self._crc, self._length) if streamed else ("list", records))
                chosen.setdefault(number, value)
            else:
                stand_in[key] = value
                continue
            stand_in[key] = [number]
        picked = field_of(self.call, stand_in, *self.keys)  # raises as in memory: no list, or two
        answer = chosen[picked[0]]
        if answer is _Streamed:
            return self.count
        records, text = answer
        self._stack.close()  # the streamed list was not the answer: write the one that is
        self._stack = ExitStack()
        self._out = None
        self._write(text.encode("utf-8"))
        self.count = len(records)
        return self.count

    # -- errors ---------------------------------------------------------------------------------

    def _not_json(self) -> NoReturn:
        """The error of an answer that is not JSON, in the in-memory path's words."""
        decode_json(self.call, self.status, bytes(self._head), self.content_type, self.scrub)
        # The first bytes alone were valid JSON, so the words are ours.
        raise EmedgeneUnexpectedResponseError(
            f"Emedgene {self.call.describe()}: HTTP {self.status} from {self.call.method} "
            f"{self.call.path} was not JSON (content-type {self.content_type or 'unknown'!r})",
            operation=self.call.operation,
            case_name=self.call.case_name,
            status_code=self.status,
        )


def write_all(open_output: OpenOutput, records: list[Any]) -> int:
    """Write ``records``, already in memory, as the streamed path would: a JSON array."""
    with open_output() as out:
        out.write(json.dumps(records).encode("utf-8"))
    return len(records)
