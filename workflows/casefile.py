"""Everything an operator sees about one binding on its dashboard page, read in one transaction:
the binding (persons masked), its history, timers, verification attempts, deliveries with their tries,
sync per concerned platform, why it is stuck (if it is) and the audit entries that name it."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from sqlalchemy.orm import joinedload

from models import (Binding, Delivery, DeliveryAttempt, Departure, Person, PlatformSync, Transition,
                    VerificationAttempt)
from models.types import utcnow

from . import free_text, in_person, machine, operators, platforms, rows, settlements, stuck, sync
from .errors import DomainError
from .views import attempt_view, binding_view, transition_view

D, DA, S, X = Delivery.__table__, DeliveryAttempt.__table__, PlatformSync.__table__, Departure.__table__
# the page shows persons masked: their encrypted columns are never loaded (nor decrypted) here
_MASKED_ONLY = [joinedload(side).defer(Person.id_number).defer(Person.name)
                for side in (Binding.grantor, Binding.beneficiary)]
TRIES_SHOWN = 5  # the newest tries of each delivery (by when they happened)


def _timers(b, attempts: list[dict]) -> list[dict]:
    """Each deadline once, in due order: the invitation's expiry (kind `invitation_ttl`) and each open
    verification attempt's timeout (kind `attempt`, with `attempt_no`). The binding's next deadline
    (`deadline_at`, `deadline_event`) is one of those; it shows as kind `next` only if neither names it."""
    found = []
    if b.expires_at is not None and b.state in machine.PENDING:
        found.append({"event": "expire", "due_at": b.expires_at, "kind": "invitation_ttl"})
    for a in attempts:
        if a["status"] == "pending":
            found.append({"event": "verification_timeout", "due_at": a["deadline_at"], "kind": "attempt",
                          "attempt_no": a["attempt_no"]})
    if b.deadline_at is not None and not any(
            t["event"] == b.deadline_event and t["due_at"] == b.deadline_at for t in found):
        found.append({"event": b.deadline_event, "due_at": b.deadline_at, "kind": "next"})
    return sorted(found, key=lambda t: t["due_at"])


def _deliveries(s, binding_id: str, now: datetime) -> list[dict]:
    """Each delivery with its newest TRIES_SHOWN tries, newest first, and how many it has had (`tries_total`);
    a later version held back behind an undelivered one is `blocked`, `waits_for` naming the earliest; one a
    worker is trying right now (its lease in force) is `sending`.
    Ordered by when a try happened, not by `attempt_no`: a replay counts from 1 again, so its tries (the one
    that finally succeeded among them) would sort below the older, higher-numbered ones. Each try's `seq` is
    its place among all of the delivery's tries (the oldest 1), which a page shows: `attempt_no` repeats
    after a replay, and `attempts` on the delivery counts the tries since the last one."""
    found = s.execute(sa.select(D).where(D.c.binding_id == binding_id)
                      .order_by(D.c.platform_id, D.c.binding_version, D.c.id)).mappings().all()
    tries: dict[int, list] = {}
    total: dict[int, int] = {}
    if found:
        newest = sa.func.row_number().over(partition_by=DA.c.delivery_id, order_by=(DA.c.at.desc(), DA.c.id.desc()))
        counted = sa.func.count().over(partition_by=DA.c.delivery_id)
        ranked = (sa.select(DA, newest.label("rank"), counted.label("total"))
                  .where(DA.c.delivery_id.in_([d["id"] for d in found])).subquery())
        for t in s.execute(sa.select(ranked).where(ranked.c.rank <= TRIES_SHOWN)
                           .order_by(ranked.c.delivery_id, ranked.c.rank)).mappings():
            total[t["delivery_id"]] = t["total"]
            tries.setdefault(t["delivery_id"], []).append(
                {k: t[k] for k in DA.c.keys()} | {"error": free_text.clean(t["error"], limit=2000),
                                                  "seq": t["total"] - t["rank"] + 1})
    out = [{**dict(d), "last_error": free_text.clean(d["last_error"], limit=2000),
            "tries": tries.get(d["id"], []), "tries_total": total.get(d["id"], 0)} for d in found]
    for d in out:  # held back until the platform has the earlier versions (`routing.add`: blocked)
        held = d["status"] == "pending" and d["next_attempt_at"] is None
        d["waits_for"] = min((e["binding_version"] for e in out if e["platform_id"] == d["platform_id"]
                              and e["binding_version"] < d["binding_version"] and e["status"] != "delivered"),
                             default=None) if held else None
        # one with nothing undelivered before it is released by the scheduler within a minute: plain pending
        d["blocked"] = held and d["waits_for"] is not None
        d["sending"] = d["status"] in ("pending", "failing") and d["leased_until"] is not None \
            and d["leased_until"] > now
    return out


def _sync(s, b) -> list[dict]:
    acked = {r.platform_id: r for r in s.execute(sa.select(S).where(S.c.binding_id == b.id))}
    left = s.execute(sa.select(X.c.province_code, sa.func.max(X.c.version)).where(X.c.binding_id == b.id)
                     .group_by(X.c.province_code)).all()
    out = []
    for p in platforms.all_platforms(s):
        if p.kind == "verifier":
            continue
        concerned = s.execute(sa.select(rows.B.c.id).where(rows.B.c.id == b.id, sync.concerns(p))).first()
        # a platform the binding left (a move, `relocate`) is owed the move's version and nothing after it
        owed = b.version if concerned is not None else max(
            (version for province, version in left if province in p.provinces), default=0)
        if not owed and p.id not in acked:
            continue
        got = acked.get(p.id)
        version = got.acked_version if got else 0
        out.append({"platform_id": p.id, "kind": p.kind, "acked_version": version,
                    "acked_at": got.acked_at if got else None, "concerned": concerned is not None,
                    "owed_version": owed, "behind": max(owed - version, 0), "webhook": bool(p.webhook_url)})
    return out


def casefile(db, binding_id: str, *, now: datetime | None = None) -> dict:
    now = now or utcnow()
    with db.begin() as s:
        b = s.scalars(sa.select(Binding).where(Binding.id == binding_id).options(*_MASKED_ONLY)).unique().one_or_none()
        if b is None:
            raise DomainError("not_found", f"no binding {binding_id}")
        attempts = [attempt_view(a) for a in s.scalars(
            sa.select(VerificationAttempt).where(VerificationAttempt.binding_id == binding_id)
            .order_by(VerificationAttempt.attempt_no))]
        raw_attempts = [{"attempt_no": a["attempt_no"], "status": a["status"],
                         "deadline_at": datetime.fromisoformat(a["deadline_at"])} for a in attempts]
        history = [transition_view(t, staff=True) for t in s.scalars(
            sa.select(Transition).where(Transition.binding_id == binding_id).order_by(Transition.seq))]
        return {
            "binding": binding_view(b, b.grantor, b.beneficiary),
            "history": history,
            "path": [(t["from"], t["to"], t["event"]) for t in history],
            "timers": _timers(b, raw_attempts),
            "verifications": attempts,
            "deliveries": _deliveries(s, binding_id, now),
            "sync": _sync(s, b),
            "stuck": stuck.of_binding(s, binding_id, now),
            "audit": operators.entries(s, binding_id=binding_id, limit=20)["items"],
            "payments": settlements.of_binding(s, binding_id),
            "terminal": b.state in machine.TERMINAL,
            "in_person": in_person.offered(s, b, now),  # the service hall may check identity (in_person.py)
        }

