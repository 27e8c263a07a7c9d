"""Every exception the provider raises, importable from one place.

The ``Emedgene*Error`` family of the API client is defined, Airflow-free, in
:mod:`emedgene_provider.client.errors` and re-exported here;
:class:`EmedgeneCaseFailedError`, the failure of a wait, is an Airflow task exception and lives
here. Catch ``EmedgeneError`` for every failed call, ``EmedgeneCaseFailedError`` for a failed case.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowFailException

from emedgene_provider.client.errors import (
    EmedgeneAmbiguousCreateError,
    EmedgeneAuthError,
    EmedgeneConfigError,
    EmedgeneCreatePendingError,
    EmedgeneError,
    EmedgeneInvalidCaseNameError,
    EmedgeneInvalidRequestError,
    EmedgeneListInconsistentError,
    EmedgeneNotFoundError,
    EmedgeneRateLimitedError,
    EmedgeneRedirectError,
    EmedgeneUnavailableError,
    EmedgeneUnexpectedResponseError,
)

__all__ = [
    "EmedgeneAmbiguousCreateError",
    "EmedgeneAuthError",
    "EmedgeneCaseFailedError",
    "EmedgeneConfigError",
    "EmedgeneCreatePendingError",
    "EmedgeneError",
    "EmedgeneInvalidCaseNameError",
    "EmedgeneInvalidRequestError",
    "EmedgeneListInconsistentError",
    "EmedgeneNotFoundError",
    "EmedgeneRateLimitedError",
    "EmedgeneRedirectError",
    "EmedgeneUnavailableError",
    "EmedgeneUnexpectedResponseError",
]


class EmedgeneCaseFailedError(AirflowFailException):
    """The case reached a failure status (Issue reported, Trash bin, ...): the task fails now, with
    no retry, since retrying it cannot change the case; a wait never runs out its timeout on a
    failed case.

    An Airflow task exception, not an :class:`~emedgene_provider.client.errors.EmedgeneError`: no
    call failed (the API answered, with a status), and ``AirflowException`` already has a
    ``status_code`` of its own (an HTTP status for Airflow's API) that the client errors' would shadow.

    :param message: the full, user-facing message (names the case and its status).
    :param case_name: the case.
    :param case_status: the failure status it is in, as the server wrote it.
    """

    def __init__(self, message: str, *, case_name: str | None = None, case_status: str | None = None) -> None:
        super().__init__(message)
        self.case_name = case_name
        self.case_status = case_status
