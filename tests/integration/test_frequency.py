"""The frequency limit (DESIGN §3 `too_frequent`): which changes count, and when the next one fits.

Jiangsu's seeded policy allows 10 binding changes per person per 86400 s. A binding counts once: when it
was invited in the window, or ended in it by one of its persons (unbind, cancel). An ending by the system
(death, insurance ended, a move) or an operator is not the person's change."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Binding
from workflows import commands, policy
from workflows.actors import Actor
from workflows.errors import DomainError

from .support import T0, accepted, invite, person

DAY = timedelta(days=1)


def _ended_in_window(db, family, by: str) -> tuple[str, str]:
    """A grantor with 10 bindings invited two days before T0 (outside the window) and ended `by` a person,
    the system or an operator at T0 - 23 h + i minutes (inside it); the grantor's (number, name)."""
    with db() as s:
        pol = policy.in_force(s, "320100", T0)
    assert (pol.frequency_max_changes, pol.frequency_window_s) == (10, 86400)
    grantor = None
    for i in range(pol.frequency_max_changes):
        fam = family(db, grantor=grantor, now=T0 - 2 * DAY)
        grantor = (fam.grantor, fam.grantor_name)
        at = T0 - timedelta(hours=23) + timedelta(minutes=i)
        if by == "person":
            made = invite(db, fam, now=T0 - 2 * DAY)["id"]
            commands.cancel(db, made, person(fam.grantor), now=at)
        else:
            made = accepted(db, fam, now=T0 - 2 * DAY)
            actor = Actor("system", "person-events") if by == "system" else Actor("operator", "alice")
            commands.unbind(db, made, actor, reason="insurance ended", now=at)
    return grantor


def test_a_persons_own_endings_count_and_retry_after_is_when_the_oldest_leaves(sqlite_db, family):
    """Given a grantor who cancelled 10 invitations between 23 h and 22 h 51 min ago (the limit),
    when the grantor invites again at T0,
    then 429 too_frequent, and Retry-After is 3600 s: the first cancel leaves the window an hour from now,
    not the whole 86400 s window; and an invitation at that moment succeeds."""
    grantor = _ended_in_window(sqlite_db, family, "person")
    fam = family(sqlite_db, grantor=grantor, now=T0)

    with pytest.raises(DomainError) as refused:
        invite(sqlite_db, fam, now=T0)

    assert refused.value.code == "too_frequent" and refused.value.extra == {"retry_after_s": 3600}
    with pytest.raises(DomainError, match="too_frequent"):
        invite(sqlite_db, fam, now=T0 + timedelta(seconds=3599))
    assert invite(sqlite_db, fam, now=T0 + timedelta(seconds=3600))["state"] == "invited"


@pytest.mark.parametrize("by", ["system", "operator"])
def test_an_ending_by_the_system_or_an_operator_does_not_count(sqlite_db, family, by):
    """Given a grantor whose 10 bindings were invited outside the window and unbound inside it by the system
    (or an operator), when the grantor invites again, then the invitation succeeds, and each ended binding
    records who ended it."""
    grantor = _ended_in_window(sqlite_db, family, by)
    fam = family(sqlite_db, grantor=grantor, now=T0)

    made = invite(sqlite_db, fam, now=T0)

    assert made["state"] == "invited"
    with sqlite_db() as s:
        ended = s.scalars(sa.select(Binding.ended_by).where(Binding.end_event == "unbind")).all()
    assert ended == [by] * 10


def test_retry_after_on_postgresql_counts_invitations_and_endings_together(pg_db, family):
    """Given a grantor with 9 invitations ended by the grantor (invited outside the window, cancelled 23 h
    ago) and one invitation made 20 h ago and still open, when the grantor invites again,
    then too_frequent with Retry-After 3600 s (the oldest of the 10 counted changes leaves first); after one
    more cancel at T0 the count is still 10 (a binding invited and ended in the window counts once)."""
    with pg_db() as s:
        pol = policy.in_force(s, "320100", T0)
    grantor = None
    for i in range(pol.frequency_max_changes - 1):
        fam = family(pg_db, grantor=grantor, now=T0 - 2 * DAY)
        grantor = (fam.grantor, fam.grantor_name)
        bid = invite(pg_db, fam, now=T0 - 2 * DAY)["id"]
        commands.cancel(pg_db, bid, person(fam.grantor), now=T0 - timedelta(hours=23) + timedelta(minutes=i))
    open_one = family(pg_db, grantor=grantor, now=T0)
    recent = invite(pg_db, open_one, now=T0 - timedelta(hours=20))["id"]
    fam = family(pg_db, grantor=grantor, now=T0)

    with pytest.raises(DomainError) as refused:
        invite(pg_db, fam, now=T0)
    assert refused.value.extra == {"retry_after_s": 3600}

    commands.cancel(pg_db, recent, person(open_one.grantor), now=T0)
    with pytest.raises(DomainError) as again:
        invite(pg_db, fam, now=T0 + timedelta(seconds=1))
    assert again.value.extra == {"retry_after_s": 3599}


