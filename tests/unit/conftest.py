"""Fixtures for the unit tier: plain values only (no database, no network, no files).

Policies and person facts are built directly as the dataclasses the rules take, so each test states the
exact policy it depends on and nothing is read from seeds or a database."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from workflows.policy import Policy
from workflows.rules import PersonFacts

_DEFAULT_POLICY = dict(
    id=1,
    region_code="320100",
    region_name="南京",
    province_code="32",
    platform_id="js",
    version=1,
    effective_from=datetime(2024, 1, 1, tzinfo=timezone.utc),
    commitment_version="2024-01",
    allowed_relationships=("spouse", "parent", "child"),
    intra_province=True,
    cross_province=False,
    invitation_ttl_s=7 * 24 * 3600,
    verification_timeout_s=600,
    max_verification_attempts=3,
    max_beneficiaries_per_grantor=5,
    max_grantors_per_beneficiary=2,
    frequency_max_changes=3,
    frequency_window_s=86400,
    deduction_order_policy="user_order",
)

_DEFAULT_PERSON = dict(
    id="psn_grantor",
    insurance_type="employee",
    insurance_status="active",
    real_name_verified=True,
    deceased=False,
    region_code="320100",
    province_code="32",
)


@pytest.fixture
def make_policy():
    """A factory: `make_policy(**overrides)` -> Policy (Nanjing-like defaults, id=1)."""
    def build(**overrides) -> Policy:
        return Policy(**{**_DEFAULT_POLICY, **overrides})
    return build


@pytest.fixture
def make_person():
    """A factory: `make_person(**overrides)` -> PersonFacts (an eligible employee-insured grantor by default)."""
    def build(**overrides) -> PersonFacts:
        return PersonFacts(**{**_DEFAULT_PERSON, **overrides})
    return build
