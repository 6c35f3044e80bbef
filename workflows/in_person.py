"""The identity check in person at a service hall (线下核验), where the regions' policies allow it.

The guides' other way in (Xinjiang's 线下绑定流程; the Jiangsu guide sends the elderly to the hall too): the
family brings both ID cards to the medical-insurance service hall (医保服务大厅), fills in the application form
(《个人账户家庭共济申请表》), and the staff check the documents. A relative without a smartphone cannot do the
app's face check, so without this an invitation for them could only expire.

It is an addition to DESIGN §2: `verify_in_person` moves `invited → face_verified` like a passed face check
(the same `binding.face_verified` event, the binding's `verification_method` becomes `in_person`), fired by
a member of the hall's staff through their provincial platform's counter system (actor `staff`) or by a
bureau operator in the dashboard (`repair.verify_in_person`), always with a reason (what was checked, the
form's number). The relative still accepts (or declines) afterwards, as after a face check: at the counter
their platform acts for them.

Which policy decides: the versions in force now in the grantor's and in the beneficiary's pooling region,
both (one region for most families). Unlike a face check's attempts and timeout, which are the terms an
invitation was made under, whether a hall checks documents is a service the bureau offers or stops now:
turned on (`gongji policy publish --set in_person_verification=true`), it serves invitations already
waiting; and across provinces neither bureau's switch speaks for the other's hall. A face-check attempt
still open is abandoned (its late result is ignored)."""

from __future__ import annotations

from . import free_text, machine, policy
from .actors import Actor
from .errors import DomainError
from .unit import Command, command

EVENT = "verify_in_person"
STAFF_ID_CHARS = 31  # with a platform id (at most 32 characters) and ':' it fits the history's actor id (64)


def _refusing(conn, row, at) -> list[str]:
    """The binding's regions whose policy in force at `at` does not provide for the check (none: allowed)."""
    regions = dict.fromkeys((row.grantor_region, row.beneficiary_region))
    return [code for code in regions if not policy.in_force(conn, code, at).in_person_verification]


def offered(conn, row, at) -> bool:
    """Whether the binding could be verified in person now: `invited`, its invitation still valid, both
    regions' policies providing for it."""
    return (machine.allowed(row.state, EVENT) and (row.expires_at is None or at < row.expires_at)
            and not _refusing(conn, row, at))


def check(cmd: Command, row, actor: Actor, reason: str | None, *, channel: str) -> tuple[str, str]:
    """Fire `verify_in_person` on a locked binding: the actor, the state, the policies, in that order (a binding
    past `invited` is 409 whatever its regions allow); the reason is stored cleaned. Returns (from, to)."""
    cmd.authorize_actor(row, EVENT, actor, reason)
    if not machine.allowed(row.state, EVENT):
        raise DomainError("illegal_transition", f"{EVENT} is not possible in state {row.state}")
    refusing = _refusing(cmd.conn, row, cmd.now)
    if refusing:
        raise DomainError("in_person_not_allowed", f"the policy in force in region {', '.join(refusing)} does "
                          "not provide for an identity check in person")
    reason = free_text.clean_about(cmd.conn, reason, (row.grantor_id, row.beneficiary_id))
    row.verification_method = "in_person"
    return cmd.transition(row, EVENT, actor, channel=channel, reason=reason)


def _staff(staff_id: str | None) -> str:
    """A staff id as the history keeps it, or validation_failed: 1 to 31 characters, no ':' (it separates the
    platform), nothing the dashboard would have to mask (an ID or mobile number: `free_text.clean`)."""
    staff_id = (staff_id or "").strip()
    if not 0 < len(staff_id) <= STAFF_ID_CHARS or ":" in staff_id:
        raise DomainError("validation_failed", f"staff_id is 1 to {STAFF_ID_CHARS} characters without ':'")
    if free_text.clean(staff_id) != staff_id:
        raise DomainError("validation_failed", "staff_id holds what looks like an ID or mobile number: use the "
                          "hall's own staff number")
    return staff_id


def verify_in_person(db, binding_id: str, *, staff_id: str, reason: str, platform, now=None,
                     version: int | None = None) -> dict:
    """A provincial platform's counter system reports that `staff_id` of its service hall checked the
    beneficiary's identity in person (`reason`: what was checked, the application form's number). The hall is
    where the beneficiary is insured: the platform must serve that province (403 region_not_served)."""
    actor = Actor("staff", f"{platform.id}:{_staff(staff_id)}")
    with command(db, now=now, platform=platform, version=version) as cmd:
        row = cmd.lock_binding(binding_id)
        if not platform.serves(row.beneficiary.region_code[:2]):
            raise DomainError("region_not_served", f"platform {platform.id} has no service hall where the "
                              "beneficiary is insured")
        check(cmd, row, actor, reason, channel="counter")
        return cmd.view
