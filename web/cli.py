"""The `gongji` command line (API.md): the embedded default, the production processes, admin commands.

A composition root: the command line (this module with `cli_serve.py` and `cli_platforms.py`) and
`wsgi.py` are the only places that wire `web` and `workers` together (tests/unit/test_layers.py)."""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import click

from models import db as models_db
from models import migrate, seed
from models.settings import Settings, SettingsError, configure_logging, log_level
from workflows import correlation


def _engine_db(settings: Settings):
    return models_db.from_settings(settings)


class _Gongji(click.Group):
    """A setting missing or malformed (`SettingsError`) is the command's error message and exit 1, not a
    traceback; a command run before `gongji db upgrade` made the schema says so."""

    def invoke(self, ctx):
        from sqlalchemy.exc import OperationalError, ProgrammingError
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None
        except (OperationalError, ProgrammingError) as exc:
            if re.search(r"no such table|relation \"[^\"]+\" does not exist", str(exc)):  # not "database …"
                raise click.ClickException("the database has no schema yet: run `gongji db upgrade` first") from None
            raise


@click.group(cls=_Gongji)
def main() -> None:
    """Gongji (共济): family mutual aid of employee medical-insurance personal accounts."""
    configure_logging(correlation.current_id)


def _check_settings() -> None:
    """Read every setting as the processes about to start will (`Settings` and the workflows' own, read when
    their modules load), so that one missing or malformed is this command's one-line error, not a traceback
    from each gunicorn or dramatiq process, restarted in a loop by the container's policy."""
    import importlib
    import pkgutil

    import workflows

    Settings.from_env()
    for module in pkgutil.iter_modules(workflows.__path__):
        importlib.import_module(f"workflows.{module.name}")


@main.command()
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", "procs", default=2, show_default=True)
@click.option("--threads", default=8, show_default=True)
def web(port: int, procs: int, threads: int) -> None:
    """Production web processes: gunicorn serving web.wsgi:app (their request counts shared through
    PROMETHEUS_MULTIPROC_DIR, see web/metrics.py)."""
    from .metrics import prepare_multiprocess_dir

    _check_settings()
    prepare_multiprocess_dir(os.environ)
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "web.wsgi:app", "-b", f"0.0.0.0:{port}",
                               "-w", str(procs), "-k", "gthread", "--threads", str(threads),
                               "--access-logfile", "-", "--log-level", log_level().lower()])


@main.command()
@click.option("--processes", default=2, show_default=True)
@click.option("--threads", default=8, show_default=True)
def worker(processes: int, threads: int) -> None:
    """Production worker processes: dramatiq on Redis (GONGJI_REDIS_URL)."""
    if not os.environ.get("GONGJI_REDIS_URL"):
        raise click.UsageError("gongji worker needs GONGJI_REDIS_URL")
    _check_settings()
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
    stop = threading.Event()  # SIGTERM (docker stop, systemd) ends the loop, which marks its row stopped;
    # set from a thread: the handler runs in the main thread, which may hold the event's lock in stop.wait
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop.set, daemon=True).start())
    sched.run(db, engine, interval_s=settings.sweep_interval_s, batch=settings.sweep_batch, stop=stop)


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


@main.command()
@click.option("--bindings", "n", default=100, show_default=True, help="families to drive")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="a running Gongji")
@click.option("--api-key", default="gk_dev_jiangsu", show_default=True, help="the platform's key")
@click.option("--region", default="320100", show_default=True, help="pooling region of the families")
@click.option("--concurrency", default=8, show_default=True)
@click.option("--seed", default=None, type=int, help="repeatable ID numbers (default: random)")
@click.option("--no-settlements", is_flag=True, help="leave the money out: no settlement, no reversal")
def simulate(n: int, url: str, api_key: str, region: str, concurrency: int, seed: int | None,
             no_settlements: bool) -> None:
    """Drive N families through the whole lifecycle against a running server (`make run` in another
    terminal), each authorized family settling a bill (one in four reversed); prints counts per final
    state, what was paid from whose account, and p50/p99 per step."""
    import random

    from workers.simulator.families import Driver

    driver = Driver(url, api_key, region=region, seed=seed if seed is not None else random.randrange(1 << 30),
                    settle=not no_settlements)
    started = time.monotonic()
    driver.run(n, concurrency)
    elapsed = time.monotonic() - started
    click.echo(driver.summary())
    click.echo(f"{n} families in {elapsed:.1f} s")
    if driver.errors:
        sys.exit(1)


from .cli_operators import operator  # noqa: E402  (commands of their own modules)
from .cli_pii import pii  # noqa: E402
from .cli_platforms import deliveries, platform  # noqa: E402
from .cli_policy import policy  # noqa: E402
from .cli_serve import serve  # noqa: E402

for command in (serve, platform, deliveries, operator, pii, policy):
    main.add_command(command)
