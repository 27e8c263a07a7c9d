"""The simulator's HTTP application: the Emedgene endpoints, the admin endpoints, faults.

Endpoints follow ``docs/emedgene-api.md``; where the real API is not published the choice made here is
listed in ``docs/simulator.md`` under [assumed]. Everything runs on one asyncio loop, so a poller
costs a coroutine, not a thread, and the state needs no locks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from typing import Any

from aiohttp import web

from emedgene_provider.client import status as st
from emedgene_provider.client.endpoints import (
    API_KEY_TOKEN_PATH,
    CANDIDATES_PATH,
    CASES_PATH,
    CREATE_CASE_PATH,
    LEGACY_LOGIN_PATH,
    LOGIN_PATH,
    SAMPLES_PATH,
    STORAGE_PATH,
)
from emedgene_provider.testing.case_page import CASE_PAGE_PREFIX, case_page, missing_page
from emedgene_provider.testing.config import SimulatorConfig, check_list_options
from emedgene_provider.testing.faults import Fault, FaultPlan, drip, drop_connection, fault_response, huge
from emedgene_provider.testing.quirks import Quirks
from emedgene_provider.testing.rules import first_refusal
from emedgene_provider.testing.state import SimCase, SimState
from emedgene_provider.testing.storage import (
    DEFAULT_BASESPACE,
    DEFAULT_PLATFORM_SAMPLES,
    Storage,
    unmatched_phenotypes,
)
from emedgene_provider.testing.variants import candidates_for, genes_for, variants_for
from emedgene_provider.testing.webhooks import WebhookSender

ADMIN_PREFIX = "/_simulator/"
#: Paths that do not need a bearer token.
_LOGIN_PATHS = frozenset({LOGIN_PATH, LEGACY_LOGIN_PATH, API_KEY_TOKEN_PATH})

STORAGE_PROVIDERS: tuple[dict[str, Any], ...] = (
    {"id": 3, "name": "BaseSpace", "scheme": "basespace"},
    {"id": 7, "name": "Lab S3", "scheme": "s3"},
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Serialised answers of ``simulator_variants`` cases kept at once (each up to hundreds of MB).
_BIG_ANSWERS_KEPT = 2
_BOM = b"\xef\xbb\xbf"
#: ``created`` with ``created_style="garbage"``: a string no date parser reads.
GARBAGE_CREATED = "sometime last week"
#: The case the ``list_churn="insert"`` quirk creates: valid, and carrying no idempotency key.
FILLER_CASE: dict[str, Any] = {
    "test_data": {
        "type": "Exome",
        "sample_type": "vcf",
        "patients": {
            "proband": {
                "id": "proband", "fastq_sample": "FILLER-1", "gender": "Female",
                "relationship": "Test Subject", "healthy": False, "phenotypes": [],
            },
            "other": [],
        },
        "samples": [{"fastq": "FILLER-1", "status": "uploaded", "sampleFiles": [
            {"path": "/filler/FILLER-1.vcf.gz", "filename": "FILLER-1.vcf.gz", "size": 0,
             "status": "uploaded", "storage_id": 3},
        ]}],
    }
}  # fmt: skip


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


class _Dropped(web.Response):
    """Marker answer for a connection already torn down: writing it fails quietly in aiohttp."""


@dataclass
class Simulation:
    """The simulator's whole world: options, state and fault plan, shared across restarts."""

    config: SimulatorConfig
    state: SimState
    faults: FaultPlan = field(default_factory=FaultPlan)
    quirks: Quirks = field(default_factory=Quirks)
    #: Per open connection, the clock time its last answer was made (for ``stale_keepalive``).
    answered_at: weakref.WeakKeyDictionary[Any, float] = field(default_factory=weakref.WeakKeyDictionary)
    shuffler: random.Random = field(default_factory=random.Random)
    #: Sends status hints to a receiver, when the options name one.
    webhooks: WebhookSender | None = None
    #: Closes the listener for ``seconds``, then listens again on its port (the server sets it).
    outage: Callable[[float], None] | None = None
    #: The BaseSpace folders and platform samples ``auto`` and ``existing`` rows resolve to.
    storage: Storage = field(default_factory=lambda: Storage(DEFAULT_BASESPACE, DEFAULT_PLATFORM_SAMPLES))

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> Simulation:
        simulation = cls(
            config=config,
            state=SimState(
                stage_seconds=config.stage_seconds,
                token_ttl=config.token_ttl,
                token_style=config.token_style,
                outcome=config.outcome,
                custom_statuses=config.custom_statuses,
                seed=config.seed,
                list_lag=config.list_lag,
                list_lag_max=config.list_lag_max,
                endless_list=config.endless_list,
            ),
            quirks=config.quirks,
            shuffler=random.Random(config.seed),  # noqa: S311 - list orders, not secrets
            storage=Storage(config.basespace, config.platform_samples),
        )
        if config.webhooks is not None:
            simulation.webhooks = WebhookSender(simulation.state, config.webhooks)
        return simulation

    def reset(self) -> None:
        self.state.reset()
        self.faults.clear()
        if self.webhooks is not None:
            self.webhooks.forget()
        self.set_list(self.config.list_lag, self.config.list_lag_max, self.config.endless_list)
        self.quirks = self.config.quirks
        self.shuffler.seed(self.config.seed)

    def set_quirks(self, **changes: Any) -> Quirks:
        """Change the named quirks, keeping the others; ValueError for an unknown name or bad value."""
        self.quirks = self.quirks.replace(**changes)
        return self.quirks

    def shuffled(self, items: list[SimCase]) -> list[SimCase]:
        """``items`` in a new random order, never the one given (when there are two or more)."""
        out = list(items)
        self.shuffler.shuffle(out)
        if len(out) > 1 and out == items:
            out = out[1:] + out[:1]
        return out

    def set_list(self, lag: float, lag_max: float | None, endless: bool) -> None:
        """The case list's behaviour: lag of new cases, and whether it ever ends."""
        check_list_options(lag, lag_max)
        self.state.list_lag, self.state.list_lag_max, self.state.endless_list = lag, lag_max, endless


