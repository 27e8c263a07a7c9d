"""The triggerer's client honours the environment the workers' client does: HTTPS_PROXY and
REQUESTS_CA_BUNDLE. A deferred wait must go the way its task went, or it fails where the task
worked (a proxy-only tenant, a lab CA set in the environment)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from airflow_fixtures import valid_case

from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator


class ConnectProxy:
    """A tunnelling HTTP proxy on loopback that records each CONNECT target."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True).start()
        self._ready.wait(10)

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            writer.close()
            return
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.fixture
def tls_sim() -> Iterator[EmedgeneSimulator]:
    with EmedgeneSimulator(tls=True, stage_seconds=0) as sim:
        yield sim


def _config(sim: EmedgeneSimulator, **extra: object):
    conn = sim.connection_json()
    return config_from_connection(
        host=conn["host"], login=conn["login"], password=conn["password"], extra={**conn["extra"], **extra}
    )


async def _status_via_async(config, name: str) -> str:
    async with AsyncEmedgeneClient(config) as client:
        return await client.get_case_status(name)


def test_deferred_waits_go_through_the_proxy_the_workers_use(
    tls_sim: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ConnectProxy()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    config = _config(tls_sim)
    name = EmedgeneClient(config).create_case(valid_case())
    worker_tunnels = len(proxy.targets)
    assert worker_tunnels >= 1
    assert asyncio.run(_status_via_async(config, name)) == "Delivered"
    assert len(proxy.targets) > worker_tunnels  # the triggerer's client tunnelled too
    assert all(target.endswith(f":{tls_sim.port}") for target in proxy.targets)


def test_deferred_waits_trust_the_ca_bundle_of_the_environment(
    tls_sim: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_sim.ca_file
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_sim.ca_file)
    config = _config(tls_sim, verify=True)  # the default: no bundle in the connection
    name = EmedgeneClient(config).create_case(valid_case())  # the worker trusts the bundle
    assert asyncio.run(_status_via_async(config, name)) == "Delivered"
