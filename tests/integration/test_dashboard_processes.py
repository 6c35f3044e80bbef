"""The overview's worker and scheduler cards (Flask test client, migrated SQLite file, `workflows/processes.py`):
what an operator reads when every worker is gone, when the scheduler stopped, and when both run."""
from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from models import ProcessBeat
from models.types import utcnow
from .test_dashboard_web import app, signed_in  # noqa: F401  (the app fixture)

PB = ProcessBeat.__table__


def _card(page: str, card_id: str) -> str:
    start = page.index(f'id="{card_id}"')
    return page[page.rindex("<div", 0, start):page.index("</div></div>", start)]


def _rows(db, *rows: tuple[str, str, float]) -> None:
    now = utcnow()
    with db.begin() as s:
        s.execute(sa.delete(PB))
        for n, (kind, role, seen_s_ago) in enumerate(rows, 1):
            s.execute(sa.insert(PB).values(id=f"{kind}:h{n}:{n}", kind=kind, role=role, host=f"h{n}", pid=n,
                                           started_at=now - timedelta(hours=1),
                                           seen_at=now - timedelta(seconds=seen_s_ago)))


def test_with_no_worker_and_the_scheduler_gone_the_overview_says_what_waits(app, sqlite_db):  # noqa: F811
    """Given no worker row at all, and an active scheduler silent for 10 minutes (killed: it never said it
    stopped), When a viewer opens the overview
    Then the workers card reads 0 in red, none in the last day, and what waits; the scheduler card reads
    none, since when and that it went away without stopping, and that timers do not fire."""
    _rows(sqlite_db, ("scheduler", "active", 600))
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/").get_data(as_text=True)
    workers, sched = _card(page, "workers"), _card(page, "scheduler")
    assert 'data-running="0"' in workers and '<span class="tag error">0</span>' in workers
    assert "最近一天内没有" in workers and "人脸核验请求都在等待" in workers
    assert 'data-running="0"' in sched and '<span class="tag error">无</span>' in sched
    assert re.search(r"自 \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? 起没有（未正常停止即失联）", sched), sched
    assert "定时器不会触发" in sched


def test_with_two_workers_and_an_active_scheduler_with_a_standby_nothing_warns(app, sqlite_db):  # noqa: F811
    """Given two workers seen 3 and 8 seconds ago, one that stopped, an active scheduler and a standby
    When the overview is opened, Then it reads 2 workers, the scheduler active with 1 on standby, and no
    warning; the hosts of the running ones are in the cards' titles."""
    _rows(sqlite_db, ("worker", "running", 3), ("worker", "running", 8), ("worker", "stopped", 1),
          ("scheduler", "active", 2), ("scheduler", "standby", 4))
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/").get_data(as_text=True)
    workers, sched = _card(page, "workers"), _card(page, "scheduler")
    assert 'data-running="2"' in workers and '<div class="n">2</div>' in workers and "等待" not in workers
    assert "h1 (1)" in workers and "h2 (2)" in workers and "h3" not in workers
    assert 'data-running="1"' in sched and 'data-standby="1"' in sched and "1 个待命" in sched
    assert "运行中" in sched and "定时器不会触发" not in sched


def test_a_worker_that_stopped_cleanly_reads_as_stopped(app, sqlite_db):  # noqa: F811
    """Given the only worker stopped cleanly two minutes ago, Then the card says none since then, stopped."""
    _rows(sqlite_db, ("worker", "stopped", 120), ("scheduler", "active", 1))
    client, _ = signed_in(app, "viewer")
    workers = _card(client.get("/dashboard/").get_data(as_text=True), "workers")
    assert "（已正常停止）" in workers and "人脸核验请求都在等待" in workers


def test_the_overview_lists_each_process_of_the_last_day_with_its_state(app, sqlite_db):  # noqa: F811
    """Given a running worker, one silent for 10 minutes, one stopped, an active scheduler and a standby
    When the overview is opened, Then its process table has one row each, running ones first, each with
    its host, pid and state in words (运行中, 待命, 未正常停止即失联, 已正常停止)."""
    _rows(sqlite_db, ("worker", "running", 3), ("worker", "running", 600), ("worker", "stopped", 30),
          ("scheduler", "active", 2), ("scheduler", "standby", 4))
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/").get_data(as_text=True)
    table = page[page.index('id="processes"'):page.index("</table>", page.index('id="processes"'))]
    rows = re.findall(r'<tr data-kind="(\w+)" data-state="(\w+)"><td>[^<]*</td><td>(h\d)</td>', table)
    assert rows == [("worker", "running", "h1"), ("worker", "gone", "h2"), ("worker", "stopped", "h3"),
                    ("scheduler", "running", "h4"), ("scheduler", "standby", "h5")]
    for words in ("运行中", "待命", "未正常停止即失联", "已正常停止"):
        assert words in table
