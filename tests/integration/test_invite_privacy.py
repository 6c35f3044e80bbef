"""What an invitation tells a provincial platform about a person of another province: no more than that the
binding cannot reach them. Before, the name was compared first, so the answers told a wrong name
(`name_mismatch`) from the right one (`region_not_allowed`) and an insured person from one whose
insurance ended (`beneficiary_not_insured`): a province could confirm another province's names."""
from __future__ import annotations

import pytest

from workflows import invite as invite_mod
from workflows import platforms
from workflows.errors import DomainError

from .support import JS_COMMITMENT


def _invite(db, grantor: str, beneficiary: str, name: str) -> str:
    with pytest.raises(DomainError) as refused:
        invite_mod.invite(db, grantor_id_number=grantor, beneficiary_id_number=beneficiary, beneficiary_name=name,
                          relationship="spouse", commitment_version=JS_COMMITMENT,
                          platform=platforms.get(db, "jiangsu"))
    return refused.value.code


def test_a_person_of_a_province_that_does_not_share_is_out_of_reach_whatever_their_name_or_insurance(
        pg_db, family, new_person):
    """Given a Jiangsu grantor, and Xinjiang residents (Xinjiang does not share across provinces): one insured,
    one whose insurance ended
    When Jiangsu invites the insured one under a wrong name and under the right one, and the other one
    Then every answer is 422 region_not_allowed: the same whatever the name or the insurance"""
    fam = family(pg_db)
    insured, name = new_person(pg_db, region_code="650100")
    ended, ended_name = new_person(pg_db, region_code="650100", insurance_status="ended")

    assert _invite(pg_db, fam.grantor, insured, "不是此人") == "region_not_allowed"
    assert _invite(pg_db, fam.grantor, insured, name) == "region_not_allowed"
    assert _invite(pg_db, fam.grantor, ended, ended_name) == "region_not_allowed"


def test_within_reach_the_name_and_insurance_are_checked_as_before(pg_db, family, new_person):
    """Given a Jiangsu grantor and Suzhou residents (Jiangsu shares across its pooling regions)
    When Jiangsu invites one under a wrong name, and one whose insurance ended
    Then the answers are name_mismatch and beneficiary_not_insured"""
    fam = family(pg_db)
    insured, _ = new_person(pg_db, region_code="320500")
    ended, ended_name = new_person(pg_db, region_code="320500", insurance_status="ended")

    assert _invite(pg_db, fam.grantor, insured, "不是此人") == "name_mismatch"
    assert _invite(pg_db, fam.grantor, ended, ended_name) == "beneficiary_not_insured"
