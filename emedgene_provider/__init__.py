"""Apache Airflow provider for Illumina's Emedgene clinical genomics platform.

Importing the package must stay cheap (Airflow calls :func:`get_provider_info` for every
``airflow`` command): nothing here imports Airflow or the client.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads; validated against its ``provider_info.schema.json``."""
    from emedgene_provider.connection_fields import UI_FIELD_BEHAVIOUR, conn_fields_schema

    return {
        "package-name": "airflow-provider-emedgene",
        "name": "Emedgene",
        "description": "Illumina Emedgene clinical genomics: create cases, wait on their status, "
        "fetch candidates and exports.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Emedgene",
                "external-doc-url": "https://help.emg.illumina.com/",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "Emedgene",
                "python-modules": [
                    "emedgene_provider.operators.emedgene",
                    "emedgene_provider.operators.batch",
                ],
            },
        ],
        "sensors": [
            {"integration-name": "Emedgene", "python-modules": ["emedgene_provider.sensors.emedgene"]},
        ],
        "hooks": [
            {"integration-name": "Emedgene", "python-modules": ["emedgene_provider.hooks.emedgene"]},
        ],
        "triggers": [
            {
                "integration-name": "Emedgene",
                "python-modules": [
                    "emedgene_provider.triggers.emedgene",
                    "emedgene_provider.triggers.case_events",
                ],
            },
        ],
        # One Asset per tenant, emedgene://<tenant host>: its events are case status changes. Its
        # OpenLineage dataset is the one the operators' cases share a namespace with (lineage.py).
        "asset-uris": [
            {
                "schemes": ["emedgene"],
                "handler": "emedgene_provider.case_events.sanitize_uri",
                "to_openlineage_converter": "emedgene_provider.lineage.convert_asset_to_openlineage",
            }
        ],
        "config": {
            "emedgene": {
                "description": "The Emedgene provider's settings for the whole deployment (a tenant's "
                "are its connection's extras).",
                "options": {
                    "lineage_plain_paths": {
                        "description": "Send sample file and result file paths in OpenLineage events "
                        "as they are. Off by default: paths can hold patient data (sample names) and "
                        "lineage events leave the cluster, so each path is sent as sha256:<hex>. "
                        "See docs/lineage.md.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                },
            },
        },
        "extra-links": ["emedgene_provider.links.emedgene.EmedgeneCaseLink"],
        "connection-types": [
            {
                "connection-type": "emedgene",
                "hook-class-name": "emedgene_provider.hooks.emedgene.EmedgeneHook",
                "hook-name": "Emedgene",
                "conn-fields": conn_fields_schema(),
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
