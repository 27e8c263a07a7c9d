"""The simulator's options, shared by the CLI, the in-process runner and the pytest plugin."""

from __future__ import annotations

from dataclasses import dataclass, field

from emedgene_provider.client import status as st
from emedgene_provider.testing.quirks import Quirks
from emedgene_provider.testing.state import TOKEN_STYLES
from emedgene_provider.testing.storage import (
    DEFAULT_BASESPACE,
    DEFAULT_PLATFORM_SAMPLES,
    PlatformSample,
    StoredSample,
)
from emedgene_provider.testing.webhooks import Webhooks

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
    :param list_lag: seconds a new case stays out of ``GET /api/test`` (a search index's lag);
        ``GET /api/test/{name}`` finds it at once.
    :param list_lag_max: draw each case's lag between ``list_lag`` and this.
    :param endless_list: ``GET /api/test`` never runs out of pages.
    :param custom_statuses: the lab's custom statuses (between Delivered and Finalized): an
        ``outcome`` among them is reached through Delivered, and they count as delivered.
    :param quirks: how the tenant lags, skews and lies (:class:`Quirks`); ``reset`` restores these.
    :param webhooks: where to send status hints, and their faults (:class:`Webhooks`); none by default.
    :param basespace: the datasets of the BaseSpace storage (id 3) that ``auto`` rows find.
    :param platform_samples: the FASTQ samples on the platform that ``existing`` rows reuse.
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
    custom_statuses: tuple[str, ...] = ()
    list_lag: float = 0.0
    list_lag_max: float | None = None
    endless_list: bool = False
    quirks: Quirks = field(default_factory=Quirks)
    webhooks: Webhooks | None = None
    basespace: tuple[StoredSample, ...] = DEFAULT_BASESPACE
    platform_samples: tuple[PlatformSample, ...] = DEFAULT_PLATFORM_SAMPLES

    def __post_init__(self) -> None:
        if not isinstance(self.quirks, Quirks):
            raise ValueError(f"quirks must be a Quirks, not {type(self.quirks).__name__}")
        if self.webhooks is not None and not isinstance(self.webhooks, Webhooks):
            raise ValueError(f"webhooks must be a Webhooks, not {type(self.webhooks).__name__}")
        check_list_options(self.list_lag, self.list_lag_max)
        object.__setattr__(self, "custom_statuses", tuple(self.custom_statuses))
        for custom in self.custom_statuses:
            if not isinstance(custom, str) or not custom.strip() or st.is_lifecycle_status(custom):
                raise ValueError(f"custom status {custom!r} must be a new, non-blank status name")
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


def check_list_options(lag: float, lag_max: float | None) -> None:
    """ValueError unless the list lag options make sense (shared by the options and the admin call)."""
    if not 0 <= lag < float("inf") or (lag_max is not None and not lag <= lag_max < float("inf")):
        raise ValueError("list_lag must be >= 0 and finite, and list_lag_max (if set) at least list_lag")
