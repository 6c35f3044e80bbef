"""Every error code Gongji answers with, in one place (DESIGN §3 plus the API's transport codes).

`status` is the HTTP status the web layer maps the code to; workflows never import the web layer."""
from __future__ import annotations

CODES: dict[str, tuple[int, str]] = {
    # rules (DESIGN §3)
    "invalid_id_number": (422, "The ID number is not a valid resident ID number"),
    "grantor_not_eligible": (422, "The grantor is not an active, real-name verified employee-insurance member"),
    "beneficiary_not_insured": (422, "The beneficiary is not actively insured"),
    "relationship_not_allowed": (422, "The region does not allow this relationship"),
    "self_binding": (422, "Grantor and beneficiary must be different people"),
    "duplicate_binding": (422, "A binding between these two people is already in progress or active"),
    "region_not_allowed": (422, "The two pooling regions may not share an account"),
    "commitment_required": (422, "The grantor has not accepted the region's current commitment letter"),
    "member_limit": (422, "The region's cap on family members is reached"),
    "too_frequent": (429, "Too many binding changes for this person in the region's window"),
    "not_your_binding": (403, "This actor may not do that to this binding"),
    "illegal_transition": (409, "The binding's state does not allow this"),
    # additions (API.md allows adding codes)
    "relationship_mismatch": (422, "The relationship does not fit the two birth dates (a child is born after "
                              "the grantor, a parent before)"),
    "in_person_not_allowed": (422, "The binding's region policy does not let its service hall check identity in "
                              "person (the relative verifies their face in the app)"),
    "name_mismatch": (422, "The name does not match the registry for that ID number"),
    "reason_required": (422, "Operators and the system must give a reason"),
    "unknown_region": (422, "No such pooling region"),
    "region_not_served": (403, "This platform does not serve that region"),
    "platform_not_allowed": (403, "This kind of platform may not do this (a face-verification provider only "
                             "sends verification results and reads what became of them)"),
    "idempotency_key_reused": (422, "The Idempotency-Key was used with a different request"),
    "validation_failed": (422, "The request does not match the schema (its body, a path or a query value)"),
    "stale": (409, "The registry fact is not newer than the one already held (registry_as_of)"),
    "deduction_order_fixed": (422, "The beneficiary's region fixes the deduction order (its policy is not "
                              "user_order)"),
    "reference_reused": (422, "This settlement reference was already used with different facts"),
    # the operator dashboard
    "forbidden": (403, "Your role does not allow this action"),
    "not_stuck": (409, "Nothing to retry: the binding is not stuck"),
    "changed_since_seen": (409, "The binding changed after the page was loaded; look at it again before acting"),
    "nothing_to_retry": (409, "The binding is stuck, but nothing is left to try again now (its page says why)"),
    "nothing_to_replay": (409, "Nothing to replay: no dead delivery there (any more)"),
    "webhook_final": (409, "The webhook's outcome is final (processed, or refused by a rule): nothing to retry"),
    # transport (API.md)
    "malformed": (400, "The request is not well-formed JSON"),
    "too_large": (413, "The request body is larger than Gongji accepts (1 MiB)"),
    "unauthorized": (401, "Missing or unknown credentials"),
    "bad_signature": (401, "The webhook signature does not verify"),
    "stale_timestamp": (401, "The webhook timestamp is outside the 5-minute tolerance"),
    "not_found": (404, "No such resource"),
    "conflict": (409, "A concurrent change won; retry with fresh state"),
    "method_not_allowed": (405, "The resource does not answer this method"),
    "internal_error": (500, "Something failed on Gongji's side; nothing is known to be written, retry later "
                       "(with the same Idempotency-Key)"),
    "unavailable": (503, "The database cannot be reached at the moment (a restart, a failover); retry after the "
                    "Retry-After seconds, with the same Idempotency-Key"),
}


class DomainError(Exception):
    """A refused command. Nothing was written."""

    def __init__(self, code: str, detail: str | None = None, **extra):
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.status, self.title = CODES[code]
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(f"{code}: {self.detail}")


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock wait past `lock_timeout` (models/db.py)
# PostgreSQL's SQLSTATEs for a transaction the server rolled back because a concurrent one won: a deadlock
# (40P01) or a serialization failure (40001). Nothing was written: 409 `conflict`, retry.
LOST_TO_CONCURRENT = frozenset({"40P01", "40001"})
# PostgreSQL's SQLSTATEs for a server that cannot serve the session now: shutting down, crashed or still
# starting (57P01, 57P02, 57P03), a read-only server (25006: a demoted primary after a failover, until the
# address moves), and the classes of every connection failure (08) and of insufficient resources (53: disk
# full, out of memory, no connection slot left)
UNREACHABLE = frozenset({"57P01", "57P02", "57P03", "25006"})
UNREACHABLE_CLASSES = ("08", "53")
RETRY_UNREACHABLE_S = 5  # the Retry-After of `unavailable`: a PostgreSQL restart takes a few seconds
# SQLite's result codes for a database another connection holds past the busy timeout (models/db.py):
# SQLITE_BUSY and SQLITE_LOCKED, what PostgreSQL's lock_timeout is to the embedded default
SQLITE_BUSY_CODES = frozenset({5, 6})


