"""The problem codes each API operation may answer, as the OpenAPI document lists them, and the check that
keeps the lists true.

Why: an integrator writing its error handling, or generating a client, needs the `code`s an operation can
answer, not every code that shares its HTTP status. An endpoint declares its own (`endpoint(codes=...)`);
what every operation of its kind may answer is added here: `unauthorized` (the key), on a write the
`Idempotency-Key`'s codes and `conflict` (a lost race or a lock timeout), with a body `malformed` and
`validation_failed`, on an endpoint some kinds of platform may not call `platform_not_allowed`.

Every refusal an endpoint's view raises is checked against its list (`checked`): an undeclared code is
logged once per operation and code, and with GONGJI_PROBLEM_CODES=strict (the test suite sets it) it is
answered as a 500 `internal_error` naming the code, so the test that meets it fails and a list cannot drift
from what the code does. Production answers the code itself and logs the warning."""
from __future__ import annotations

import logging
import os

from workflows.errors import CODES, DomainError

log = logging.getLogger(__name__)
EVERY = ("unauthorized",)
WRITE = ("conflict", "idempotency_key_reused", "validation_failed")
BODY = ("malformed", "validation_failed")
RESTRICTED = ("platform_not_allowed",)
STRICT_ENV = "GONGJI_PROBLEM_CODES"
_DECLARED: dict[str, frozenset[str]] = {}  # Flask endpoint name → the codes it may answer
_warned: set[tuple[str, str]] = set()


def declare(name: str, *, method: str, has_body: bool, restricted: bool, codes: tuple[str, ...]) -> frozenset[str]:
    """The codes of one operation: its own and those of its kind. An unknown code is a programming error."""
    unknown = sorted(set(codes) - set(CODES))
    if unknown:
        raise ValueError(f"{name} declares unknown problem codes {unknown}")
    declared = frozenset({*EVERY, *codes, *(WRITE if method != "GET" else ()), *(BODY if has_body else ()),
                          *(RESTRICTED if restricted else ())})
    _DECLARED[name] = declared
    return declared


def by_status(declared: frozenset[str]) -> dict[int, list[str]]:
    """{HTTP status: its codes, sorted}, statuses in order."""
    out: dict[int, list[str]] = {}
    for code in sorted(declared):
        out.setdefault(CODES[code][0], []).append(code)
    return dict(sorted(out.items()))


def checked(name: str, exc: DomainError) -> DomainError:
    """`exc` if `name` declares its code; else it is logged, and in strict mode replaced by an internal_error."""
    declared = _DECLARED.get(name)
    if declared is None or exc.code in declared:
        return exc
    if (name, exc.code) not in _warned:
        _warned.add((name, exc.code))
        log.warning("%s answered %s, a problem code its OpenAPI operation does not list", name, exc.code)
    if os.environ.get(STRICT_ENV) == "strict":
        return DomainError("internal_error", f"{name} answered the undeclared problem code {exc.code} "
                                             f"({exc.detail})")
    return exc
