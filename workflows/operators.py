"""Dashboard operators: accounts, sign-in, roles, and the audit log every action writes.

Passwords are kept only as werkzeug scrypt hashes (`generate_password_hash`); a wrong password and an
unknown user take the same time and give the same answer. Roles are ordered: viewer < operator < admin,
each allowed what the ones before it are. `record` appends one audit row in the caller's transaction, so
an action and its audit entry commit together; `record_refusal` writes a refused attempt on its own."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from models import AuditEntry, Operator
from models.operators import ROLES
from models.types import utcnow

from .errors import DomainError

_DUMMY_HASH = generate_password_hash("timing-equaliser")
MIN_PASSWORD = 10  # characters


@dataclass(frozen=True)
class OperatorInfo:
    id: str
    username: str
    role: str
    session_generation: str | None = None  # in each session cookie; sessions of an older one are over

    def can(self, role: str) -> bool:
        """Does this operator hold `role` or a higher one?"""
        return ROLES.index(self.role) >= ROLES.index(role)


def _info(o: Operator) -> OperatorInfo:
    return OperatorInfo(o.id, o.username, o.role, o.session_generation)


def _new_generation() -> str:
    return secrets.token_urlsafe(16)  # 22 characters


def add(db, username: str, password: str, role: str) -> OperatorInfo:
    if role not in ROLES:
        raise DomainError("validation_failed", f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise DomainError("validation_failed", f"a password has at least {MIN_PASSWORD} characters")
    if not username or len(username) > 64 or not username.isprintable():
        raise DomainError("validation_failed", "a username is 1–64 printable characters")
    with db.begin() as s:
        if s.scalar(sa.select(Operator.id).where(Operator.username == username)) is not None:
            raise DomainError("conflict", f"operator {username} exists")
        o = Operator(username=username, password_hash=generate_password_hash(password), role=role)
        s.add(o)
        s.flush()
        return _info(o)


def set_password(db, username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise DomainError("validation_failed", f"a password has at least {MIN_PASSWORD} characters")
    with db.begin() as s:
        o = s.scalar(sa.select(Operator).where(Operator.username == username))
        if o is None:
            raise DomainError("not_found", f"no operator {username}")
        o.password_hash = generate_password_hash(password)
        o.session_generation = _new_generation()  # a new password ends the sessions signed in with the old


def _account(s, username: str) -> Operator:
    o = s.scalar(sa.select(Operator).where(Operator.username == username).with_for_update())
    if o is None:
        raise DomainError("not_found", f"no operator {username}")
    return o


def set_disabled(db, username: str, disabled: bool, *, by: str = "cli", now: datetime | None = None) -> None:
    """Disable an account (it can no longer sign in, and its sessions end at once) or enable it again;
    audited. Accounts are disabled, never deleted: the audit log keeps naming who did what."""
    now = now or utcnow()
    with db.begin() as s:
        o = _account(s, username)
        if disabled == (o.disabled_at is not None):
            return
        o.disabled_at = now if disabled else None
        o.session_generation = _new_generation()
        record(s, by, "operator.disable" if disabled else "operator.enable", reason=None,
               detail={"username": username}, now=now)


def set_role(db, username: str, role: str, *, by: str = "cli", now: datetime | None = None) -> None:
    """Change an account's role (its sessions end: the next page asks it to sign in under the new role); audited."""
    if role not in ROLES:
        raise DomainError("validation_failed", f"role must be one of {', '.join(ROLES)}")
    with db.begin() as s:
        o = _account(s, username)
        if o.role == role:
            return
        before, o.role, o.session_generation = o.role, role, _new_generation()
        record(s, by, "operator.role", reason=None, detail={"username": username, "from": before, "to": role},
               now=now)


def accounts(db) -> list[dict]:
    """Every account: username, role, disabled or not, last sign-in (no hashes)."""
    with db() as s:
        return [{"username": o.username, "role": o.role, "disabled": o.disabled_at is not None,
                 "last_sign_in_at": o.last_sign_in_at}
                for o in s.scalars(sa.select(Operator).order_by(Operator.username))]


