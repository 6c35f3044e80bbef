"""A registry balance snapshot from a platform, made current: the province keeps the personal account and
applies Gongji's settlement postings when their `settlement.*` events reach it, so a snapshot as of T
holds exactly the postings whose events that platform had acknowledged by T. Units: fen; TRY_S seconds."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, LedgerEntry, OutboxMessage

log = logging.getLogger(__name__)

TRY_S = 30  # the longest one delivery try lasts (workers/outbound.py: 3 s to connect, 10 s to read, twice)
_L, _O, _D, _DA = LedgerEntry.__table__, OutboxMessage.__table__, Delivery.__table__, DeliveryAttempt.__table__
_AT = sa.bindparam("at", type_=_L.c.at.type)
_after = _L.c.at > _AT
# a posting the snapshot does not hold: the platform had not acknowledged its event by `at` (or the event
# had not even left); where nothing says (a line from before events were named, an event purged, a
# platform the event never went to, an internal caller), the line's own time decides. Between the
# platform applying an event and Gongji seeing its 2xx (a timeout, a retry hours later, a delivery that
# ends dead) the answer is unknown: it leans to the account's safe side, a debit held only once
# acknowledged, a credit (a reversal) from the first try that may have reached out before `at`: one whose
# attempt row (written after the answer, at most TRY_S after the try began) is dated by `at` + TRY_S, or a
# claimed try with no row yet (in flight, or its worker died mid-POST)
_NOT_HELD = sa.case(
    (_O.c.id.is_(None), _after),
    (sa.bindparam("p", type_=sa.String).is_(None), _after),
    (_O.c.fanned_out_at.is_(None), sa.true()),
    (sa.and_(_D.c.id.is_not(None), _L.c.amount_fen > 0),
     ~sa.or_(sa.exists().where(_DA.c.delivery_id == _D.c.id, _DA.c.at <= sa.bindparam("try_at", type_=_L.c.at.type)),
             sa.and_(_D.c.attempts > 0, ~sa.exists().where(_DA.c.delivery_id == _D.c.id)))),
    (_D.c.id.is_not(None), sa.not_(sa.and_(_D.c.status == "delivered", _D.c.delivered_at <= _AT))),
    else_=_after)
_LATER = (sa.select(sa.func.coalesce(sa.func.sum(_L.c.amount_fen), 0))
          .select_from(_L.outerjoin(_O, _O.c.id == _L.c.outbox_id)
                       .outerjoin(_D, sa.and_(_D.c.outbox_id == _L.c.outbox_id, _D.c.platform_id == sa.bindparam("p"))))
          .where(_L.c.account == sa.bindparam("account"), _NOT_HELD))


def with_later_postings(s, person_id: str, snapshot_fen: int, as_of: datetime, platform) -> int:
    """A registry balance as of `as_of` from `platform`, plus what Gongji's settlements and reversals moved
    on the account that the snapshot does not hold yet. The province keeps the account and applies a posting
    when it receives its `settlement.*` event: a posting whose event the platform had not acknowledged by
    `as_of` is not in its snapshot, whenever the posting was made (a snapshot taken after a settlement but
    before its event arrived must not give the money back; nor one that missed a reversal take it twice).
    Never below zero (the registry's word on an account it keeps); a shortfall is logged."""
    later = int(s.scalar(_LATER, {"account": f"account:{person_id}", "at": as_of,
                                  "try_at": as_of + timedelta(seconds=TRY_S),
                                  "p": platform.id if platform is not None else None}))
    if snapshot_fen + later < 0:
        log.warning("person %s: registry balance %d fen as of %s minus %d fen of postings it does not hold "
                    "is below zero; kept at 0", person_id, snapshot_fen, as_of.isoformat(), -later)
    return max(snapshot_fen + later, 0)
