"""Shared fixtures. Keep this small and additive: other test modules may add their own."""

from __future__ import annotations

import pytest
from airflow_cli import airflow_cli  # noqa: F401 - a session fixture: a real Airflow CLI and DB

from emedgene_provider.client.auth import TOKEN_CACHE


@pytest.fixture(autouse=True)
def _clear_token_cache():
    """The token cache is process-wide: no test may see a token another test obtained."""
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()
