"""Display names of states, events, stuck reasons, actions and roles (translated; codes stay in URLs)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

STATES = {
    "new": _l("new"), "invited": _l("invited"), "face_verified": _l("face verified"),
    "accepted": _l("accepted"), "authorized": _l("authorized"), "unbound": _l("unbound"),
    "declined": _l("declined"), "cancelled": _l("cancelled"), "expired": _l("expired"),
    "verification_failed": _l("verification failed"), "rejected": _l("rejected"),
}
EVENTS = {
    "invite": _l("invite"), "start_verification": _l("start verification"),
    "verification_passed": _l("verification passed"), "verification_failed": _l("verification failed"),
    "accept": _l("accept"), "decline": _l("decline"), "cancel": _l("cancel"), "expire": _l("expire"),
    "reject": _l("reject"), "authorize": _l("authorize"), "unbind": _l("unbind"),
    "relocate": _l("relocate (a person moved)"),
}
REASONS = {
    "timer_overdue": _l("a due timer has not fired"),
    "past_service_level": _l("past its state's service level, nothing scheduled"),
    "verification_request_failed": _l("the face-verification request failed"),
    "delivery_dead": _l("a delivery is dead-lettered"),
    "delivery_failing": _l("a delivery keeps failing"),
    "sync_behind": _l("a platform's copy is behind"),
    "worker_error": _l("a worker recorded an error"),
}
ACTIONS = {
    "retry": _l("retry the stuck step"), "expire": _l("expire now"), "unbind": _l("unbind"),
    "reveal": _l("reveal identity"), "batch_retry": _l("batch: retry"), "batch_expire": _l("batch: expire"),
    "batch_unbind": _l("batch: unbind"), "policy_publish": _l("publish a region policy version"),
    "policy_withdraw": _l("withdraw a pending policy version"),
}
RELATIONSHIPS = {
    "spouse": _l("spouse"), "parent": _l("parent"), "child": _l("child"), "grandparent": _l("grandparent"),
    "grandchild": _l("grandchild"), "sibling": _l("sibling"),
}
ACTORS = {"person": _l("person"), "operator": _l("operator"), "system": _l("system"), "verifier": _l("verifier")}
POLICY_STATUS = {"in_force": _l("in force"), "pending": _l("pending"), "older": _l("older")}
DEDUCTION_ORDERS = {"user_order": _l("the beneficiary's order"), "latest_bound_first": _l("latest bound first"),
                    "single_grantor": _l("one grantor only")}
ROLES = {"viewer": _l("viewer"), "operator": _l("operator"), "admin": _l("admin")}
BATCH_STATES = {"confirmed": _l("queued"), "running": _l("running"), "done": _l("done"), "failed": _l("failed")}
AGES = [("", _l("any")), ("3600", _l("1 hour")), ("86400", _l("1 day")), ("604800", _l("7 days")),
        ("2592000", _l("30 days"))]


def label(table: dict, code):
    return table.get(code, code) if code is not None else ""
