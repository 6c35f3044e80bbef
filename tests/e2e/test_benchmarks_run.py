"""The benchmarks still run. They import the code they measure (its statements, its private helpers, its
command line), and nothing else exercised them: `bench/dashboard_seed.py` called a function the overview
had lost two sessions before, and failed only when someone wanted figures. Each script runs here at a toy
size against the test server (each makes databases of its own beside the tests'); the figures are not
looked at, only that every part finished and printed its summary. wrk is not installed by `make test`, so
the HTTP benchmark runs its lifecycle part only (`--rounds 0`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.pg


def _run(pg_url: str, *args: str) -> str:
    env = {**os.environ, "GONGJI_BENCH_DATABASE_URL": pg_url}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_in_process_benchmark_runs_against_its_peer_and_the_sweeper(pg_url):
    """Given the test server, When bench/transitions.py runs 40 families, the plain-SQL peer and a small
    sweep, Then it finishes and reports the lifecycle, the ratio and the sweeper's flatness."""
    out = _run(pg_url, "bench/transitions.py", "--bindings", "40", "--repeat", "1", "--skip-dbos",
               "--due", "200", "--big", "2000", "--sweep-repeat", "1")
    assert "main-line transitions/s" in out and "ratio gongji main-line / plain SQL" in out
    assert "time ratio 2,000 / 200 bindings" in out


def test_the_dashboard_benchmarks_seed_and_time_every_query_and_page(pg_url):
    """Given the test server, When the dashboard's query benchmark and its page benchmark run on 3,000 seeded
    bindings, Then every query is timed and every page is fetched."""
    out = _run(pg_url, "bench/dashboard_seed.py", "--bindings", "3000", "--repeat", "1")
    assert "overview snapshot refresh" in out and "stuck.of_binding" in out
    out = _run(pg_url, "bench/dashboard.py", "--bindings", "3000", "--requests", "2")
    assert "target p95 < 200 ms" in out and "audit log" in out


def test_the_http_benchmark_drives_families_through_gongji_and_through_the_floor(pg_url):
    """Given the test server and Redis, When bench/webhooks.py drives 12 families over HTTP (gunicorn, the
    worker, the scheduler, the fake provider and platform), Then none fails and the floor runs too."""
    if not os.environ.get("GONGJI_TEST_REDIS_URL"):
        pytest.skip("needs the Redis of `make test` (GONGJI_TEST_REDIS_URL)")
    out = _run(pg_url, "bench/webhooks.py", "--families", "12", "--concurrency", "4", "--rounds", "0")
    assert "0 failed families" in out and "lifecycle floor" in out
