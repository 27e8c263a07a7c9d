"""Key claims: one idempotency key, one owner creating under it, one case.

A key shared by callers that keep no common record (two threads, two calls one after the other,
two tasks with a lab's accession as key) is claimed before its create: the first caller holds it
and records the case it made; the others adopt that case, or, while the holder has recorded none,
treat its create as unclear and wait it out (:mod:`emedgene_provider.client.create`).

The rules live once, in :class:`CellClaims`, over named text cells that a store makes atomic as
best it can: a dict under a lock here (:class:`ProcessClaims`), Airflow Variables for a deployment
(:mod:`emedgene_provider.claims`). A cell is named after a SHA-256 of the key and holds only the
owner, the time it claimed and the case name: never the key, which may be a patient's accession.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from emedgene_provider.client.errors import EmedgeneError

#: Cell names: this prefix and the SHA-256 (hex) of the key.
CELL_PREFIX = "emedgene_claim:"


@dataclass(frozen=True)
class Claim:
    """What a claim store answers about a key."""

    granted: bool  #: True: ``owner`` holds the key now (newly, or it already did)
    holder: str | None = None  #: who holds it, when not granted
    case_name: str | None = None  #: the case recorded under the key (by whoever holds it), if any
    claimed_at: float | None = None  #: epoch seconds the holder claimed it


class KeyClaims(Protocol):
    """Where keys are claimed. ``claim`` grants when nobody holds the key, when ``owner`` does, or
    when the holder claimed it before ``take_over_before`` and recorded no case (it died
    mid-create, and the caller waited its window out); it never grants a key with a case recorded
    to another owner. ``record`` notes the case made under a claim; ``release`` drops a claim that
    made none (a refused create), so the next claimant may create."""

    def claim(self, key: str, owner: str, now: float, *, take_over_before: float | None = None) -> Claim: ...

    def record(self, key: str, owner: str, case_name: str) -> None: ...

    def release(self, key: str, owner: str) -> None: ...


class Cells(Protocol):
    """Named text cells. Each change is conditional and says whether it took effect, so that of two
    callers racing for one cell exactly one is told it won (as far as the store can tell)."""

    def read(self, name: str) -> str | None: ...

    def create(self, name: str, text: str) -> bool:
        """Store ``text`` if ``name`` is absent."""
        ...

    def replace(self, name: str, old: str, new: str) -> bool:
        """Store ``new`` if ``name`` holds ``old``."""
        ...

    def delete(self, name: str, old: str) -> bool:
        """Drop ``name`` if it holds ``old``."""
        ...


def cell_name(key: str) -> str:
    """The cell of ``key``: stable across processes, and not the key itself."""
    return CELL_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Holding:
    owner: str
    claimed_at: float
    case_name: str | None = None

    def text(self) -> str:
        return json.dumps({"owner": self.owner, "claimed_at": self.claimed_at, "case_name": self.case_name})

    @classmethod
    def parse(cls, name: str, text: str) -> _Holding:
        try:
            data: Any = json.loads(text)
            owner, claimed_at, case_name = data["owner"], data["claimed_at"], data.get("case_name")
            if not isinstance(owner, str) or not isinstance(claimed_at, (int, float)):
                raise TypeError
            if case_name is not None and not isinstance(case_name, str):
                raise TypeError
        except (ValueError, TypeError, KeyError) as exc:
            raise EmedgeneError(
                f"Emedgene key claim {name} holds something that is not a claim; delete it only if no "
                "create for its idempotency key is running",
                operation="create_case",
            ) from exc
        return cls(owner, float(claimed_at), case_name)


class CellClaims:
    """:class:`KeyClaims` over :class:`Cells`: read the key's cell, decide, change it only if it
    still holds what was read, and decide again if it did not.

    :param cells: the store.
    :param clock: epoch seconds, for a case recorded after the claim was lost (released, evicted).
    :param attempts: rounds of read-decide-change before contention on one key is an error.
    """

    def __init__(self, cells: Cells, *, clock: Callable[[], float] = time.time, attempts: int = 8) -> None:
        self.cells, self.clock, self.attempts = cells, clock, attempts

    def _read(self, name: str) -> tuple[str | None, _Holding | None]:
        text = self.cells.read(name)
        return text, None if text is None else _Holding.parse(name, text)

    def _contended(self, key: str, what: str) -> EmedgeneError:
        return EmedgeneError(
            f"Emedgene create_case: could not {what} idempotency key {key!r}: its claim changed "
            f"{self.attempts} times while it was being read",
            operation="create_case",
        )

    def claim(self, key: str, owner: str, now: float, *, take_over_before: float | None = None) -> Claim:
        name = cell_name(key)
        for _ in range(self.attempts):
            text, held = self._read(name)
            mine = _Holding(owner, now).text()
            if text is None or held is None:
                if self.cells.create(name, mine):
                    return Claim(True, owner, None, now)
            elif held.owner == owner:
                return Claim(True, owner, held.case_name, held.claimed_at)
            elif (
                held.case_name is None and take_over_before is not None and held.claimed_at < take_over_before
            ):
                if self.cells.replace(name, text, mine):
                    return Claim(True, owner, None, now)
            else:
                return Claim(False, held.owner, held.case_name, held.claimed_at)
        raise self._contended(key, "claim")

    def record(self, key: str, owner: str, case_name: str) -> None:
        """Note ``case_name`` under the key, also if the claim was lost meanwhile (the case exists).
        The holder may replace its own case (it found that one failed); a case another owner
        recorded there is two cases for one key: an error naming both."""
        name = cell_name(key)
        for _ in range(self.attempts):
            text, held = self._read(name)
            if text is None or held is None:
                if self.cells.create(name, _Holding(owner, self.clock(), case_name).text()):
                    return
                continue
            if held.case_name == case_name:
                return
            if held.case_name is not None and held.owner != owner:
                raise EmedgeneError(
                    f"Emedgene create_case: idempotency key {key!r} names case {held.case_name} "
                    f"(recorded by {held.owner}), and {owner} created case {case_name} under it: two "
                    "cases for one key; review them on the tenant",
                    operation="create_case",
                    case_name=case_name,
                )
            claimed_at = held.claimed_at if held.owner == owner else self.clock()
            if self.cells.replace(name, text, _Holding(owner, claimed_at, case_name).text()):
                return
        raise self._contended(key, "record a case under")

    def release(self, key: str, owner: str) -> None:
        name = cell_name(key)
        for _ in range(self.attempts):
            text, held = self._read(name)
            if text is None or held is None or held.owner != owner or held.case_name is not None:
                return
            if self.cells.delete(name, text):
                return
        raise self._contended(key, "release")


class MemoryCells:
    """:class:`Cells` in a dict under a lock (each change is atomic), keeping the ``max_keys`` most
    recently used."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._cells: OrderedDict[str, str] = OrderedDict()
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self._cells)

    def read(self, name: str) -> str | None:
        with self._guard:
            text = self._cells.get(name)
            if text is not None:
                self._cells.move_to_end(name)
            return text

    def _store(self, name: str, text: str) -> None:
        self._cells[name] = text
        self._cells.move_to_end(name)
        while len(self._cells) > self.max_keys:
            self._cells.popitem(last=False)

    def create(self, name: str, text: str) -> bool:
        with self._guard:
            if name in self._cells:
                return False
            self._store(name, text)
            return True

    def replace(self, name: str, old: str, new: str) -> bool:
        with self._guard:
            if self._cells.get(name) != old:
                return False
            self._store(name, new)
            return True

    def delete(self, name: str, old: str) -> bool:
        with self._guard:
            if self._cells.get(name) != old:
                return False
            del self._cells[name]
            return True

    def clear(self) -> None:
        with self._guard:
            self._cells.clear()


class ProcessClaims(CellClaims):
    """Claims held in this process's memory: what two calls (or threads) of one process share.

    ``claim`` is atomic. :meth:`lock` serialises the callers of one key, so that a second thread
    waits for the first one's case and adopts it rather than racing it. At most ``max_keys`` keys
    are kept, the least recently used forgotten first: a forgotten key only loses its shortcut,
    since the tenant still carries the key in the case and the key look-up finds it.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.memory = MemoryCells(max_keys)
        super().__init__(self.memory)
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def lock(self, key: str) -> threading.Lock:
        """The lock of ``key``, to hold across claim, create and record; it lives while held."""
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def clear(self) -> None:
        """Forget every claim (tests)."""
        self.memory.clear()
