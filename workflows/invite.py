"""`invite`: the grantor invites a close relative; the first transition of a binding.

Both persons' rows are locked (in id order, so two invitations never deadlock) for the whole check, which
makes member caps and the frequency limit exact under concurrency; the partial unique index on live pairs
makes `duplicate_binding` exact even for two invitations of the same pair racing. A beneficiary under 16
on the invitation day (Asia/Shanghai) takes the guardian path: no face check, straight to `accepted`."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from models import ACTIVE_STATES, Binding
from models.types import new_id

from . import idnumbers, policy, rules
from .actors import Actor
from .errors import DomainError
from .persons import by_number, facts
from .unit import command
from .views import binding_view

CHINA = ZoneInfo("Asia/Shanghai")


def _active_count(session, column, person_id: str) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Binding)
                          .where(column == person_id, Binding.state.in_(ACTIVE_STATES)))


def _changes_since(session, person_id: str, since) -> int:
    """Bindings of the person created, or ended by unbind/cancel, inside the window."""
    return session.scalar(sa.select(sa.func.count()).select_from(Binding).where(
        sa.or_(Binding.grantor_id == person_id, Binding.beneficiary_id == person_id),
        sa.or_(Binding.created_at >= since,
               sa.and_(Binding.ended_at >= since, Binding.end_event.in_(("unbind", "cancel"))))))


def invite(db, *, grantor_id_number: str, beneficiary_id_number: str, beneficiary_name: str,
           relationship: str, commitment_version: str | None, channel: str = "app",
           platform=None, now=None) -> dict:
    """Create a binding (`invited`, or `accepted` on the guardian path). `platform` (a PlatformInfo, or None
    for internal callers) must serve the grantor's province."""
    with command(db, now=now) as cmd:
        today = cmd.now.astimezone(CHINA).date()
        g_number = idnumbers.validate(grantor_id_number, today=today)
        b_number = idnumbers.validate(beneficiary_id_number, today=today)
        rules.check_not_self(g_number, b_number)
        s = cmd.session
        # lock both persons in a stable order so concurrent invitations queue, never deadlock
        found = {}
        for number in sorted((g_number, b_number)):
            found[number] = by_number(s, number, lock=True)
        grantor, beneficiary = found[g_number], found[b_number]
        rules.check_grantor(facts(s, grantor))
        rules.check_beneficiary(facts(s, beneficiary))
        if (beneficiary_name or "").strip() != beneficiary.name:
            raise DomainError("name_mismatch")
        g_policy = policy.in_force(s, grantor.region_code, cmd.now)
        b_policy = policy.in_force(s, beneficiary.region_code, cmd.now)
        if platform is not None and not platform.serves(g_policy.province_code):
            raise DomainError("region_not_served", f"platform {platform.id} does not serve the grantor's province")
        guardian = idnumbers.age_on(b_number, today) < rules.GUARDIAN_AGE
        rules.check_relationship(relationship, g_policy, b_policy, guardian=guardian)
        rules.check_regions(facts(s, grantor), facts(s, beneficiary), g_policy, b_policy)
        rules.check_commitment(commitment_version, g_policy)
        duplicate = s.scalar(sa.select(Binding.id).where(
            Binding.grantor_id == grantor.id, Binding.beneficiary_id == beneficiary.id,
            Binding.state.in_(ACTIVE_STATES)))
        if duplicate is not None:
            raise DomainError("duplicate_binding", existing_binding_id=duplicate)
        rules.check_member_limits(_active_count(s, Binding.grantor_id, grantor.id),
                                  _active_count(s, Binding.beneficiary_id, beneficiary.id), g_policy, b_policy)
        for person, pol in ((grantor, g_policy), (beneficiary, b_policy)):
            since = cmd.now - timedelta(seconds=pol.frequency_window_s)
            rules.check_frequency(_changes_since(s, person.id, since), pol)

        grantor.commitment_version, grantor.updated_at = commitment_version, cmd.now
        row = Binding(id=new_id("bnd"), grantor=grantor, beneficiary=beneficiary, relationship=relationship, state="new",
                      verification_method="guardian" if guardian else "face", channel=channel,
                      platform_id=platform.id if platform is not None else None, version=0, province_code=g_policy.province_code,
                      grantor_region=grantor.region_code, beneficiary_region=beneficiary.region_code,
                      policy_id=g_policy.id, failed_verifications=0, created_at=cmd.now, updated_at=cmd.now,
                      expires_at=None if guardian else cmd.now + timedelta(seconds=g_policy.invitation_ttl_s))
        s.add(row)  # at commit, the live-pair unique index decides a race of two identical invitations
        cmd.transition(row, "invite", Actor("person", grantor.id), channel=channel, guardian=guardian,
                       reason="guardian_path" if guardian else None)
        return binding_view(row, grantor, beneficiary)

