"""The `gongji` command line (API.md): the embedded default, the production processes, admin commands.

A composition root: it is the one place allowed to wire `web` and `workers` together."""
from __future__ import annotations

import logging
import os
import sys

import click

from models import db as models_db
from models import migrate, seed
from models.settings import Settings


def _engine_db(settings: Settings):
    return models_db.from_settings(settings)


@click.group()
def main() -> None:
    """Gongji (共济): family mutual aid of employee medical-insurance personal accounts."""
    logging.basicConfig(level=os.environ.get("GONGJI_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--port", default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-simulator", is_flag=True, help="only platforms registered with `platform add` besides the seeds")
@click.option("--threads", default=8, show_default=True)
def serve(port: int, host: str, no_simulator: bool, threads: int) -> None:
    """The embedded default: SQLite under ./var, in-process worker and timer sweeper, API on one port."""
    import waitress

    from workers.embedded import Embedded

    from .app import create_app

    settings = Settings.from_env()
    engine, db = _engine_db(settings)
    migrate.upgrade(engine)
    with db.begin() as s:
        seed.seed_regions(s)
        creds = seed.seed_dev_platforms(s) if settings.dev_mode else {}
    embedded = Embedded(settings, db, engine).start()
    app = create_app(settings, db=db, engine=engine)
    click.echo(f"Gongji on http://{host}:{port}  (database {engine.url.render_as_string(hide_password=True)})")
    if no_simulator:
        click.echo("simulator off (--no-simulator)")
    for pid, (key, secret) in creds.items():
        click.echo(f"  platform {pid:<10} api key {key}   webhook secret {secret}")
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="gongji")
    finally:
        embedded.stop()


@main.command()
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", "procs", default=2, show_default=True)
@click.option("--threads", default=8, show_default=True)
def web(port: int, procs: int, threads: int) -> None:
    """Production web processes: gunicorn serving web.wsgi:app."""
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "web.wsgi:app", "-b", f"0.0.0.0:{port}",
                               "-w", str(procs), "-k", "gthread", "--threads", str(threads),
                               "--access-logfile", "-"])


@main.command()
@click.option("--processes", default=2, show_default=True)
@click.option("--threads", default=8, show_default=True)
def worker(processes: int, threads: int) -> None:
    """Production worker processes: dramatiq on Redis (GONGJI_REDIS_URL)."""
    if not os.environ.get("GONGJI_REDIS_URL"):
        raise click.UsageError("gongji worker needs GONGJI_REDIS_URL")
    os.execvp(sys.executable, [sys.executable, "-m", "dramatiq", "workers.entry", "--processes", str(processes),
                               "--threads", str(threads)])


@main.command()
def scheduler() -> None:
    """The one periodic driver: due timers and the outbox relay pass."""
    from workers import broker, relay, runtime, scheduler as sched

    settings = Settings.from_env()
    engine, db = _engine_db(settings)
    broker.setup(settings)
    runtime.configure(settings, db)
    from workers import actors  # noqa: F401
    relay.install()
    sched.run(db, engine, interval_s=settings.sweep_interval_s, batch=settings.sweep_batch)


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations and load the region seed data (idempotent)."""
    settings = Settings.from_env()
    engine, factory = _engine_db(settings)
    migrate.upgrade(engine)
    with factory.begin() as s:
        seed.seed_regions(s)
    click.echo("database at head; regions seeded")


@main.group()
def platform() -> None:
    """Platforms (national, provincial, face-verification providers)."""


@platform.command("add")
@click.argument("platform_id")
@click.option("--kind", type=click.Choice(["national", "province", "verifier"]), required=True)
@click.option("--api-key", required=True)
@click.option("--webhook-secret", required=True)
@click.option("--webhook-url", default=None)
@click.option("--regions", default="", help="province codes served, comma separated (e.g. 32,65)")
def platform_add(platform_id, kind, api_key, webhook_secret, webhook_url, regions) -> None:
    """Register a platform (idempotent: running it again updates it)."""
    from workflows import platforms
    from workflows.errors import DomainError

    settings = Settings.from_env()
    engine, factory = _engine_db(settings)
    migrate.upgrade(engine)
    try:
        created = platforms.add(factory, platform_id, kind=kind, api_key=api_key, webhook_secret=webhook_secret,
                                webhook_url=webhook_url, provinces=[r for r in regions.split(",") if r.strip()])
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"platform {platform_id} {'added' if created else 'updated'}")
