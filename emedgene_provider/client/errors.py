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


class EmedgeneListInconsistentError(EmedgeneUnavailableError, EmedgeneUnexpectedResponseError):
    """The case list could not be read consistently: it moved while it was paged (a case deleted
    above the page being read), ignored ``from``, or never ended. Such a listing proves nothing about
    what it lacks, so this is an :class:`EmedgeneUnavailableError` (whoever waits for a key to appear
    looks again and never takes it for absence) and an unexpected answer (the paging contract broke)."""


class EmedgeneCreatePendingError(EmedgeneAmbiguousCreateError):
    """A create is unclear and its idempotency key is not in the tenant's list yet, and the caller
    asked not to wait for the reconcile window here (a deferrable operator waits in the triggerer).

    :param key: the idempotency key.
    :param window_end: epoch seconds when the key will have stayed absent for the whole window.
    :param since: cases created before this (epoch seconds) are not looked at.
    """

    def __init__(
        self, message: str, *, key: str, window_end: float, since: float | None, **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.key = key
        self.window_end = window_end
        self.since = since


class EmedgeneRedirectError(EmedgeneConfigError):
    """The server answered a redirect (3xx), which the provider never follows.

    Following one would send the password, API key, token or a patient's case JSON to whatever
    origin ``Location`` names (https to http included), and a 302 would turn a create into a GET
    whose answer looked like a created case. A redirect from an API almost always means the
    connection points at the wrong place (http for https, an old tenant URL, a login page), so it
    is a configuration error: never retried, and never an ambiguous create, since the server did
    answer, with "not here" (a 303 on a create, "done, see there", is the exception: reported as
    :class:`EmedgeneAmbiguousCreateError` so the case is looked up before any second create).

    :param location_origin: ``scheme://host:port`` of the redirect's target (never its path or
        query, which may carry tokens), or None when the answer named none.
    """

    def __init__(self, message: str, *, location_origin: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.location_origin = location_origin
