"""A tenant that cannot be reached: the error says where, why and what to check, in the words of
the other messages, through the hook (requests) and the async client the trigger runs (aiohttp),
and never in the HTTP libraries' own words (pool classes, "Max retries exceeded")."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.errors import EmedgeneUnavailableError
from emedgene_provider.hooks.emedgene import EmedgeneHook

LIBRARY_WORDS = ("Pool", "NewConnectionError", "Max retries", "Caused by", "ClientConnectorError", "Errno")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hook(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> EmedgeneHook:
    conn = {"conn_type": "emedgene", "host": host, "login": "lab-user", "password": "lab-password"}
    conn["extra"] = {"max_retries": 0, **extra}
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    return EmedgeneHook()


def _status_async(hook: EmedgeneHook, name: str) -> Any:
    async def run() -> Any:
        async with AsyncEmedgeneClient(hook.config) as client:
            return await client.get_case_status(name)

    return asyncio.run(run())


def _failure(hook: EmedgeneHook, client: str) -> str:
    """The error a read of a case ends in, through the sync client or the async one."""
    with pytest.raises(EmedgeneUnavailableError) as raised:
        if client == "sync":
            hook.client.get_case("CASE-1")
        else:
            _status_async(hook, "CASE-1")
    return str(raised.value)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_refused_connection_says_where_why_and_what_to_check(monkeypatch, client) -> None:
    port = _closed_port()
    hook = _hook(monkeypatch, f"http://127.0.0.1:{port}")
    message = _failure(hook, client)
    assert (
        f"cannot connect to http://127.0.0.1:{port} for POST /api/auth/v2/api_login/: the connection "
        "was refused (nothing listens on that port). Check the connection's host and port, any "
        "proxy (HTTPS_PROXY, NO_PROXY), and that this machine can reach the tenant"
    ) in message
    assert "login_url" not in message  # a password login never goes there
    assert not [words for words in LIBRARY_WORDS if words in message], message


@pytest.mark.parametrize("client", ["sync", "async"])
def test_an_unreachable_api_key_exchange_names_the_login_url(monkeypatch, client) -> None:
    """The API-key exchange goes to the extra 'login_url' (another host on a real tenant), so the
    advice names it too."""
    port = _closed_port()
    login_url = f"http://127.0.0.1:{port}/platform-services-manager/Token"
    conn = {"conn_type": "emedgene", "host": f"http://127.0.0.1:{port}"}
    conn["extra"] = {"max_retries": 0, "api_key": "k-unreachable-1", "login_url": login_url}
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    message = _failure(EmedgeneHook(), client)
    assert (
        f"cannot connect to http://127.0.0.1:{port} for POST /platform-services-manager/Token: the "
        "connection was refused (nothing listens on that port). Check the connection's host and port "
        "(or the extra 'login_url'), any proxy (HTTPS_PROXY, NO_PROXY), and that this machine can "
        "reach the tenant"
    ) in message
    assert "k-unreachable-1" not in message


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_name_that_does_not_resolve_is_named(monkeypatch, client) -> None:
    """``.invalid`` never resolves (RFC 2606), with or without a network."""
    hook = _hook(monkeypatch, "https://tenant.emedgene.invalid")
    message = _failure(hook, client)
    where = "https://tenant.emedgene.invalid:443 for POST /api/auth/v2/api_login/"
    assert f"cannot connect to {where}: " in message
    assert "the host name did not resolve (DNS)" in message
    assert not [words for words in LIBRARY_WORDS if words in message], message
