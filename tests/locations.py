"""Where the repository's files are, for tests at any depth under ``tests/``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLE_DAGS = ROOT / "dags_examples"

#: Loaded only when a call is made (or, for the simulator and cryptography, never in production).
HEAVY = (
    "emedgene_provider.client.sync",
    "emedgene_provider.client.aio",
    "emedgene_provider.client.deadline",
    "emedgene_provider.testing",
    "requests",
    "urllib3",
    "aiohttp",
    "tenacity",
    "cryptography",
    # the [openlineage] extra: imported only in the operators' OpenLineage methods
    "openlineage",
    "airflow.providers.openlineage",
)
