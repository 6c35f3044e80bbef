"""Plain-dict views of rows for API answers and outbox payloads. Persons appear masked only."""
from __future__ import annotations

from models import Binding, Person, Transition, VerificationAttempt

from . import free_text
from .actors import public
from .id_in_text import mask_in_text


def _iso(value):
    return value.isoformat() if value is not None else None


def person_ref(p: Person) -> dict:
    return {"id": p.id, "id_number_masked": p.id_number_masked, "name_masked": p.name_masked,
            "region_code": p.region_code}


def person_view(p: Person) -> dict:
    return {**person_ref(p), "insurance_type": p.insurance_type, "insurance_status": p.insurance_status,
            "real_name_verified": p.real_name_verified, "balance_fen": p.balance_fen,
            "commitment_version": p.commitment_version, "deceased": p.deceased,
            "updated_at": _iso(p.updated_at)}


def binding_view(b: Binding, grantor: Person, beneficiary: Person) -> dict:
    authorization = None
    if b.state == "authorized":
        authorization = "whole_balance" if b.authorized_amount_fen is None else "amount"
    return {
        "id": b.id, "state": b.state, "version": b.version,
        "grantor": person_ref(grantor), "beneficiary": person_ref(beneficiary),
        "relationship": b.relationship, "verification_method": b.verification_method, "channel": b.channel,
        "authorized_amount_fen": b.authorized_amount_fen, "authorization": authorization,
        "authorized_at": _iso(b.authorized_at),
        "failed_verifications": b.failed_verifications,
        "deadline_at": _iso(b.deadline_at), "deadline_event": b.deadline_event, "expires_at": _iso(b.expires_at),
        "province_code": b.province_code, "grantor_region": b.grantor_region,
        "beneficiary_region": b.beneficiary_region, "policy_id": b.policy_id, "platform_id": b.platform_id,
        "created_at": _iso(b.created_at), "updated_at": _iso(b.updated_at),
        "ended_at": _iso(b.ended_at), "end_event": b.end_event,
        "ended_by": b.ended_by,
    }


def transition_view(t: Transition, *, staff: bool = False) -> dict:
    """A history row as the API answers it; `staff` (the dashboard) also names the operator who acted."""
    return {"seq": t.seq, "from": t.from_state, "to": t.to_state, "event": t.event,
            "actor": {"kind": t.actor_kind, "id": t.actor_id} if staff else public(t.actor_kind, t.actor_id),
            "channel": t.channel,
            "reason": mask_in_text(t.reason) if t.reason else t.reason,  # written clean (`free_text`); older rows
            "at": _iso(t.at), "request_id": t.request_id}


def attempt_view(a: VerificationAttempt) -> dict:
    return {"verification_id": a.id, "attempt_no": a.attempt_no, "status": a.status,
            "opened_at": _iso(a.opened_at), "deadline_at": _iso(a.deadline_at),
            "completed_at": _iso(a.completed_at), "reason": free_text.clean(a.reason), "verifier_id": a.verifier_id,
            "provider_status": a.provider_status, "provider_session_id": a.provider_session_id,
            "provider_requests": a.provider_requests or 0, "provider_error": free_text.clean(a.provider_error, limit=2000)}
