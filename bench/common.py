"""What the benchmarks share: where the database server is, and a fresh database on it."""
from __future__ import annotations

import os
import sys

import sqlalchemy as sa

PROTECTED_DBS = {"postgres", "template0", "template1", "gongji_test"}


def database_url(arg: str | None) -> str:
    url = arg or os.environ.get("GONGJI_BENCH_DATABASE_URL") or os.environ.get("GONGJI_TEST_DATABASE_URL")
    if not url:
        sys.exit("no database: pass a PostgreSQL URL, or set GONGJI_BENCH_DATABASE_URL / GONGJI_TEST_DATABASE_URL "
                 "(scripts/services.sh sets the latter)")
    u = sa.make_url(url)
    if u.get_backend_name() != "postgresql":
        sys.exit(f"the benchmark needs PostgreSQL, got {u.get_backend_name()}")
    return url


def fresh_database(server_url: str, name: str) -> str:
    """Drop and create `name` on the server of `server_url` (connecting to `postgres`); return its URL."""
    if name in PROTECTED_DBS:
        sys.exit(f"refusing to drop database {name!r}")
    u = sa.make_url(server_url).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return u.set(database=name).render_as_string(hide_password=False)


def _proc_table() -> dict[int, tuple[int, list[str]]]:
    """pid → (ppid, the fields of /proc/pid/stat after the command name)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (int(fields[1]), fields)
    return table


def tree_cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process tree: the root (with its reaped children: cutime/cstime) and every
    live descendant; a pid of 0 stands for this process (getrusage of itself and its reaped children)."""
    table, tick = _proc_table(), os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        if root == 0:
            import resource
            me, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            out[name] = me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime
            continue
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += sum(int(v) for v in table[pid][1][11:15])  # with the reaped children of each
            todo += children.get(pid, [])
        out[name] = total / tick
    return out


class ServerCPU:
    """CPU seconds the PostgreSQL server has used (postmaster and every backend, live or exited), read from
    /proc when the server runs on this machine and its postmaster.pid is readable; else `None`.

    Exited backends count through the postmaster's cutime/cstime (it reaps them), so a peer's run, whose
    connections are closed by the time it is read, is counted as fully as ours."""

    def __init__(self, engine):
        self.pid = None
        try:
            with engine.connect() as c:
                data_dir = c.exec_driver_sql("show data_directory").scalar()
            with open(os.path.join(data_dir, "postmaster.pid")) as fh:
                self.pid = int(fh.readline())
            self.tick = os.sysconf("SC_CLK_TCK")
            self.seconds()
        except (OSError, ValueError, sa.exc.DBAPIError):
            self.pid = None

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(entry), int(fields[1])
            if pid == self.pid:
                total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
            elif ppid == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total / self.tick


class WalMeter:
    """WAL the whole server has written (pg_stat_wal: records, full-page images, bytes), or `None` where
    the view is missing (PostgreSQL < 14). Durable commits wait for the WAL to reach the disk, and every
    page a run touches first after a checkpoint is written whole once: WAL is where a row's width and its
    indexes show up as work, so it is printed per binding beside the CPU figures."""

    def __init__(self, engine):
        self.engine = engine
        self.ok = self.read() is not None

    def read(self) -> tuple[int, int, int] | None:
        try:
            with self.engine.connect() as c:
                r = c.exec_driver_sql("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").first()
        except sa.exc.DBAPIError:
            return None
        return (int(r[0]), int(r[1]), int(r[2])) if r is not None else None

    def since(self, before: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        after = self.read()
        if before is None or after is None:
            return None
        return tuple(a - b for a, b in zip(after, before))

