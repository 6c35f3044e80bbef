"""Inbound webhooks as an operator sees them: the backlog per platform, the problem list, one webhook.

Why: a webhook refused by a rule, or one that keeps failing in the worker, was seen only by its sender
(`GET /api/v1/webhooks/{id}`); a bureau's operator could neither count nor find it. What is shown:
- the backlog per platform: `pending` (stored, not processed yet), of those `retrying` (a run failed:
  attempts > 0) and the oldest pending one's age in seconds, read from the partial index
  ix_received_webhooks_pending (what is pending, not the table); and the problems received in the last
  PROBLEM_WINDOW_S seconds per platform: `failed` (gave up: `failed:<error>`, or `conflict` after
  MAX_ATTEMPTS lost races) and `refused` (an error code: a rule, a validation, a number nobody holds)
- the problem list (kinds failed, refused, retrying; or pending), newest received first in keyset pages,
  by platform, kind and receipt time: the processed ones from ix_received_webhooks_problems (its predicate
  PROBLEM_SQL is in the WHERE as is, so PostgreSQL proves the index), the pending ones from the pending
  index, merged
- one webhook, and the webhooks that named a binding (ix_received_webhooks_binding).
Never the body: it is encrypted at rest and may carry ID numbers. The last error (an exception's text,
which may quote the data) is masked like any free text (`free_text`: ID and mobile numbers, the named
binding's persons' names). Times are aware UTC datetimes; ages and windows are seconds."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from models import ReceivedWebhook
from models.messaging import PROBLEM_SQL
from models.types import seconds_since, utcnow

from . import free_text, platforms, sync, webhooks
from .errors import CODES, DomainError

RW = ReceivedWebhook.__table__
PROBLEM_WINDOW_S = 7 * 86400  # the overview counts the problems received this recently
KINDS = ("failed", "refused", "retrying", "pending")  # the list's filter; none: the first three
RETRYABLE = ("failed", "retrying", "pending")  # a refusal is final: the rule would refuse it again
ERROR_CHARS = 2000
MAX_LIMIT = 200
# among the problems (PROBLEM_SQL, the index's predicate): a give-up, or a refusal: an error code but
# `stale` (an ordinary outcome) and `conflict` (a give-up); SQL text with constants, no parameters
GAVE_UP_SQL = "(outcome like 'failed:%' or outcome = 'conflict')"
REFUSALS = tuple(sorted(set(CODES) - {"stale", "conflict"}))
REFUSED_SQL = "outcome in (" + ", ".join(f"'{code}'" for code in REFUSALS) + ")"
_COLUMNS = (RW.c.id, RW.c.platform_id, RW.c.webhook_id, RW.c.type, RW.c.received_at, RW.c.processed_at,
            RW.c.attempts, RW.c.outcome, RW.c.last_error, RW.c.binding_id)
_PENDING = RW.c.processed_at.is_(None)  # ix_received_webhooks_pending's predicate
_SUBSETS = {"failed": (sa.text(PROBLEM_SQL), sa.text(GAVE_UP_SQL)),
            "refused": (sa.text(PROBLEM_SQL), sa.text(REFUSED_SQL)),
            "retrying": (_PENDING, RW.c.attempts > 0), "pending": (_PENDING,)}


def kind_of(processed_at, outcome: str | None, attempts: int) -> str:
    """`pending`, `retrying`, `failed`, `refused`, or `processed` (an outcome that is no problem)."""
    if processed_at is None:
        return "retrying" if attempts else "pending"
    if outcome and (outcome.startswith("failed:") or outcome == "conflict"):
        return "failed"
    if outcome in REFUSALS:
        return "refused"
    return "processed"


def backlog(db, *, now: datetime | None = None) -> dict[str, dict]:
    """Per platform (every registered one): pending, retrying, oldest_age_s (0 with none pending),
    oldest_untried_age_s (the oldest pending one no worker has tried yet), and the failed and refused ones
    received within PROBLEM_WINDOW_S."""
    now = now or utcnow()
    with db() as s:
        out = {p.id: _zero() for p in platforms.all_platforms(s)}
        for pid, pending, retrying, oldest, untried in s.execute(
                sa.select(RW.c.platform_id, sa.func.count(), sa.func.count().filter(RW.c.attempts > 0),
                          sa.func.min(RW.c.received_at), sa.func.min(RW.c.received_at).filter(RW.c.attempts == 0))
                .where(_PENDING).group_by(RW.c.platform_id)):
            out.setdefault(pid, _zero()).update(pending=pending, retrying=retrying,
                                                oldest_age_s=seconds_since(oldest, now),
                                                oldest_untried_age_s=seconds_since(untried, now))
        for pid, n_failed, n_refused in s.execute(
                sa.select(RW.c.platform_id, sa.func.count().filter(sa.text(GAVE_UP_SQL)),
                          sa.func.count().filter(sa.text(REFUSED_SQL)))
                .where(sa.text(PROBLEM_SQL), RW.c.received_at >= now - timedelta(seconds=PROBLEM_WINDOW_S))
                .group_by(RW.c.platform_id)):
            out.setdefault(pid, _zero()).update(failed=n_failed, refused=n_refused)
    return dict(sorted(out.items()))


def _zero() -> dict:
    return {"pending": 0, "retrying": 0, "oldest_age_s": 0.0, "oldest_untried_age_s": 0.0, "failed": 0, "refused": 0}



def problems(db, *, platform: str | None = None, kind: str | None = None, within_s: int | None = None,
             after: str | None = None, limit: int = 50, now: datetime | None = None) -> dict:
    """One page of problem webhooks, newest received first: {"items": [item...], "next": cursor or None}.
    `kind` one of KINDS (none: failed, refused and retrying); `within_s`: received that recently."""
    now, limit = now or utcnow(), max(1, min(int(limit), MAX_LIMIT))
    if kind not in (None, "", *KINDS):
        raise DomainError("validation_failed", f"kind is one of {', '.join(KINDS)}")
    common = []
    if platform:
        common.append(RW.c.platform_id == platform)
    if within_s:
        try:
            common.append(RW.c.received_at >= now - timedelta(seconds=int(within_s)))
        except (TypeError, ValueError, OverflowError):
            raise DomainError("validation_failed", "within_s is a number of seconds") from None
    if after:
        common.append(sync.rows_before(after, RW.c.received_at, RW.c.id))
    kinds = (kind,) if kind else ("failed", "refused", "retrying")
    parts = [sa.select(*_COLUMNS).where(*_SUBSETS[k], *common).order_by(RW.c.received_at.desc(), RW.c.id.desc())
             .limit(limit + 1).subquery(f"k{i}") for i, k in enumerate(kinds)]
    merged = sa.union_all(*(sa.select(*p.c) for p in parts)).subquery("u")
    query = sa.select(*merged.c).order_by(merged.c.received_at.desc(), merged.c.id.desc()).limit(limit + 1)
    with db() as s:
        found = s.execute(query).mappings().all()
        items = [_item(s, r) for r in found[:limit]]
    last = found[limit - 1] if len(found) > limit else None
    return {"items": items, "next": sync._cursor(last["received_at"], str(last["id"])) if last else None}


def detail(db, received_id: int) -> dict:
    """One stored webhook (no body), with `retryable`; not_found if there is none."""
    with db() as s:
        found = s.execute(sa.select(*_COLUMNS, RW.c.headers).where(RW.c.id == received_id)).mappings().first()
        if found is None:
            raise DomainError("not_found", f"no received webhook {received_id}")
        item = _item(s, found)
    try:  # the signed `webhook-timestamp`: when the sender says it sent it
        sent = datetime.fromtimestamp(int((found["headers"] or {}).get("webhook-timestamp")), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        sent = None
    return {**item, "sent_at": sent}


def of_binding(db, binding_id: str, *, limit: int = 20) -> list[dict]:
    """The webhooks whose data named this binding (recorded when processed), newest received first."""
    with db() as s:
        found = s.execute(sa.select(*_COLUMNS).where(RW.c.binding_id == binding_id)
                          .order_by(RW.c.received_at.desc(), RW.c.id.desc()).limit(limit)).mappings().all()
        return [_item(s, r) for r in found]


def _item(s, r) -> dict:
    kind = kind_of(r["processed_at"], r["outcome"], r["attempts"])
    error = free_text.clean_about_binding(s, r["last_error"], r["binding_id"], limit=ERROR_CHARS)
    return {"id": r["id"], "platform_id": r["platform_id"], "webhook_id": free_text.clean(r["webhook_id"]),
            "type": r["type"], "received_at": r["received_at"], "processed_at": r["processed_at"],
            "attempts": r["attempts"], "outcome": r["outcome"], "kind": kind, "retryable": kind in RETRYABLE,
            "binding_id": r["binding_id"], "last_error": error,
            "refusal": webhooks.refusal_words(r["outcome"], error) if kind == "refused" else None}

