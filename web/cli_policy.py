"""`gongji policy show|publish|withdraw`: a region's policy versions, publishing a new one (never an edit),
and withdrawing one still pending.

Who did it is recorded in the audit log as `cli:<--by>` (required: in a container the login name says
nothing), with the reason and the fields."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import click

from models import migrate, seed
from models.settings import Settings
from models.types import utcnow


def _db(*, prepare: bool = True):
    """The database; `prepare`: migrated first (as for `gongji platform add`) and its regions seeded."""
    from models import db as models_db
    engine, factory = models_db.from_settings(Settings.from_env())
    if prepare:
        migrate.upgrade(engine)
        with factory.begin() as s:  # the seeded regions and their first versions (idempotent)
            seed.seed_regions(s)
    return factory


@click.group()
def policy() -> None:
    """Region policies: every version, and a new version from the latest with fields changed."""


@policy.command("show")
@click.argument("region")
def policy_show(region: str) -> None:
    """Every version of REGION's policy (a pooling region code, e.g. 650100), newest first."""
    from workflows import policy_admin
    from workflows.errors import DomainError

    import sqlalchemy as sa
    try:
        found = policy_admin.versions(_db(prepare=False), region)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no tables yet: nothing was ever set up
        raise click.ClickException("this database has no schema yet: run `gongji db upgrade` first") from None
    for v in found:
        mark = "in force" if v["in_force"] else "pending" if v["pending"] else ""
        click.echo(f"{v['code']} {v['name']} version {v['policy_version']} from {_when(v['effective_from'])} {mark}")
        for key in ("commitment_version", "allowed_relationships", "intra_province", "cross_province",
                    "invitation_ttl_s", "verification_timeout_s", "max_verification_attempts", "member_limits",
                    "frequency_limit", "deduction_order_policy", "in_person_verification"):
            click.echo(f"    {key}: {_plain(v[key])}")


SHOWN_IN = ZoneInfo("Asia/Shanghai")  # as the dashboard shows times


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(SHOWN_IN).isoformat()


def _plain(value) -> str:
    """A field as one would type it back to --set: lists comma-separated, limits as name=value pairs."""
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value).lower() if isinstance(value, bool) else str(value)


@policy.command("publish")
@click.option("--region", "regions", multiple=True, help="a pooling region code (repeatable)")
@click.option("--province", default=None, help="every pooling region of this province, e.g. 65")
@click.option("--set", "pairs", multiple=True, required=True,
              help="field=value (repeatable), e.g. cross_province=true, allowed_relationships=spouse,child")
@click.option("--effective-from", default=None,
              help="ISO 8601 with a UTC offset; default and earliest: 90 s from now (every process has the "
                   "version by then, so all switch at the same instant); a version can be withdrawn until 90 s "
                   "before it takes effect, so one published at the default never can")
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.option("--by", required=True, help="who publishes, for the audit log")
def policy_publish(regions, province, pairs, effective_from, reason, by) -> None:
    """Publish a new policy version: the region's latest with the --set fields changed."""
    from workflows import policy_admin, policy_fields
    from workflows.errors import DomainError

    try:
        at = datetime.fromisoformat(effective_from) if effective_from else None
    except ValueError:
        raise click.BadParameter("ISO 8601, e.g. 2027-01-01T00:00:00+08:00", param_hint="--effective-from") from None
    try:
        changes = policy_fields.parse_changes(list(pairs))  # checked before the database is touched
        db = _db()
        in_province = policy_admin.regions_of_province(db, province) if province else []
        if province and not in_province:
            raise DomainError("not_found", f"no pooling region in province {province}")
        published = policy_admin.publish(db, [*regions, *in_province], changes, effective_from=at or utcnow(),
                                         who=by, reason=reason)
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from None
    for v in published:
        until = policy_admin.withdrawable_until(datetime.fromisoformat(v["effective_from"]))
        undo = (f"can be withdrawn until {_when(until.isoformat())}" if until > utcnow() else
                "takes effect too soon to be withdrawn: to undo it, publish a new version")
        click.echo(f"{v['code']} {v['name']}: version {v['policy_version']} from {_when(v['effective_from'])}; "
                   f"{undo}")


@policy.command("withdraw")
@click.argument("region")
@click.argument("version", type=int)
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.option("--by", required=True, help="who withdraws, for the audit log")
def policy_withdraw(region: str, version: int, reason: str, by: str) -> None:
    """Withdraw REGION's latest policy VERSION while it is still pending (not yet in force)."""
    from workflows import policy_admin
    from workflows.errors import DomainError

    try:
        gone = policy_admin.withdraw(_db(), region, version, who=by, reason=reason)
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from None
    undone = " ".join(f"{k}={_plain(v)}" for k, v in gone["changes"].items())
    click.echo(f"{region}: version {gone['version']} (from {_when(gone['effective_from'])}) withdrawn"
               + (f"; it would have set {undone}" if undone else ""))
