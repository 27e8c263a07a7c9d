"""The simulator's options, shared by the CLI, the in-process runner and the pytest plugin."""

from __future__ import annotations

from dataclasses import dataclass

from emedgene_provider.client import status as st
from emedgene_provider.testing.state import TOKEN_STYLES

DEFAULT_USERNAME = "lab-user"
DEFAULT_PASSWORD = "lab-password"  # noqa: S105 - a published test credential
DEFAULT_API_KEY = "sim-api-key"
EXPORT_KEYS = ("hits", "variants")


@dataclass(frozen=True)
class SimulatorConfig:
    """Every option of the simulator; see ``docs/simulator.md`` for what each one does.

    :param host: interface to listen on.
    :param port: TCP port; 0 picks a free one.
    :param username: the one user that can log in with a password.
    :param password: that user's password.
    :param api_key: the one Illumina API key accepted by the token endpoint.
    :param stage_seconds: how long each lifecycle stage lasts.
    :param token_ttl: token lifetime in seconds; older tokens answer 403.
    :param page_size_cap: the most cases one ``GET /api/test`` page holds, whatever ``size`` says.
    :param token_style: ``plain``, ``expires_in`` or ``jwt`` (how tokens and their lifetime look).
    :param tls: serve HTTPS with a freshly generated CA and certificate.
    :param cert: serve HTTPS with this certificate (PEM) instead.
    :param key: the private key of ``cert``.
    :param seed: makes case names reproducible.
    :param outcome: the default final status of new cases (Delivered, Finalized, Issue reported...).
    :param export_key: the list key of the export answer, ``hits`` (documented) or ``variants``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    api_key: str = DEFAULT_API_KEY
    stage_seconds: float = 2.0
    token_ttl: float = 3600.0
    page_size_cap: int = 50
    token_style: str = "plain"  # noqa: S105 - a style name, not a secret
    tls: bool = False
    cert: str | None = None
    key: str | None = None
    seed: int | None = None
    outcome: str = st.DELIVERED
    export_key: str = "hits"

    def __post_init__(self) -> None:
        if self.token_style not in TOKEN_STYLES:
            raise ValueError(
                f"token_style must be one of {', '.join(TOKEN_STYLES)}, not {self.token_style!r}"
            )
        if self.export_key not in EXPORT_KEYS:
            raise ValueError(f"export_key must be one of {', '.join(EXPORT_KEYS)}, not {self.export_key!r}")
        if self.page_size_cap < 1:
            raise ValueError("page_size_cap must be at least 1")
        if self.stage_seconds < 0 or self.token_ttl <= 0:
            raise ValueError("stage_seconds must be >= 0 and token_ttl > 0")
        if bool(self.cert) != bool(self.key):
            raise ValueError("cert and key go together")
        if self.tls and self.cert:
            raise ValueError("use either tls=True (generated certificate) or cert/key, not both")
        if not (0 <= self.port <= 65535):
            raise ValueError("port must be between 0 and 65535")

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.cert)
