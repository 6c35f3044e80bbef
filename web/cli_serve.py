"""`gongji serve`: the embedded default in one process (SQLite under ./var unless GONGJI_DATABASE_URL says
otherwise, the in-process worker and timer sweeper, the API and dashboard under waitress) with the
simulator's fake platforms and face provider, the development platforms and two dashboard accounts, so
that a fresh clone shows a living system. None of the development credentials exist without the
simulator or outside development mode (API.md)."""
from __future__ import annotations

import dataclasses
import os
import signal

import click

from models import db as models_db
from models import migrate, seed
from models.settings import Settings


@click.command()
@click.option("--port", default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-simulator", is_flag=True,
              help="no fake platforms and no development platforms: only those registered with `platform add`")
@click.option("--threads", default=8, show_default=True)
def serve(port: int, host: str, no_simulator: bool, threads: int) -> None:
    """The embedded default: SQLite under ./var, in-process worker and timer sweeper, API on one port."""
    # one process: its request counts in memory, never in files left by another run (web/metrics.py);
    # prometheus_client reads the variable when it is first imported, which is below
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import waitress

    from workers.embedded import Embedded

    from .app import create_app

    settings = Settings.from_env()
    if not os.environ.get("GONGJI_PUBLIC_URL"):  # providers call back to this very server
        settings = dataclasses.replace(settings, public_url=f"http://{host}:{port}")
    engine, db = models_db.from_settings(settings)
    migrate.upgrade(engine)
    with db.begin() as s:
        seed.seed_regions(s)
        # the development platforms (well-known keys) only with the simulator that plays them (API.md)
        creds = seed.seed_dev_platforms(s) if settings.dev_mode and not no_simulator else {}
    signal.signal(signal.SIGTERM, _exit)  # as Ctrl-C: the `finally` below stops the worker and the scheduler
    embedded, fakes = Embedded(settings, db, engine), {}
    try:
        embedded.start()
        app = create_app(settings, db=db, engine=engine)
        from workers import queues
        app.extensions["gongji"]["queue_depth"] = queues.depth  # the in-process broker Embedded set up
        if settings.dev_mode:
            _dev_operators(db)
        fakes = {} if no_simulator else _start_fake_platforms(db, creds)
        click.echo(f"Gongji on http://{host}:{port}  (database {engine.url.render_as_string(hide_password=True)})")
        if no_simulator:
            click.echo("simulator off (--no-simulator): platforms are those registered with `gongji platform add`")
        for pid, (key, secret) in creds.items():
            where = f"   receives at {fakes[pid].url}" if pid in fakes else ""
            click.echo(f"  platform {pid:<10} api key {key}   webhook secret {secret}{where}")
        waitress.serve(app, host=host, port=port, threads=threads, ident="gongji")
    finally:
        embedded.stop()
        _stop_fake_platforms(db, fakes)


def _exit(*_) -> None:
    """SIGTERM as Ctrl-C: leave through the `finally` that stops the background half; a second SIGTERM
    during that stop is ignored (it would cut the stop short and leave the worker's row running)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


DEV_OPERATORS = {"admin": ("admin", "gongji-admin"), "viewer": ("viewer", "gongji-viewer")}  # embedded only


def _dev_operators(db) -> None:
    """The embedded default (SQLite, development keys) gets two dashboard accounts to sign in with."""
    from workflows import operators
    from workflows.errors import DomainError

    for username, (role, password) in DEV_OPERATORS.items():
        try:
            operators.add(db, username, password, role)
        except DomainError:
            pass  # already there (a password changed since is kept)
        click.echo(f"  dashboard {username:<7} password {password:<14} (role {role}; development only)")


def _start_fake_platforms(db, creds: dict) -> dict:
    """The simulator: a fake platform per seeded national or provincial platform, receiving (and verifying)
    its outbound webhooks, and a fake face-verification provider per verifier (pass rate
    GONGJI_SIM_FACE_PASS_RATE, default 1.0; latency GONGJI_SIM_FACE_LATENCY_S, default 0.2 s), each on a
    free loopback port."""
    from workers.simulator.face import FakeFaceProvider
    from workers.simulator.platform import FakePlatform
    from workflows import platforms

    fakes = {}
    for pid, (_key, secret) in creds.items():
        kind = platforms.get(db, pid).kind
        if kind == "verifier":
            fakes[pid] = FakeFaceProvider([secret], pass_rate=float(os.environ.get("GONGJI_SIM_FACE_PASS_RATE", 1)),
                                          latency_s=float(os.environ.get("GONGJI_SIM_FACE_LATENCY_S", 0.2))).start()
        else:
            fakes[pid] = FakePlatform([secret]).start()
        platforms.set_webhook_url(db, pid, fakes[pid].url)
    return fakes


def _stop_fake_platforms(db, fakes: dict) -> None:
    from workflows import platforms

    for pid, fake in fakes.items():
        platforms.set_webhook_url(db, pid, None)
        fake.stop()
