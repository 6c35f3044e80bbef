"""`invite`: the grantor invites a close relative; the first transition of a binding.

Both persons' rows are locked (in id order, so two invitations never deadlock) for the whole check, which
makes member caps and the frequency limit exact under concurrency; the partial unique index on live pairs
makes `duplicate_binding` exact even for two invitations of the same pair racing. A beneficiary under 16
on the invitation day (Asia/Shanghai) takes the guardian path: no face check, straight to `accepted`."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from models import ACTIVE_STATES
from models.crypto import lookup_hashes
from models.types import new_id

from . import idnumbers, policy, rows, rules
from .actors import Actor
from .errors import DomainError
from .persons import facts, province_of
from .statements import Statement, constant_in
from .unit import command


def _own_end(since):
    """The binding was ended in the window by one of its persons (unbind or cancel): an ending by the system
    (death, insurance ended, a move the policy does not allow) or an operator is not the person's change."""
    b = rows.B
    return sa.and_(b.c.ended_at > since, constant_in(b.c.end_event, ("unbind", "cancel")), b.c.ended_by == "person")


def _changes(person_id, since):
    """A person's binding changes in the frequency window (the `window_s` seconds before now, a change exactly
    that old no longer in it): a binding counts once, when invited in the window or ended in it by a person."""
    b = rows.B
    return sa.and_(sa.or_(b.c.grantor_id == person_id, b.c.beneficiary_id == person_id),
                   sa.or_(b.c.created_at > since, _own_end(since)))


def _counts_query() -> sa.Select:
    """One query for the duplicate check, both member counts and both frequency counts (built once)."""
    b, live = rows.B, constant_in(rows.B.c.state, ACTIVE_STATES)
    g, e = sa.bindparam("g"), sa.bindparam("e")
    pair = sa.and_(b.c.grantor_id == g, b.c.beneficiary_id == e, live)
    return sa.select(
        sa.func.max(sa.case((pair, b.c.id))).label("duplicate"),
        sa.func.count().filter(sa.and_(b.c.grantor_id == g, live)).label("grantor_active"),
        sa.func.count().filter(sa.and_(b.c.beneficiary_id == e, live)).label("beneficiary_active"),
        sa.func.count().filter(_changes(g, sa.bindparam("g_since"))).label("grantor_changes"),
        sa.func.count().filter(_changes(e, sa.bindparam("e_since"))).label("beneficiary_changes"),
    ).where(sa.or_(b.c.grantor_id.in_((g, e)), b.c.beneficiary_id.in_((g, e))))


_COUNTS = Statement(_counts_query())
_SINCE = sa.bindparam("since")
# the moment each counted change leaves the window: its own end if that counts, else its invitation
_CHANGE_TIMES = Statement(sa.select(sa.case((_own_end(_SINCE), rows.B.c.ended_at), else_=rows.B.c.created_at))
                          .where(_changes(sa.bindparam("p"), _SINCE)))
_P = rows.P
# both persons, locked in id order so concurrent invitations queue, never deadlock
_PERSONS = Statement(sa.select(*[_P.c[n] for n in (*rows.PERSON_COLUMNS, "name", "commitment_version")])
                     .where(_P.c.id_number_hash.in_([sa.bindparam(n) for n in ("a", "a_old", "b", "b_old")]))
                     .order_by(_P.c.id).with_for_update())


def _counts(conn, grantor_id: str, beneficiary_id: str, grantor_since, beneficiary_since):
    return SimpleNamespace(**dict(zip(_COUNTS.keys, _COUNTS.first(conn, {
        "g": grantor_id, "e": beneficiary_id, "g_since": grantor_since, "e_since": beneficiary_since}))))


def _persons(conn, a: tuple[str, str], b: tuple[str, str]) -> tuple[rows.PersonRow | None, rows.PersonRow | None]:
    """The persons with these ID numbers' look-up digests (`lookup_hashes`: active, retired), locked."""
    found = {r.id_number_hash: r for r in (rows.PersonRow(**dict(zip(_PERSONS.keys, r))) for r in _PERSONS.rows(
        conn, {"a": a[0], "a_old": a[1], "b": b[0], "b_old": b[1]}))}
    # both digests held (a number held twice during a rotation): the oldest row, as every look-up takes
    return tuple(min((found[d] for d in set(h) if d in found), key=lambda p: p.id, default=None) for h in (a, b))


def _retry_after(conn, person_id: str, person_policy, now) -> int:
    """Whole seconds until one more change fits the person's window: until the oldest counted changes beyond
    the limit have left it (only asked on the refusal path)."""
    since = now - timedelta(seconds=person_policy.frequency_window_s)
    moments = [found[0] for found in _CHANGE_TIMES.rows(conn, {"p": person_id, "since": since})]
    return rules.seconds_until_one_fits(moments, person_policy, now)


