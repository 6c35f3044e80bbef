"""The lifecycle commands after the invitation: accept, decline, cancel, authorize, unbind, expire, reject.

Each is one transaction (see `unit.command`): lock the binding, check the actor and the rules, fire the
event through the shared machine, append history and an outbox event, commit. Amounts are fen."""
from __future__ import annotations

from models import Person

from . import free_text, rules
from .errors import DomainError
from .persons import facts
from .unit import command, retried


def _simple(event: str, *, optimistic: bool = False):
    def run(db, binding_id: str, actor, *, reason: str | None = None, channel: str | None = None, now=None,
            platform=None):
        with command(db, now=now, platform=platform, optimistic=optimistic) as cmd:
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
def accept(db, binding_id: str, actor, *, channel: str | None = None, now=None, platform=None) -> dict:
    """The beneficiary accepts after face verification; eligibility is checked again at this moment."""
    with command(db, now=now, platform=platform, optimistic=True) as cmd:
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
              now=None, platform=None) -> dict:
    """The grantor sets the authorized amount in fen (None = the whole balance); again to change it."""
    with command(db, now=now, platform=platform, optimistic=True) as cmd:
        row = cmd.lock_binding(binding_id)  # an unknown (or unseen) binding answers not_found first
        rules.check_amount(amount_fen)
        who = cmd.resolve(actor, row)
        cmd.authorize_actor(row, "authorize", who, None)
        if row.state in ("accepted", "authorized"):
            rules.check_grantor(facts(cmd.conn, row.grantor))
        row.authorized_amount_fen = amount_fen  # rolled back with the transaction if the event is refused
        cmd.transition(row, "authorize", who, channel=channel,
                       reason="whole_balance" if amount_fen is None else f"amount_fen={amount_fen}")
        return cmd.view


__all__ = ["accept", "authorize", "cancel", "decline", "expire", "reject", "unbind", "DomainError"]
