"""Stuck bindings, computed from data with a reason (DESIGN §2 "Stuck"), for the dashboard's counts, its
list filter and tags, a binding's page and the operator's retry. A binding may be stuck for several reasons:

- `timer_overdue`: its `deadline_at` passed more than GRACE_S ago (the sweeper should have fired it)
- `past_service_level`: a pending state with nothing scheduled (`deadline_at` NULL), unchanged for longer
  than SERVICE_LEVEL_S[state]
- `verification_request_failed`: its pending attempt's provider session request failed (`provider_status`
  'error', or asked again after an error: `provider_error` kept until a session opens), or the attempt has
  been open for more than REQUEST_STALE_S with the session 'requested' and not
  opened, or not even requested (the worker's message to ask the provider was lost, and so was the
  scheduler's second ask: 'queued', see `face_sessions.unasked`)
- `delivery_dead`: a delivery is dead-lettered (waits for an operator's replay)
- `delivery_failing`: an open delivery was tried FAILING_ATTEMPTS times or more and is still retrying, or its
  next try is more than GRACE_S overdue (the scheduler, whose periodic pass hands due deliveries to the
  workers and moves them on by `deliveries.GRACE_S`, is not running; workers that are down while it runs
  show as no try at all, which this does not see: the overview's worker card and `/metrics` do, from the
  processes' own rows, `processes.py`)
- `sync_behind`: a push platform it concerns (`sync.concerns`, as reconcile) acknowledged less than its
  version, it changed between WINDOW_S and SETTLE_S ago (reconcile's window), and no delivery to that
  platform is open (on its way) or dead (that one is `delivery_dead`)
- `worker_error`: an outbox event of it is unprocessed and a worker recorded an error on it

Cost: every reason starts from a small indexed subset, never a scan of `bindings`: ix_bindings_deadline
(overdue timers), ix_bindings_state_updated (pending states unchanged for days), ix_verification_attempts_pending,
ix_deliveries_undelivered, ix_outbox_pending; sync_behind from the (updated_at, id) window with one probe of
ix_platform_sync_binding_id per binding in it, so it costs what the bindings changed in WINDOW_S cost (as for
reconcile: ~30k rows, ~0.1 s at 1M bindings). As a filter or a row's flag a reason is a correlated EXISTS
on `bindings` (PostgreSQL drives a WHERE from the small side; a select list probes the row's own rows by
binding_id); counted, it is `count(DISTINCT binding_id)` of its subset. Constants partial indexes are matched
on are rendered inline (`_lit`), so the planner proves the index predicate for a prepared statement too.
Durations are seconds; `now` is an aware UTC datetime. Details carry no PII: error texts are cut to
DETAIL_CHARS and anything shaped like an ID number is masked."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, OutboxMessage, PlatformSync, VerificationAttempt

from . import free_text, platforms, rows, sync
from .errors import DomainError

REASONS = ("timer_overdue", "past_service_level", "verification_request_failed", "delivery_dead",
           "delivery_failing", "sync_behind", "worker_error")
GRACE_S = 120  # a due timer the sweeper (every few seconds) has not fired this long after its deadline
# A pending binding always has a timer (its invitation TTL); one without is stuck once it sat longer than the
# default invitation TTL (7 days), by which time the timer would have expired it.
SERVICE_LEVEL_S = {"invited": 7 * 86400, "face_verified": 7 * 86400}
REQUEST_STALE_S = 300  # an attempt whose provider session is not opened (or not asked for) after 5 minutes
FAILING_ATTEMPTS = 3  # tries of an open delivery (5 s, 30 s, 2 min into the schedule: about 3 minutes)
SETTLE_S, WINDOW_S = 300, 7 * 86400  # reconcile's defaults: changed between 7 days and 5 minutes ago
DETAIL_CHARS = 200

B, D, VA, OB, S = (rows.B, Delivery.__table__, VerificationAttempt.__table__, OutboxMessage.__table__,
                   PlatformSync.__table__)


def _lit(value: str):
    """A constant rendered into the SQL text (not a parameter): partial indexes are matched on it."""
    return sa.literal(value, literal_execute=True)


def push_targets(session) -> list[platforms.PlatformInfo]:
    """The platforms bindings are pushed to (a webhook URL, not a verifier): those sync_behind is about."""
    return [p for p in platforms.all_platforms(session) if p.webhook_url and p.kind != "verifier"]


def _ago(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)


def _timer_overdue(now):
    return B.c.deadline_at < _ago(now, GRACE_S)


def _past_service_level(now):
    return sa.and_(B.c.deadline_at.is_(None), sa.or_(*(sa.and_(B.c.state == _lit(s), B.c.updated_at < _ago(now, level))
                                                       for s, level in SERVICE_LEVEL_S.items())))


# reasons found in another table: (table, its WHERE) — an EXISTS on bindings, or counted there directly
def _request_failed(now):
    # the last answer an error (`provider_error` stays while the worker asks again, until a session opens):
    # else the tag would come and go with each retry of a failing provider
    return VA, [VA.c.status == _lit("pending"), sa.or_(
        VA.c.provider_status == _lit("error"), VA.c.provider_error.is_not(None),
        sa.and_(sa.or_(VA.c.provider_status.is_(None),
                       VA.c.provider_status.in_([_lit("queued"), _lit("requested")])),
                VA.c.opened_at < _ago(now, REQUEST_STALE_S)))]


def _delivery_dead(now):
    return D, [D.c.status != _lit("delivered"), D.c.status == _lit("dead")]


def _delivery_failing(now):
    return D, [D.c.status != _lit("delivered"), D.c.status.in_([_lit("pending"), _lit("failing")]),
               sa.or_(D.c.attempts >= FAILING_ATTEMPTS, D.c.next_attempt_at < _ago(now, GRACE_S))]


def _failing(d, now) -> bool:
    """`_delivery_failing` for one delivery row already known open (a binding's page)."""
    return d.attempts >= FAILING_ATTEMPTS or (d.next_attempt_at is not None
                                              and d.next_attempt_at < _ago(now, GRACE_S))


def _worker_error(now):
    return OB, [OB.c.processed_at.is_(None), OB.c.last_error.is_not(None)]


_ON_BINDINGS = {"timer_overdue": _timer_overdue, "past_service_level": _past_service_level}
_ELSEWHERE = {"verification_request_failed": _request_failed, "delivery_dead": _delivery_dead,
              "delivery_failing": _delivery_failing, "worker_error": _worker_error}


def _predicate(reason: str, now):
    if reason in _ON_BINDINGS:
        return _ON_BINDINGS[reason](now)
    table, where = _ELSEWHERE[reason](now)
    return sa.exists().where(table.c.binding_id == B.c.id, *where)


def _window(now):
    return sa.and_(B.c.updated_at >= _ago(now, WINDOW_S), B.c.updated_at <= _ago(now, SETTLE_S))


def _behind(p: platforms.PlatformInfo):
    """Platform `p` concerns the binding, holds an older version, and nothing to it is open or dead."""
    acked = sa.select(S.c.acked_version).where(S.c.platform_id == p.id, S.c.binding_id == B.c.id).scalar_subquery()
    on_its_way = sa.exists().where(D.c.binding_id == B.c.id, D.c.status != _lit("delivered"), D.c.platform_id == p.id)
    return sa.and_(sync.concerns(p), sa.func.coalesce(acked, 0) < B.c.version, ~on_its_way)


def _some_behind(targets: list):
    """Fewer concerned platforms hold the binding's version than it has: one probe of platform_sync by binding
    (ix_platform_sync_binding_id) instead of one per platform, so only the few candidates get `_behind`."""
    concerned = [sync.concerns(p) for p in targets]
    mine = sa.case(*((S.c.platform_id == p.id, c) for p, c in zip(targets, concerned)), else_=sa.false())
    holding = (sa.select(sa.func.count()).where(S.c.binding_id == B.c.id, S.c.acked_version >= B.c.version, mine)
               .scalar_subquery())
    return holding < sum((sa.case((c, 1), else_=0) for c in concerned), sa.literal(0))


def reason_filter(reason: str, now: datetime, targets: list | None = None) -> sa.ColumnElement[bool]:
    """A WHERE clause on `rows.B` (bindings) for one reason. sync_behind needs `targets`
    (`push_targets(session)`): which platforms are pushed to is data."""
    if reason not in REASONS:
        raise DomainError("validation_failed", f"stuck is one of {', '.join(REASONS)}")
    if reason != "sync_behind":
        return _predicate(reason, now)
    if targets is None:
        raise ValueError("sync_behind needs targets=stuck.push_targets(session)")
    if not targets:
        return sa.false()
    return sa.and_(_window(now), _some_behind(targets), sa.or_(*(_behind(p) for p in targets)))


def tune(session) -> None:
    """For the dashboard's reads, in the session's transaction: no JIT on PostgreSQL (its compile time, ~0.4 s
    for the stuck counts, is paid because subplans inflate the cost estimate; these queries run in ms)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))


def flag_columns(now: datetime, targets: list) -> list[sa.ColumnElement]:
    """Boolean columns `stuck_<reason>` (sync_behind one per platform: `stuck_sync_<i>`) to select with a few
    bindings; `reasons_of` reads them back."""
    cols = [_predicate(r, now).label(f"stuck_{r}") for r in REASONS if r != "sync_behind"]
    return cols + [sa.and_(_window(now), _behind(p)).label(f"stuck_sync_{i}") for i, p in enumerate(targets)]


def reasons_of(row, targets: list) -> list[str]:
    """The reasons (in REASONS order) a row selected with `flag_columns` is stuck for."""
    held = {r for r in REASONS if r != "sync_behind" and row[f"stuck_{r}"]}
    if any(row[f"stuck_sync_{i}"] for i in range(len(targets))):
        held.add("sync_behind")
    return [r for r in REASONS if r in held]


def _count(reason: str, now: datetime, targets: list) -> sa.ScalarSelect:
    if reason in _ELSEWHERE:  # distinct bindings of the small subset, without visiting bindings
        table, where = _ELSEWHERE[reason](now)
        query = sa.select(sa.func.count(table.c.binding_id.distinct())).where(*where)
    else:
        query = sa.select(sa.func.count()).select_from(B).where(reason_filter(reason, now, targets))
    return query.scalar_subquery().label(reason)


def counts(db, now: datetime, reasons: tuple = REASONS) -> dict[str, int]:
    """Each of `reasons` (all by default, in REASONS order) with how many bindings it holds for, 0 included;
    one statement."""
    with db() as s:
        tune(s)
        targets = push_targets(s)
        found = s.execute(sa.select(*(_count(r, now, targets) for r in reasons))).mappings().one()
    return {r: int(found[r]) for r in reasons}


def _text(value) -> str:
    return free_text.clean(str(value or ""), limit=DETAIL_CHARS) or ""


def _item(reason: str, since, detail: str, platform_id: str | None = None, **parts) -> dict:
    """`detail` is a short English text (logs, the command line); `parts` the same facts as values, which the
    dashboard words in its reader's language."""
    return {"reason": reason, "since": since, "platform_id": platform_id, "detail": detail, "parts": parts}


def of_binding(session, binding_id: str, now: datetime) -> list[dict]:
    """Why one binding is stuck: [{reason, since (aware datetime or None), platform_id (or None), detail (short
    text), parts (its facts: `_item`)}] in REASONS order ([] if it is not, or does not exist); a reason about
    deliveries, platforms or events has one entry for each."""
    targets = push_targets(session)
    row = session.execute(sa.select(B.c.state, B.c.version, B.c.updated_at, B.c.deadline_at, B.c.deadline_event,
                                    *flag_columns(now, targets)).where(B.c.id == binding_id)).mappings().first()
    if row is None:
        return []
    held = reasons_of(row, targets)
    out = []
    if "timer_overdue" in held:
        out.append(_item("timer_overdue", row["deadline_at"], row["deadline_event"] or "",
                         event=row["deadline_event"]))
    if "past_service_level" in held:
        hours = SERVICE_LEVEL_S[row["state"]] // 3600
        out.append(_item("past_service_level", row["updated_at"], f"{row['state']} > {hours} h, no timer",
                         state=row["state"], hours=hours))
    if "verification_request_failed" in held:
        for a in session.execute(sa.select(VA).where(VA.c.binding_id == binding_id, VA.c.status == "pending")):
            provider = "error" if a.provider_error is not None else \
                {"error": "error", "requested": "requested"}.get(a.provider_status, "not_asked")
            error = _text(a.provider_error) if provider == "error" else None
            out.append(_item("verification_request_failed", a.opened_at,
                             f"attempt {a.attempt_no}, {a.provider_requests} requests: "
                             + (error if provider == "error" else "requested, not opened" if provider == "requested"
                                else "provider not asked"),
                             attempt_no=a.attempt_no, requests=a.provider_requests, provider=provider, error=error))
    if {"delivery_dead", "delivery_failing"} & set(held):
        for d in session.execute(sa.select(D).where(D.c.binding_id == binding_id, D.c.status != "delivered")
                                 .order_by(D.c.platform_id, D.c.binding_version)):
            error = _text(d.last_error or (f"HTTP {d.last_status_code}" if d.last_status_code else ""))
            if d.status == "dead" and "delivery_dead" in held:
                out.append(_item("delivery_dead", d.dead_at, f"v{d.binding_version}, {d.attempts} tries: {error}",
                                 d.platform_id, version=d.binding_version, tries=d.attempts, error=error))
            elif d.status != "dead" and _failing(d, now) and "delivery_failing" in held:
                overdue = d.next_attempt_at if d.next_attempt_at is not None and d.next_attempt_at < now else None
                note = f"next try due {d.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC, not made; " if overdue else ""
                out.append(_item("delivery_failing", d.created_at,
                                 f"v{d.binding_version}, {d.attempts} tries: {note}{error}", d.platform_id,
                                 version=d.binding_version, tries=d.attempts, error=error, overdue=overdue))
    if "sync_behind" in held:
        acked = sync.acked_in(session, binding_id)
        for i, p in enumerate(targets):
            if row[f"stuck_sync_{i}"]:
                out.append(_item("sync_behind", row["updated_at"],
                                 f"acknowledged v{acked.get(p.id, 0)} of v{row['version']}", p.id,
                                 acked=acked.get(p.id, 0), version=row["version"]))
    if "worker_error" in held:
        for m in session.execute(sa.select(OB.c.topic, OB.c.created_at, OB.c.attempts, OB.c.last_error).where(
                OB.c.binding_id == binding_id, OB.c.processed_at.is_(None), OB.c.last_error.is_not(None))
                .order_by(OB.c.id)):
            error = _text(m.last_error)
            out.append(_item("worker_error", m.created_at, f"{m.topic}, {m.attempts} tries: {error}",
                             topic=m.topic, tries=m.attempts, error=error))
    order = {r: i for i, r in enumerate(REASONS)}
    return sorted(out, key=lambda item: order[item["reason"]])
