"""The public import path of the Emedgene operators: DAGs import them from here."""

from __future__ import annotations

from emedgene_provider.operators.assets import CANDIDATES_ASSET_ALIAS, EXPORTS_ASSET_ALIAS
from emedgene_provider.operators.case import EmedgeneGetCaseOperator
from emedgene_provider.operators.create import EmedgeneCreateCaseOperator
from emedgene_provider.operators.results import (
    EmedgeneExportCaseOperator,
    EmedgeneGetCandidatesOperator,
    EmedgeneResult,
)

__all__ = [
    "CANDIDATES_ASSET_ALIAS",
    "EXPORTS_ASSET_ALIAS",
    "EmedgeneCreateCaseOperator",
    "EmedgeneExportCaseOperator",
    "EmedgeneGetCandidatesOperator",
    "EmedgeneGetCaseOperator",
    "EmedgeneResult",
]
