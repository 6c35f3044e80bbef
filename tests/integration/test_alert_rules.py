"""docs/alerts.yml through Prometheus' own promtool (`make test` puts it in the venv, from Debian's package):
the rules are valid, and alerts_test.yml's cases fire exactly the alerts they name, once per case although
two scrape targets serve the same gauges. test_metrics_gauges.py checks the names against a real scrape."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool", path=str(Path(sys.executable).parent)) \
        or shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing: `make test` installs it (make promtool)")
    pytest.skip("promtool is missing: `make promtool` fetches it")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid_prometheus_rules():
    """Given docs/alerts.yml, When promtool checks it, Then it succeeds (PromQL parses, templates compile)."""
    done = _run("check", "rules", "docs/alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alert_cases_fire_what_they_say():
    """Given alerts_test.yml (a dead delivery, a delivery tried for 25 minutes, the scheduler stopped, the
    database and then the scrape gone, a poison webhook, 5xx answers), When promtool runs the cases,
    Then each fires exactly the alerts named, with their labels and texts, and no others named there."""
    done = _run("test", "rules", "tests/integration/alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
