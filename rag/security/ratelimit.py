"""Per-key token buckets, in process.

A key limited to ``N`` per period holds up to ``N`` tokens and gains ``N / period`` per second;
each request takes one. With several server processes each keeps its own buckets, so the limit
applies per process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rag.security.keys import Rate


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    rate: Rate


class RateLimiter:
    """Token buckets keyed by API key id; thread-safe.

    At most ``max_buckets`` buckets are kept: past that, the buckets that have refilled (which
    behave exactly like new ones) are dropped, and if that is not enough, the longest idle.

    Args:
        clock: monotonic seconds (tests may pass their own).
        max_buckets: buckets kept in memory.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 10_000) -> None:
        self._clock = clock
        self.max_buckets = max_buckets
        self._lock = threading.Lock()
        self._buckets: dict[int, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * b.rate.per_second >= b.rate.count]
        for k in full:
            del self._buckets[k]
        over = len(self._buckets) - self.max_buckets // 2
        if over > 0:
            for k in sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[:over]:
                del self._buckets[k]

    def take(self, key_id: int, rate: Rate) -> int:
        """Take one token from ``key_id``'s bucket.

        Returns:
            0 when the request may go ahead; otherwise the whole seconds (at least 1) until a token
            is back, for ``Retry-After``.
        """
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key_id)
            if b is None and len(self._buckets) >= self.max_buckets:
                self._prune(now)
            if b is None or b.rate != rate:  # new key, or its limit changed
                b = self._buckets[key_id] = _Bucket(rate.count, now, rate)
            b.tokens = min(rate.count, b.tokens + (now - b.stamp) * rate.per_second)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - b.tokens) / rate.per_second))
