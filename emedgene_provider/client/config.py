"""From an Airflow connection's fields to a client configuration, without Airflow.

The hook (sync) and the trigger (async, which reads the connection through Airflow's async path)
both call :func:`config_from_connection`, so a connection means the same thing to both. Every
extra, its default and its bounds are declared in :mod:`emedgene_provider.client.settings`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from emedgene_provider.client import status as status_lifecycle
from emedgene_provider.client.auth import AuthType, Credentials, derive_login_url
from emedgene_provider.client.create import DEFAULT_RECONCILE_WINDOW
from emedgene_provider.client.endpoints import case_path_segment
from emedgene_provider.client.errors import EmedgeneConfigError
from emedgene_provider.client.process import MAX_CA_CONTEXTS, PROCESS
from emedgene_provider.client.ratelimit import DEFAULT_REQUESTS_PER_SECOND
from emedgene_provider.client.retry import RetryPolicy
from emedgene_provider.client.settings import SETTINGS

DEFAULT_TIMEOUT = SETTINGS["timeout"].number_default
DEFAULT_SESSION_LIFETIME = SETTINGS["session_lifetime"].number_default
DEFAULT_MAX_RETRIES = int(SETTINGS["max_retries"].number_default)
DEFAULT_RETRY_MAX_WAIT = SETTINGS["retry_max_wait"].number_default
DEFAULT_CASE_URL_TEMPLATE = str(SETTINGS["case_url_template"].default)
DEFAULT_MAX_RESPONSE_MB = SETTINGS["max_response_mb"].number_default
DEFAULT_MAX_CONNECTIONS = int(SETTINGS["max_connections"].number_default)
#: Each call (connect, send, headers, body) ends within this many ``timeout``\ s, retries aside:
#: ``timeout`` bounds each single wait, this the whole, so a server that drips a byte at a time
#: cannot hold a worker.
DEADLINE_FACTOR = 4.0

#: (minimum, maximum) of each number extra. Beyond the maximum a value is a typo or a unit mistake
#: (milliseconds for seconds) that would hold a worker for days; nan and inf are refused too.
NUMBER_LIMITS: dict[str, tuple[float, float]] = {
    name: setting.bounds for name, setting in SETTINGS.items() if setting.bounds is not None
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

#: Extras this provider reads; anything else is reported, since a misspelt ``verfy`` would
#: otherwise silently leave a setting at its default.
KNOWN_EXTRAS = tuple(SETTINGS)
#: Extras renamed before 1.0 because Airflow masks every extra whose name holds a sensitive word
#: ("token" is one): their values were shown as *** in logs, the UI and the REST API, and any
#: other text equal to a value (a lifetime of 28800) was masked too. Refused with the new name.
RENAMED_EXTRAS = {"token_url": "login_url", "token_lifetime": "session_lifetime"}


def _named(name: str) -> str:
    """An unknown extra, with what it is now called or the known extra it most looks like."""
    if name in RENAMED_EXTRAS:
        return f"{name!r} (renamed {RENAMED_EXTRAS[name]!r}: Airflow masks names holding 'token')"
    close = difflib.get_close_matches(name.lower(), KNOWN_EXTRAS, n=1, cutoff=0.75)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs. ``on_secret`` is called with every secret as soon as it is known
    (the hook passes Airflow's ``mask_secret``)."""

    credentials: Credentials
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT
    session_lifetime: float = DEFAULT_SESSION_LIFETIME
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=DEFAULT_MAX_RETRIES + 1, max_wait=DEFAULT_RETRY_MAX_WAIT
        )
    )
    case_url_template: str | None = None
    #: The largest JSON answer read into memory, in bytes (the extra ``max_response_mb``).
    max_response_bytes: int = int(DEFAULT_MAX_RESPONSE_MB * 1024 * 1024)
    #: The lab's custom statuses (between Delivered and Finalized), from the extra ``custom_statuses``.
    custom_statuses: tuple[str, ...] = ()
    #: Seconds an idempotency key must stay absent after an unclear create before it is created
    #: again (the extra ``reconcile_window``; see :mod:`emedgene_provider.client.create`).
    reconcile_window: float = DEFAULT_RECONCILE_WINDOW
    #: The async client's connection pool size (the extra ``max_connections``): every trigger of a
    #: triggerer on this tenant shares that one pool (:func:`emedgene_provider.client.aio.shared_client`).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Requests per second to this tenant from the whole process (the extra ``requests_per_second``;
    #: 0: no limit; see :mod:`emedgene_provider.client.ratelimit`).
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    #: Whether the connection has a ``webhook_secret``: deferred waits then sleep until a webhook
    #: hint or ``webhook_poll_interval`` (the secret itself stays with the receiver).
    webhooks: bool = False
    webhook_poll_interval: float = SETTINGS["webhook_poll_interval"].number_default
    #: Whether case events carry the case as ``partition_key`` (the extra ``case_event_partitions``).
    case_event_partitions: bool = False
    on_secret: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    @property
    def deadline(self) -> float:
        """Seconds one attempt may take in all, headers and body included (``DEADLINE_FACTOR``
        times ``timeout``): a server that drips its answer is cut off here."""
        return self.timeout * DEADLINE_FACTOR

    def case_url(self, case_name: str) -> str:
        """The case's page on the tenant, for the operators' "Emedgene case" link.

        The page URL is not published [assumed]: the default is ``{base_url}/case/{case_name}``, and
        the extra ``case_url_template`` (with ``{base_url}`` and ``{case_name}``) overrides it.
        """
        template = self.case_url_template or DEFAULT_CASE_URL_TEMPLATE
        return template.format(base_url=self.base_url, case_name=case_path_segment(case_name))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain_http_refused(url: str, allow_http: bool) -> bool:
    """Plain http is for loopback (the simulator) or an explicit ``allow_http``: the real service is
    HTTPS only, and a password or key sent in clear text is lost."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname or "")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise EmedgeneConfigError(f"Emedgene connection extra {name!r} must be true or false, not {value!r}.")


def _number(name: str, value: Any, default: float | None = None) -> float:
    """The number extra ``name``, or its default (declared, unless ``default`` is given) when it is
    blank; EmedgeneConfigError naming the extra for anything else than a finite number within its
    limits (:data:`NUMBER_LIMITS`), or a fraction for an integer extra (``max_retries``)."""
    setting = SETTINGS[name]
    if value in (None, ""):
        return setting.number_default if default is None else default
    low, high = NUMBER_LIMITS[name]
    try:
        if isinstance(value, bool):  # JSON true is not 1 second
            raise TypeError
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise EmedgeneConfigError(
            f"Emedgene connection extra {name!r} must be a number, not {value!r}."
        ) from None
    if not math.isfinite(number):
        raise EmedgeneConfigError(
            f"Emedgene connection extra {name!r} must be a finite number, not {value!r}."
        )
    if number < low:
        raise EmedgeneConfigError(f"Emedgene connection extra {name!r} must be at least {low:g}.")
    if number > high:
        raise EmedgeneConfigError(f"Emedgene connection extra {name!r} must be at most {high:g}.")
    if setting.kind == "integer" and not number.is_integer():
        raise EmedgeneConfigError(
            f"Emedgene connection extra {name!r} must be a whole number, not {value!r}."
        )
    return number


def parse_custom_statuses(value: Any) -> tuple[str, ...]:
    """The extra ``custom_statuses``: a JSON list, or (from the UI form) a JSON-list string or a
    comma-separated string. Only declared statuses count as delivered (status.py fails closed), so
    a value that cannot be read is an error rather than silently declaring nothing."""
    name = status_lifecycle.CUSTOM_STATUSES_EXTRA
    if value in (None, ""):
        return ()
    items: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                items = json.loads(text)
            except ValueError:
                raise EmedgeneConfigError(
                    f"Emedgene connection extra {name!r} is not a valid JSON list: {value!r}."
                ) from None
        else:
            items = text.split(",")
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise EmedgeneConfigError(
            f"Emedgene connection extra {name!r} must be a list of status names (or a comma-separated "
            f"string), not {value!r}."
        )
    declared = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    clashing = [item for item in declared if status_lifecycle.is_lifecycle_status(item)]
    if clashing:
        raise EmedgeneConfigError(
            f"Emedgene connection extra {name!r} lists {', '.join(map(repr, clashing))}, which the "
            "Emedgene lifecycle already defines; list only the lab's own statuses."
        )
    return declared


def _userinfo(url: str) -> str | None:
    """The ``user:password`` in front of ``@`` in ``url``'s authority, if there is one."""
    text = url.strip()
    rest = text.split("://", 1)[1] if "://" in text else text
    authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0]
    userinfo, at, _ = authority.rpartition("@")
    return userinfo if at else None


