"""A background process stopped the way a supervisor stops it (SIGTERM: `docker stop`, systemd) marks its
row in `process_beats` stopped (`workflows/processes.py`), so the dashboard does not read a deploy as a
process that went away: `gongji serve` (its in-process worker and scheduler) and `gongji scheduler`, each a
real process on a SQLite file of its own."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .conftest import _clean_env
from .support import Proc, free_port, gongji_bin, poll, wait_http


def _roles(db_file: Path) -> dict[str, str]:
    """{kind: role} of the rows, when the file and the table exist yet."""
    if not db_file.exists():
        return {}
    engine = sa.create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as c:
            return dict(c.execute(sa.text("select kind, role from process_beats")).all())
    except sa.exc.OperationalError:  # no table yet: migrations still running
        return {}
    finally:
        engine.dispose()


def test_gongji_serve_stopped_by_sigterm_marks_its_worker_and_scheduler_stopped(tmp_path):
    """Given `gongji serve --no-simulator` on a fresh ./var, with its worker running and its scheduler active
    When it receives SIGTERM, Then it exits 0 and both rows read stopped (not left running to go stale)."""
    port = free_port()
    proc = Proc("serve", [gongji_bin(), "serve", "--no-simulator", "--port", str(port)], cwd=tmp_path,
                env=_clean_env(), log=tmp_path / "serve.log")
    db_file = tmp_path / "var" / "gongji.db"
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", [proc], timeout=60)
        poll(lambda: _roles(db_file) == {"worker": "running", "scheduler": "active"}, timeout=30,
             what="the worker's and the scheduler's rows")
    finally:
        code = proc.stop()
    assert code == 0, proc.tail()
    assert _roles(db_file) == {"worker": "stopped", "scheduler": "stopped"}, proc.tail()


def test_gongji_scheduler_stopped_by_sigterm_marks_its_row_stopped(tmp_path):
    """Given `gongji scheduler` on the default SQLite file under ./var, migrated (no Redis: the in-process
    broker), its row active
    When it receives SIGTERM, Then it exits 0 and its row reads stopped."""
    db_file = tmp_path / "var" / "gongji.db"
    env = _clean_env()
    upgrade = Proc("upgrade", [gongji_bin(), "db", "upgrade"], cwd=tmp_path, env=env, log=tmp_path / "upgrade.log")
    assert upgrade.popen.wait(120) == 0, upgrade.tail()
    upgrade.stop()
    proc = Proc("scheduler", [gongji_bin(), "scheduler"], cwd=tmp_path, env=env, log=tmp_path / "scheduler.log")
    try:
        poll(lambda: _roles(db_file) == {"scheduler": "active"}, timeout=30, what="the scheduler's row")
    finally:
        code = proc.stop()
    assert code == 0, proc.tail()
    assert _roles(db_file) == {"scheduler": "stopped"}, proc.tail()