# -- helpers -----------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body; ValueError if absent or malformed."""
    text = await request.text()
    if not text.strip():
        raise ValueError("Request body must be JSON")
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("Request body is not valid JSON") from None


def _route_key(request: web.Request) -> str:
    """``GET /api/test/{name}``: the method and the route's template, for the request counters."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else "(unmatched)"
    return f"{request.method} {template}"


def created_stamp(quirks: Quirks, epoch: float) -> str | int | None:
    """``created`` as the tenant writes it for Unix time ``epoch`` (None: it leaves it out)."""
    tenant_time = epoch + quirks.clock_skew
    style = quirks.created_style
    if style == "missing":
        return None
    if style == "epoch_ms":
        return int(tenant_time * 1000)
    if style == "garbage":
        return GARBAGE_CREATED
    utc = datetime.fromtimestamp(tenant_time, timezone.utc)
    if style == "iso":
        return utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    local = utc.astimezone(timezone(timedelta(hours=quirks.tenant_utc_offset_hours))).replace(tzinfo=None)
    return local.date().isoformat() if style == "date" else local.isoformat(timespec="seconds")


def _summary(sim: Simulation, case: SimCase) -> dict[str, Any]:
    summary = {
        "name": case.name,
        "status": sim.state.status_of(case),
        "created": created_stamp(sim.quirks, case.created_epoch),
        "type": case.test_data.get("type"),
    }
    if summary["created"] is None:
        del summary["created"]
    return summary


def _endless_page(sim: Simulation, offset: int, size: int) -> dict[str, Any]:
    """A page of a list that never ends: invented entries (no such cases: reading one is a 404),
    dated now, and a ``total`` always a page ahead."""
    now = created_stamp(sim.quirks, time.time())
    hits = [
        {"name": f"EMG9{(offset + i) % 10**8:08d}", "status": st.IN_PROGRESS, "created": now, "type": "Exome"}
        for i in range(size)
    ]
    if now is None:
        for hit in hits:
            del hit["created"]
    return {"hits": hits, "total": offset + 2 * size}


def _lying_json(obj: dict[str, Any], lie: str) -> str:
    """``obj`` as JSON with a second ``status`` key (value ``lie``) after the real one, in ``obj``
    and in each object of its ``hits``: what ``json.dumps`` cannot write."""
    parts = []
    for key, value in obj.items():
        if key == "hits" and isinstance(value, list):
            items = (_lying_json(h, lie) if isinstance(h, dict) else json.dumps(h) for h in value)
            text = "[" + ", ".join(items) + "]"
        else:
            text = json.dumps(value)
        parts.append(f"{json.dumps(key)}: {text}")
    if "status" in obj:
        parts.append(f'"status": {json.dumps(lie)}')
    return "{" + ", ".join(parts) + "}"


def _status_json(sim: Simulation, body: dict[str, Any]) -> web.Response:
    """A status-bearing answer: plain JSON, or with the ``duplicate_status`` quirk's second key."""
    lie = sim.quirks.duplicate_status
    if lie is None:
        return web.json_response(body)
    return web.Response(text=_lying_json(body, lie), content_type="application/json")


