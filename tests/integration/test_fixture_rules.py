"""The rule of the shared `pg_url` fixture: without GONGJI_TEST_DATABASE_URL a PostgreSQL test is skipped
with a reason on a developer machine, and fails in CI (CI=true). Checked by running pytest in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests/integration/test_commands_pg.py::test_grandchild_under_16_takes_the_guardian_path"


def _run(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("GONGJI_TEST_DATABASE_URL", "CI")}
    return subprocess.run([sys.executable, "-m", "pytest", TARGET, "-q", "-rs", "-p", "no:cacheprovider"],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=300)


def test_without_a_database_url_pg_tests_skip_with_a_reason_outside_ci():
    """Given no GONGJI_TEST_DATABASE_URL and no CI variable,
    when a PostgreSQL test runs,
    then it is skipped (exit code 0) and the reason names the variable and `make test`."""
    done = _run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout and "GONGJI_TEST_DATABASE_URL" in done.stdout and "make test" in done.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_without_a_database_url_pg_tests_fail_in_ci(ci):
    """Given no GONGJI_TEST_DATABASE_URL and CI set,
    when a PostgreSQL test runs,
    then the run fails (not skipped), saying why."""
    done = _run(CI=ci)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "skipped" not in done.stdout
    assert "CI=true but GONGJI_TEST_DATABASE_URL is not set" in done.stdout
