"""Keeping passwords, API keys and tokens out of every message the client builds.

Airflow's secret masker guards log lines; this guards the text of exceptions too, which may be
shown elsewhere (the UI, an alert, a ticket). A secret is matched as written and as a JSON string
would escape it (a server that echoes a password inside JSON escapes ``"`` and non-ASCII letters).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

MASK = "***"


def _forms(secret: str) -> set[str]:
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


class Scrubber:
    """Replaces every known secret by ``***``; callable as ``scrub(text)``.

    :param secrets: the secrets known at the start (password, API key and its Basic form).
    :param on_secret: told of each secret added later (the hook passes Airflow's ``mask_secret``).
    """

    def __init__(self, secrets: Iterable[str] = (), on_secret: Callable[[str], None] | None = None) -> None:
        self._forms: list[str] = []  # longest first, so a secret containing another goes whole
        self._seen: set[str] = set()
        self._on_secret = on_secret
        for secret in secrets:
            self.add(secret, announce=False)

    def add(self, secret: str, *, announce: bool = True) -> None:
        """Know ``secret`` from now on; announce it (to the masker) the first time it is seen."""
        if not secret or secret in self._seen:
            return
        self._seen.add(secret)
        self._forms = sorted(set(self._forms) | _forms(secret), key=len, reverse=True)
        if announce and self._on_secret:
            self._on_secret(secret)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return text