def end_sessions(db, operator_id: str) -> None:
    """Sign the operator out everywhere: every session cookie issued so far stops working."""
    with db.begin() as s:
        s.execute(sa.update(Operator).where(Operator.id == operator_id).values(session_generation=_new_generation()))


def authenticate(db, username: str, password: str, *, now: datetime | None = None) -> OperatorInfo:
    """The operator for a correct username and password, else `unauthorized` (the same for both)."""
    with db.begin() as s:
        o = s.scalar(sa.select(Operator).where(Operator.username == username, Operator.disabled_at.is_(None)))
        if o is None:
            check_password_hash(_DUMMY_HASH, password)
            raise DomainError("unauthorized", "wrong username or password")
        if not check_password_hash(o.password_hash, password):
            raise DomainError("unauthorized", "wrong username or password")
        o.last_sign_in_at = now or utcnow()
        o.session_generation = o.session_generation or _new_generation()
        return _info(o)


def get(db, operator_id: str) -> OperatorInfo | None:
    with db() as s:
        o = s.get(Operator, operator_id)
        return _info(o) if o is not None and o.disabled_at is None else None


def record(session, who: OperatorInfo | str, action: str, *, binding_id: str | None = None, reason: str | None,
           outcome: str = "ok", detail: dict | None = None, batch_id: str | None = None,
           now: datetime | None = None) -> None:
    session.add(AuditEntry(at=now or utcnow(), operator=getattr(who, "username", who), action=action,
                           binding_id=binding_id, reason=reason, outcome=outcome, detail=detail,
                           batch_id=batch_id))


def record_refusal(db, who: OperatorInfo | str, action: str, error: DomainError, *, detail: dict | None = None,
                   **kw) -> None:
    """The audit row of a refused action: its code, the refusal's text and what the action was about."""
    with db.begin() as s:
        record(s, who, action, outcome=error.code, detail={**(detail or {}), "detail": error.detail}, **kw)


def audit_log(db, *, binding_id: str | None = None, batch_id: str | None = None, before: int | None = None,
              limit: int = 50, **filters) -> dict:
    with db() as s:
        return entries(s, binding_id=binding_id, batch_id=batch_id, before=before, limit=limit, **filters)


def entries(s, *, binding_id: str | None = None, batch_id: str | None = None, before: int | None = None,
            limit: int = 50, operator: str | None = None, action: str | None = None,
            refused: bool | None = None) -> dict:
    """Newest first, keyset-paged by id; `next` is the id to pass as `before` for the following page. By
    binding (ix_audit_log_binding) or by batch job (ix_audit_log_batch: its start and each binding's row);
    by who (`operator`: the account name as stored, `cli:<who>` for the console), what (`action`) and
    whether it was refused (`refused`: True, or False for done only). Those three walk the log newest-first
    from `before` (no index of their own: an audit log grows with operators' actions, not with bindings)."""
    q = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if binding_id:
        q = q.where(AuditEntry.binding_id == binding_id)
    if batch_id:
        q = q.where(AuditEntry.batch_id == batch_id)
    if operator:
        q = q.where(AuditEntry.operator == operator)
    if action:
        q = q.where(AuditEntry.action == action)
    if refused is not None:
        q = q.where(AuditEntry.outcome != "ok" if refused else AuditEntry.outcome == "ok")
    if before:
        q = q.where(AuditEntry.id < before)
    found = s.scalars(q).all()
    items = [{"id": a.id, "at": a.at, "operator": a.operator, "action": a.action, "binding_id": a.binding_id,
              "reason": a.reason, "outcome": a.outcome, "detail": a.detail or {}, "batch_id": a.batch_id}
             for a in found[:limit]]
    return {"items": items, "next": found[limit - 1].id if len(found) > limit else None}
