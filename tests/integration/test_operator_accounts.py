"""Operator accounts from the command line (`gongji operator role|disable|enable|list`): disabling ends the
account's sessions at once and stops its sign-in, enabling restores it, a new role ends the sessions too;
each change is audited under the account that was changed."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from models import AuditEntry
from workflows import operators
from workflows.errors import DomainError

PASSWORD = "correct horse battery"


def _signed_in(db, username):
    return operators.authenticate(db, username, PASSWORD)


def test_a_disabled_operator_is_signed_out_everywhere_and_cannot_sign_in_until_enabled(pg_db):
    """Given an operator signed in (the session cookie names their session generation)
    When the account is disabled
    Then that session no longer loads, and signing in is refused like a wrong password;
    and when it is enabled again, signing in works, the old session stays over; both changes are audited"""
    operators.add(pg_db, "wang", PASSWORD, "operator")
    session = _signed_in(pg_db, "wang")

    operators.set_disabled(pg_db, "wang", True)

    assert operators.get(pg_db, session.id) is None
    with pytest.raises(DomainError) as refused:
        _signed_in(pg_db, "wang")
    assert refused.value.code == "unauthorized"

    operators.set_disabled(pg_db, "wang", False)
    again = _signed_in(pg_db, "wang")
    assert again.session_generation != session.session_generation
    with pg_db() as s:
        actions = [(a.operator, a.action, a.detail) for a in s.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [("cli", "operator.disable", {"username": "wang"}),
                       ("cli", "operator.enable", {"username": "wang"})]


def test_a_new_role_ends_the_sessions_and_holds_from_the_next_sign_in(pg_db):
    """Given an admin signed in, When the account becomes a viewer, Then the session is over and the next
    sign-in is a viewer's; an unknown account or role is refused"""
    operators.add(pg_db, "li", PASSWORD, "admin")
    session = _signed_in(pg_db, "li")

    operators.set_role(pg_db, "li", "viewer")

    current = operators.get(pg_db, session.id)
    assert current.session_generation != session.session_generation  # the cookie's generation is over
    assert _signed_in(pg_db, "li").role == "viewer"
    for bad in (lambda: operators.set_role(pg_db, "nobody", "viewer"), lambda: operators.set_role(pg_db, "li", "root"),
                lambda: operators.set_disabled(pg_db, "nobody", True)):
        with pytest.raises(DomainError):
            bad()


def test_the_command_line_lists_and_changes_accounts(pg_db, pg_engine, monkeypatch):
    """Given the command line on the same database, When an account is added, disabled and listed,
    Then the list shows it disabled with its role; an unknown account is an error (exit 1)"""
    from web.cli import main
    from web import cli_operators
    monkeypatch.setattr(cli_operators, "_db", lambda: pg_db)
    runner = CliRunner()
    assert runner.invoke(main, ["operator", "add", "zhao", "--role", "viewer", "--password", PASSWORD]).exit_code == 0
    assert runner.invoke(main, ["operator", "disable", "zhao"]).output.strip() == "zhao disabled"
    listed = runner.invoke(main, ["operator", "list"]).output
    assert "zhao" in listed and "viewer" in listed and "disabled" in listed
    assert runner.invoke(main, ["operator", "enable", "nobody"]).exit_code == 1