def _participants(patients: Any) -> list[dict[str, Any]]:
    if not isinstance(patients, dict):
        return []
    members = [patients.get(role) for role in ("proband", "mother", "father")]
    other = patients.get("other")
    members += other if isinstance(other, list) else []
    keys = ("id", "fastq_sample", "gender", "relationship", "healthy", "phenotypes")
    return [{k: m.get(k) for k in keys if k in m} for m in members if isinstance(m, dict)]


def _full_case(sim: Simulation, case: SimCase) -> dict[str, Any]:
    td = case.test_data
    return {
        **_summary(sim, case),
        "sample_type": td.get("sample_type"),
        "sharing_level": case.body.get("sharing_level", 0),
        "should_upload": case.should_upload,
        "test_data": td,
        "notes": td.get("notes") or "",
        "labels": td.get("labels") or [],
        "due_date": td.get("due_date"),
        "extra_data": td.get("extra_data") or {},
        "patients": td.get("patients") or {},
        "participants": _participants(td.get("patients")),
        "genes": genes_for(case.name),
    }


def _bearer(request: web.Request) -> str | None:
    for header in ("Authorization", "Emgauthorization"):
        value = request.headers.get(header, "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


# -- the application ---------------------------------------------------------------------------


def build_app(sim: Simulation) -> web.Application:
    """A fresh aiohttp application over ``sim`` (a restart builds a new one over the same state)."""
    state, config = sim.state, sim.config
    big_answers: dict[tuple[str, str], bytes] = {}  # serialised answers of simulator_variants cases

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith((ADMIN_PREFIX, CASE_PAGE_PREFIX)):
            return await _answer(request, handler)
        transport = request.transport
        if transport is not None and _stale(transport):
            state.stale_drops += 1
            drop_connection(request)
            return _Dropped()
        try:
            return _finish(await _serve(request, handler))
        finally:
            if transport is not None and not transport.is_closing():
                sim.answered_at[transport] = state.clock()

    def _stale(transport: Any) -> bool:
        """Whether the ``stale_keepalive`` quirk drops a request on this connection: it answered
        before and has been idle since for longer than allowed."""
        limit, answered = sim.quirks.stale_keepalive, sim.answered_at.get(transport)
        return limit is not None and answered is not None and state.clock() - answered > limit

    def _finish(response: web.StreamResponse) -> web.StreamResponse:
        """The quirks every answer shares: a skewed ``Date`` header, a byte order mark."""
        if not isinstance(response, web.Response) or isinstance(response, _Dropped) or response.prepared:
            return response
        quirks = sim.quirks
        if quirks.clock_skew:
            response.headers["Date"] = formatdate(time.time() + quirks.clock_skew, usegmt=True)
        body = response.body
        if quirks.bom and response.content_type == "application/json" and isinstance(body, bytes):
            response.body = _BOM + body
        return response

    async def _serve(request: web.Request, handler: Handler) -> web.StreamResponse:
        state.in_flight += 1
        state.in_flight_max = max(state.in_flight_max, state.in_flight)
        state.note_arrival()
        try:
            state.requests[_route_key(request)] += 1
            fault = sim.faults.take(request.method, request.path)
            if fault is not None:
                state.faults_injected += 1
                if fault.kind == "reset":
                    drop_connection(request)
                    return _Dropped()
                if fault.kind == "slow":
                    await asyncio.sleep(fault.delay)
                elif fault.answers_instead:
                    return fault_response(fault)
                elif fault.kind == "gateway_then_apply":
                    await _apply_later(request, fault.delay)
                    return fault_response(fault)
            response = await _process(request, handler)
            if fault is not None and fault.kind == "slow_create":
                await asyncio.sleep(fault.delay)  # applied already; the answer comes late
            if fault is not None and fault.kind in ("lost_create", "lost_answer"):
                drop_connection(request)  # the work is done; only the answer is lost
                return _Dropped()
            if fault is not None and fault.kind == "drip":  # the work is done; the answer crawls
                return await drip(request, response, fault) or _Dropped()
            if fault is not None and fault.kind == "huge":  # the work is done; the answer is endless
                return await huge(request, response, fault)
            return response
        finally:
            state.in_flight -= 1

    async def _process(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Route, authenticate and handle one non-admin request."""
        unmatched = request.match_info.http_exception
        if unmatched is not None:
            return _error(unmatched.status, f"{unmatched.reason}: {request.method} {request.path}")
        if request.path.startswith("/api/") and request.path not in _LOGIN_PATHS:
            refusal = _check_auth(request)
            if refusal is not None:
                return refusal
        return await _answer(request, handler)

    async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run the handler, turning aiohttp's plain-text 404/405 into the API's JSON errors."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, f"{exc.reason}: {request.method} {request.path}")
            raise

    async def _apply_later(request: web.Request, delay: float) -> None:
        """A gateway gave up on the create, but the backend applies it ``delay`` seconds later
        (if it would have been accepted: authenticated, a valid case, not a dry run)."""
        if _check_auth(request) is not None or request.query.get("dry_run", "").lower() in ("true", "1"):
            return
        try:
            body = await _json_body(request)
        except ValueError:
            return
        if first_refusal(body) is None:
            asyncio.get_running_loop().call_later(delay, state.create_case, body)

    def _check_auth(request: web.Request) -> web.Response | None:
        token = _bearer(request)
        verdict = state.check_token(token) if token else "unknown"
        if verdict == "unknown":
            return _error(401, "Unauthorized")
        if verdict == "expired":
            return _error(403, "Token expired")
        return None

    # -- login ---------------------------------------------------------------------------------

    async def _password_login(request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        await _login_delay()
        try:
            body = await _json_body(request)
        except ValueError as exc:
            state.login_failures += 1
            return None, _error(400, str(exc))
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("username"), str)
            or not isinstance(body.get("password"), str)
        ):
            state.login_failures += 1
            return None, _error(400, "username and password are required")
        if body["username"] != config.username or body["password"] != config.password:
            state.login_failures += 1
            return None, _error(401, "Invalid username or password")
        return state.issue_token(body["username"]), None

    async def login(request: web.Request) -> web.Response:
        answer, refusal = await _password_login(request)
        if refusal is not None:
            return refusal
        assert answer is not None
        return web.json_response({**answer, "token_type": "bearer"})

    async def legacy_login(request: web.Request) -> web.Response:
        answer, refusal = await _password_login(request)
        if refusal is not None:
            return refusal
        assert answer is not None
        return web.json_response({"Authorization": f"Bearer {answer['access_token']}"})

    async def _login_delay() -> None:
        if sim.quirks.login_delay:
            await asyncio.sleep(sim.quirks.login_delay)

    async def api_key_token(request: web.Request) -> web.Response:
        await _login_delay()
        if request.query.get("audience") != "emedgene" or request.query.get("grant_type") != "api_key":
            state.login_failures += 1
            return _error(400, "audience=emedgene and grant_type=api_key query parameters are required")
        scheme, _, encoded = request.headers.get("Authorization", "").strip().partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if scheme.lower() != "basic" or decoded != f"emedgene:{config.api_key}":
            state.login_failures += 1
            return _error(401, "Invalid API key")
        return web.json_response({**state.issue_token("api-key-user"), "token_type": "Bearer"})

    # -- cases ---------------------------------------------------------------------------------

    def _int_param(request: web.Request, name: str, default: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be a non-negative integer (got {raw!r})") from None
        if value < 0:
            raise ValueError(f"{name} must be a non-negative integer (got {raw!r})")
        return value

    async def list_cases(request: web.Request) -> web.Response:
        try:
            offset = _int_param(request, "from", 0)
            size = _int_param(request, "size", 10)
        except ValueError as exc:
            return _error(400, str(exc))
        size = min(size, config.page_size_cap)
        quirks = sim.quirks
        offset = 0 if quirks.ignore_from else offset
        if state.endless_list:
            return _status_json(sim, _endless_page(sim, offset, size))
        cases = state.listed()
        if quirks.list_order == "newest_first":
            cases.reverse()
        page = cases[offset : offset + size]
        if quirks.shuffle_first_page and offset == 0:
            page = sim.shuffled(page)
        answer: dict[str, Any] = {"hits": [_summary(sim, c) for c in page]}
        totals = {"exact": len(cases), "negative": -1, "zero": 0, "page": len(page), "null": None}
        if quirks.list_total in totals:
            answer["total"] = totals[quirks.list_total]
        response = _status_json(sim, answer)
        _churn(quirks.list_churn)
        return response

    def _churn(churn: str | None) -> None:
        """After a list page: the ``list_churn`` quirk creates a filler case, or takes the newest
        listed case off the list."""
        if churn == "insert":
            state.create_case(copy.deepcopy(FILLER_CASE), filler=True)
        elif churn == "delete":
            listed = state.listed()
            if listed:
                listed[-1].unlisted = True
                state.churn_deletes += 1

    async def create_case(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(400, str(exc))
        # The tenant's own rules (testing/rules.py), not the client's: a wrong client rule shows.
        refusal = first_refusal(body) or unmatched_phenotypes(body)
        if refusal is not None:
            return _error(400, refusal)
        if request.query.get("dry_run", "").lower() in ("true", "1", "yes"):
            return web.json_response({"message": "Case is valid"})
        case = state.create_case(body)
        return web.json_response({"name": case.name}, status=201)

    def _find(request: web.Request) -> SimCase | web.Response:
        name = request.match_info["name"]
        case = state.cases.get(name)
        if case is not None and state.clock() - case.created_at < sim.quirks.read_lag:
            state.read_lag_404s += 1
            case = None
        return case if case is not None else _error(404, f"Case {name} not found")

    async def get_case(request: web.Request) -> web.Response:
        case = _find(request)
        if isinstance(case, web.Response):
            return case
        state.note_read(case)
        full = _full_case(sim, case)
        fields = request.query.getall("test_fields", [])
        if fields:
            full = {k: v for k, v in full.items() if k == "name" or k in fields}
        return _status_json(sim, full)

    async def case_page_html(request: web.Request) -> web.Response:
        """``GET /case/{name}``: the case's page (see ``case_page``); no login, no quirks."""
        name = request.match_info["name"]
        case = state.cases.get(name)
        if case is None:
            return web.Response(status=404, text=missing_page(name), content_type="text/html")
        page = case_page(case, state.status_of(case), custom=state.custom_statuses)
        return web.Response(text=page, content_type="text/html")

    def _delivered(case: SimCase) -> web.Response | None:
        if not state.is_delivered(case):
            status = state.status_of(case)
            return _error(400, f"Case {case.name} is not delivered yet (status: {status})")
        return None

    def _records(case: SimCase, kind: str) -> web.Response:
        """The case's candidates or export. A case with ``simulator_variants`` (a benchmark's
        200,000-variant export) has its answer serialised once and kept, so a client's throughput
        is not the simulator's JSON encoder. The ``results_short`` quirk cuts the answer short and
        says so in a ``total`` beside the records."""
        short = sim.quirks.results_short
        if short is not None:
            make = candidates_for if kind == "candidates" else variants_for
            records = make(case.name, case.variant_count)
            key = "hits" if kind == "candidates" else config.export_key
            return web.json_response({key: records[:short], "total": len(records)})
        if case.variant_count is None:
            if kind == "candidates":
                return web.json_response({"hits": candidates_for(case.name)})
            return web.json_response({config.export_key: variants_for(case.name)})
        body = big_answers.get((kind, case.name))
        if body is None:
            if kind == "candidates":
                answer = {"hits": candidates_for(case.name, case.variant_count)}
            else:
                answer = {config.export_key: variants_for(case.name, case.variant_count)}
            body = json.dumps(answer).encode()
            if len(big_answers) >= _BIG_ANSWERS_KEPT:
                big_answers.pop(next(iter(big_answers)))
            big_answers[(kind, case.name)] = body
        return web.Response(body=body, content_type="application/json")

    async def candidates(request: web.Request) -> web.Response:
        case = _find(request)
        if isinstance(case, web.Response):
            return case
        return _delivered(case) or _records(case, "candidates")

    async def export(request: web.Request) -> web.Response:
        case = _find(request)
        if isinstance(case, web.Response):
            return case
        return _delivered(case) or _records(case, "export")

    async def storage(request: web.Request) -> web.Response:
        return web.json_response({"hits": list(STORAGE_PROVIDERS)})

    async def storage_one(request: web.Request) -> web.Response:
        wanted = request.match_info["id"]
        for provider in STORAGE_PROVIDERS:
            if str(provider["id"]) == wanted:
                return web.json_response(provider)
        return _error(404, f"Storage provider {wanted} not found")

    async def storage_list(request: web.Request) -> web.Response:
        try:
            offset = _int_param(request, "from", 0)
            size = _int_param(request, "size", 10)
            storage_id = int(request.match_info["id"])
        except ValueError as exc:
            return _error(400, str(exc))
        path = request.query.get("path", "")
        page = sim.storage.listing(storage_id, path, offset, size)
        if page is None:
            return _error(404, f"Path {path!r} not found in storage {storage_id}")
        return web.json_response(page)

    async def samples(request: web.Request) -> web.Response:
        query = request.query.get("query", "")
        if not query.strip():
            return _error(400, "query is required")
        if request.query.get("sampleType", "fastq").lower() != "fastq":
            return web.json_response({"total": 0, "hits": []})
        return web.json_response(sim.storage.find(query))

    # -- admin ---------------------------------------------------------------------------------

    async def admin_counters(request: web.Request) -> web.Response:
        return web.json_response(state.counters())

    async def admin_counters_reset(request: web.Request) -> web.Response:
        state.reset_counters()
        return web.json_response(state.counters())

    async def admin_status(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(400, str(exc))
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):  # blank is allowed: a server answering a blank status
            return _error(400, 'expected {"status": "<status>"}')
        if name not in state.cases:
            return _error(404, f"Case {name} not found")
        state.set_status(name, status)
        return web.json_response({"name": name, "status": status})

    async def admin_fault(request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await _json_body(request))
        except ValueError as exc:
            return _error(400, str(exc))
        sim.faults.add(fault)
        return web.json_response({"queued": fault.kind, "times": fault.times}, status=201)

    async def admin_list(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise ValueError('expected {"lag": 2, "lag_max": null, "endless": false}')
            lag_max = body.get("lag_max", state.list_lag_max)
            sim.set_list(
                float(body.get("lag", state.list_lag)),
                None if lag_max is None else float(lag_max),
                bool(body.get("endless", state.endless_list)),
            )
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response(
            {"lag": state.list_lag, "lag_max": state.list_lag_max, "endless": state.endless_list}
        )

    async def admin_fault_rate(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise ValueError('expected {"rate": 0.2, "kinds": [...], "seed": 1}')
            seed = body.get("seed")
            sim.faults.set_rate(
                float(body.get("rate", 0.0)), body.get("kinds"), None if seed is None else int(seed)
            )
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response({"rate": sim.faults.rate, "kinds": list(sim.faults.rate_kinds)})

    async def admin_quirks(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                changes = await _json_body(request)
                if not isinstance(changes, dict):
                    raise ValueError('expected a JSON object of quirk names and values, e.g. {"read_lag": 2}')
                sim.set_quirks(**changes)
            except ValueError as exc:
                return _error(400, str(exc))
        return web.json_response(sim.quirks.to_json())

    async def admin_outage(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            seconds = float(body.get("seconds", -1)) if isinstance(body, dict) else -1.0
            if not 0 < seconds <= 3600:
                raise ValueError('expected {"seconds": <more than 0, at most 3600>}')
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        if sim.outage is None:
            return _error(409, "this simulator cannot stop listening (no server runs it)")
        sim.outage(seconds)
        return web.json_response({"message": f"Refusing connections for {seconds:g} s"})

    def _admin_action(action: Callable[[], None], done: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            action()
            return web.json_response({"message": done})

        return handle

    app = web.Application(middlewares=[middleware])
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post(LEGACY_LOGIN_PATH, legacy_login)
    app.router.add_post(API_KEY_TOKEN_PATH, api_key_token)
    app.router.add_get(CASES_PATH, list_cases)
    app.router.add_get(CASES_PATH + "/{name}", get_case)
    app.router.add_get(CASES_PATH + "/{name}/export", export)
    app.router.add_post(CREATE_CASE_PATH, create_case)
    app.router.add_get(CANDIDATES_PATH + "/{name}", candidates)
    app.router.add_get(STORAGE_PATH, storage)
    app.router.add_get(STORAGE_PATH + "/{id}", storage_one)
    app.router.add_get(STORAGE_PATH + "/{id}/fs/list", storage_list)
    app.router.add_get(SAMPLES_PATH, samples)
    app.router.add_get(CASE_PAGE_PREFIX + "{name}", case_page_html)
    app.router.add_get(ADMIN_PREFIX + "counters", admin_counters)
    app.router.add_post(ADMIN_PREFIX + "counters/reset", admin_counters_reset)
    app.router.add_post(ADMIN_PREFIX + "cases/{name}/status", admin_status)
    app.router.add_post(ADMIN_PREFIX + "faults", admin_fault)
    app.router.add_post(ADMIN_PREFIX + "fault-rate", admin_fault_rate)
    app.router.add_post(ADMIN_PREFIX + "list", admin_list)
    app.router.add_get(ADMIN_PREFIX + "quirks", admin_quirks)
    app.router.add_post(ADMIN_PREFIX + "quirks", admin_quirks)
    app.router.add_post(ADMIN_PREFIX + "tokens/revoke", _admin_action(state.revoke_tokens, "Tokens revoked"))
    app.router.add_post(ADMIN_PREFIX + "tokens/expire", _admin_action(state.expire_tokens, "Tokens expired"))
    app.router.add_post(ADMIN_PREFIX + "reset", _admin_action(sim.reset, "Simulator reset"))
    app.router.add_post(ADMIN_PREFIX + "outage", admin_outage)
    return app
