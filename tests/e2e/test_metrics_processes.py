"""`/metrics` under gunicorn with two worker processes (`gongji web`, the production fixture): the request
counts are the sum over the processes, whichever one answers a scrape (prometheus_client's multiprocess
mode, web/metrics.py), and the workflow gauges are served by each."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from .support import poll


def _scrape(production) -> str:
    """/metrics as Prometheus fetches it: with the bearer token (required in production: models/settings.py)."""
    answer = requests.get(f"{production.base}/metrics", timeout=30,  # a connection of its own: any process answers
                          headers={"Authorization": f"Bearer {production.env['GONGJI_METRICS_TOKEN']}"})
    assert answer.status_code == 200, answer.text
    return answer.text


def _healthz_count(production) -> float:
    text = _scrape(production)
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "gongji_http_requests_total" and s.labels.get("endpoint") == "/healthz"
               and s.labels.get("status") == "200")


def _pids_counting(directory: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}


def test_request_counts_are_summed_over_the_gunicorn_processes(production):
    """Given `gongji web` with two gunicorn worker processes,
    When /healthz is requested in bursts of 16 at once until both processes have counted some, and /metrics
    is then fetched 8 times, each on a fresh connection,
    Then every scrape gives the same /healthz count, exactly the requests made since the first scrape,
    whichever process answered it; and each scrape has the workflow gauges, read from the database."""
    directory = Path(production.env["PROMETHEUS_MULTIPROC_DIR"])
    before = _healthz_count(production)
    sent = 0
    with ThreadPoolExecutor(16) as pool:
        for _ in range(50):  # the kernel hands connections to either process; two are counting soon
            codes = list(pool.map(lambda _: requests.get(f"{production.base}/healthz", timeout=30).status_code,
                                  range(16)))
            assert codes == [200] * 16
            sent += 16
            if len(_pids_counting(directory)) >= 2:
                break
    assert len(_pids_counting(directory)) >= 2, "one gunicorn process answered everything"
    assert [_healthz_count(production) for _ in range(8)] == [before + sent] * 8
    assert requests.get(f"{production.base}/metrics", timeout=30).status_code == 401  # no token, nothing shown
    text = _scrape(production)
    assert "gongji_workflow_gauges_up 1.0" in text and 'gongji_bindings_stuck{reason="timer_overdue"}' in text


def _processes_running(production) -> dict[str, float]:
    return {s.labels["process"]: s.value for f in text_string_to_metric_families(_scrape(production))
            for s in f.samples if s.name == "gongji_processes_running"}


def test_the_scrape_counts_the_running_worker_and_the_active_scheduler(production):
    """Given the production stack (`gongji worker` with one process, `gongji scheduler`), each a real process
    on PostgreSQL, When /metrics is scraped (until the readings, cached 15 s a process, have their rows),
    Then one worker process and one active scheduler run and none waits, and each was seen within a minute."""
    poll(lambda: _processes_running(production) == {"worker": 1, "scheduler": 1, "scheduler_standby": 0},
         timeout=60, interval=1.0, what="the worker and the scheduler in /metrics")
    ages = {s.labels["process"]: s.value for f in text_string_to_metric_families(_scrape(production))
            for s in f.samples if s.name == "gongji_process_last_seen_age_seconds"}
    assert set(ages) == {"worker", "scheduler"} and all(0 <= a < 60 for a in ages.values()), ages
