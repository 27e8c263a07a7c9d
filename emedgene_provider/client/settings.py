"""Every connection extra, declared once: name, type, default, bounds, label, help, secret, choices.

The rest is derived from :data:`SETTINGS`, so nothing can drift from it: the known-extras check
and the number limits (:mod:`emedgene_provider.client.config`), both Airflow majors' connection
forms (:mod:`emedgene_provider.connection_fields`), and the extras tables of the README and
``docs/connection.md`` (:func:`extras_table`; ``tests/unit/client/test_settings.py`` checks the
docs hold exactly what it renders, and ``python -m emedgene_provider.client.settings README.md
docs/connection.md`` rewrites them).

Standard library only: the provider info, which Airflow loads for every command, reads this table.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: JSON-schema types of the form's fields; ``integer`` refuses fractions.
Kind = Literal["string", "number", "integer", "boolean"]
Value = str | float | bool | None


@dataclass(frozen=True)
class Setting:
    """One extra. ``help`` is the form's description and the docs' "what it does" (backticks mark
    code in the docs and are dropped in the form); ``details`` is the README's longer account."""

    name: str
    kind: Kind
    label: str
    help: str
    #: What a blank extra means; None when there is none or it is computed (``shown_default``).
    default: Value = None
    #: The docs' default when it is computed from other fields ("derived", "inferred").
    shown_default: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: How the docs show the bounds: "s" for durations, or a unit written after them ("MB").
    unit: str = ""
    #: The docs' "allowed" when the type, bounds and choices do not say it.
    allowed: str | None = None
    secret: bool = False
    #: A choice list: (value, what the form shows), a blank staying allowed.
    choices: tuple[tuple[str, str], ...] = ()
    #: Suggestions of a free-text field (Airflow 3 lists them as the user types).
    examples: tuple[str, ...] = ()
    #: Airflow 2.11's placeholder; Airflow 3 shows none for an extra, so it must be in ``help`` too.
    placeholder: str | None = None
    details: str = ""

    def __post_init__(self) -> None:
        numeric = self.kind in ("number", "integer")
        if numeric != (self.minimum is not None and self.maximum is not None):
            raise ValueError(f"{self.name}: a number extra, and only one, has both bounds")
        if any("|" in text for text in (self.help, self.details, self.allowed or "")):
            raise ValueError(f"{self.name}: '|' would split its docs' table row")
        if self.placeholder and self.placeholder not in self.help:
            raise ValueError(f"{self.name}: Airflow 3 shows only the help; it must hold the placeholder")

    @property
    def bounds(self) -> tuple[float, float] | None:
        if self.minimum is None or self.maximum is None:
            return None
        return (self.minimum, self.maximum)

    @property
    def number_default(self) -> float:
        """The default of a number extra (the type checker's view of :attr:`default`)."""
        if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
            raise TypeError(f"{self.name} has no number default")
        return float(self.default)

    def doc_default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "none"
        return f"`{_value_text(self.default)}`"

    def doc_allowed(self) -> str:
        if self.allowed is not None:
            return self.allowed
        if self.choices:
            return ", ".join(f"`{value}`" for value, _ in self.choices)
        if self.kind == "boolean":
            return "`true`, `false`"
        if self.secret:
            return "text (masked)"
        if self.bounds is None:
            return "text"
        return _range_text(self) + (", whole" if self.kind == "integer" else "")

    def description(self) -> str:
        """The form's description (both Airflow majors): the help, then range and default, since
        the form shows neither otherwise."""
        parts = [_plain(self.help)]
        if self.bounds is not None:
            whole = "A whole number from" if self.kind == "integer" else "From"
            parts.append(f"{whole} {_range_text(self)}.")
        if self.default is not None and self.shown_default is None:
            parts.append(f"Default {_value_text(self.default)}.")
        return " ".join(parts)


def _plain(text: str) -> str:
    return text.replace("`", "")


def _value_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_DAY = 24 * 3600.0
_YEAR = 365 * _DAY


