"""The Emedgene simulator: a real HTTP server that follows the API contract, without Airflow.

For the provider's own tests and for labs developing DAGs offline::

    from emedgene_provider.testing import EmedgeneSimulator

    with EmedgeneSimulator(stage_seconds=0.2) as sim:
        ...  # point a connection at sim.connection_json()

The pytest fixtures ``emedgene_simulator`` and ``emedgene_simulator_factory`` come with the
package, opt-in (see :mod:`emedgene_provider.testing.pytest_plugin`). Full docs: ``docs/simulator.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emedgene_provider.testing.config import SimulatorConfig
    from emedgene_provider.testing.faults import FAULT_KINDS
    from emedgene_provider.testing.quirks import Quirks
    from emedgene_provider.testing.simulator import EmedgeneSimulator
    from emedgene_provider.testing.webhooks import Webhooks

__all__ = ["FAULT_KINDS", "EmedgeneSimulator", "Quirks", "SimulatorConfig", "Webhooks"]

_HOMES = {
    "EmedgeneSimulator": "emedgene_provider.testing.simulator",
    "SimulatorConfig": "emedgene_provider.testing.config",
    "FAULT_KINDS": "emedgene_provider.testing.faults",
    "Quirks": "emedgene_provider.testing.quirks",
    "Webhooks": "emedgene_provider.testing.webhooks",
}


def __getattr__(name: str) -> Any:
    """Import lazily, so ``python -m emedgene_provider.testing.simulator`` does not import the
    module twice (runpy warns when a package's ``__init__`` already imported it)."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
