"""`web/api/codes.py`: the problem codes each API operation declares, as its OpenAPI operation lists them,
and the check that an operation answers only those."""
from __future__ import annotations

import pytest

from web.api import codes
from web.api.openapi import document
from workflows.errors import DomainError


def test_an_operation_lists_its_own_codes_and_those_of_its_kind_not_every_code_of_a_status():
    """Given the OpenAPI document, Then the invitation's 422 lists its rules (self_binding, member_limit) and
    the Idempotency-Key's code, not a settlement's reference_reused; a read of one binding answers only
    not_found besides the key's and the kind's codes; each list is machine-readable (x-problem-codes)."""
    paths = document()["paths"]
    invite = paths["/api/v1/bindings"]["post"]["responses"]
    assert {"self_binding", "member_limit", "idempotency_key_reused"} <= set(invite["422"]["x-problem-codes"])
    assert "reference_reused" not in invite["422"]["x-problem-codes"]
    assert invite["429"]["x-problem-codes"] == ["too_frequent"] and "Retry-After" in invite["429"]["headers"]
    read = paths["/api/v1/bindings/{binding_id}"]["get"]["responses"]
    assert {k: v["x-problem-codes"] for k, v in read.items() if "x-problem-codes" in v} == {
        "401": ["unauthorized"], "403": ["platform_not_allowed"], "404": ["not_found"]}


def test_a_declared_code_must_exist():
    """Given a declaration naming a code workflows/errors.py does not have, Then it is refused at once."""
    with pytest.raises(ValueError, match="no_such_code"):
        codes.declare("api.test_unknown", method="GET", has_body=False, restricted=False, codes=("no_such_code",))


def test_an_undeclared_code_is_answered_as_is_unless_strict(monkeypatch):
    """Given an operation declaring not_found only
    When its view raises not_found, Then it passes; When it raises self_binding, Then in production it
    passes as it is (logged), and under GONGJI_PROBLEM_CODES=strict it becomes an internal_error naming it."""
    codes.declare("api.test_check", method="GET", has_body=False, restricted=False, codes=("not_found",))
    found, odd = DomainError("not_found"), DomainError("self_binding")
    monkeypatch.delenv(codes.STRICT_ENV, raising=False)
    assert codes.checked("api.test_check", found) is found and codes.checked("api.test_check", odd) is odd
    monkeypatch.setenv(codes.STRICT_ENV, "strict")
    swapped = codes.checked("api.test_check", odd)
    assert swapped.code == "internal_error" and "self_binding" in swapped.detail
