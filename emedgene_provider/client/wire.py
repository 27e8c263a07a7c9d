"""What both transports (requests and aiohttp) do alike on the wire, whatever the server sends.

- **No redirect is followed**, for any call: a 3xx is an error naming the status and the target's
  origin only, and nothing is sent there
  (:class:`~emedgene_provider.client.errors.EmedgeneRedirectError`).
- **No answer is read past a cap**: a JSON answer bigger than the connection's ``max_response_mb``
  is an error as soon as that is known (its ``Content-Length``, or the byte that crosses the cap);
  an error answer is read only as far as the server's words need.
- **TLS to a server that speaks plain http** is named for what it is, in both clients, rather than
  taken for a certificate problem or a transient failure.
- **A call that outlives its deadline** is reported as such (the transports enforce it: aiohttp's
  total timeout, :mod:`emedgene_provider.client.deadline` for requests).
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator, Mapping
from urllib.parse import urljoin, urlsplit

from emedgene_provider.client.endpoints import LOGIN_PATH, ApiCall
from emedgene_provider.client.errors import (
    EmedgeneConfigError,
    EmedgeneError,
    EmedgeneRedirectError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.responses import ambiguous_create, transport_failure

#: Bytes asked of the HTTP library per read.
CHUNK_BYTES = 64 * 1024
#: The most of a non-2xx answer that is read: its first bytes hold the server's words (an HTML
#: page's title, a JSON message); the rest is never needed and may be endless.
ERROR_BODY_BYTES = 64 * 1024
_MB = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: OpenSSL's reasons when the peer answered a ClientHello in plain text (an http server): the
#: "record" it got was ``HTTP/1.1 400 ...``.
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
    }
)
_NOT_TLS_WORDS = ("wrong version number", "record layer failure", "http request", "packet length too long")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: requests and aiohttp nest the real error in ``args``,
    ``reason``, ``__cause__`` or ``__context__``."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(n for n in nested if isinstance(n, BaseException))


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: never its user, path or query, which may hold secrets."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "(an unreadable address)"
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = port or _DEFAULT_PORTS.get(scheme)
    if not scheme or not host:
        return "(an unreadable address)"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


#: The statuses HTTP libraries follow (requests' ``REDIRECT_STATI``, aiohttp's own list).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def is_redirect(status: int, location: str | None) -> bool:
    """Whether an answer asks to go elsewhere: a redirect status, or any 3xx naming a
    ``Location`` (300, 305). A bare 304 is no redirect, just an unexpected answer."""
    return status in REDIRECT_STATUSES or (300 <= status < 400 and bool(location and location.strip()))


def _api_key_login(call: ApiCall) -> bool:
    """Whether ``call`` is the API-key token exchange, the one call the extra 'login_url' points
    at; a password login goes to the connection's host, where that extra would mislead."""
    return call.operation == "login" and call.path != LOGIN_PATH


