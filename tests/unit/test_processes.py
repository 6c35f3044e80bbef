"""`workflows.processes.summarize`: which worker and scheduler processes run, from their rows (pure)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from workflows.processes import SCHEDULER, STALE_S, WORKER, summarize

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def row(kind: str, role: str, seen_s_ago: float, pid: int) -> dict:
    return {"kind": kind, "role": role, "host": "h1", "pid": pid, "started_at": NOW - timedelta(hours=1),
            "seen_at": NOW - timedelta(seconds=seen_s_ago)}


def test_a_process_runs_while_it_beats_and_not_once_it_stopped_or_went_quiet():
    """Given three worker rows: one seen 5 s ago, one stopped 2 s ago, one silent for longer than STALE_S,
    When summarized, Then one worker runs (the fresh one); the freshest row of all is the stopped one."""
    got = summarize([row(WORKER, "running", 5, 1), row(WORKER, "stopped", 2, 2),
                     row(WORKER, "running", STALE_S + 1, 3)], NOW)[WORKER]
    assert [p["pid"] for p in got.running] == [1] and got.running[0]["age_s"] == 5
    assert not got.down and got.standby == 0
    assert got.last_seen == NOW - timedelta(seconds=2) and got.last_role == "stopped"


def test_with_every_worker_silent_the_workers_are_down_and_the_last_one_went_away_without_stopping():
    """Given only a worker row silent for 10 minutes, Then no worker runs, and the last one seen is that one,
    which did not say it stopped (killed, its host lost)."""
    got = summarize([row(WORKER, "running", 600, 1)], NOW)[WORKER]
    assert got.down and got.last_role == "running" and got.last_seen == NOW - timedelta(minutes=10)


def test_an_active_scheduler_and_a_standby_and_then_the_standby_alone():
    """Given an active scheduler and a standby, Then the scheduler runs with one standby; Given the active one
    silent past STALE_S and the standby fresh, Then no scheduler is active (down), one waits, and the last
    one seen doing the work is the silent active one (a standby's row is never that)."""
    both = summarize([row(SCHEDULER, "active", 1, 1), row(SCHEDULER, "standby", 3, 2)], NOW)[SCHEDULER]
    assert [p["pid"] for p in both.running] == [1] and both.standby == 1 and not both.down
    alone = summarize([row(SCHEDULER, "active", STALE_S + 5, 1), row(SCHEDULER, "standby", 3, 2)], NOW)[SCHEDULER]
    assert alone.down and alone.standby == 1
    assert alone.last_role == "active" and alone.last_seen == NOW - timedelta(seconds=STALE_S + 5)


def test_a_standby_that_stopped_just_now_is_not_the_last_scheduler_that_did_the_work():
    """Given the active scheduler silent for 10 minutes (killed) and a standby that stopped 5 s ago
    Then no scheduler runs and the last one seen doing the work is the killed one, 10 minutes ago."""
    got = summarize([row(SCHEDULER, "active", 600, 1), row(SCHEDULER, "stopped_standby", 5, 2)], NOW)[SCHEDULER]
    assert got.down and got.standby == 0
    assert (got.last_role, got.last_seen) == ("active", NOW - timedelta(minutes=10))


def test_no_rows_no_process_of_either_kind():
    """Given no rows (nothing ran in the last day), Then both kinds are down and never seen."""
    got = summarize([], NOW)
    assert all(k.down and k.last_seen is None and k.last_role is None for k in got.values())
    assert set(got) == {WORKER, SCHEDULER}


def test_rows_older_than_a_day_are_not_read_and_the_list_is_capped():
    """Given a worker row two days old (with every process down no beat deletes it) and LISTED + 3 workers
    gone within the day (a crash loop: a pid a restart), Then the old row is neither listed nor the last
    seen, and LISTED rows are listed with 3 more counted."""
    from workflows.processes import FORGET_S, LISTED
    old = row(WORKER, "running", 2 * FORGET_S, 999)
    got = summarize([old], NOW)[WORKER]
    assert got.listed == [] and got.last_seen is None
    loop = [row(WORKER, "running", 120 + n, n) for n in range(LISTED + 3)]
    got = summarize(loop + [old], NOW)[WORKER]
    assert len(got.listed) == LISTED and got.more == 3 and {p["state"] for p in got.listed} == {"gone"}
    assert got.listed[0]["pid"] == 0  # the freshest first
