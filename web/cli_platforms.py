"""`gongji platform add|rotate-secret` and `gongji deliveries status|replay`: registering the platforms Gongji
talks to, and an operator's view and repair of what they have not received, from the command line (the
dashboard calls the same workflows)."""
from __future__ import annotations

import getpass
import os

import click

from models import db as models_db
from models import migrate, seed
from models.settings import Settings


@click.group()
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
    engine, factory = models_db.from_settings(settings)
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

    _, factory = models_db.from_settings(Settings.from_env())
    try:
        until = platforms.rotate_secret(factory, platform_id, new_secret, overlap_s=overlap_hours * 3600)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"platform {platform_id}: new secret active; the old one is accepted until {until.isoformat()}")


@click.group()
def deliveries() -> None:
    """Outbound webhooks: lag per platform, replay of dead deliveries."""


@deliveries.command("status")
def deliveries_status() -> None:
    """What each platform has not acknowledged yet: count, oldest age, failing and dead."""
    from workflows import sync

    _, factory = models_db.from_settings(Settings.from_env())
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
    _, factory = models_db.from_settings(settings)
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
    sent = len(done["ready"])  # as the dashboard says it: "the rest" only when some wait behind an earlier version
    rest = "all sent now" if sent >= done["replayed"] else f"{sent} sent now, the rest follow their predecessors"
    click.echo(f"replayed {done['replayed']} dead deliveries (audited); {rest}")