def redirected(call: ApiCall, status: int, location: str | None, request_url: str) -> EmedgeneError:
    """The error for a 3xx answer to ``call`` sent to ``request_url``; nothing is sent to ``location``.

    Raised before the body is read. A 303 to a create ("done, see there") means the case may well
    exist, so it is an ambiguous create (looked up before any second create); every other 3xx is
    an answer of "not here", a connection pointing at the wrong place, never retried.
    """
    target = origin(urljoin(request_url, location.strip())) if location and location.strip() else None
    where = f"to {target}" if target else "without a Location"
    detail = f"HTTP {status} from {call.method} {call.path} redirects {where}"
    if status == 303 and not call.idempotent:
        return ambiguous_create(call, f"{detail}, which means the server did it", status_code=status)
    token_hint = " and the extra 'login_url'" if _api_key_login(call) else ""
    return EmedgeneRedirectError(
        f"Emedgene {call.describe()}: {detail}. Redirects are never followed (they would carry "
        f"credentials or case data to another address): check the connection's host{token_hint} "
        "(scheme, host, port and path), e.g. https rather than http.",
        operation=call.operation,
        case_name=call.case_name,
        status_code=status,
        location_origin=target,
    )


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The ``Content-Length`` of an answer whose body arrives as sent (not compressed), else None."""
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    raw = (headers.get("Content-Length") or "").strip()
    if encoding != "identity" or not raw.isdigit():
        return None
    return int(raw)


def too_large(call: ApiCall, status: int, cap: int) -> EmedgeneError:
    """The error for a 2xx answer bigger than ``cap`` bytes. A create's answer was a success (the
    case exists) whose name could not be read: an ambiguous create, so it is looked up by its key."""
    detail = (
        f"the HTTP {status} answer to {call.method} {call.path} is larger than the connection's "
        f"max_response_mb ({cap / _MB:g} MB) and was not read further"
    )
    if not call.idempotent:
        return ambiguous_create(call, detail, status_code=status)
    return EmedgeneUnexpectedResponseError(
        f"Emedgene {call.describe()}: {detail}. Raise the extra 'max_response_mb' if this answer is genuine.",
        operation=call.operation,
        case_name=call.case_name,
        status_code=status,
    )


class CappedBody:
    """Collects an answer's body chunk by chunk, never past its cap.

    A success (2xx) may be as large as ``cap`` bytes, beyond which :func:`too_large` is raised; any
    other answer is cut at :data:`ERROR_BODY_BYTES` (or ``cap``), since only its first words count.

    :param call: the call answered.
    :param status: the answer's HTTP status.
    :param cap: the connection's ``max_response_bytes``.
    :param declared: the answer's ``Content-Length``, if known (:func:`declared_length`).
    """

    def __init__(self, call: ApiCall, status: int, cap: int, declared: int | None = None) -> None:
        self.call, self.status, self.cap = call, status, cap
        self.success = 200 <= status < 300
        self.limit = cap if self.success else min(cap, ERROR_BODY_BYTES)
        self._parts: list[bytes] = []
        self._size = 0
        if self.success and declared is not None and declared > self.limit:
            raise too_large(call, status, cap)

    def feed(self, chunk: bytes) -> bool:
        """Keep ``chunk``; False once nothing more is wanted (the rest must not be read)."""
        room = self.limit - self._size
        if len(chunk) > room:
            if self.success:
                raise too_large(self.call, self.status, self.cap)
            self._parts.append(chunk[:room])
            self._size = self.limit
            return False
        self._parts.append(chunk)
        self._size += len(chunk)
        return True

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)


def speaks_no_tls(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a TLS handshake that a plain-http server answered."""
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLError):
            reason = str(getattr(cause, "reason", "") or "").upper()
            text = str(cause).lower()
            if reason in _NOT_TLS_REASONS or any(words in text for words in _NOT_TLS_WORDS):
                return True
    return False


def no_tls(call: ApiCall, url: str) -> EmedgeneError:
    """https to a server that answers in plain http: a setting to fix (scheme or port), never
    retried, and not a certificate matter (``verify`` would not help)."""
    token_hint = " (or the extra 'login_url')" if _api_key_login(call) else ""
    return EmedgeneConfigError(
        f"Emedgene {call.describe()}: the server at {origin(url)} does not speak TLS (it answered the "
        f"https handshake in plain http): check the scheme and port of the connection's host{token_hint}. "
        "Only a loopback simulator, or a host allowed by the extra 'allow_http', may use http://.",
        operation=call.operation,
        case_name=call.case_name,
    )


def deadline_passed(call: ApiCall, deadline: float, timeout: float) -> Exception:
    """A call that got no complete answer within its deadline (a server dripping its answer): a
    transient failure for a read, an ambiguous create for a create (it did reach the server)."""
    detail = (
        f"no complete answer to {call.method} {call.path} within {deadline:g} s "
        f"(the call's deadline: {deadline / timeout:g} x the connection's timeout of {timeout:g} s)"
    )
    return transport_failure(call, detail, never_sent=False)


def connect_reason(exc: BaseException, timeout: float) -> str | None:
    """Why no connection was made, in words, from what ``exc`` wraps; None if one was made (or
    the cause is not known). Both transports wrap the socket's own error: requests in urllib3's
    ``NewConnectionError``/``NameResolutionError``, aiohttp in ``ClientConnectorError``."""
    for cause in causes(exc):
        name = type(cause).__name__
        if isinstance(cause, socket.gaierror) or name in ("NameResolutionError", "ClientConnectorDNSError"):
            return "the host name did not resolve (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused (nothing listens on that port)"
        if name in ("ConnectTimeoutError", "ConnectTimeout", "ConnectionTimeoutError") or isinstance(
            cause, socket.timeout
        ):
            return f"connecting timed out after {timeout:g} s"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "the network has no route to the host"
    return None


def unreachable(call: ApiCall, url: str, reason: str) -> str:
    """The detail of a call that could not connect: where, why, and what to check. The transport's
    own words (pool and connection classes, "Max retries exceeded") say none of it."""
    token_hint = " (or the extra 'login_url')" if _api_key_login(call) else ""
    return (
        f"cannot connect to {origin(url)} for {call.method} {call.path}: {reason}. Check the "
        f"connection's host and port{token_hint}, any proxy (HTTPS_PROXY, NO_PROXY), and that this "
        "machine can reach the tenant"
    )
