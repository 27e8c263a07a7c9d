"""Turning an HTTP answer into a result or the right error; the one place both transports ask.

Sync and async transports hand over the status, headers and body bytes of an attempt and get back
the parsed JSON, or one of: :class:`AuthRejected` (the client renews its token and replays once),
:class:`~emedgene_provider.client.retry.TransientFailure` (the retry loop tries again), or a final
:class:`~emedgene_provider.client.errors.EmedgeneError`.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from emedgene_provider.client.auth import Credentials, Token, parse_token
from emedgene_provider.client.endpoints import ApiCall
from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneAuthError,
    EmedgeneConfigError,
    EmedgeneError,
    EmedgeneInvalidRequestError,
    EmedgeneNotFoundError,
    EmedgeneRateLimitedError,
    EmedgeneUnavailableError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.retry import TransientFailure, is_retryable_status, parse_retry_after

MAX_SERVER_WORDS = 300
#: An error page's ``<title>`` is looked for in this many first bytes only.
HTML_HEAD_BYTES = 65536
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_BLANKS = re.compile(r"\s+")

Scrub = Callable[[str], str]


class AuthRejected(Exception):
    """401/403 on a call made with a token (internal): the client drops the token and replays."""

    def __init__(self, status_code: int, server_message: str) -> None:
        super().__init__(f"HTTP {status_code}: {server_message}")
        self.status_code = status_code
        self.server_message = server_message


def _keep(text: str) -> str:
    return text


def trim(text: str, limit: int = MAX_SERVER_WORDS, scrub: Scrub = _keep) -> str:
    """One line of at most ``limit`` characters, secrets scrubbed *before* it is cut, so that no
    part of a secret survives at the cut."""
    text = _BLANKS.sub(" ", scrub(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body[:200].lstrip().lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))


def server_words(body: bytes, content_type: str = "", scrub: Scrub = _keep) -> str:
    """What the server said, in a line: ``message`` (or ``error``/``detail``) of a JSON body, a JSON
    string, an HTML page's ``<title>``, or the text itself; scrubbed, then trimmed. Never raises."""

    def _trimmed(text: str) -> str:
        return trim(text, scrub=scrub)

    if not body:
        return "(empty body)"
    if _looks_like_html(body, content_type):
        match = _TITLE.search(body[:HTML_HEAD_BYTES])  # bounded: the regex is slow on long bodies
        text = (
            match.group(1).decode("utf-8", "replace")
            if match
            else _TAGS.sub(" ", body.decode("utf-8", "replace"))
        )
        return _trimmed("HTML page: " + html.unescape(text))
    text = body.decode("utf-8-sig", "replace")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python goes
        return _trimmed(text)
    if isinstance(parsed, dict):
        for key in ("message", "error", "detail", "msg"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return _trimmed(value)
            if value:
                return _trimmed(json.dumps(value, default=str))
    if isinstance(parsed, str):
        return _trimmed(parsed)
    return _trimmed(text)


def _where(call: ApiCall) -> str:
    return f"{call.method} {call.path}"


class DuplicateKey(Exception):
    """A JSON object names ``key`` twice (internal): ``json`` would silently keep the last value."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def parse_json(text: str) -> Any:
    """``json.loads(text)``, raising :class:`DuplicateKey` for a key repeated within an object, at
    any depth (``{"status": "Issue reported", "status": "Delivered"}`` must not read as Delivered).

    Every object is checked as it is built (``object_pairs_hook``: about 1.6-2x ``json.loads``),
    except on the hot path, a status answer: one flat object, whose keys are each followed by the
    only colons outside strings, so as many colons in the text as keys parsed means none repeated.
    """
    if text.count("{") <= 1 and "[" not in text:
        value = json.loads(text)
        if not isinstance(value, dict) or text.count(":") == len(value):
            return value
    return json.loads(text, object_pairs_hook=_unique)


def json_text(body: bytes) -> str:
    """An answer's bytes as text for ``json``; a leading UTF-8 byte order mark is dropped (some
    servers write one, and ``json`` refuses it)."""
    return body.decode("utf-8-sig")


def duplicate_key(call: ApiCall, status: int, key: str, body: bytes, scrub: Scrub) -> EmedgeneError:
    """The error for an answer that names a key twice in one object: a contradiction, never a
    value to choose. Not retried: the same server sends the same lie, and a second answer that
    differed could not say which one was true; a wait ends on it as on any unexpected answer."""
    words = trim(body.decode("utf-8", "replace").lstrip("\ufeff"), scrub=scrub)
    return EmedgeneUnexpectedResponseError(
        f"Emedgene {call.describe()}: the HTTP {status} answer to {_where(call)} names the key "
        f"{trim(key, 80, scrub)!r} twice in one object; refusing to choose a value: {words}",
        operation=call.operation,
        case_name=call.case_name,
        status_code=status,
        server_message=words,
    )


def decode_json(call: ApiCall, status: int, body: bytes, content_type: str, scrub: Scrub) -> Any:
    """The JSON body of a success, or :class:`EmedgeneUnexpectedResponseError` naming what came
    (not JSON, or a key twice in one object)."""
    if not body.removeprefix(codecs.BOM_UTF8).strip():
        return None
    try:
        return parse_json(json_text(body))
    except DuplicateKey as dup:
        raise duplicate_key(call, status, dup.key, body, scrub) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        words = server_words(body, content_type, scrub)
        raise EmedgeneUnexpectedResponseError(
            f"Emedgene {call.describe()}: HTTP {status} from {_where(call)} was not JSON "
            f"(content-type {content_type or 'unknown'!r}): {words}",
            operation=call.operation,
            case_name=call.case_name,
            status_code=status,
            server_message=words,
        ) from None


def interpret(
    call: ApiCall,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    scrub: Scrub,
) -> Any:
    """The parsed JSON of an answer to ``call``, or the exception that answer means."""
    content_type = headers.get("Content-Type", headers.get("content-type", "")) or ""
    if status in call.expected:
        return decode_json(call, status, body, content_type, scrub)
    words = server_words(body, content_type, scrub)
    facts: dict[str, Any] = {
        "operation": call.operation,
        "case_name": call.case_name,
        "status_code": status,
        "server_message": words,
    }
    if 200 <= status < 300:
        # A 2xx we did not expect (200 for a create): the server did what was asked. Decoding it
        # lets the caller read the result rather than fail a request that succeeded.
        return decode_json(call, status, body, content_type, scrub)
    if status in (401, 403):
        raise AuthRejected(status, words)
    detail = f"HTTP {status} from {_where(call)}: {words}"
    if is_retryable_status(status, idempotent=call.idempotent):
        retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
        raise TransientFailure(detail, status_code=status, retry_after=retry_after, server_message=words)
    if status >= 500 and not call.idempotent:
        raise ambiguous_create(call, detail, status_code=status, server_message=words)
    if status >= 500:  # a 5xx not worth retrying (501, 505, ...): the server cannot do this now
        raise EmedgeneUnavailableError(f"Emedgene {call.describe()}: server error ({detail})", **facts)
    if status == 404:
        raise EmedgeneNotFoundError(f"Emedgene {call.describe()}: not found ({detail})", **facts)
    if 400 <= status < 500:
        raise EmedgeneInvalidRequestError(f"Emedgene {call.describe()}: rejected ({detail})", **facts)
    raise EmedgeneUnexpectedResponseError(f"Emedgene {call.describe()}: unexpected {detail}", **facts)


def ambiguous_create(call: ApiCall, detail: str, **facts: Any) -> EmedgeneError:
    """The error for a POST that may have been applied: never re-sent, so never a second case."""
    return EmedgeneAmbiguousCreateError(
        f"Emedgene {call.describe()}: the request may have been applied but its answer was lost "
        f"({detail}). It was not sent again, so that no second case is created: look the case up "
        "before creating it again.",
        operation=call.operation,
        case_name=call.case_name,
        **facts,
    )


def field_of(call: ApiCall, body: Any, *keys: str, kind: type | tuple[type, ...] = list) -> Any:
    """``body[key]`` for the first of ``keys`` present with the right type, else an unexpected-response
    error that says which keys were there (export answers ``hits`` or ``variants`` [doc][py]). Two
    of ``keys`` present with different values are an unexpected answer too, not a silent choice."""
    if isinstance(body, dict):
        present = [key for key in keys if isinstance(body.get(key), kind)]
        if any(body[key] != body[present[0]] for key in present[1:]):
            # Both ``hits`` and ``variants``, and they differ: which one is the answer is a guess.
            raise EmedgeneUnexpectedResponseError(
                f"Emedgene {call.describe()}: the answer to {_where(call)} holds both "
                f"{' and '.join(map(repr, present))}, and they differ; refusing to choose one",
                operation=call.operation,
                case_name=call.case_name,
            )
        if present:
            return body[present[0]]
        seen = ", ".join(sorted(map(str, body))[:10]) or "none"
    else:
        seen = f"a JSON {type(body).__name__}"
    raise EmedgeneUnexpectedResponseError(
        f"Emedgene {call.describe()}: the answer to {_where(call)} has no {' or '.join(map(repr, keys))} "
        f"(keys: {seen})",
        operation=call.operation,
        case_name=call.case_name,
    )


def records_of(call: ApiCall, body: Any, *keys: str) -> list[Any]:
    """The records of a list answer (an export, candidates; ``field_of``'s rule), refusing an answer
    whose ``total`` says it holds fewer (:func:`check_total`). An answer without ``total`` is taken
    as complete."""
    records = list(field_of(call, body, *keys))
    check_total(call, len(records), body.get("total"))
    return records


def check_total(call: ApiCall, count: int, total: Any) -> None:
    """Refuse an answer of ``count`` records whose ``total`` claims more: the API publishes no paging
    for exports and candidates, so the rest cannot be fetched, and a file written from a short
    answer would pass for the whole result. A ``total`` that is not a number says nothing."""
    if isinstance(total, (int, float)) and not isinstance(total, bool) and total > count:
        raise EmedgeneUnexpectedResponseError(
            f"Emedgene {call.describe()}: the answer to {_where(call)} holds {count} record(s) but its "
            f"'total' is {total}: an incomplete result, refused rather than taken as the whole",
            operation=call.operation,
            case_name=call.case_name,
        )


def status_field(call: ApiCall, body: Any) -> str:
    """The ``status`` of a case answer. A blank, missing or non-string status is an unexpected
    answer, not a status: a wait must neither end on it nor guess what it means. Both clients read
    the status here, so the sync and async paths cannot disagree."""
    value = body.get("status") if isinstance(body, dict) else None
    if isinstance(value, str) and value.strip():
        return value
    if not isinstance(body, dict) or "status" not in body:
        field_of(call, body, "status", kind=str)  # raises, naming what came instead
    raise EmedgeneUnexpectedResponseError(
        f"Emedgene {call.describe()}: the answer to {_where(call)} has no usable 'status' "
        f"(got {json.dumps(value, default=str)[:100]})",
        operation=call.operation,
        case_name=call.case_name,
    )


def interpret_login(
    creds: Credentials,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    scrub: Scrub,
    *,
    default_lifetime: float,
) -> Token:
    """The token of a login answer, or the error it means. A login changes nothing on the server,
    so every transient failure (429, 5xx) is retried; 4xx means wrong credentials or wrong URL."""
    content_type = headers.get("Content-Type", headers.get("content-type", "")) or ""
    facts: dict[str, Any] = {"operation": "login", "status_code": status}
    if 200 <= status < 300:
        try:
            parsed: Any = parse_json(json_text(body))
        except DuplicateKey as dup:
            # Which token is ours would be a guess; the answer is not shown: it carries tokens.
            raise EmedgeneUnexpectedResponseError(
                f"Emedgene {creds.describe()}: HTTP {status} names the key {trim(dup.key, 80, scrub)!r} "
                "twice in one object; refusing to choose a value (the answer is not shown: it "
                "carries credentials)",
                **facts,
            ) from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
        token = parse_token(parsed, default_lifetime=default_lifetime)
        if token is not None:
            return token
        words = (
            server_words(body, content_type, scrub) if parsed is None else "(no access_token in the answer)"
        )
        raise EmedgeneUnexpectedResponseError(
            f"Emedgene {creds.describe()}: HTTP {status} without an access_token: {words}",
            server_message=words,
            **facts,
        )
    words = server_words(body, content_type, scrub)
    if status == 429 or status >= 500:
        raise TransientFailure(
            f"HTTP {status} from {creds.describe()}: {words}",
            status_code=status,
            retry_after=parse_retry_after(headers.get("Retry-After") or headers.get("retry-after")),
            server_message=words,
        )
    login_url = " and the extra 'login_url'" if creds.auth_type == "api_key" else ""
    hint = f" (check the host{login_url})" if status in (404, 405) else ""
    raise EmedgeneAuthError(
        f"Emedgene {creds.describe()} failed: HTTP {status}: {words}{hint}", server_message=words, **facts
    )


def retries_exhausted(call: ApiCall, failure: TransientFailure, attempts: int) -> EmedgeneError:
    """The final error once a transient failure outlasted every attempt."""
    message = f"Emedgene {call.describe()}: still failing after {attempts} attempt(s): {failure.detail}"
    facts: dict[str, Any] = {
        "operation": call.operation,
        "case_name": call.case_name,
        "status_code": failure.status_code,
        "server_message": failure.server_message,
    }
    if failure.status_code == 429:
        return EmedgeneRateLimitedError(message, retry_after=failure.retry_after, **facts)
    return EmedgeneUnavailableError(message, **facts)


def fresh_token_refused(call: ApiCall, again: AuthRejected) -> EmedgeneError:
    """A call refused (401/403) even with a token issued just now: a permission problem."""
    return EmedgeneAuthError(
        f"Emedgene {call.describe()}: HTTP {again.status_code} from {call.method} {call.path} even "
        f"with a fresh token: {again.server_message} (does this user have access?)",
        operation=call.operation,
        case_name=call.case_name,
        status_code=again.status_code,
        server_message=again.server_message,
    )


def tls_failed(call: ApiCall, base_url: str, detail: str) -> EmedgeneError:
    """Certificate verification failed: a setting to fix, never retried."""
    return EmedgeneConfigError(
        f"Emedgene {call.describe()}: TLS verification failed for {base_url}: {detail[:300]}. For a lab "
        "proxy or the simulator's certificate set the connection extra 'verify' to the CA bundle's path.",
        operation=call.operation,
        case_name=call.case_name,
    )


def not_built(call: ApiCall, detail: str) -> EmedgeneError:
    """The HTTP library refused the request (a header, the URL) before sending anything."""
    return EmedgeneConfigError(
        f"Emedgene {call.describe()}: the request to {call.method} {call.path} could not be built: "
        f"{detail[:200]}",
        operation=call.operation,
        case_name=call.case_name,
    )


def transport_failure(call: ApiCall, detail: str, *, never_sent: bool) -> Exception:
    """A connection-level failure: retried when repeating is safe (a read, or nothing was sent),
    otherwise the create may have been applied and is reported as ambiguous."""
    if call.idempotent or never_sent:
        return TransientFailure(detail)
    return ambiguous_create(call, detail)
