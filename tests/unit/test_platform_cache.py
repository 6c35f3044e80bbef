"""The per-process platform cache (`workflows.platforms`) keeps what it found, never what it did not: the keys
of misses come from unauthenticated requests (any bearer key, any `/webhooks/<platform>` path)."""
from __future__ import annotations

from workflows import platforms


def test_misses_are_not_kept_and_hits_are():
    """Given an empty cache
    When 1,000 different unknown keys are looked up, and one known platform twice
    Then the cache holds one entry, and the known platform was loaded once"""
    platforms.clear_cache()
    try:
        for i in range(1000):
            assert platforms._cached(("key", f"unknown-{i}"), lambda: None) is None
        loads = []
        found = [platforms._cached(("id", "jiangsu"), lambda: loads.append(1) or "jiangsu's info") for _ in range(2)]
        assert found == ["jiangsu's info"] * 2 and len(loads) == 1
        assert len(platforms._cache) == 1
    finally:
        platforms.clear_cache()
