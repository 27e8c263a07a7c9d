"""BoundedSession reads requests' environment settings (proxies, CA bundle) once per host."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from emedgene_provider.client.deadline import BoundedSession


def test_environment_is_read_once_per_host_and_copies_are_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.lab.example:3128")
    monkeypatch.setenv("NO_PROXY", "login.example")
    reads: list[str] = []
    original = requests.Session.merge_environment_settings

    def counting(self: Any, url: Any, *args: Any) -> Any:
        reads.append(url)
        return original(self, url, *args)

    monkeypatch.setattr(requests.Session, "merge_environment_settings", counting)
    session = BoundedSession()
    for _ in range(5):
        settings = session.merge_environment_settings(
            "https://lab.emedgene.com/api/test/X", {}, True, True, None
        )
        assert settings["proxies"]["https"] == "http://proxy.lab.example:3128"
        settings["proxies"]["https"] = "changed by a caller"  # must not reach the next call
    bypass = session.merge_environment_settings("https://login.example/token", {}, True, True, None)
    assert "https" not in bypass["proxies"]  # NO_PROXY honoured, per host
    assert reads == ["https://lab.emedgene.com/api/test/X", "https://login.example/token"]


def test_explicit_proxies_are_merged_by_requests_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    session = BoundedSession()
    explicit = {"https": "http://other:8080"}
    first = session.merge_environment_settings("https://lab.emedgene.com/", explicit, True, True, None)
    assert first["proxies"]["https"] == "http://other:8080"