def lock_wait_expired(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy's) is a lock wait given up: PostgreSQL's `lock_timeout` (55P03) or SQLite's
    busy timeout ("database is locked"). Nothing was written: 409 `conflict`, retry."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
        return True
    return getattr(orig, "sqlite_errorcode", None) in SQLITE_BUSY_CODES


def lost_to_concurrent(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy's) is a transaction PostgreSQL rolled back for a concurrent one
    (`LOST_TO_CONCURRENT`). Nothing was written: 409 `conflict`, retry."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in LOST_TO_CONCURRENT


# psycopg's errors without a SQLSTATE (it gives none for what fails before a session exists) that say the
# connection could not be made or was lost, and within those, what is a setting to fix rather than a server
# to wait for: a misconfigured database must be a 500 with its cause logged, never an endless 503
_CONNECTION_LOST = ("connection failed", "connection is bad", "connection timeout expired", "connection is closed",
                    "connection is lost", "server closed the connection", "consuming input failed",
                    "sending query failed", "failed to resolve host")  # a name service away or a name mistyped
_MISCONFIGURED = ("does not exist", "authentication failed", "no pg_hba.conf entry", "password",
                  "permission denied", "not permitted to log in", "no such database", "not currently accepting",
                  "certificate", "ssl was required", "ssl error")
# the driver's first line names host, port, database and role, never a request value: logged for these
_SAFE_TO_LOG = ("connection failed", "connection is bad", "connection timeout", "failed to resolve host",
                "consuming input failed", "server closed the connection", "sending query failed")


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy's) says the database cannot serve now, whatever the statement was: a
    connection refused, timed out or broken, a server restarting, failed over or out of resources, the
    pool's wait for a connection run out. Such a failure is nobody's fault in the request and a retry after
    a pause may well succeed: 503 `unavailable`, not 500. Not this: a lock timeout, a lost race or SQLite's
    "database is locked" (`conflict`), a wrong database name, role or password (a setting: 500, its cause
    logged), a driver error about the statement (a bug)."""
    import sqlalchemy as sa  # errors.py stays importable without the database stack

    if isinstance(exc, sa.exc.TimeoutError):  # the pool's wait for a free connection
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:  # SQLAlchemy recognised a disconnect (also an idle session ended, 57P05)
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return sqlstate in UNREACHABLE or sqlstate.startswith(UNREACHABLE_CLASSES)
    if not type(orig).__module__.startswith("psycopg"):
        return False
    text = str(orig).lower()
    return any(m in text for m in _CONNECTION_LOST) and not any(m in text for m in _MISCONFIGURED)


def database_error_reason(exc: BaseException) -> str:
    """What to log of a database error: its class and SQLSTATE, and for a connection that could not be made
    the driver's first line (host, port, database, role: no request value), so that an outage names its
    cause. A statement's error text is never logged here (it may hold values)."""
    orig = getattr(exc, "orig", None)
    kind = f"{type(orig or exc).__name__} {getattr(orig, 'sqlstate', None) or ''}".strip()
    if orig is not None and not getattr(orig, "sqlstate", None) and type(orig).__module__.startswith("psycopg"):
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
        if first.lower().startswith(_SAFE_TO_LOG):
            return f"{kind}: {first[:300]}"
    return kind


class LockTimeout(DomainError):
    """A lock wait passed PostgreSQL's `lock_timeout` (`models.db.LOCK_TIMEOUT_MS`): 409 `conflict`, nothing
    written. Not the request's fault: a stored webhook meeting it is retried without end (`webhooks`)."""

    def __init__(self, detail: str = "another change held the binding too long (lock timeout); retry"):
        super().__init__("conflict", detail)


class VersionConflict(DomainError):
    """The row's version moved between a command's read and its write (`conflict`); nothing was written,
    so an optimistic command may run again (`unit.retried`)."""

    def __init__(self, detail: str = "the binding changed concurrently"):
        super().__init__("conflict", detail)
