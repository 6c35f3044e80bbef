"""A per-process cache of values kept for some seconds (monotonic clock), shared by the process's threads.

Why: the registered platforms (read on every request), the overview's aggregates that read every binding,
and the metrics' gauges are read far more often than they change, so each process keeps them a few
seconds. A load runs once per key at a time (the others wait for it and take its value: a burst of
scrapes or page loads right after expiry costs one read); locks are striped by key, so a slow load of one
key does not hold up the others, and the lock table stays bounded whatever keys callers make up. `None` is
never kept: a miss may be keyed by anyone (any bearer key's digest), and keeping misses would grow the
process without bound."""
from __future__ import annotations

import threading
import time
import weakref
from typing import Callable, TypeVar

V = TypeVar("V")
STRIPES = 16


class TTLCache:
    def __init__(self, *, weak_keys: bool = False):
        self._values = weakref.WeakKeyDictionary() if weak_keys else {}
        self._lock = threading.Lock()
        self._loading = [threading.Lock() for _ in range(STRIPES)]

    def _fresh(self, key, ttl_s: float):
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl_s:
            return hit
        return None

    def get(self, key, load: Callable[[], V], ttl_s: float) -> V:
        """The value kept for `key` if younger than `ttl_s` seconds, else `load()` (kept unless None)."""
        hit = self._fresh(key, ttl_s)
        if hit is not None:
            return hit[1]
        with self._loading[hash(key) % STRIPES]:
            hit = self._fresh(key, ttl_s)  # loaded by the thread this one waited for
            if hit is not None:
                return hit[1]
            value = load()
            if value is not None:
                with self._lock:
                    self._values[key] = (time.monotonic(), value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)