def invite(db, *, grantor_id_number: str, beneficiary_id_number: str, beneficiary_name: str,
           relationship: str, commitment_version: str | None, channel: str = "app",
           platform=None, now=None) -> dict:
    """Create a binding (`invited`, or `accepted` on the guardian path). `platform` (a PlatformInfo, or None
    for internal callers) must serve the grantor's province: a grantor insured elsewhere is
    `grantor_not_eligible` "not in the insurance registry", as for an unknown number."""
    with command(db, now=now) as cmd:
        today = idnumbers.today_in_china(cmd.now)
        g_number = idnumbers.validate(grantor_id_number, today=today)
        b_number = idnumbers.validate(beneficiary_id_number, today=today)
        rules.check_not_self(g_number, b_number)
        s = cmd.conn
        grantor, beneficiary = _persons(s, lookup_hashes(g_number), lookup_hashes(b_number))
        # first: a platform acts for a grantor of its own provinces; one insured elsewhere answers exactly as
        # a number nobody holds (as the person look-up does), so it learns nothing of another province's
        # persons here: whether the number is held, their insurance, whether a name matches
        if platform is not None and grantor is not None and not platform.serves(province_of(s, grantor.region_code)):
            grantor = None
        rules.check_grantor(facts(s, grantor))
        g_policy = policy.in_force(s, grantor.region_code, cmd.now)
        # then whether the binding may reach the beneficiary's region at all: a person it cannot reach (another
        # province that does not share) is refused as such before their insurance or name is looked at, so an
        # invitation tells nothing more of them (not whether a name matches) than that they are out of reach
        b_policy = None
        if beneficiary is not None:
            b_policy = policy.in_force(s, beneficiary.region_code, cmd.now)
            rules.check_regions(facts(s, grantor), facts(s, beneficiary), g_policy, b_policy)
        rules.check_beneficiary(facts(s, beneficiary))
        if not idnumbers.same_name(beneficiary_name, beneficiary.name):
            raise DomainError("name_mismatch")
        guardian = idnumbers.age_on(b_number, today) < rules.GUARDIAN_AGE
        rules.check_relationship(relationship, g_policy, b_policy, guardian=guardian)
        rules.check_birth_order(relationship, idnumbers.birth_date(g_number), idnumbers.birth_date(b_number))
        rules.check_commitment(commitment_version, g_policy)
        counts = _counts(s, grantor.id, beneficiary.id,
                         cmd.now - timedelta(seconds=g_policy.frequency_window_s),
                         cmd.now - timedelta(seconds=b_policy.frequency_window_s))
        if counts.duplicate is not None:
            raise DomainError("duplicate_binding", existing_binding_id=counts.duplicate)
        rules.check_member_limits(counts.grantor_active, counts.beneficiary_active, g_policy, b_policy)
        over = [(changes, person_policy, _retry_after(s, person.id, person_policy, cmd.now))
                for person, changes, person_policy in ((grantor, counts.grantor_changes, g_policy),
                                                       (beneficiary, counts.beneficiary_changes, b_policy))
                if changes >= person_policy.frequency_max_changes]
        if over:  # both may be at their limit: the later of their waits is when this invitation fits
            rules.check_frequency(*max(over, key=lambda o: o[2]))

        letter = None
        if grantor.commitment_version != commitment_version:  # the letter the grantor signed, kept on the person
            letter = ("commit_letter", {"person_id": grantor.id, "commitment_version": commitment_version,
                                        "updated_at": cmd.now})
            grantor.commitment_version, grantor.updated_at = commitment_version, cmd.now
        row = rows.BindingRow(
            grantor, beneficiary, id=new_id("bnd"), grantor_id=grantor.id, beneficiary_id=beneficiary.id,
            relationship=relationship, state="new", verification_method="guardian" if guardian else "face",
            channel=channel, platform_id=platform.id if platform is not None else None,
            authorized_amount_fen=None, version=0, province_code=g_policy.province_code,
            grantor_region=grantor.region_code, beneficiary_region=beneficiary.region_code,
            policy_id=g_policy.id, deduction_rank=None, failed_verifications=0,
            expires_at=None if guardian else cmd.now + timedelta(seconds=g_policy.invitation_ttl_s),
            deadline_at=None, deadline_event=None, created_at=cmd.now, updated_at=cmd.now, ended_at=None,
            end_event=None, ended_by=None, authorized_at=None)
        row._loaded_version = None  # new: the transition inserts it; the live-pair unique index decides a race
        cmd.transition(row, "invite", Actor("person", grantor.id), channel=channel, guardian=guardian,
                       reason="guardian_path" if guardian else None, side=letter)
        return cmd.view

