"""Face-verification sessions at the provider: what a worker sends to open one, and what it records.

When a beneficiary starts verification (`verification.start_verification`) the attempt is `pending` and
a `binding.verification_requested` event is in the outbox; a worker then asks the face-verification
provider — a platform registered with kind `verifier` and a URL: one registered for the beneficiary's
province, else a nationwide one (registered for no province) — to open a session; only that provider's
`verification.completed` then counts for the attempt. `session_request` builds the request, the worker
POSTs it signed, `session_opened` or `session_failed` records the answer on the attempt (`provider_status`,
`provider_session_id`, `provider_requests`, `provider_error`). A provider error is retried with backoff
until the attempt is no longer pending; no result by the attempt's deadline counts as a failed attempt (the
timer does that).

The provider is the one party that must see the person's ID number and name (to compare the face with
the identity photo): they are decrypted here, sent over the signed request, and never stored or logged
in plaintext."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Binding, Person, VerificationAttempt
from models.types import utcnow

from . import free_text, platforms
from .persons import province_of
from .statements import Statement, autocommit

VA = VerificationAttempt.__table__


@dataclass(frozen=True)
class SessionRequest:
    verification_id: str
    verifier_id: str
    url: str
    secrets: tuple[str, ...]
    event_id: str
    payload: dict


def verifier(session, province: str | None = None, *, reachable: bool = True) -> platforms.PlatformInfo | None:
    """The provider for a beneficiary of `province`: a verifier registered for that province, else one
    registered for none (nationwide), the first by id among equals; None if there is neither. A verifier
    registered for other provinces only is never sent this person's identity. `reachable`: only those with
    a URL (the one to ask); without, the one the registry names even if it cannot be asked now."""
    found = [p for p in platforms.all_platforms(session) if p.kind == "verifier" and (p.webhook_url or not reachable)]
    chosen = [p for p in found if province in p.provinces] or [p for p in found if not p.provinces]
    return chosen[0] if chosen else None


def may_answer(session, attempt_verifier_id: str | None, region_code: str, verifier_id: str) -> bool:
    """Whether `verifier_id`'s result counts for an attempt: the provider asked (recorded before the request
    leaves, so its callback always finds it); while nobody was asked yet, only the provider that would be
    asked or the one the registry names for the beneficiary's province. Never any other verifier: a
    provider registered for another province, or any provider when none serves this one."""
    if attempt_verifier_id is not None:
        return verifier_id == attempt_verifier_id
    province = province_of(session, region_code)  # of the beneficiary's pooling region
    return any(p is not None and p.id == verifier_id for p in (verifier(session, province),
                                                                verifier(session, province, reachable=False)))


UNASKED_S = 60.0  # an attempt whose provider nobody asked after this long is asked again (`unasked`)
_UNASKED = (sa.select(VA.c.id).where(VA.c.status == "pending", VA.c.provider_status.is_(None),
                                     VA.c.opened_at <= sa.bindparam("before"))
            .order_by(VA.c.opened_at).limit(sa.bindparam("batch", type_=sa.Integer)).with_for_update(skip_locked=True))


def unasked(db, *, now: datetime | None = None, batch: int = 100) -> list[str]:
    """Open attempts whose provider was never asked UNASKED_S after they opened: the worker's message to ask
    was lost (e.g. Redis failed right after the fan-out committed). They are marked `queued` and returned for
    the scheduler to send once more; one still not asked after that is stuck (`workflows.stuck`)."""
    now = now or utcnow()
    with db.begin() as s:
        ids = list(s.scalars(_UNASKED, {"before": now - timedelta(seconds=UNASKED_S), "batch": batch}))
        if ids:
            s.execute(sa.update(VA).where(VA.c.id.in_(ids)).values(provider_status="queued"))
    return ids


B, P = Binding.__table__, Person.__table__
# the worker's statements, built once (one ask per verification attempt): the attempt with its beneficiary,
# then the ask recorded only if the attempt is still pending and not opened (a conditional UPDATE decides,
# in autocommit on PostgreSQL: two statements instead of BEGIN, a lock, two reads, an update and COMMIT)
_ATTEMPT = Statement(
    sa.select(VA.c.binding_id, VA.c.attempt_no, VA.c.deadline_at, VA.c.status, VA.c.provider_status,
              P.c.id, P.c.id_number, P.c.name, P.c.region_code)
    .select_from(VA.join(B, B.c.id == VA.c.binding_id).join(P, P.c.id == B.c.beneficiary_id))
    .where(VA.c.id == sa.bindparam("vid")))
_ASKABLE = (VA.c.id == sa.bindparam("vid"), VA.c.status == "pending",
            sa.func.coalesce(VA.c.provider_status, "") != "opened")
_ASKED = {queued_only: Statement(
    sa.update(VA).where(*_ASKABLE, *((VA.c.provider_status == "queued",) if queued_only else ()))
    .values(provider_status="requested", provider_requests=VA.c.provider_requests + 1,
            verifier_id=sa.bindparam("verifier", type_=VA.c.verifier_id.type)).returning(VA.c.id))
    for queued_only in (False, True)}
NO_PROVIDER = "no face-verification provider serves this region"  # the attempt's provider_error (the dashboard words it)
_NO_PROVIDER = Statement(sa.update(VA).where(*_ASKABLE).values(provider_status="error", provider_error=NO_PROVIDER))
_OPENED = Statement(sa.update(VA).where(VA.c.id == sa.bindparam("vid")).values(
    provider_status="opened", provider_session_id=sa.bindparam("sid", type_=VA.c.provider_session_id.type),
    provider_error=None))


def session_request(db, verification_id: str, *, callback_base: str, now: datetime | None = None,
                    only_if_queued: bool = False) -> SessionRequest | None:
    """The request to open a session for a pending attempt not yet opened, or None (nothing to do).
    `only_if_queued` (the scheduler's second ask): only if no one asked since `unasked` marked it."""
    now = now or utcnow()
    with autocommit(db) as conn:
        found = _ATTEMPT.first(conn, {"vid": verification_id})
        if found is None:
            return None
        binding_id, attempt_no, deadline_at, status, provider_status, person_id, id_number, name, region = found
        if status != "pending" or provider_status == "opened" or (only_if_queued and provider_status != "queued"):
            return None
        provider = verifier(conn, province_of(conn, region))
        if provider is None:
            _NO_PROVIDER.run(conn, {"vid": verification_id})
            return None
        # the provider asked is the one whose result counts (verification.record_verification_result)
        if _ASKED[only_if_queued].first(conn, {"vid": verification_id, "verifier": provider.id}) is None:
            return None  # answered, timed out or opened meanwhile
    # one id for every ask of this attempt (a retry after an error or a lost answer, the scheduler's second
    # ask): it is the same message, so a provider that already has it drops it as a duplicate (Standard Webhooks)
    payload = {"type": "verification.session_requested", "id": f"evt_{verification_id}",
               "created_at": now.isoformat(),
               "data": {"verification_id": verification_id, "binding_id": binding_id, "attempt_no": attempt_no,
                        "deadline_at": deadline_at.isoformat(),
                        "callback_url": f"{callback_base}/webhooks/{provider.id}",
                        "subject": {"person_id": person_id, "id_number": id_number, "name": name}}}
    return SessionRequest(verification_id, provider.id, provider.webhook_url, provider.signing_secrets(now),
                          payload["id"], payload)


def session_opened(db, verification_id: str, session_id: str | None) -> None:
    with autocommit(db) as conn:
        _OPENED.run(conn, {"vid": verification_id, "sid": (session_id or "")[:64] or None})


def session_failed(db, verification_id: str, error: str) -> bool:
    """Record a failed request; True if the attempt is still pending (worth retrying)."""
    with db.begin() as s:
        s.execute(sa.update(VA).where(VA.c.id == verification_id).values(
            provider_status="error", provider_error=free_text.clean(error, limit=2000)))
        return s.scalar(sa.select(VA.c.status).where(VA.c.id == verification_id)) == "pending"
