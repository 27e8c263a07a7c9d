"""Keeping passwords, API keys and tokens out of every message the client builds.

Airflow's secret masker guards log lines; this guards the text of exceptions too, which may be
shown elsewhere (the UI, an alert, a ticket). A secret is matched as written, as a JSON string
would escape it (a server that echoes a password inside JSON escapes ``"`` and non-ASCII letters),
URL-encoded (a form body or query echoed back), and base64-encoded: whole, and at each of the three
alignments at which it can sit inside a longer base64 text (the Basic header ``emedgene:<key>``, a
JSON document encoded whole).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
#: Encoded forms shorter than this are not scrubbed: a short secret's base64 is a few letters that
#: ordinary text holds by chance. The secret itself is always scrubbed, whatever its length.
MIN_ENCODED = 6
_URLSAFE = str.maketrans("+/", "-_")
_HEX_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _url_forms(secret: str) -> set[str]:
    forms = {quote(secret, safe=""), quote(secret), quote_plus(secret, safe=""), quote_plus(secret)}
    return forms | {_HEX_ESCAPE.sub(lambda m: m.group().lower(), form) for form in forms}


def _base64_forms(data: bytes) -> set[str]:
    """``data`` in base64 (standard and URL-safe, with and without padding), and the characters it
    alone decides at offsets 0, 1 and 2 (mod 3) inside a longer encoded text."""
    whole = base64.b64encode(data).decode("ascii")
    forms = {whole, whole.rstrip("=")}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        first = -(-8 * offset // 6)  # the first character free of the filler bytes
        last = 8 * (offset + len(data)) // 6  # past the last character wholly inside ``data``
        forms.add(encoded[first:last])
    forms |= {form.translate(_URLSAFE) for form in forms}
    return {form for form in forms if len(form) >= MIN_ENCODED}


def _forms(secret: str) -> set[str]:
    texts = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms = set(texts) | _url_forms(secret)
    for text in texts:  # a JSON document echoed in base64 holds the secret JSON-escaped
        forms |= _base64_forms(text.encode("utf-8"))
    return {form for form in forms if form}


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
