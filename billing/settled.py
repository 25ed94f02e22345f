"""Which call ids an account has ever settled: a compact filter with no false negatives.

"Settled is final" must hold for ever (a call id is never billed or granted twice, in any
period), but an account's workflow cannot carry every call id it ever settled, and asking
the ledger on every new call would put the database in front of each answer. So the
workflow keeps a *scalable Bloom filter* of every settled call id:

* ``might_contain`` is False for every id that was never added: a brand-new call is
  answered from memory, with no database look-up.
* It is True for every id that was added, and for a few others (0.1 % of new ids per
  slice: 0.1 % below 512 settled calls, 0.5 % at 16,000, 1 % at 500,000): only those cost
  one ledger look-up, which gives the exact answer.

Slices double in capacity (512, 1,024, 2,048, ...; Almeida et al., "Scalable Bloom
Filters", 2007) at 14.4 bits per id: ~2.4 bytes per settled call in the continue-as-new
input (base64), about 1 KB for a quiet account, 240 KB at 100,000 calls. A slice is
allocated whole when its first id arrives. Bits are stored as base64 text
because the filter travels in the workflow's JSON input at continue-as-new; the decoded
bits are cached beside it. Pure and deterministic (hashlib), so it runs in the workflow
sandbox and in property tests alike.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field

FIRST_CAPACITY = 512
SLICE_FALSE_POSITIVE_RATE = 0.001


@dataclass
class FilterSlice:
    capacity: int
    bits: str  # base64 of the bit array
    hashes: int
    count: int = 0

    @classmethod
    def empty(cls, capacity: int, false_positive_rate: float) -> FilterSlice:
        # The optimum for n ids at rate p: n·ln(1/p)/ln(2)² bits and log2(1/p) hashes.
        bits = math.ceil(capacity * math.log(1 / false_positive_rate) / math.log(2) ** 2)
        hashes = math.ceil(math.log2(1 / false_positive_rate))
        empty = bytes((bits + 7) // 8)
        return cls(capacity=capacity, bits=base64.b64encode(empty).decode(), hashes=hashes)

    def _raw(self) -> bytearray:
        cached: tuple[str, bytearray] | None = self.__dict__.get("_cache")
        if cached is None or cached[0] is not self.bits:
            cached = (self.bits, bytearray(base64.b64decode(self.bits)))
            self.__dict__["_cache"] = cached
        return cached[1]

    def _positions(self, call_id: str) -> list[int]:
        digest = hashlib.blake2b(call_id.encode(), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        size = len(self._raw()) * 8
        return [(h1 + i * h2) % size for i in range(self.hashes)]

    def might_contain(self, call_id: str) -> bool:
        raw = self._raw()
        return all(raw[p >> 3] & (1 << (p & 7)) for p in self._positions(call_id))

    def add(self, call_id: str) -> None:
        raw = self._raw()
        for p in self._positions(call_id):
            raw[p >> 3] |= 1 << (p & 7)
        self.count += 1
        self.bits = base64.b64encode(raw).decode()
        self.__dict__["_cache"] = (self.bits, raw)


@dataclass
class SettledFilter:
    slices: list[FilterSlice] = field(default_factory=list)
    # False until the filter holds every id the ledger does (a state carried over from a
    # version without a filter, or a workflow re-created for an existing account): until
    # then every unknown id counts as "maybe settled". New accounts start complete.
    complete: bool = False
    # Back-filling from the ledger: the last ledger row id loaded (survives hand-overs).
    loaded_after_id: int = 0

    def might_contain(self, call_id: str) -> bool:
        if not self.complete:
            return True
        return any(s.might_contain(call_id) for s in self.slices)

    def add(self, call_id: str) -> None:
        """Add ``call_id`` unless the filter already answers "maybe" for it (back-filling
        can meet ids settled meanwhile; counting them twice would only grow the filter)."""
        if any(s.might_contain(call_id) for s in self.slices):
            return
        if not self.slices or self.slices[-1].count >= self.slices[-1].capacity:
            capacity = FIRST_CAPACITY << len(self.slices)
            self.slices.append(FilterSlice.empty(capacity, SLICE_FALSE_POSITIVE_RATE))
        self.slices[-1].add(call_id)

    @property
    def ids(self) -> int:
        return sum(s.count for s in self.slices)
