"""The `gongji` command line (API.md): the embedded default, the production processes, admin commands.

A composition root: it is the one place allowed to wire `web` and `workers` together."""
from __future__ import annotations

import dataclasses
import getpass
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


@main.command()
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
    engine, db = _engine_db(settings)
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


@main.command()
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", "procs", default=2, show_default=True)
@click.option("--threads", default=8, show_default=True)
def web(port: int, procs: int, threads: int) -> None:
    """Production web processes: gunicorn serving web.wsgi:app (their request counts shared through
    PROMETHEUS_MULTIPROC_DIR, see web/metrics.py)."""
    from .metrics import prepare_multiprocess_dir

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


@main.group()
def platform() -> None:
    """Platforms (national, provincial, face-verification providers)."""


@platform.command("add")
@click.argument("platform_id")
@click.option("--kind", type=click.Choice(["national", "province", "verifier"]), required=True)
@click.option("--api-key", required=True)
@click.option("--webhook-secret", required=True)
@click.option("--webhook-url", default=None,
              help="where its events are sent (a verifier: where sessions are opened); on an update, left as it "
                   "was unless given, '' removes it")
@click.option("--regions", default="", help="province codes served, comma separated (e.g. 32,65)")
def platform_add(platform_id, kind, api_key, webhook_secret, webhook_url, regions) -> None:
    """Register a platform; running it again updates its kind, API key, provinces and (if given) webhook URL.
    Its webhook secret changes only with `platform rotate-secret`. Prepares the database as `db upgrade`."""
    from workflows import platforms
    from workflows.errors import DomainError

    settings = Settings.from_env()
    engine, factory = _engine_db(settings)
    migrate.upgrade(engine)
    with factory.begin() as s:  # the provinces are checked against the regions
        seed.seed_regions(s)
    try:
        created = platforms.add(factory, platform_id, kind=kind, api_key=api_key, webhook_secret=webhook_secret,
                                webhook_url=webhook_url, provinces=[r for r in regions.split(",") if r.strip()])
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"platform {platform_id} {'added' if created else 'updated'}")


@platform.command("rotate-secret")
@click.argument("platform_id")
@click.option("--new-secret", required=True, help="whsec_<base64>")
@click.option("--overlap-hours", default=24.0, show_default=True,
              help="how long the old secret still signs and verifies")
def platform_rotate_secret(platform_id, new_secret, overlap_hours) -> None:
    """Rotate a platform's webhook secret; both secrets sign and verify during the overlap."""
    from workflows import platforms
    from workflows.errors import DomainError

    _, factory = _engine_db(Settings.from_env())
    try:
        until = platforms.rotate_secret(factory, platform_id, new_secret, overlap_s=overlap_hours * 3600)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"platform {platform_id}: new secret active; the old one is accepted until {until.isoformat()}")


@main.group()
def deliveries() -> None:
    """Outbound webhooks: lag per platform, replay of dead deliveries."""


@deliveries.command("status")
def deliveries_status() -> None:
    """What each platform has not acknowledged yet: count, oldest age, failing and dead."""
    from workflows import sync

    _, factory = _engine_db(Settings.from_env())
    lag = sync.lag(factory)
    if not lag:
        click.echo("every platform is up to date")
    for pid, row in sorted(lag.items()):
        click.echo(f"{pid:<12} behind {row['behind']:>7}  failing {row['failing']:>6}  dead {row['dead']:>6}  "
                   f"oldest {row['oldest_age_s']:.0f} s")


def _console_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        return str(os.getuid())


@deliveries.command("replay")
@click.option("--id", "ids", multiple=True, type=int, help="a dead delivery's id (repeatable)")
@click.option("--platform", "platform_id", default=None)
@click.option("--binding", "binding_id", default=None)
def deliveries_replay(ids, platform_id, binding_id) -> None:
    """Send dead deliveries again with a fresh retry schedule, audited as `console:<user>` (the dashboard's
    replay does the same under the operator's name). Exits 1 when nothing dead matches."""
    from workers import broker, runtime
    from workflows import delivery_repair as dl

    if not (ids or platform_id or binding_id):
        raise click.UsageError("name deliveries: --id, --platform or --binding")
    settings = Settings.from_env()
    _, factory = _engine_db(settings)
    broker.setup(settings)
    runtime.configure(settings, factory)
    from workers.actors import send_deliveries

    from workflows.errors import DomainError
    try:
        done = dl.replay_from_console(factory, f"console:{_console_user()}", ids=list(ids) or None,
                                      platform_id=platform_id, binding_id=binding_id)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    send_deliveries(done["ready"])  # without a worker listening, the scheduler's delivery pass sends them
    click.echo(f"replayed {done['replayed']} dead deliveries (audited); {len(done['ready'])} sent now, the rest "
               "follow their predecessors")


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


from .cli_operators import operator  # noqa: E402  (groups of their own modules)
from .cli_pii import pii  # noqa: E402
from .cli_policy import policy  # noqa: E402

main.add_command(operator)
main.add_command(pii)
main.add_command(policy)
