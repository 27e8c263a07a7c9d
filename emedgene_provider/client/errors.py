"""The provider's exceptions.

Every message names the call, the case when there is one, the HTTP status and the server's own
words (trimmed, HTML reduced to its title) and never a password, API key or token: the client
scrubs the secrets it knows before an error is built. The classes carry the same facts as
attributes, so that operators can decide without parsing text.
"""

from __future__ import annotations


class EmedgeneError(Exception):
    """Base class of every error the provider raises.

    :param message: the full, user-facing message.
    :param operation: the public call that failed (``create_case``).
    :param case_name: the case concerned, if any.
    :param status_code: the HTTP status, if an answer came.
    :param server_message: what the server said, trimmed and scrubbed.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        case_name: str | None = None,
        status_code: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.case_name = case_name
        self.status_code = status_code
        self.server_message = server_message


class EmedgeneConfigError(EmedgeneError, ValueError):
    """The connection or an argument cannot work (missing host, no credentials, bad extra)."""


class EmedgeneInvalidCaseNameError(EmedgeneError, ValueError):
    """A case name that could reach another URL path (``../storage``, ``EMG1?x``) was refused."""


class EmedgeneAuthError(EmedgeneError):
    """Login failed, or the server refused a freshly issued token (401/403)."""


class EmedgeneNotFoundError(EmedgeneError):
    """404: the case (or resource) does not exist for this user."""


class EmedgeneInvalidRequestError(EmedgeneError):
    """Any other 4xx: the server rejected the request itself (validation, state). Not retried."""


class EmedgeneUnavailableError(EmedgeneError):
    """Transient failures (connection, timeout, 5xx, 429) outlasted every retry."""


class EmedgeneRateLimitedError(EmedgeneUnavailableError):
    """429 outlasted every retry.

    :param retry_after: the server's last ``Retry-After``, in seconds, if it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class EmedgeneAmbiguousCreateError(EmedgeneError):
    """A create may have been applied but its answer was lost (timeout, reset, 5xx after sending).

    The POST is never re-sent blindly: a second case for the same patient costs the lab money and
    a second sign-out. Whoever catches this must look for the case before creating again.
    """


class EmedgeneUnexpectedResponseError(EmedgeneError):
    """The server answered something the contract does not allow (HTML or non-JSON where JSON was
    due, a success without the expected field)."""
