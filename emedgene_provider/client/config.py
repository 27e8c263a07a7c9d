"""From an Airflow connection's fields to a client configuration, without Airflow.

The hook (sync) and the trigger (async, which reads the connection through Airflow's async path)
both call :func:`config_from_connection`, so a connection means the same thing to both. Every
extra is documented in the README's connection table.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from emedgene_provider.client.auth import AuthType, Credentials, derive_token_url
from emedgene_provider.client.endpoints import case_path_segment
from emedgene_provider.client.errors import EmedgeneConfigError
from emedgene_provider.client.retry import RetryPolicy

DEFAULT_TIMEOUT = 30.0
DEFAULT_TOKEN_LIFETIME = 3600.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_MAX_WAIT = 60.0
DEFAULT_CASE_URL_TEMPLATE = "{base_url}/case/{case_name}"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

#: Extras this provider reads; anything else is reported, since a misspelt ``verfy`` would
#: otherwise silently leave a setting at its default.
KNOWN_EXTRAS = (
    "api_key",
    "token_url",
    "auth_type",
    "verify",
    "timeout",
    "token_lifetime",
    "max_retries",
    "retry_max_wait",
    "allow_http",
    "case_url_template",
)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs. ``on_secret`` is called with every secret as soon as it is known
    (the hook passes Airflow's ``mask_secret``)."""

    credentials: Credentials
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT
    token_lifetime: float = DEFAULT_TOKEN_LIFETIME
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    case_url_template: str | None = None
    on_secret: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

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


def _number(name: str, value: Any, default: float, *, minimum: float = 0.0) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EmedgeneConfigError(
            f"Emedgene connection extra {name!r} must be a number, not {value!r}."
        ) from None
    if number < minimum:
        raise EmedgeneConfigError(f"Emedgene connection extra {name!r} must be at least {minimum:g}.")
    return number


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


def config_from_connection(
    *,
    host: str | None,
    login: str | None,
    password: str | None,
    extra: str | Mapping[str, Any] | None,
    port: int | None = None,
    schema: str | None = None,
    on_secret: Callable[[str], None] | None = None,
) -> ClientConfig:
    """Build a :class:`ClientConfig` from an Airflow connection's fields; raise on what can't work.

    ``on_secret`` receives the password and API key before anything else can fail, so that even
    an error raised here cannot carry them unmasked into a log.
    """
    extras = parse_extra(extra)
    api_key = extras.get("api_key") or None
    if on_secret:
        for secret in (password, api_key):
            if secret:
                on_secret(str(secret))
    unknown = sorted(set(extras) - set(KNOWN_EXTRAS))
    if unknown:
        raise EmedgeneConfigError(
            f"Emedgene connection has unknown extra(s) {', '.join(unknown)}; known extras: "
            f"{', '.join(KNOWN_EXTRAS)}."
        )
    raw_host = host or ""
    if schema and "://" not in raw_host and raw_host:
        raw_host = f"{schema}://{raw_host}"
    if port and raw_host and urlsplit(raw_host if "://" in raw_host else "https://" + raw_host).port is None:
        raw_host = f"{raw_host.rstrip('/')}:{port}"
    allow_http = _bool("allow_http", extras.get("allow_http", False))
    base_url = normalise_base_url(raw_host, allow_http=allow_http)

    auth_type = extras.get("auth_type")
    if auth_type not in (None, "", "password", "api_key"):
        raise EmedgeneConfigError(
            f"Emedgene connection extra 'auth_type' must be 'password' or 'api_key', not {auth_type!r}."
        )
    if not auth_type:
        if api_key and (login or password):
            raise EmedgeneConfigError(
                "Emedgene connection has both a login/password and an api_key: set the extra "
                "'auth_type' to 'password' or 'api_key' to say which to use."
            )
        auth_type = "api_key" if api_key else "password"
    resolved: AuthType = "api_key" if auth_type == "api_key" else "password"
    token_url = extras.get("token_url") or (derive_token_url(base_url) if resolved == "api_key" else None)
    if token_url:
        token_url = str(token_url)
        if _plain_http_refused(token_url, allow_http):
            raise EmedgeneConfigError(
                f"Emedgene connection extra 'token_url' {token_url!r} uses plain http to a non-loopback "
                "host; use https, or set 'allow_http': true."
            )
    credentials = Credentials(
        base_url=base_url,
        auth_type=resolved,
        username=login or None,
        password=password or None,
        api_key=str(api_key) if api_key else None,
        token_url=token_url,
    )

    verify_raw = extras.get("verify", True)
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
    max_retries = int(_number("max_retries", extras.get("max_retries"), DEFAULT_MAX_RETRIES))
    retry_max_wait = _number("retry_max_wait", extras.get("retry_max_wait"), DEFAULT_RETRY_MAX_WAIT)
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
        timeout=_number("timeout", extras.get("timeout"), DEFAULT_TIMEOUT, minimum=0.001),
        token_lifetime=_number(
            "token_lifetime", extras.get("token_lifetime"), DEFAULT_TOKEN_LIFETIME, minimum=1.0
        ),
        retry=RetryPolicy(max_attempts=max_retries + 1, max_wait=retry_max_wait),
        case_url_template=case_url_template,
        on_secret=on_secret,
    )


def config_from_conn(conn: Any, *, on_secret: Callable[[str], None] | None = None) -> ClientConfig:
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
    )
