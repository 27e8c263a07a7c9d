"""A wait does no blocking work on the triggerer's event loop: the first Emedgene trigger of a
process imports the async client (aiohttp, ~80 modules) and parses the CA bundle in a thread.

On the loop they stalled every other trigger for ~0.2 s, and Airflow's triggerer logged that its
async thread was blocked, "likely caused by a badly-written trigger". Each test runs the trigger in
a fresh interpreter (nothing imported yet, as in a new triggerer), after importing the trigger's
module as Airflow does, and records every module import and TLS context made on the loop's thread
while the trigger runs: a record, not a time, so a slow machine cannot make it pass or fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from airflow_fixtures import valid_case

from emedgene_provider.client.config import config_from_connection
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.testing import EmedgeneSimulator

RUN_ONE_WAIT = """
import asyncio, json, os, ssl, sys, threading, time

import importlib

import airflow.jobs.triggerer_job_runner  # what a triggerer has imported before any trigger runs

# Airflow's own first connection read imports these (common-compat's get_async_connection, the
# Task SDK's cache): Airflow's cost, paid by the first trigger of any provider, not this one's.
for airflows_own in ("asgiref.sync", "airflow.sdk.execution_time.cache"):
    try:
        importlib.import_module(airflows_own)
    except ImportError:  # Airflow 2
        pass
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger  # Airflow's own import step

assert "aiohttp" not in sys.modules, "the trigger's module must not import aiohttp (DAG parsing)"
loop_thread = None
on_loop = []


class ImportSpy:
    def find_spec(self, name, path=None, target=None):
        if threading.get_ident() == loop_thread:
            on_loop.append(f"import {name}")
        return None  # leave the finding to the real finders


sys.meta_path.insert(0, ImportSpy())
real_context = ssl.create_default_context


def context_spy(*args, **kwargs):
    if threading.get_ident() == loop_thread:
        on_loop.append(f"TLS context {kwargs.get('cafile')}")
    return real_context(*args, **kwargs)


ssl.create_default_context = context_spy


async def main():
    global loop_thread
    loop_thread = threading.get_ident()
    trigger = EmedgeneCaseStatusTrigger(
        case_name=os.environ["CASE"], emedgene_conn_id="emedgene_default", target_statuses=["Delivered"],
        failure_statuses=None, poll_interval=0.2, end_time=time.time() + 60,
    )
    async for event in trigger.run():
        return event.payload


print(json.dumps({"event": asyncio.run(main()), "on_loop": on_loop}))
"""


@pytest.fixture
def tls_sim() -> Iterator[EmedgeneSimulator]:
    with EmedgeneSimulator(tls=True, stage_seconds=0) as sim:
        yield sim


def _one_wait(sim: EmedgeneSimulator, extra: dict[str, object], **env: str) -> dict:
    conn = sim.connection_json()
    conn["extra"] = {**conn["extra"], **extra}
    config = config_from_connection(
        host=conn["host"], login=conn["login"], password=conn["password"], extra={"verify": sim.ca_file}
    )
    name = EmedgeneClient(config).create_case(valid_case())
    environ = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    environ.update(AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(conn), CASE=name, **env)
    done = subprocess.run(
        [sys.executable, "-c", RUN_ONE_WAIT], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["event"]["status"] == "success", result
    assert result["event"]["case_name"] == name
    return result


def test_a_wait_trusting_the_environments_ca_bundle_imports_and_parses_nothing_on_the_loop(
    tls_sim: EmedgeneSimulator,
) -> None:
    assert tls_sim.ca_file
    result = _one_wait(tls_sim, {"verify": True}, REQUESTS_CA_BUNDLE=tls_sim.ca_file)
    assert result["on_loop"] == [], "\n".join(result["on_loop"])


def test_a_wait_with_the_connections_ca_bundle_imports_and_parses_nothing_on_the_loop(
    tls_sim: EmedgeneSimulator,
) -> None:
    assert tls_sim.ca_file
    result = _one_wait(tls_sim, {"verify": tls_sim.ca_file})
    assert result["on_loop"] == [], "\n".join(result["on_loop"])
