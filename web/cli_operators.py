"""`gongji operator add|password`: dashboard accounts from the command line (the first admin included).

The password comes from `--password`, the GONGJI_OPERATOR_PASSWORD environment variable, or a hidden
prompt; it is never echoed or logged."""
from __future__ import annotations

import click

from models import migrate
from models.settings import Settings


def _db():
    from models import db as models_db
    engine, factory = models_db.from_settings(Settings.from_env())
    migrate.upgrade(engine)
    return factory


@click.group()
def operator() -> None:
    """Dashboard operators (roles: viewer < operator < admin)."""


@operator.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@click.option("--password", envvar="GONGJI_OPERATOR_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="at least 10 characters")
def operator_add(username: str, role: str, password: str) -> None:
    """Create an operator account."""
    from workflows import operators
    from workflows.errors import DomainError

    try:
        info = operators.add(_db(), username, password, role)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"operator {info.username} added with role {info.role}")


@operator.command("password")
@click.argument("username")
@click.option("--password", envvar="GONGJI_OPERATOR_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True)
def operator_password(username: str, password: str) -> None:
    """Set an operator's password."""
    from workflows import operators
    from workflows.errors import DomainError

    try:
        operators.set_password(_db(), username, password)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"password of {username} changed")
