"""The simulator's HTTP application: the Emedgene endpoints, the admin endpoints, faults.

Endpoints follow ``docs/emedgene-api.md``; where the real API is not published the choice made here is
listed in ``docs/simulator.md`` under [assumed]. Everything runs on one asyncio loop, so a poller
costs a coroutine, not a thread, and the state needs no locks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    STORAGE_PATH,
)
from emedgene_provider.client.payload import case_problems, case_warnings
from emedgene_provider.testing.config import SimulatorConfig, check_list_options
from emedgene_provider.testing.faults import Fault, FaultPlan, drip, drop_connection, fault_response, huge
from emedgene_provider.testing.state import SimCase, SimState
from emedgene_provider.testing.variants import candidates_for, genes_for, variants_for

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

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> Simulation:
        return cls(
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
        )

    def reset(self) -> None:
        self.state.reset()
        self.faults.clear()
        self.set_list(self.config.list_lag, self.config.list_lag_max, self.config.endless_list)

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


def _summary(sim: Simulation, case: SimCase) -> dict[str, Any]:
    return {
        "name": case.name,
        "status": sim.state.status_of(case),
        "created": case.created_iso,
        "type": case.test_data.get("type"),
    }


def _endless_page(offset: int, size: int) -> dict[str, Any]:
    """A page of a list that never ends: invented entries (no such cases: reading one is a 404),
    dated now, and a ``total`` always a page ahead."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    hits = [
        {"name": f"EMG9{(offset + i) % 10**8:08d}", "status": st.IN_PROGRESS, "created": now, "type": "Exome"}
        for i in range(size)
    ]
    return {"hits": hits, "total": offset + 2 * size}


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
        if request.path.startswith(ADMIN_PREFIX):
            return await _answer(request, handler)
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
        if not case_problems(body) and not case_warnings(body):
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

    async def api_key_token(request: web.Request) -> web.Response:
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
        if state.endless_list:
            return web.json_response(_endless_page(offset, size))
        cases = state.listed()
        page = cases[offset : offset + size]
        return web.json_response({"hits": [_summary(sim, c) for c in page], "total": len(cases)})

    async def create_case(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(400, str(exc))
        # The tenant knows its case types and relationships: what a client only warns about
        # (payload.case_warnings) is refused here, after every certain problem.
        problems = case_problems(body) + case_warnings(body)
        if problems:
            return _error(400, problems[0])
        if request.query.get("dry_run", "").lower() in ("true", "1", "yes"):
            return web.json_response({"message": "Case is valid"})
        case = state.create_case(body)
        return web.json_response({"name": case.name}, status=201)

    def _find(request: web.Request) -> SimCase | web.Response:
        name = request.match_info["name"]
        case = state.cases.get(name)
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
        return web.json_response(full)

    def _delivered(case: SimCase) -> web.Response | None:
        if not state.is_delivered(case):
            status = state.status_of(case)
            return _error(400, f"Case {case.name} is not delivered yet (status: {status})")
        return None

    def _records(case: SimCase, kind: str) -> web.Response:
        """The case's candidates or export. A case with ``simulator_variants`` (a benchmark's
        200,000-variant export) has its answer serialised once and kept, so a client's throughput
        is not the simulator's JSON encoder."""
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
    app.router.add_get(ADMIN_PREFIX + "counters", admin_counters)
    app.router.add_post(ADMIN_PREFIX + "counters/reset", admin_counters_reset)
    app.router.add_post(ADMIN_PREFIX + "cases/{name}/status", admin_status)
    app.router.add_post(ADMIN_PREFIX + "faults", admin_fault)
    app.router.add_post(ADMIN_PREFIX + "fault-rate", admin_fault_rate)
    app.router.add_post(ADMIN_PREFIX + "list", admin_list)
    app.router.add_post(ADMIN_PREFIX + "tokens/revoke", _admin_action(state.revoke_tokens, "Tokens revoked"))
    app.router.add_post(ADMIN_PREFIX + "tokens/expire", _admin_action(state.expire_tokens, "Tokens expired"))
    app.router.add_post(ADMIN_PREFIX + "reset", _admin_action(sim.reset, "Simulator reset"))
    return app
