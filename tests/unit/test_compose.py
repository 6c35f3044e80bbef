"""`docker-compose.yml` against the code: every setting a production process reads reaches its containers,
and what compose requires is what the processes refuse to start without."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# read only by `gongji serve` (the embedded default), its simulator, typed at an admin command's prompt, or
# set by the test suite (GONGJI_PROBLEM_CODES=strict: web/api/codes.py)
NOT_FOR_CONTAINERS = {"GONGJI_VAR_DIR", "GONGJI_SIM_FACE_PASS_RATE", "GONGJI_SIM_FACE_LATENCY_S",
                      "GONGJI_OPERATOR_PASSWORD", "GONGJI_PROBLEM_CODES"}


def _read_by_the_code() -> set[str]:
    names = set()
    for package in ("models", "workflows", "workers", "web"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"GONGJI_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return names


def test_every_setting_the_processes_read_is_passed_to_the_containers():
    """Given the GONGJI_ variables the code reads, When compose's shared environment is read,
    Then each one a production process uses is there (an .env file reaches a container only that way)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    passed = set(compose["x-gongji"]["environment"])
    missing = _read_by_the_code() - NOT_FOR_CONTAINERS - passed
    assert not missing, f"read by the code, not passed by docker-compose.yml: {sorted(missing)}"


def test_compose_requires_the_secrets_and_every_service_has_a_health_check():
    """Then the keys, the public address and the database password have no default (`:?`: what the processes
    refuse to start without, compose asks for), and each long-running service is checked."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for name in ("GONGJI_PII_KEYS", "GONGJI_LOOKUP_KEY", "GONGJI_SECRET_KEY", "GONGJI_PUBLIC_URL", "GONGJI_METRICS_TOKEN",
                 "POSTGRES_PASSWORD"):
        assert re.search(r"\$\{" + name + r":\?", text), name
    compose = yaml.safe_load(text)
    for name, service in compose["services"].items():
        if name != "migrate":
            assert "healthcheck" in service, name


def test_the_worker_and_scheduler_checks_read_the_files_their_processes_touch():
    """Then the worker's and the scheduler's health checks read the files `workers/liveness.py` and
    `workers/scheduler.py` keep fresh (not a Redis ping or a connection, which pass while the process hangs)."""
    from workers import liveness, scheduler
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for service, path in (("worker", liveness.ALIVE_FILE), ("scheduler", scheduler.ALIVE_FILE)):
        assert f"'{path.name}'" in " ".join(compose["services"][service]["healthcheck"]["test"]), service