def _without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` taken out, to be shown in a message."""
    userinfo = _userinfo(url)
    return url.strip().replace(userinfo + "@", "", 1) if userinfo is not None else url


def refuse_userinfo(what: str, url: str, on_secret: Callable[[str], None] | None = None) -> None:
    """Refuse credentials written into a URL (``https://user:pass@host``): requests would send them
    as Basic auth to whatever answers, and the URL is logged and shown in errors. The message shows
    the URL without them, and ``on_secret`` (the masker) learns them first."""
    userinfo = _userinfo(url)
    if userinfo is None:
        return
    if on_secret and ":" in userinfo:  # a bare user name is no secret
        password = userinfo.partition(":")[2]
        for secret in {userinfo, password, unquote(userinfo), unquote(password)}:
            if secret:
                on_secret(secret)
    raise EmedgeneConfigError(
        f"Emedgene connection {what} {_without_userinfo(url)!r} has credentials written into it "
        "('user:password@'), which are refused: they would be sent as Basic auth and shown in logs. "
        "Put the login and password in the connection's own fields (an API key in the extra 'api_key')."
    )


def normalise_base_url(host: str | None, *, allow_http: bool = False) -> str:
    """``lab.emg.illumina.com`` → ``https://lab.emg.illumina.com``; keeps an explicit scheme and port.

    Plain ``http://`` is refused unless the host is loopback (the simulator) or ``allow_http`` is
    set: the real service is HTTPS only, and a password sent in clear text is a password lost.
    """
    text = (host or "").strip()
    if not text:
        raise EmedgeneConfigError(
            "Emedgene connection has no host: set it to the tenant, e.g. https://lab.emedgene.com."
        )
    refuse_userinfo("host", text)
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EmedgeneConfigError(f"Emedgene connection host {host!r} is not an http(s) URL or host name.")
    if _plain_http_refused(text, allow_http):
        raise EmedgeneConfigError(
            f"Emedgene connection host {host!r} uses plain http to a non-loopback host; use https, "
            "or set the extra 'allow_http': true if you really mean it."
        )
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return f"{parts.scheme}://{parts.netloc}{path}"


_UI_PREFIX = "extra__emedgene__"


def parse_extra(extra: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The extras as a dict. Forms of older Airflow UIs save ``extra__emedgene__<name>`` and empty
    strings for fields left blank: both are folded here, so blank means default."""
    if extra in (None, ""):
        return {}
    if isinstance(extra, Mapping):
        parsed: Any = dict(extra)
    else:
        try:
            parsed = json.loads(str(extra))
        except ValueError:
            raise EmedgeneConfigError("Emedgene connection extra is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise EmedgeneConfigError("Emedgene connection extra must be a JSON object.")
    return {
        (k[len(_UI_PREFIX) :] if k.startswith(_UI_PREFIX) else k): v
        for k, v in parsed.items()
        if v not in (None, "")
    }


def load_ca_bundle(path: str) -> ssl.SSLContext:
    """The TLS context of the CA bundle ``verify`` names. Loaded when the connection is read, so a
    file that is not PEM certificates is a configuration error for both clients (requests and
    aiohttp would each fail their own way, aiohttp with a bare ``ssl.SSLError`` at the first call);
    the async client loads it through here too. One context per file version, shared (contexts
    are read-only once built, kept in :attr:`ProcessState.ca_contexts`): a triggerer reading 5,000
    waits' connections parsed the same PEM file 5,000 times (~0.4 ms each, most of a wait's
    start-up). A file that changes on disk is loaded again, so a bundle that went bad since is
    still reported."""
    try:
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        contexts = PROCESS.ca_contexts
        context = contexts.get(key)
        if context is None:
            context = ssl.create_default_context(cafile=path)
            if len(contexts) >= MAX_CA_CONTEXTS:  # never grow without bound
                contexts.clear()
            contexts[key] = context
        return context
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)[:100]
        raise EmedgeneConfigError(
            f"Emedgene connection extra 'verify' is {path!r}, which is not a CA bundle of PEM "
            f"certificates ({reason}): name the PEM file of the CA that signed the server's certificate."
        ) from None


def config_from_connection(
    *,
    host: str | None,
    login: str | None,
    password: str | None,
    extra: str | Mapping[str, Any] | None,
    port: int | None = None,
    schema: str | None = None,
    on_secret: Callable[[str], None] | None = None,
    load_ca: bool = True,
) -> ClientConfig:
    """Build a :class:`ClientConfig` from an Airflow connection's fields; raise on what can't work.

    ``on_secret`` receives the password and every secret extra (the API key, the webhook secret)
    before anything else can fail, so that even an error raised here cannot carry them unmasked
    into a log. ``load_ca=False`` leaves the CA bundle ``verify`` names unparsed (its file must
    still exist), for a caller on an event loop that parses it in a thread
    (:func:`load_ca_bundle`).
    """
    extras = parse_extra(extra)
    api_key = extras.get("api_key") or None
    if on_secret:
        secret_extras = [extras.get(name) for name, setting in SETTINGS.items() if setting.secret]
        for secret in (password, *secret_extras):
            if secret:
                on_secret(str(secret))
    unknown = sorted(set(extras) - set(KNOWN_EXTRAS))
    if unknown:
        raise EmedgeneConfigError(
            f"Emedgene connection has unknown extra(s) {', '.join(_named(name) for name in unknown)}; "
            f"known extras: {', '.join(KNOWN_EXTRAS)}."
        )
    raw_host = host or ""
    refuse_userinfo("host", raw_host, on_secret)
    if schema and "://" not in raw_host and raw_host:
        raw_host = f"{schema}://{raw_host}"
    if port and raw_host and urlsplit(raw_host if "://" in raw_host else "https://" + raw_host).port is None:
        raw_host = f"{raw_host.rstrip('/')}:{port}"
    allow_http = _bool("allow_http", extras.get("allow_http", SETTINGS["allow_http"].default))
    base_url = normalise_base_url(raw_host, allow_http=allow_http)

    auth_type = extras.get("auth_type")
    auth_types = [value for value, _ in SETTINGS["auth_type"].choices]
    if auth_type not in (None, "", *auth_types):
        raise EmedgeneConfigError(
            f"Emedgene connection extra 'auth_type' must be {' or '.join(map(repr, auth_types))}, "
            f"not {auth_type!r}."
        )
    if not auth_type:
        if api_key and (login or password):
            raise EmedgeneConfigError(
                "Emedgene connection has both a login/password and an api_key: set the extra "
                "'auth_type' to 'password' or 'api_key' to say which to use."
            )
        auth_type = "api_key" if api_key else "password"
    resolved: AuthType = "api_key" if auth_type == "api_key" else "password"
    login_url = extras.get("login_url") or (derive_login_url(base_url) if resolved == "api_key" else None)
    if login_url:
        login_url = str(login_url)
        refuse_userinfo("extra 'login_url'", login_url, on_secret)
        if _plain_http_refused(login_url, allow_http):
            raise EmedgeneConfigError(
                f"Emedgene connection extra 'login_url' {login_url!r} uses plain http to a non-loopback "
                "host; use https, or set 'allow_http': true."
            )
    credentials = Credentials(
        base_url=base_url,
        auth_type=resolved,
        username=login or None,
        password=password or None,
        api_key=str(api_key) if api_key else None,
        login_url=login_url,
    )

    verify_raw = extras.get("verify", SETTINGS["verify"].default)
    verify: bool | str
    if isinstance(verify_raw, bool):
        verify = verify_raw
    elif str(verify_raw).strip().lower() in _TRUE | _FALSE:
        verify = _bool("verify", verify_raw)
    else:
        verify = str(verify_raw)  # a CA bundle path, for a lab's proxy or the simulator
        if not os.path.isfile(verify):
            raise EmedgeneConfigError(
                f"Emedgene connection extra 'verify' is {verify!r}: neither true/false nor the path of "
                "an existing CA bundle file."
            )
        if load_ca:
            load_ca_bundle(verify)
    # The rate's default is read at call time, so that a test suite can make connections unlimited.
    overrides = {"requests_per_second": DEFAULT_REQUESTS_PER_SECOND}
    numbers = {name: _number(name, extras.get(name), overrides.get(name)) for name in NUMBER_LIMITS}
    case_url_template = extras.get("case_url_template") or None
    if case_url_template is not None:
        try:
            str(case_url_template).format(base_url="", case_name="")
        except (KeyError, IndexError, ValueError):
            raise EmedgeneConfigError(
                f"Emedgene connection extra 'case_url_template' {case_url_template!r} may use only "
                "{base_url} and {case_name}."
            ) from None
    return ClientConfig(
        credentials=credentials,
        verify=verify,
        timeout=numbers["timeout"],
        session_lifetime=numbers["session_lifetime"],
        max_response_bytes=int(numbers["max_response_mb"] * 1024 * 1024),
        retry=RetryPolicy(max_attempts=int(numbers["max_retries"]) + 1, max_wait=numbers["retry_max_wait"]),
        case_url_template=case_url_template,
        custom_statuses=parse_custom_statuses(extras.get("custom_statuses")),
        reconcile_window=numbers["reconcile_window"],
        max_connections=int(numbers["max_connections"]),
        requests_per_second=numbers["requests_per_second"],
        webhooks=bool(extras.get("webhook_secret")),
        webhook_poll_interval=numbers["webhook_poll_interval"],
        case_event_partitions=_bool("case_event_partitions", extras.get("case_event_partitions", False)),
        on_secret=on_secret,
    )


def config_from_conn(
    conn: Any, *, on_secret: Callable[[str], None] | None = None, load_ca: bool = True
) -> ClientConfig:
    """:func:`config_from_connection` for an Airflow ``Connection`` (or anything with its
    attributes), read by the hook and, after Airflow's async fetch, by the trigger."""
    return config_from_connection(
        host=conn.host,
        login=conn.login,
        password=conn.password,
        extra=conn.extra,
        port=conn.port,
        schema=conn.schema,
        on_secret=on_secret,
        load_ca=load_ca,
    )
