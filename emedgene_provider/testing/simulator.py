"""Run the Emedgene simulator: as a CLI, or in-process in a background thread.

``python -m emedgene_provider.testing.simulator --port 8080`` serves until SIGINT/SIGTERM;
``with EmedgeneSimulator(stage_seconds=0.2) as sim:`` serves for the length of a block. Both run
the same :class:`SimulatorServer` on an asyncio loop; the in-process form gives that loop its own
thread so that synchronous test code (``requests``, an Airflow hook) can call it freely, and
hops onto the loop whenever it touches the state, so nothing needs a lock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from emedgene_provider.client.endpoints import API_KEY_TOKEN_PATH
from emedgene_provider.testing import tls
from emedgene_provider.testing.app import Simulation, build_app
from emedgene_provider.testing.config import (
    EXPORT_KEYS,
    SimulatorConfig,
)
from emedgene_provider.testing.faults import Fault
from emedgene_provider.testing.quirks import Quirks
from emedgene_provider.testing.state import TOKEN_STYLES
from emedgene_provider.testing.storage import storage_from_json
from emedgene_provider.testing.webhooks import Sent, Webhooks

T = TypeVar("T")
_CALL_TIMEOUT = 30.0
#: Handlers still running when the listener stops (a ``slow`` fault) are cancelled after this:
#: a restart is meant to drop connections, not to wait for them.
_SHUTDOWN_TIMEOUT = 0.25
_BACKLOG = 2048  # thousands of pollers may connect at once


class SimulatorServer:
    """The listener and its state, on the current asyncio loop. Restartable on the same port."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.simulation = Simulation.from_config(config)
        self.port = config.port
        self.ca_file: str | None = None
        self._tmpdir: str | None = None
        self._ssl_context: Any = None
        self._runner: web.AppRunner | None = None
        self._outage: asyncio.Task[None] | None = None
        self.simulation.outage = self.refuse_connections

    def refuse_connections(self, seconds: float) -> None:
        """The tenant down: close the listener (connections are refused, open ones cut) for
        ``seconds``, then listen again on the same port, the state kept. Called from a request
        (``POST /_simulator/outage``): the listener closes once that answer has gone."""
        loop = asyncio.get_running_loop()

        async def down() -> None:
            await asyncio.sleep(0.2)  # the admin call's answer first
            await self.stop_listening()
            await asyncio.sleep(seconds)
            if self._runner is None:
                await self.start()

        if self._outage is None or self._outage.done():
            self._outage = loop.create_task(down())

    @property
    def url(self) -> str:
        """The base URL clients use: the listening address, loopback for a wildcard host."""
        host = self.config.host
        if host in ("", "0.0.0.0"):  # noqa: S104 - only mapping a wildcard to loopback
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        scheme = "https" if self.config.uses_tls else "http"
        return f"{scheme}://{host}:{self.port}"

    def _prepare_tls(self) -> None:
        if self._ssl_context is not None or not self.config.uses_tls:
            return
        if self.config.cert and self.config.key:
            self._ssl_context = tls.server_context(self.config.cert, self.config.key)
            return
        self._tmpdir = tempfile.mkdtemp(prefix="emedgene-simulator-tls-")
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
        if self.config.host not in ("", "0.0.0.0", "::"):  # noqa: S104
            hosts = (self.config.host, *hosts)
        files = tls.generate(self._tmpdir, hosts)
        self.ca_file = files.ca_file
        self._ssl_context = tls.server_context(files.cert_file, files.key_file)

    async def start(self) -> None:
        """Start listening (on ``config.port`` the first time, on the same port after a restart)."""
        self._prepare_tls()
        runner = web.AppRunner(
            build_app(self.simulation),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._count_connections(runner)
        try:
            site = web.TCPSite(
                runner, self.config.host, self.port, ssl_context=self._ssl_context, backlog=_BACKLOG
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self.simulation.webhooks is not None:  # keeps sending across restarts of the listener
            self.simulation.webhooks.start()

    def _count_connections(self, runner: web.AppRunner) -> None:
        """Count every accepted connection in the state (after its TLS handshake, with TLS).

        aiohttp's ``Server`` is told of each connection its protocol makes; wrapping that one method
        is the only per-connection hook aiohttp offers (it has no signal for it).
        """
        server = runner.server
        if server is None:
            return
        state = self.simulation.state
        made = server.connection_made

        def connection_made(handler: Any, transport: Any) -> None:
            state.connections_opened += 1
            made(handler, transport)

        server.connection_made = connection_made  # type: ignore[method-assign]

    async def stop_listening(self) -> None:
        """Close the listener and every open connection; the state stays."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self) -> None:
        await self.stop_listening()
        await self.start()

    async def close(self) -> None:
        """Stop for good and remove the generated certificates."""
        if self._outage is not None:
            self._outage.cancel()
        if self.simulation.webhooks is not None:
            await self.simulation.webhooks.stop()
        await self.stop_listening()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class EmedgeneSimulator:
    """An Emedgene simulator serving from a background thread, for tests and offline DAG work.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Its options are the
    fields of :class:`~emedgene_provider.testing.config.SimulatorConfig`, declared and documented
    there once (and in ``docs/simulator.md``), e.g. ``EmedgeneSimulator(stage_seconds=0.5,
    quirks=Quirks(read_lag=2))``; ``quirks=None`` means none. :meth:`connection_json` declares the
    ``custom_statuses`` in the connection extra, as a lab would; :meth:`reset` restores the quirks;
    :meth:`webhooks_sent` lists the hints sent.
    """

    def __init__(self, **options: Any) -> None:
        if options.get("quirks", ...) is None:
            del options["quirks"]
        self.config = SimulatorConfig(**options)
        self._server = SimulatorServer(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmedgeneSimulator:
        """Start serving in a background thread; returns once the port is listening."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="emedgene-simulator", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self._server.start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, drop connections, remove generated certificates. Safe to call twice."""
        if self._loop is None:
            return
        try:
            self._run(self._server.close())
        finally:
            self._shutdown_loop()

    def restart(self) -> None:
        """Stop and start the listener on the same port, keeping cases, tokens and counters."""
        self._run(self._server.restart())

    def __enter__(self) -> EmedgeneSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=_CALL_TIMEOUT)
        loop.close()

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the simulator is not running; call start() or use it as a context manager")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=_CALL_TIMEOUT)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (where the state lives) and return its result."""

        async def call() -> T:
            return fn()

        result: T = self._run(call())
        return result

    # -- addresses and credentials -------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, no trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def ca_file(self) -> str | None:
        """The generated CA's PEM path with ``tls=True``; None otherwise."""
        return self._server.ca_file

    @property
    def username(self) -> str:
        return self.config.username

    @property
    def password(self) -> str:
        return self.config.password

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def login_url(self) -> str:
        """Where API keys are exchanged (the real service uses another host; here it is the same)."""
        return self.url + API_KEY_TOKEN_PATH

    def connection_json(self, auth_type: Literal["password", "api_key"] = "password") -> dict[str, Any]:
        """The Airflow connection for this simulator, in Airflow's JSON form (``AIRFLOW_CONN_...``)."""
        if auth_type == "password":
            conn: dict[str, Any] = {
                "conn_type": "emedgene",
                "host": self.url,
                "login": self.username,
                "password": self.password,
                "extra": {"auth_type": "password"},
            }
        elif auth_type == "api_key":
            conn = {
                "conn_type": "emedgene",
                "host": self.url,
                "extra": {"api_key": self.api_key, "login_url": self.login_url, "auth_type": "api_key"},
            }
        else:
            raise ValueError(f"auth_type must be 'password' or 'api_key', not {auth_type!r}")
        if self.ca_file:
            conn["extra"]["verify"] = self.ca_file
        if self.config.custom_statuses:
            conn["extra"]["custom_statuses"] = list(self.config.custom_statuses)
        return conn

    def connection_uri(self, auth_type: Literal["password", "api_key"] = "password") -> str:
        """The same connection as an Airflow URI, in the form ``Connection.get_uri()`` writes.

        The scheme rides in front (``emedgene://http://...``) and host:port is one encoded host, so
        that Airflow reads back ``host`` as the full base URL, exactly as in the JSON form.
        """
        conn = self.connection_json(auth_type)
        scheme, _, hostport = self.url.partition("://")
        auth = ""
        if "login" in conn:
            auth = f"{quote(conn['login'], safe='')}:{quote(conn['password'], safe='')}@"
        query = urlencode({"__extra__": json.dumps(conn["extra"])})
        return f"emedgene://{scheme}://{auth}{quote(hostport, safe='')}/?{query}"

    # -- control -------------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """Logins, failures, requests per route, cases created, faults injected, peak concurrency,
        connections accepted, and the peak request rate over any 1 s window."""
        return self._call(self._server.simulation.state.counters)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Replace the monotonic clock that moves cases through their lifecycle and ages tokens, so
        a test or benchmark can live hours of analysis without waiting them (``clock`` is called on
        the server's thread)."""
        state = self._server.simulation.state
        self._call(lambda: setattr(state, "clock", clock))

    def reset_counters(self) -> None:
        """Zero the counters (logins, requests, connections, arrival rate), keeping cases and tokens."""
        self._call(self._server.simulation.state.reset_counters)

    def issued_tokens(self) -> list[str]:
        """Every token this simulator has issued, revoked and expired ones included (for leak scans)."""
        return self._call(lambda: list(self._server.simulation.state.issued))

    def set_status(self, case_name: str, status: str) -> None:
        """Set a case's status by hand; time no longer moves it. KeyError for an unknown case."""
        self._call(lambda: self._server.simulation.state.set_status(case_name, status))

    def inject(
        self, kind: str, times: int = 1, method: str | None = None, path: str | None = None, **kw: Any
    ) -> None:
        """Queue a fault for the next ``times`` requests matching ``method``/``path`` (a prefix).

        ``kw`` holds ``delay`` (seconds, for ``slow``) and ``retry_after`` (seconds, for ``429``);
        ``status`` and ``location`` (for ``redirect``); ``interval``, ``phase`` and ``size`` (for
        ``drip``); ``size`` and ``chunked`` (for ``huge``). See ``docs/simulator.md``.
        """
        fault = Fault(kind=kind, times=times, method=method, path=path, **kw)
        self._call(lambda: self._server.simulation.faults.add(fault))

    def set_fault_rate(
        self, rate: float, kinds: Sequence[str] | None = None, seed: int | None = None
    ) -> None:
        """Fail this fraction of ``/api/`` requests at random with one of ``kinds``; 0 turns it off."""
        self._call(lambda: self._server.simulation.faults.set_rate(rate, kinds, seed))

    def set_list(
        self, lag: float | None = None, lag_max: float | None = None, endless: bool | None = None
    ) -> None:
        """Change the case list: ``lag`` seconds before a new case is listed (``lag_max``: drawn up
        to it), ``endless`` pages. Arguments left None keep their value; ``lag`` alone clears
        ``lag_max``."""
        state = self._server.simulation.state

        def change() -> None:
            new_lag = state.list_lag if lag is None else float(lag)
            new_max = (None if lag is not None else state.list_lag_max) if lag_max is None else float(lag_max)
            new_endless = state.endless_list if endless is None else bool(endless)
            self._server.simulation.set_list(new_lag, new_max, new_endless)

        self._call(change)

    def set_quirks(self, **changes: Any) -> Quirks:
        """Change the named quirks now, keeping the others, and return the quirks in force;
        ValueError for an unknown name or a bad value. :meth:`reset` restores the configured ones."""
        return self._call(lambda: self._server.simulation.set_quirks(**changes))

    @property
    def quirks(self) -> Quirks:
        """The quirks in force."""
        return self._server.simulation.quirks

    def revoke_tokens(self) -> None:
        """Forget every token: the next authenticated call answers 401."""
        self._call(self._server.simulation.state.revoke_tokens)

    def expire_tokens(self) -> None:
        """Age every token past its lifetime: the next authenticated call answers 403."""
        self._call(self._server.simulation.state.expire_tokens)

    def reset(self) -> None:
        """Clear cases, tokens, counters and faults; restore the configured list options and quirks."""
        self._call(self._server.simulation.reset)

    def webhooks_sent(self) -> list[Sent]:
        """Every status hint drawn so far, with the faults applied and the receiver's answer."""
        sender = self._server.simulation.webhooks
        return [] if sender is None else self._call(lambda: [dataclasses.replace(s) for s in sender.log])

    def __repr__(self) -> str:
        state = "running" if self._loop is not None else "stopped"
        return f"<EmedgeneSimulator {self.url if state == 'running' else ''} {state}>".replace("  ", " ")


# -- CLI ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m emedgene_provider.testing.simulator",
        description="Serve a simulated Emedgene API for tests and offline DAG development.",
    )
    parser.add_argument("--host", default=defaults.host, help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port; 0 picks a free one")
    parser.add_argument("--username", default=defaults.username, help="login user (default %(default)s)")
    parser.add_argument("--password", default=defaults.password, help="login password (default %(default)s)")
    parser.add_argument("--api-key", default=defaults.api_key, help="accepted API key (default %(default)s)")
    parser.add_argument(
        "--stage-seconds",
        type=float,
        default=defaults.stage_seconds,
        help="seconds each lifecycle stage lasts",
    )
    parser.add_argument(
        "--token-ttl", type=float, default=defaults.token_ttl, help="token lifetime in seconds"
    )
    parser.add_argument(
        "--page-size-cap", type=int, default=defaults.page_size_cap, help="most cases a list page holds"
    )
    parser.add_argument("--token-style", choices=TOKEN_STYLES, default=defaults.token_style)
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a generated CA (path printed)")
    parser.add_argument("--cert", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--key", help="the PEM private key of --cert")
    parser.add_argument("--seed", type=int, help="make case names reproducible")
    parser.add_argument("--outcome", default=defaults.outcome, help="final status of new cases")
    parser.add_argument("--export-key", choices=EXPORT_KEYS, default=defaults.export_key)
    parser.add_argument(
        "--list-lag", type=float, default=defaults.list_lag, help="seconds before a new case is listed"
    )
    parser.add_argument("--list-lag-max", type=float, help="draw each case's list lag up to this")
    parser.add_argument("--endless-list", action="store_true", help="the case list never ends")
    parser.add_argument(
        "--custom-status",
        action="append",
        dest="custom_statuses",
        metavar="STATUS",
        help="a lab custom status, between Delivered and Finalized (repeatable)",
    )
    parser.add_argument(
        "--quirk",
        action="append",
        dest="quirks",
        metavar="NAME=VALUE",
        help=f"a quirk, VALUE as JSON or else a string (repeatable): {', '.join(Quirks.names())}",
    )
    parser.add_argument(
        "--webhook",
        action="append",
        dest="webhooks",
        metavar="NAME=VALUE",
        help="a webhook option, VALUE as JSON or else a string (repeatable): url, secret, shape, "
        "interval, delay_seconds, timeout, seed, and the faults drop, duplicate, delay, reorder, "
        "unsigned, forged, false_status (probabilities)",
    )
    parser.add_argument(
        "--storage",
        metavar="FILE.json",
        help='the BaseSpace datasets and platform samples that batch rows "auto" and "existing" find: '
        '{"basespace": [{"project", "biosample", "files"}], "platform_samples": [{"name", "id"}]}',
    )
    return parser


def _name_values(flag: str, items: Sequence[str]) -> dict[str, Any]:
    """``--flag NAME=VALUE`` options as a dict (VALUE is JSON, or else a plain string)."""
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{flag} takes NAME=VALUE, not {item!r}")
        try:
            changes[name.strip()] = json.loads(raw)
        except ValueError:
            changes[name.strip()] = raw
    return changes


def parse_quirks(items: Sequence[str]) -> Quirks:
    """``--quirk NAME=VALUE`` options as :class:`Quirks` (VALUE is JSON, or else a plain string)."""
    return Quirks.from_json(_name_values("--quirk", items))


def parse_webhooks(items: Sequence[str]) -> Webhooks | None:
    """``--webhook NAME=VALUE`` options as :class:`Webhooks`; None when there are none."""
    if not items:
        return None
    options = _name_values("--webhook", items)
    for text in ("url", "secret", "shape"):  # a numeric-looking secret stays a string
        if text in options:
            options[text] = str(options[text])
    return Webhooks.from_json(options)


async def serve(config: SimulatorConfig) -> None:
    """Serve ``config`` until SIGINT or SIGTERM, announcing readiness on stdout."""
    server = SimulatorServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        # The readiness line comes last, so a reader that waits for it has everything.
        if server.ca_file:
            print(f"CA bundle: {server.ca_file}", flush=True)
        print(f"Emedgene simulator listening on {server.url}", flush=True)
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = {k: v for k, v in vars(args).items() if v is not None}
        if "custom_statuses" in options:
            options["custom_statuses"] = tuple(options["custom_statuses"])
        options["quirks"] = parse_quirks(options.get("quirks", ()))
        options["webhooks"] = parse_webhooks(options.get("webhooks", ()))
        if "storage" in options:
            with open(options.pop("storage"), encoding="utf-8") as fh:
                options["basespace"], options["platform_samples"] = storage_from_json(json.load(fh))
        config = SimulatorConfig(**options)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


__all__ = ["EmedgeneSimulator", "SimulatorServer", "main", "parse_quirks", "parse_webhooks", "serve"]

if __name__ == "__main__":
    sys.exit(main())
