"""`gongji operator add|password|role|disable|enable|list`: dashboard accounts from the command line (the first
admin included). Accounts are disabled, never deleted, so the audit log keeps naming who did what; disabling
or a new role ends the account's sessions at once.

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


def _run(change, *args, done: str) -> None:
    from workflows.errors import DomainError

    try:
        change(_db(), *args)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(done)


@operator.command("role")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
def operator_role(username: str, role: str) -> None:
    """Change an operator's role (audited; the operator's sessions end)."""
    from workflows import operators
    _run(operators.set_role, username, role, done=f"{username} now has role {role}")


@operator.command("disable")
@click.argument("username")
def operator_disable(username: str) -> None:
    """Disable an account: no more sign-in, its sessions end at once (audited)."""
    from workflows import operators
    _run(operators.set_disabled, username, True, done=f"{username} disabled")


@operator.command("enable")
@click.argument("username")
def operator_enable(username: str) -> None:
    """Enable a disabled account again (audited)."""
    from workflows import operators
    _run(operators.set_disabled, username, False, done=f"{username} enabled")


@operator.command("list")
def operator_list() -> None:
    """Every account with its role, whether it is disabled, and its last sign-in."""
    from workflows import operators
    for a in operators.accounts(_db()):
        seen = a["last_sign_in_at"].isoformat(timespec="seconds") if a["last_sign_in_at"] else "never"
        click.echo(f"{a['username']:<24} {a['role']:<9} {'disabled' if a['disabled'] else 'active':<9} "
                   f"last sign-in {seen}")
