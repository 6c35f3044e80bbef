"""The problem codes each API operation may answer, as the OpenAPI document lists them, and the check that
keeps the lists true.

Why: an integrator writing its error handling, or generating a client, needs the `code`s an operation can
answer, not every code that shares its HTTP status. An endpoint declares its own (`endpoint(codes=...)`);
what every operation of its kind may answer is added here: `unauthorized` (the key), `conflict` (a lock
timeout, a lost race) and `unavailable` (the database restarting or failing over) on every one, `validation_failed` where a path or query value reaches the database (a
value it cannot store), on a write the `Idempotency-Key`'s codes, with a body `malformed` and
`validation_failed` (and 413 `too_large` for a body over the limit), on an endpoint some kinds of platform
may not call `platform_not_allowed`.

Every problem answered while an operation runs is checked against its list (`answer_for`, called by
`problems.problem`, so the refusals of Flask's and SQLAlchemy's error handlers too): an undeclared code is
logged once per operation and code, and with GONGJI_PROBLEM_CODES=strict (the test suite sets it) it is
answered as a 500 `internal_error` naming the code, so a test that meets it fails. A list is as true as
the tests that reach its paths, and reading the workflows: a path no test reaches can still drift.
Production answers the code itself and logs the warning."""
from __future__ import annotations

import logging
import os

from workflows.errors import CODES

log = logging.getLogger(__name__)
EVERY = ("unauthorized", "conflict", "unavailable")
VALUES = ("validation_failed",)  # a path or query value the database cannot store (problems._unstorable)
WRITE = ("conflict", "idempotency_key_reused", "validation_failed")
BODY = ("malformed", "too_large", "validation_failed")
RESTRICTED = ("platform_not_allowed",)
STRICT_ENV = "GONGJI_PROBLEM_CODES"
_DECLARED: dict[str, frozenset[str]] = {}  # Flask endpoint name → the codes it may answer
_warned: set[tuple[str, str]] = set()


def declare(name: str, *, method: str, has_body: bool, restricted: bool, codes: tuple[str, ...],
            has_values: bool = False) -> frozenset[str]:
    """The codes of one operation: its own and those of its kind (`has_values`: path or query parameters).
    An unknown code is a programming error."""
    unknown = sorted(set(codes) - set(CODES))
    if unknown:
        raise ValueError(f"{name} declares unknown problem codes {unknown}")
    declared = frozenset({*EVERY, *codes, *(WRITE if method != "GET" else ()), *(BODY if has_body else ()),
                          *(VALUES if has_values else ()), *(RESTRICTED if restricted else ())})
    _DECLARED[name] = declared
    return declared


def by_status(declared: frozenset[str]) -> dict[int, list[str]]:
    """{HTTP status: its codes, sorted}, statuses in order."""
    out: dict[int, list[str]] = {}
    for code in sorted(declared):
        out.setdefault(CODES[code][0], []).append(code)
    return dict(sorted(out.items()))


def answer_for(name: str | None, code: str, detail: str) -> tuple[str, str]:
    """The (code, detail) to answer: as given when the operation `name` lists the code, or `name` is no API
    operation; else logged, and under strict mode an internal_error naming the code."""
    declared = _DECLARED.get(name or "")
    if declared is None or code in declared:
        return code, detail
    if (name, code) not in _warned:
        _warned.add((name, code))
        log.warning("%s answered %s, a problem code its OpenAPI operation does not list", name, code)
    if os.environ.get(STRICT_ENV) == "strict":
        return "internal_error", f"{name} answered the undeclared problem code {code} ({detail})"
    return code, detail
