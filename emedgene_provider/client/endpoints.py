"""Every Emedgene call the provider makes, as data.

A call is described once here (method, path, query, body, which statuses mean success) and
executed by a transport: the sync one in :mod:`emedgene_provider.client.sync`, an async one for
triggers. The simulator serves the same paths. Sources for each path are in the project's
``docs/emedgene-api.md``: [doc] the vendor's API Beginner Guide, [cli] its batch case creator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from emedgene_provider.client.errors import EmedgeneInvalidCaseNameError

LOGIN_PATH = "/api/auth/v2/api_login/"  # [doc] username/password, JSON body
LEGACY_LOGIN_PATH = "/api/auth/api_login/"  # [py] answers {"Authorization": "..."}
API_KEY_TOKEN_PATH = "/platform-services-manager/Token"  # noqa: S105  [doc] <x>.login.illumina.com
CASES_PATH = "/api/test"  # [doc] list (from/size), one case, export
CREATE_CASE_PATH = "/api/cases/v2/cases"  # [doc][cli] POST, 201, ?dry_run=true [cli]
STORAGE_PATH = "/api/storage"  # [doc]; /{id} and /{id}/fs/list [py]
SAMPLES_PATH = "/api/sample/"  # [py] ?query=<name>&sampleType=fastq
CANDIDATES_PATH = "/api/candidates"  # [doc]

#: What a case name may look like. Real names are ``EMG`` + 9 digits [ui]; we accept any token of
#: letters, digits, ``_``, ``.`` and ``-`` (but never ``..``) so that a lab's other identifiers
#: still work, and reject everything that could change the path or query of a URL.
CASE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def case_path_segment(case_name: object) -> str:
    """Return ``case_name`` ready to stand as one URL path segment, or raise.

    Templated values reach this function, so a name such as ``../storage``, ``EMG1?x`` or
    ``EMG1#x`` must never become part of a different URL: it is rejected with a message that
    shows it (repr, trimmed), and what passes is still percent-encoded.
    """
    if not isinstance(case_name, str) or not CASE_NAME_PATTERN.fullmatch(case_name) or ".." in case_name:
        shown = repr(case_name)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise EmedgeneInvalidCaseNameError(
            f"Invalid Emedgene case name {shown}: expected letters, digits, '_', '.' or '-' "
            "(such as EMG107903188), with no '/', '..', '?', '#', '%' or whitespace."
        )
    return quote(case_name, safe="")


@dataclass(frozen=True)
class ApiCall:
    """One request to the Emedgene API, independent of the HTTP library that sends it.

    :param operation: the public method it serves (``get_case``), named in every error.
    :param method: HTTP method.
    :param path: path below the tenant's base URL, already encoded.
    :param params: query parameters, as pairs so that a key may repeat (``test_fields``).
    :param json: the JSON body, if any.
    :param case_name: the case it concerns, named in every error.
    :param expected: the statuses that mean success.
    :param safe_to_repeat: a write that changes nothing, so may be retried like a read.
    """

    operation: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    case_name: str | None = None
    expected: tuple[int, ...] = (200,)
    safe_to_repeat: bool = False

    @property
    def idempotent(self) -> bool:
        """Whether sending the call twice is harmless (so it may be retried after any failure):
        reads, and writes that change nothing (a ``dry_run`` validation)."""
        return self.method in ("GET", "HEAD", "OPTIONS") or self.safe_to_repeat

    def describe(self) -> str:
        """``operation(case)`` for messages."""
        return f"{self.operation}({self.case_name})" if self.case_name else self.operation


def list_cases(offset: int, size: int) -> ApiCall:
    """One page of cases [doc]: ``from`` is the offset, ``size`` the page size."""
    return ApiCall("iter_cases", "GET", CASES_PATH, (("from", str(offset)), ("size", str(size))))


def list_storage_providers() -> ApiCall:
    return ApiCall("list_storage_providers", "GET", STORAGE_PATH)


def get_storage_provider(storage_id: int) -> ApiCall:
    """One storage provider, with its ``scheme`` (``basespace``...) [py]."""
    return ApiCall("get_storage_provider", "GET", f"{STORAGE_PATH}/{int(storage_id)}")


def list_storage_folder(storage_id: int, path: str, offset: int, size: int) -> ApiCall:
    """One page of a storage folder: ``{resources: [{name, alias}], has_more}`` [py]."""
    params = (("from", str(offset)), ("size", str(size)), ("path", path))
    return ApiCall("list_storage_folder", "GET", f"{STORAGE_PATH}/{int(storage_id)}/fs/list", params)


def find_samples(name: str) -> ApiCall:
    """The platform's FASTQ samples matching ``name``: ``{total, hits: [{id, note}]}`` [py]."""
    return ApiCall("find_samples", "GET", SAMPLES_PATH, (("query", name), ("sampleType", "fastq")))


def create_case(case: dict[str, Any], *, dry_run: bool = False) -> ApiCall:
    """Create a case; 201 is the only success [doc][py]. ``dry_run`` validates only [cli]."""
    if dry_run:
        return ApiCall(
            "validate_case",
            "POST",
            CREATE_CASE_PATH,
            (("dry_run", "true"),),
            json=case,
            expected=(200, 201, 204),
            safe_to_repeat=True,
        )
    return ApiCall("create_case", "POST", CREATE_CASE_PATH, json=case, expected=(201,))


def get_case(case_name: str, test_fields: list[str] | tuple[str, ...] | None = None) -> ApiCall:
    """The whole case, or only ``test_fields`` (the key repeats, as the guide shows) [doc]."""
    params = tuple(("test_fields", str(f)) for f in (test_fields or ()))
    return ApiCall(
        "get_case", "GET", f"{CASES_PATH}/{case_path_segment(case_name)}", params, case_name=case_name
    )


def get_case_status(case_name: str) -> ApiCall:
    return ApiCall(
        "get_case_status",
        "GET",
        f"{CASES_PATH}/{case_path_segment(case_name)}",
        (("test_fields", "status"),),
        case_name=case_name,
    )


def get_candidates(case_name: str) -> ApiCall:
    return ApiCall(
        "get_candidates", "GET", f"{CANDIDATES_PATH}/{case_path_segment(case_name)}", case_name=case_name
    )


def export_case(case_name: str) -> ApiCall:
    return ApiCall(
        "export_case", "GET", f"{CASES_PATH}/{case_path_segment(case_name)}/export", case_name=case_name
    )
