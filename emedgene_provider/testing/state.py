"""Everything the simulator remembers: cases and their lifecycle, tokens, counters.

The state is plain data touched only from the server's event loop (the in-process runner hops
onto the loop to change it), so no locks are needed and thousands of pollers cost nothing but a
dictionary lookup each. Time comes from an injectable monotonic clock so the lifecycle can be
reasoned about without sleeping.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from emedgene_provider.client import status as st

TokenStyle = Literal["plain", "expires_in", "jwt"]
TOKEN_STYLES: tuple[str, ...] = ("plain", "expires_in", "jwt")
#: Resolution of the request-arrival counter: the peak rate is a 1 s window sliding by 1/this.
ARRIVAL_BUCKETS_PER_SECOND = 10


@dataclass
class SimCase:
    """One case as submitted, plus what the simulator needs to move it through the lifecycle."""

    name: str
    body: dict[str, Any]
    created_at: float  # monotonic, drives the lifecycle
    created_epoch: float  # wall clock (Unix seconds), what the API shows as ``created``
    outcome: str
    manual_status: str | None = None
    #: Monotonic time from which ``GET /api/test`` lists it (the search index's lag).
    listed_at: float = 0.0
    #: ``extra_data.simulator_statuses``: answered one per read of the case instead of by time.
    scripted: tuple[str, ...] = ()
    #: ``GET /api/test/{name}`` reads so far: they move a scripted case on.
    reads: int = 0
    #: ``extra_data.simulator_variants``: how many variants its export and candidates hold (a
    #: 200,000-variant export for benchmarks); None for the usual 5 to 40.
    variant_count: int | None = None
    #: Out of ``GET /api/test`` for good (the ``list_churn="delete"`` quirk); still readable by name.
    unlisted: bool = False

    @property
    def test_data(self) -> dict[str, Any]:
        td = self.body.get("test_data")
        return td if isinstance(td, dict) else {}

    @property
    def should_upload(self) -> bool:
        return self.body.get("should_upload") is True


def lifecycle(should_upload: bool, outcome: str, custom: tuple[str, ...] = ()) -> list[str]:
    """The statuses a case passes through, one stage each; the last one is kept for ever.

    ``outcome`` Delivered ends there; Finalized or one of the ``custom`` statuses declared to the
    simulator follows one stage of Delivered. Any other outcome - a failure (Issue reported, Trash
    bin), Re-Analysis, or a status nobody declared ("Analysis failed") - takes Delivered's place,
    so the case is never delivered.
    """
    stages = [st.PENDING_SEQUENCING] if should_upload else []
    stages += [st.UPLOADING, st.IN_PROGRESS]
    if st.normalise(outcome) == st.normalise(st.DELIVERED):
        stages.append(st.DELIVERED)
    elif st.is_delivered(outcome, custom):
        stages += [st.DELIVERED, outcome]
    else:
        stages.append(outcome)
    return stages


def status_at(case: SimCase, now: float, stage_seconds: float, custom: tuple[str, ...] = ()) -> str:
    """A case's status at monotonic time ``now``: a status set by hand wins, else elapsed time."""
    if case.manual_status is not None:
        return case.manual_status
    if case.scripted:  # the n-th read answers the n-th status; calls in between see the last read's
        return case.scripted[min(max(case.reads - 1, 0), len(case.scripted) - 1)]
    stages = lifecycle(case.should_upload, case.outcome, custom)
    if stage_seconds <= 0:
        return stages[-1]
    index = int(max(now - case.created_at, 0.0) // stage_seconds)
    return stages[min(index, len(stages) - 1)]


#: The most variants ``extra_data.simulator_variants`` may ask for (about 400 MB of export JSON).
MAX_SIMULATED_VARIANTS = 1_000_000


def _variant_count(value: Any) -> int | None:
    """``simulator_variants`` as a count; anything but a whole number from 0 to the maximum is
    ignored (the case keeps its usual variants), as other ``simulator_*`` keys are."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_SIMULATED_VARIANTS else None


@dataclass
class IssuedToken:
    """A bearer token the simulator handed out."""

    issued_at: float  # monotonic
    expired: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class SimState:
    """The simulator's memory. Create cases, issue and check tokens, count what happened.

    :param stage_seconds: how long each lifecycle stage lasts.
    :param token_ttl: seconds a token stays valid; older ones answer 403.
    :param token_style: ``plain`` (opaque), ``expires_in`` (opaque plus ``expires_in``) or
        ``jwt`` (a JWT-shaped token with an ``exp`` claim).
    :param outcome: the default final status of new cases.
    :param custom_statuses: the lab's custom statuses: delivered, and reached through Delivered.
    :param seed: makes case names reproducible.
    :param clock: monotonic clock, replaceable in unit tests.
    """

    stage_seconds: float = 2.0
    token_ttl: float = 3600.0
    token_style: str = "plain"  # noqa: S105 - a style name, not a secret
    outcome: str = st.DELIVERED
    custom_statuses: tuple[str, ...] = ()
    seed: int | None = None
    clock: Callable[[], float] = time.monotonic
    cases: dict[str, SimCase] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    #: Every token ever issued, revoked ones included: what a leak scan looks for.
    issued: list[str] = field(default_factory=list)
    logins: int = 0
    login_failures: int = 0
    cases_created: int = 0
    faults_injected: int = 0
    in_flight: int = 0
    in_flight_max: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    #: Connections accepted (after the TLS handshake, with TLS): what a client's pooling costs.
    connections_opened: int = 0
    #: Non-admin requests per tenth of a second of the clock, for the peak rate over any 1 s window
    #: (how a client-side rate limit looks from the server); one small entry per busy 0.1 s.
    arrivals: Counter[int] = field(default_factory=Counter)
    #: Seconds a new case stays out of ``GET /api/test`` (the search index's lag); with
    #: ``list_lag_max``, each case's lag is drawn between the two.
    list_lag: float = 0.0
    list_lag_max: float | None = None
    #: ``GET /api/test`` never runs out of pages (invented entries, a ``total`` always ahead).
    endless_list: bool = False
    #: Quirk counters: reads by name refused by ``read_lag``; requests dropped by ``stale_keepalive``;
    #: filler cases created and cases taken off the list by ``list_churn``.
    read_lag_404s: int = 0
    stale_drops: int = 0
    churn_inserts: int = 0
    churn_deletes: int = 0
    _next_number: int = 0
    _lag_rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.token_style not in TOKEN_STYLES:
            raise ValueError(
                f"token_style must be one of {', '.join(TOKEN_STYLES)}, not {self.token_style!r}"
            )
        self._reset_names()

    def _reset_names(self) -> None:
        # A random 9-digit base, so names look like the real EMG107903188 and differ between runs
        # unless a seed is given.
        rng = random.Random(self.seed)  # noqa: S311 - names, not secrets
        self._next_number = rng.randrange(100_000_000, 900_000_000)

    def reset(self) -> None:
        """Forget cases, tokens and counters; names restart from the seed's base."""
        self.cases.clear()
        self.tokens.clear()
        self.reset_counters()
        self._reset_names()

    def reset_counters(self) -> None:
        """Zero the counters only, keeping cases and tokens: a benchmark creates its cases, then
        counts what the client under test does with them."""
        self.logins = self.login_failures = self.cases_created = self.faults_injected = 0
        self.in_flight_max = self.in_flight
        self.requests.clear()
        self.connections_opened = 0
        self.arrivals.clear()
        self.read_lag_404s = self.stale_drops = self.churn_inserts = self.churn_deletes = 0

    # -- cases ---------------------------------------------------------------------------------

    def create_case(self, body: dict[str, Any], *, filler: bool = False) -> SimCase:
        """Store a (validated) case and give it the next ``EMG`` + 9 digits name.

        A ``filler`` (the tenant's own traffic, from the ``list_churn`` quirk) is listed at once and
        counted in ``churn_inserts``, not in ``cases_created``: that counter stays what clients made.
        """
        name = f"EMG{self._next_number:09d}"
        self._next_number += 1
        extra = body.get("test_data", {}).get("extra_data") or {}
        outcome = extra.get("simulator_outcome") if isinstance(extra, dict) else None
        scripted = extra.get("simulator_statuses") if isinstance(extra, dict) else None
        count = extra.get("simulator_variants") if isinstance(extra, dict) else None
        now = self.clock()
        case = SimCase(
            name=name,
            body=body,
            created_at=now,
            listed_at=now if filler else now + self.lag(),
            created_epoch=time.time(),
            outcome=str(outcome) if isinstance(outcome, str) and outcome.strip() else self.outcome,
            scripted=tuple(str(s) for s in scripted) if isinstance(scripted, list) else (),
            variant_count=_variant_count(count),
        )
        self.cases[name] = case
        if filler:
            self.churn_inserts += 1
        else:
            self.cases_created += 1
        return case

    def lag(self) -> float:
        """This case's list lag: ``list_lag``, or drawn up to ``list_lag_max`` when that is set."""
        if self.list_lag_max is not None and self.list_lag_max > self.list_lag:
            return self._lag_rng.uniform(self.list_lag, self.list_lag_max)
        return self.list_lag

    def listed(self) -> list[SimCase]:
        """The cases ``GET /api/test`` shows now, in creation order: those past their list lag."""
        now = self.clock()
        return [case for case in self.cases.values() if case.listed_at <= now and not case.unlisted]

    def status_of(self, case: SimCase) -> str:
        return status_at(case, self.clock(), self.stage_seconds, self.custom_statuses)

    def is_delivered(self, case: SimCase) -> bool:
        """Whether results can be read: Delivered, Finalized or a declared custom status; never a
        status the simulator was not told about."""
        return st.is_delivered(self.status_of(case), self.custom_statuses)

    def note_read(self, case: SimCase) -> None:
        """A ``GET /api/test/{name}``: the next scripted status, for a case that has a script."""
        case.reads += 1

    def set_status(self, name: str, status: str) -> None:
        """Fix a case's status by hand; time no longer moves it. KeyError if unknown."""
        self.cases[name].manual_status = status

    # -- tokens --------------------------------------------------------------------------------

    def issue_token(self, subject: str) -> dict[str, Any]:
        """A fresh token, answered in the configured style (without the login flow's own fields)."""
        if self.token_style == "jwt":  # noqa: S105
            now = int(time.time())
            header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "emedgene-simulator"}).encode())
            payload = _b64url(
                json.dumps(
                    {
                        "sub": subject,
                        "aud": "emedgene",
                        "iss": "emedgene-simulator",
                        "iat": now,
                        "exp": now + int(self.token_ttl),
                        "jti": secrets.token_hex(8),
                    }
                ).encode()
            )
            token = f"{header}.{payload}.{_b64url(secrets.token_bytes(32))}"
        else:
            token = secrets.token_urlsafe(32)
        self.tokens[token] = IssuedToken(issued_at=self.clock())
        self.issued.append(token)
        self.logins += 1
        answer: dict[str, Any] = {"access_token": token}
        if self.token_style == "expires_in":  # noqa: S105
            answer["expires_in"] = (
                int(self.token_ttl) if float(self.token_ttl).is_integer() else self.token_ttl
            )
        return answer

    def check_token(self, token: str) -> Literal["ok", "unknown", "expired"]:
        issued = self.tokens.get(token)
        if issued is None:
            return "unknown"
        if issued.expired or self.clock() - issued.issued_at >= self.token_ttl:
            return "expired"
        return "ok"

    def revoke_tokens(self) -> None:
        """Every token becomes unknown: the next call answers 401."""
        self.tokens.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far is past its lifetime: the next call answers 403."""
        for issued in self.tokens.values():
            issued.expired = True

    # -- counters ------------------------------------------------------------------------------

    def note_arrival(self) -> None:
        """A non-admin request arrived now (counted per tenth of a second)."""
        self.arrivals[int(self.clock() * ARRIVAL_BUCKETS_PER_SECOND)] += 1

    def peak_requests_per_second(self) -> int:
        """The most requests that arrived within any 1 s window (sliding by 0.1 s), so a burst
        straddling a second boundary is not halved."""
        best = 0
        for start in self.arrivals:
            window = sum(self.arrivals.get(start + i, 0) for i in range(ARRIVAL_BUCKETS_PER_SECOND))
            best = max(best, window)
        return best

    def counters(self) -> dict[str, Any]:
        return {
            "logins": self.logins,
            "login_failures": self.login_failures,
            "requests": dict(self.requests),
            "cases_created": self.cases_created,
            "faults_injected": self.faults_injected,
            "in_flight_max": self.in_flight_max,
            "connections_opened": self.connections_opened,
            "peak_requests_per_second": self.peak_requests_per_second(),
            "read_lag_404s": self.read_lag_404s,
            "stale_drops": self.stale_drops,
            "churn_inserts": self.churn_inserts,
            "churn_deletes": self.churn_deletes,
        }
