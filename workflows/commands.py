"""The lifecycle commands after the invitation: accept, decline, cancel, authorize, unbind, expire, reject.

Each is one transaction (see `unit.command`): lock the binding, check the actor and the rules, fire the
event through the shared machine, append history and an outbox event, commit. Amounts are fen."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import Person, Transition

from . import free_text, policy, rules
from .errors import DomainError
from .persons import facts
from .statements import Statement
from .unit import command, retried
from .views import binding_view

H = Transition.__table__
_AUTHORIZED_SINCE = Statement(sa.select(H.c.at).where(H.c.binding_id == sa.bindparam("b"), H.c.event == "authorize",
                                                      H.c.at > sa.bindparam("since", type_=H.c.at.type))
                              .order_by(H.c.at))


def _simple(event: str, *, optimistic: bool = False):
    def run(db, binding_id: str, actor, *, reason: str | None = None, channel: str | None = None, now=None,
            platform=None, version: int | None = None):
        with command(db, now=now, platform=platform, optimistic=optimistic, version=version) as cmd:
            row = cmd.lock_binding(binding_id)
            who = cmd.resolve(actor, row)
            cmd.authorize_actor(row, event, who, reason)
            # what a platform, a person or an operator wrote goes to the history and to every platform
            reason = free_text.clean_about(cmd.conn, reason, (row.grantor_id, row.beneficiary_id))
            cmd.transition(row, event, who, channel=channel, reason=reason)
            return cmd.view
    run.__name__ = event
    run.__doc__ = f"Fire `{event}` on a binding for an actor allowed to (DESIGN §2)."
    return retried(run) if optimistic else run


decline = _simple("decline")
cancel = _simple("cancel")
unbind = _simple("unbind", optimistic=True)  # from accepted/authorized only: no attempts to abandon
expire = _simple("expire")
reject = _simple("reject")


@retried
def accept(db, binding_id: str, actor, *, channel: str | None = None, now=None, platform=None,
           version: int | None = None) -> dict:
    """The beneficiary accepts after face verification; eligibility is checked again at this moment."""
    with command(db, now=now, platform=platform, optimistic=True, version=version) as cmd:
        row = cmd.lock_binding(binding_id)
        who = cmd.resolve(actor, row)
        cmd.authorize_actor(row, "accept", who, None)
        if row.state == "face_verified":
            grantor: Person = row.grantor
            rules.check_grantor(facts(cmd.conn, grantor))
            rules.check_beneficiary(facts(cmd.conn, row.beneficiary))
        cmd.transition(row, "accept", who, channel=channel)
        return cmd.view


@retried
def authorize(db, binding_id: str, actor, amount_fen: int | None, *, channel: str | None = None,
              now=None, platform=None, version: int | None = None) -> dict:
    """The grantor sets the authorized amount in fen (None = the whole balance); again to change it. The
    amount it already has changes nothing: the binding is answered as it is (same version, no event)."""
    with command(db, now=now, platform=platform, optimistic=True, version=version) as cmd:
        row = cmd.lock_binding(binding_id)  # an unknown (or unseen) binding answers not_found first
        rules.check_amount(amount_fen)
        who = cmd.resolve(actor, row)
        cmd.authorize_actor(row, "authorize", who, None)
        if row.state in ("accepted", "authorized"):
            rules.check_grantor(facts(cmd.conn, row.grantor))
        if row.state == "authorized" and row.authorized_amount_fen == amount_fen:  # the same amount again (a
            return binding_view(row, row.grantor, row.beneficiary)  # PUT retried): nothing changes, nothing is sent
        if row.state == "authorized":
            _check_new_amounts(cmd, row)
        row.authorized_amount_fen = amount_fen  # rolled back with the transaction if the event is refused
        cmd.transition(row, "authorize", who, channel=channel,
                       reason="whole_balance" if amount_fen is None else f"amount_fen={amount_fen}")
        return cmd.view


def _check_new_amounts(cmd, row) -> None:
    """A new amount is a binding change: at most the region's `frequency_max_changes` authorizations of one
    binding in its `frequency_window_s` (the first included), else 429 too_frequent with the seconds until
    one more fits. Each writes a history row and an event to every platform concerned: without a limit an
    app could send thousands (a security review sent 60 in a row, all taken)."""
    pol = policy.by_id(cmd.conn, row.policy_id, row.grantor_region, cmd.now)
    since = cmd.now - timedelta(seconds=pol.frequency_window_s)
    moments = [found[0] for found in _AUTHORIZED_SINCE.rows(cmd.conn, {"b": row.id, "since": since})]
    if len(moments) >= pol.frequency_max_changes:
        rules.check_frequency(len(moments), pol, rules.seconds_until_one_fits(moments, pol, cmd.now))


__all__ = ["accept", "authorize", "cancel", "decline", "expire", "reject", "unbind", "DomainError"]
