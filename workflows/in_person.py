"""The identity check in person at a service hall (线下核验), where the region's policy allows it.

The guides' other way in (Xinjiang's 线下绑定流程; the Jiangsu guide sends the elderly to the hall too): the
family brings both ID cards to the medical-insurance service hall (医保服务大厅), fills in the application form
(《个人账户家庭共济申请表》), and the staff check the documents. A relative without a smartphone cannot do the
app's face check, so without this an invitation for them could only expire.

It is an addition to DESIGN §2: `verify_in_person` moves `invited → face_verified` like a passed face check
(the same `binding.face_verified` event, the binding's `verification_method` becomes `in_person`), fired by
a member of the hall's staff through their platform's counter system (actor `staff`) or by a bureau
operator in the dashboard (`repair.verify_in_person`), always with a reason (what was checked, the form's
number). The relative still accepts (or declines) afterwards, as after a face check: at the counter their
platform acts for them. The policy that decides is the one the binding was made under (as for its attempts
and timeout); a bureau turns it on for new invitations with `gongji policy publish --set
in_person_verification=true`. A face-check attempt still open is abandoned (its late result is ignored)."""
from __future__ import annotations

from . import free_text, machine, policy
from .actors import Actor
from .errors import DomainError
from .unit import Command, command

EVENT = "verify_in_person"
STAFF_ID_CHARS = 32  # with the platform id and ':' it fits the history's actor id (64)


def offered(conn, row, at) -> bool:
    """Whether the binding could be verified in person now: `invited`, under a policy that allows it."""
    return machine.allowed(row.state, EVENT) and policy.by_id(conn, row.policy_id, row.grantor_region,
                                                              at).in_person_verification


def check(cmd: Command, row, actor: Actor, reason: str | None, *, channel: str) -> tuple[str, str]:
    """Fire `verify_in_person` on a locked binding: the actor, the state, the policy, in that order (a binding
    past `invited` is 409 whatever its region allows); the reason is stored cleaned. Returns (from, to)."""
    cmd.authorize_actor(row, EVENT, actor, reason)
    if not machine.allowed(row.state, EVENT):
        raise DomainError("illegal_transition", f"{EVENT} is not possible in state {row.state}")
    pol = policy.by_id(cmd.conn, row.policy_id, row.grantor_region, cmd.now)
    if not pol.in_person_verification:
        raise DomainError("in_person_not_allowed", f"the policy of region {pol.region_code} (version "
                          f"{pol.version}) does not provide for an identity check in person")
    reason = free_text.clean_about(cmd.conn, reason, (row.grantor_id, row.beneficiary_id))
    row.verification_method = "in_person"
    return cmd.transition(row, EVENT, actor, channel=channel, reason=reason)


def verify_in_person(db, binding_id: str, *, staff_id: str, reason: str, platform, now=None,
                     version: int | None = None) -> dict:
    """A platform's counter system reports that `staff_id` of its service hall checked the beneficiary's
    identity in person (`reason`: what was checked, the application form's number). The platform must act
    for the beneficiary's province (403 region_not_served otherwise), as when it acts for the person."""
    staff_id = (staff_id or "").strip()
    if not staff_id or len(staff_id) > STAFF_ID_CHARS or ":" in staff_id:
        raise DomainError("validation_failed", f"staff_id is 1 to {STAFF_ID_CHARS} characters without ':'")
    with command(db, now=now, platform=platform, version=version) as cmd:
        row = cmd.lock_binding(binding_id)
        if not platform.serves(row.beneficiary.region_code[:2]):
            raise DomainError("region_not_served", f"platform {platform.id} has no service hall where the "
                              "beneficiary is insured")
        check(cmd, row, Actor("staff", f"{platform.id}:{staff_id}"), reason, channel="counter")
        return cmd.view