def _duration(seconds: float) -> str | None:
    """Whole years or days in words; None for what reads best in seconds."""
    for length, word in ((_YEAR, "year"), (_DAY, "day")):
        if seconds >= length and seconds % length == 0:
            count = int(seconds // length)
            return f"{count} {word}{'s' if count > 1 else ''}"
    return None


def _range_text(setting: Setting) -> str:
    low, high = setting.bounds or (0.0, 0.0)
    if setting.unit != "s":
        return f"{low:g} to {high:g}" + (f" {setting.unit}" if setting.unit else "")
    low_words, high_words = _duration(low), _duration(high)
    if low_words is None and high_words is None:
        return f"{low:g} to {high:g} s"
    return f"{low_words or f'{low:g} s'} to {high_words or f'{high:g} s'}"


#: Requests per second to a tenant when the connection does not say.
_RATE = 20.0

_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "api_key",
        "string",
        "Illumina API key",
        "Illumina API key (API-key auth), instead of username and password.",
        secret=True,
        placeholder="Illumina API key (API-key auth)",
        details="Sensitive: masked everywhere.",
    ),
    Setting(
        "login_url",
        "string",
        "API-key login URL",
        "Where the API key is exchanged for a token. Derived for `<tenant>.emg.illumina.com` hosts "
        "(`https://<tenant>.login.illumina.com/platform-services-manager/Token`); required otherwise.",
        shown_default="derived",
        allowed="https URL",
    ),
    Setting(
        "auth_type",
        "string",
        "Auth type",
        "Password or API key; needed only when both a password and an API key are set.",
        shown_default="inferred",
        choices=(("password", "Username and password"), ("api_key", "Illumina API key")),
    ),
    Setting(
        "verify",
        "string",
        "TLS verification",
        "TLS verification: `true`, `false`, or the path of a CA bundle file (a lab proxy, the "
        "simulator's `--tls` CA).",
        default=True,
        allowed="`true`, `false`, a CA bundle path",
        examples=("true", "false"),
        placeholder="true",
        details="Anything else, a typo such as `ture` included, is refused. An explicit `verify` wins "
        "over `REQUESTS_CA_BUNDLE`.",
    ),
    Setting(
        "timeout",
        "number",
        "Request timeout (s)",
        "Seconds one wait on the socket (connecting, each read) may take; a whole call (connect, "
        "headers, body) ends within 4 times `timeout`.",
        default=30.0,
        minimum=0.001,
        maximum=3600.0,
        unit="s",
        details="That bound holds however slowly the server drips its answer, retries aside.",
    ),
    Setting(
        "session_lifetime",
        "number",
        "Session lifetime (s)",
        "Seconds a token is trusted when the login answer carries neither `expires_in` nor a JWT `exp`.",
        default=3600.0,
        minimum=1.0,
        maximum=_YEAR,
        unit="s",
        details="Tokens are renewed before expiry (10 % of the lifetime, at most 5 minutes), and a "
        "401/403 renews at once.",
    ),
    Setting(
        "max_retries",
        "integer",
        "Max retries",
        "Retries of a transient failure (connection, timeout, 429, 502/503/504, 500 on reads).",
        default=5,
        minimum=0.0,
        maximum=100.0,
    ),
    Setting(
        "retry_max_wait",
        "number",
        "Longest retry wait (s)",
        "Cap on one backoff wait and on a server's `Retry-After`.",
        default=60.0,
        minimum=0.0,
        maximum=3600.0,
        unit="s",
    ),
    Setting(
        "allow_http",
        "boolean",
        "Allow plain http",
        "Allow `http://` to a non-loopback host.",
        default=False,
        details="Off by default: the real service is HTTPS only, and loopback (the simulator) is "
        "always allowed.",
    ),
    Setting(
        "case_url_template",
        "string",
        "Case page URL template",
        'The "Emedgene case" link\'s target, with `{base_url}` and `{case_name}`.',
        default="{base_url}/case/{case_name}",
        allowed="text with `{base_url}`, `{case_name}`",
        details="The page URL is not published.",
    ),
    Setting(
        "max_response_mb",
        "number",
        "Largest answer (MB)",
        "The largest JSON answer read into memory; a bigger one is an error. Streamed exports are "
        "capped too.",
        # A 200,000-variant export is about 83 MB of JSON (several times that once parsed): room for
        # it with a margin, while a runaway or hostile answer (2 GB) stops long before it takes a
        # worker's or the triggerer's memory.
        default=256.0,
        minimum=1.0,
        maximum=4096.0,
        unit="MB",
        details="The largest real export, 200,000 variants, is about 83 MB of JSON and takes several "
        "times that once parsed: the default holds it with room, while a runaway answer (2 GB to a "
        "status read) stops long before it takes the worker's or the triggerer's memory. A bigger "
        "answer is read no further (a create's answer: ambiguous, so the case is looked up by its "
        "key). Exports and candidates written to `output_path` are streamed to the file, a few MB in "
        "memory whatever their size, and still capped, so an endless answer cannot fill a disk.",
    ),
    Setting(
        "custom_statuses",
        "string",
        "Custom statuses",
        "The lab's custom statuses (between Delivered and Finalized), comma-separated or as a JSON "
        "list. Only declared ones count as delivered; an unknown status keeps a wait going.",
        allowed="JSON list, or comma-separated",
        details='For example `["Sign-out review", "Awaiting billing"]`; besides them only `Delivered` '
        "and `Finalized` count as delivered (see [Case statuses](#case-statuses)). A lifecycle status "
        "(`Delivered`, `Trash bin`, ...) or anything but a list of names is refused.",
    ),
    Setting(
        "reconcile_window",
        "number",
        "Reconcile window (s)",
        "After an unclear create (answer lost, timeout, 5xx), how long its idempotency key must stay "
        "absent from the case list before the case is created again.",
        default=600.0,
        minimum=0.0,
        maximum=7 * _DAY,
        unit="s",
        details="A case that shows up meanwhile is adopted. Counted from the last attempt that may "
        "have reached the server; set it above the longest delay you see between a create and the "
        "case appearing in the list (see [Never a duplicate case](#never-a-duplicate-case)).",
    ),
    Setting(
        "max_connections",
        "integer",
        "Max connections (triggerer)",
        "HTTP connections kept open at most by the one client every deferred wait on this tenant "
        "shares in a triggerer.",
        # Enough for thousands of waits polling every minute (each poll holds one for a few ms), few
        # enough that neither the triggerer's file descriptors nor the tenant feel them.
        default=100,
        minimum=1.0,
        maximum=1000.0,
        details="That client, shared by every deferred wait on the same connection settings, holds one "
        "connection pool of this size, one TLS context and one token (a login, or a renewal, is made "
        "once and every waiting trigger gets its result). Idle connections are closed after 30 s.",
    ),
    Setting(
        "requests_per_second",
        "number",
        "Requests per second",
        "The most requests per second this process (a worker, the triggerer) sends to this tenant, "
        "shared by every task and wait; `0` for no limit.",
        default=_RATE,
        # Above 10,000/s a client-side limit no longer limits anything.
        minimum=0.0,
        maximum=10000.0,
        details="Each HTTP attempt, sync or async (logins and retries included), waits for its slot. "
        "After a quiet spell one request goes at once (a burst of one), so over any second at most "
        "the rate plus one go out. A `429`/`503` with `Retry-After` pauses every caller of the tenant "
        "in the process, not just the throttled call (for at most `retry_max_wait`). The default is "
        f"{_RATE * 3600:,.0f} requests an hour per process, enough for {_RATE * 60:,.0f} waits "
        "polling every 60 s at full speed; beyond that polls spread out (each waits for its slot) "
        "rather than hammering the tenant. `0` also turns the shared pause off for this connection. "
        "If two connections to one tenant ask for different rates, the lowest wins in that process "
        "until it restarts. See [Running many waits](#running-many-waits--a-whole-cluster).",
    ),
    Setting(
        "webhook_secret",
        "string",
        "Webhook secret",
        "The key Emedgene signs its status webhooks with (Airflow 3): "
        "`X-Emedgene-Signature: sha256=<HMAC-SHA256 of the body>`. Without it the receiver refuses "
        "every webhook for this connection.",
        secret=True,
        details="Sensitive: masked everywhere. The receiver is `POST /emedgene/webhooks/<conn_id>` on "
        "the api-server; see [Status webhooks](#status-webhooks-airflow-3).",
    ),
    Setting(
        "webhook_poll_interval",
        "number",
        "Poll interval with webhooks (s)",
        "With a `webhook_secret` (Airflow 3), the longest a deferred wait goes without reading the "
        "tenant: webhooks wake it within seconds, and this slow poll ends it when one is lost.",
        default=900.0,
        minimum=1.0,
        maximum=_DAY,
        unit="s",
        details="A wait never polls more often than it would without webhooks.",
    ),
    Setting(
        "case_event_partitions",
        "boolean",
        "Case as partition key",
        "Airflow 3.2+: give each case event on `emedgene://<tenant>` the case name as `partition_key`.",
        default=False,
        details="Airflow queues a partitioned event only for DAGs scheduled with "
        "`PartitionedAssetTimetable`, and a plain `schedule=[asset]` DAG then never runs: turn it on "
        "only when every consumer is partition-aware. Ignored before Airflow 3.2.",
    ),
)