def test_a_binding_invited_and_ended_in_the_window_leaves_it_when_its_ending_does(pg_db, family):
    """Given a grantor who invited 10 relatives between 23 h and 22 h 51 min ago and cancelled each of them
    22 h later (between 1 h and 51 min ago), when the grantor invites again at T0,
    then Retry-After is 82,800 s: each counts until its cancel is a day old, not its invitation (which
    would say 3,600)."""
    grantor = None
    for i in range(10):
        fam = family(pg_db, grantor=grantor, now=T0 - 2 * DAY)
        grantor = (fam.grantor, fam.grantor_name)
        invited_at = T0 - timedelta(hours=23) + timedelta(minutes=i)
        bid = invite(pg_db, fam, now=invited_at)["id"]
        commands.cancel(pg_db, bid, person(fam.grantor), now=invited_at + timedelta(hours=22))
    fam = family(pg_db, grantor=grantor, now=T0)

    with pytest.raises(DomainError) as refused:
        invite(pg_db, fam, now=T0)

    assert refused.value.extra == {"retry_after_s": 82800}


def test_when_both_persons_are_at_their_limit_retry_after_is_the_later_wait(pg_db, new_person):
    """Given a grantor whose 10 counted changes are cancels 23 h ago (one more fits in an hour) and a
    beneficiary whose 10 are cancels 22 h ago by other grantors (one more fits in two hours),
    when the grantor invites the beneficiary, then Retry-After is 7,200 s: only then do both have room."""
    from workflows import invite as invite_mod

    def person_(kind):
        return new_person(pg_db, insurance_type=kind, region_code="320100", now=T0 - 2 * DAY)

    def cancelled(g, e, at):
        made = invite_mod.invite(pg_db, grantor_id_number=g[0], beneficiary_id_number=e[0], beneficiary_name=e[1],
                                 relationship="spouse", commitment_version="JS-2024-01", now=T0 - 2 * DAY)
        commands.cancel(pg_db, made["id"], person(g[0]), now=at)

    grantor, beneficiary = person_("employee"), person_("resident")
    for i in range(10):
        cancelled(grantor, person_("resident"), T0 - timedelta(hours=23) + timedelta(minutes=i))
        cancelled(person_("employee"), beneficiary, T0 - timedelta(hours=22) + timedelta(minutes=i))

    with pytest.raises(DomainError) as refused:
        invite_mod.invite(pg_db, grantor_id_number=grantor[0], beneficiary_id_number=beneficiary[0],
                          beneficiary_name=beneficiary[1], relationship="spouse", commitment_version="JS-2024-01",
                          now=T0)

    assert refused.value.code == "too_frequent" and refused.value.extra == {"retry_after_s": 7200}


def test_new_amounts_are_binding_changes_limited_per_binding(pg_db, family):
    """Given an accepted binding in Jiangsu (10 changes per 86400 s) authorized at T0 and given a new amount
    9 times, a minute apart
    When the grantor sets an 11th amount within the day
    Then 429 too_frequent, retry after the first authorization leaves the window, and nothing is written;
    the amount it already has is answered as it is (no change, so no refusal); once the first has left the
    window, the new amount is taken. Another binding of the same grantor is not held back."""
    fam = family(pg_db, now=T0)
    bid = accepted(pg_db, fam, now=T0)
    minute = timedelta(minutes=1)
    for k in range(10):
        commands.authorize(pg_db, bid, person(fam.grantor), 1_000 + k, now=T0 + (k + 1) * minute)
    version = _version(pg_db, bid)
    late = T0 + 30 * minute
    with pytest.raises(DomainError) as refused:
        commands.authorize(pg_db, bid, person(fam.grantor), 5_000, now=late)
    assert (refused.value.code, refused.value.status) == ("too_frequent", 429)
    assert refused.value.extra["retry_after_s"] == int((T0 + minute + DAY - late).total_seconds())
    assert _version(pg_db, bid) == version
    same = commands.authorize(pg_db, bid, person(fam.grantor), 1_009, now=late)  # the amount it has: no change
    assert (same["authorized_amount_fen"], same["version"]) == (1_009, version) and _version(pg_db, bid) == version
    other = accepted(pg_db, family(pg_db, grantor=(fam.grantor, fam.grantor_name), now=T0), now=T0)
    assert commands.authorize(pg_db, other, person(fam.grantor), 100, now=late)["state"] == "authorized"
    assert commands.authorize(pg_db, bid, person(fam.grantor), 5_000, now=T0 + minute + DAY + timedelta(seconds=1))[
        "authorized_amount_fen"] == 5_000


def _version(db, bid: str) -> int:
    with db() as s:
        return s.get(Binding, bid).version