#: Every extra this provider reads, by name, in the order the form and the docs show them.
SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _SETTINGS}


def extras_table(*, details: bool) -> str:
    """The docs' extras table: ``details`` adds the README's longer account to each row."""
    lines = ["| extra | default | allowed | what it does |", "|---|---|---|---|"]
    for setting in SETTINGS.values():
        what = f"{setting.help} {setting.details}".strip() if details else setting.help
        lines.append(f"| `{setting.name}` | {setting.doc_default()} | {setting.doc_allowed()} | {what} |")
    return "\n".join(lines) + "\n"


#: A doc's generated table sits between these lines (blank lines around it, as Markdown wants);
#: ``full`` or ``short`` says which table.
_BLOCK = re.compile(
    r"(?P<open><!-- extras table \((?P<style>full|short)\): generated from emedgene_provider/client/"
    r"settings\.py -->\n)(?P<table>.*?)(?P<close><!-- end of extras table -->)",
    re.DOTALL,
)


def _block(style: str) -> str:
    return "\n" + extras_table(details=style == "full") + "\n"


def doc_tables(text: str) -> list[tuple[str, str]]:
    """(the block found, the block the declaration renders) for each generated table of a doc."""
    return [(match["table"], _block(match["style"])) for match in _BLOCK.finditer(text)]


def rewrite_doc(text: str) -> str:
    """``text`` with each generated table rendered again from the declaration."""
    return _BLOCK.sub(lambda match: match["open"] + _block(match["style"]) + match["close"], text)


def main(paths: Sequence[str]) -> None:
    """Rewrite the generated tables of the docs named (the README, ``docs/connection.md``)."""
    for path in map(Path, paths):
        path.write_text(rewrite_doc(path.read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
