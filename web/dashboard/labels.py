"""Display names of states, events, stuck reasons, actions and roles (translated; codes stay in URLs)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

STATES = {
    "new": _l("new"), "invited": _l("invited"), "face_verified": _l("identity verified"),
    "accepted": _l("accepted"), "authorized": _l("authorized"), "unbound": _l("unbound"),
    "declined": _l("declined"), "cancelled": _l("cancelled"), "expired": _l("expired"),
    "verification_failed": _l("verification failed"), "rejected": _l("rejected"),
}
EVENTS = {
    "invite": _l("invite"), "start_verification": _l("start verification"),
    "verification_passed": _l("verification passed"), "verification_failed": _l("verification failed"),
    "verify_in_person": _l("identity checked in person"),
    "accept": _l("accept"), "decline": _l("decline"), "cancel": _l("cancel"), "expire": _l("expire"),
    "reject": _l("reject"), "authorize": _l("authorize"), "unbind": _l("unbind"),
    "relocate": _l("relocate (a person moved)"),
}
# a background process as its row reads (workflows/processes.py STATES)
PROCESS_STATES = {"running": _l("running"), "standby": _l("on standby"), "gone": _l("gone without stopping"),
                  "stopped": _l("stopped")}
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
    "verify_in_person": _l("record an identity check in person"),
    "reveal": _l("reveal identity"), "batch_retry": _l("batch: retry"), "batch_expire": _l("batch: expire"),
    "batch_unbind": _l("batch: unbind"), "policy_publish": _l("publish a region policy version"),
    "policy_withdraw": _l("withdraw a pending policy version"),
    "find_by_id_number": _l("find a person's bindings by ID number"),
    "webhook_retry": _l("retry an inbound webhook"),
    "deliveries_replay": _l("replay dead deliveries (a platform's, a binding's or chosen ones)"),
    "delivery_replay": _l("replay one dead delivery"),
    "operator.role": _l("change an operator's role"), "operator.disable": _l("disable an operator"),
    "operator.enable": _l("enable an operator"),
}
# what processing a stored inbound webhook came to (besides the refusals' error codes and a binding's new state)
WEBHOOK_OUTCOMES = {
    "applied": _l("applied"), "no_binding": _l("no binding to act on"), "passed": _l("verification passed"),
    "failed": _l("verification failed"), "stale": _l("older than what is held: not applied"),
    "unsupported_type": _l("a type Gongji does not handle"), "conflict": _l("gave up after concurrent changes"),
}
# the system's own actors in a history (`workflows/actors.py`); `registry:<platform>` is worded apart
SYSTEM_ACTORS = {"timer": _l("timer"), "registry": _l("registry")}
# an inbound webhook as the dashboard sorts it (workflows.inbound.kind_of)
WEBHOOK_KINDS = {"failed": _l("gave up"), "refused": _l("refused"), "retrying": _l("retrying"),
                 "pending": _l("waiting"), "processed": _l("processed")}
WITHIN = [("", _l("any time")), ("3600", _l("1 hour")), ("86400", _l("1 day")), ("604800", _l("7 days")),
          ("2592000", _l("30 days"))]
RELATIONSHIPS = {
    "spouse": _l("spouse"), "parent": _l("parent"), "child": _l("child"), "grandparent": _l("grandparent"),
    "grandchild": _l("grandchild"), "sibling": _l("sibling"), "spouse_parent": _l("spouse's parent"),
}
# an operator acting, whatever their role ("operator" is also a role: ROLES), so worded apart from it
# a service hall's staff act through their platform's counter system (`staff`), worded apart from both
ACTORS = {"person": _l("person"), "operator": _l("staff"), "system": _l("system"), "verifier": _l("verifier"),
          "staff": _l("service hall staff")}
POLICY_STATUS = {"in_force": _l("in force"), "pending": _l("pending"), "older": _l("older")}
DEDUCTION_ORDERS = {"user_order": _l("the beneficiary's order"), "latest_bound_first": _l("latest bound first"),
                    "single_grantor": _l("one grantor only")}
ROLES = {"viewer": _l("viewer"), "operator": _l("operator"), "admin": _l("admin")}
# a batch job's own state, worded apart from its counts ("carried out", "refused")
BATCH_STATES = {"confirmed": _l("queued"), "running": _l("running"), "done": _l("finished"),
                "failed": _l("stopped on an error")}
AGES = [("", _l("any")), ("3600", _l("1 hour")), ("86400", _l("1 day")), ("604800", _l("7 days")),
        ("2592000", _l("30 days"))]


def label(table: dict, code):
    return table.get(code, code) if code is not None else ""


# error codes (workflows.errors.CODES) as an operator reads them; the English detail is secondary text
ERRORS = {
    "invalid_id_number": _l("not a valid resident ID number"),
    "grantor_not_eligible": _l("the grantor is not an active, real-name verified employee-insurance member"),
    "beneficiary_not_insured": _l("the beneficiary is not actively insured"),
    "relationship_not_allowed": _l("the region does not allow this relationship"),
    "self_binding": _l("grantor and beneficiary must be different people"),
    "duplicate_binding": _l("a binding between these two people is already in progress or active"),
    "region_not_allowed": _l("the two pooling regions may not share an account"),
    "commitment_required": _l("the grantor has not accepted the region's current commitment letter"),
    "member_limit": _l("the region's cap on family members is reached"),
    "too_frequent": _l("too many binding changes for this person in the region's window"),
    "not_your_binding": _l("this actor may not do that to this binding"),
    "illegal_transition": _l("the binding's state does not allow this"),
    "name_mismatch": _l("the name does not match the registry"),
    "relationship_mismatch": _l("the relationship does not fit the two birth dates"),
    "in_person_not_allowed": _l("the region's policy does not provide for an identity check in person"),
    "reason_required": _l("a reason is required"),
    "unknown_region": _l("no such pooling region"),
    "region_not_served": _l("this platform does not serve that region"),
    "idempotency_key_reused": _l("the idempotency key was used with a different request"),
    "validation_failed": _l("the request is not valid"),
    "stale": _l("the registry fact is not newer than the one already held"),
    "deduction_order_fixed": _l("the beneficiary's region fixes the deduction order"),
    "forbidden": _l("your role does not allow this action"),
    "not_stuck": _l("nothing to retry: the binding is not stuck"),
    "changed_since_seen": _l("the binding changed after you opened this page; look at it again before acting"),
    "nothing_to_retry": _l("the binding is stuck, but nothing is left to try again now (see why on its page)"),
    "nothing_to_replay": _l("nothing to replay: there is no dead delivery there (any more)"),
    "webhook_final": _l("the webhook's outcome is final: nothing to retry"),
    "malformed": _l("the request is not well-formed"),
    "unauthorized": _l("missing or unknown credentials"),
    "bad_signature": _l("the signature does not verify"),
    "stale_timestamp": _l("the timestamp is outside the tolerance"),
    "not_found": _l("no such binding or resource"),
    "conflict": _l("a concurrent change won; try again with fresh state"),
    "method_not_allowed": _l("this page does not take that request"),
    "internal_error": _l("something failed on Gongji's side; try again later"),
    "unavailable": _l("the database cannot be reached at the moment; try again in a few seconds"),
}
# an audit entry's outcome: "ok", or the error code it was refused with (ERRORS)
OUTCOMES = {"ok": _l("done")}
STUCK_FIELDS = {"since": _l("since"), "platform_id": _l("platform"), "detail": _l("detail")}
VERIFICATION_METHODS = {"face": _l("face verification"), "guardian": _l("guardian path (no face check)"),
                        "in_person": _l("identity documents checked in person")}
CHANNELS = {"app": _l("app"), "counter": _l("service counter"), "dashboard": _l("dashboard")}
TIMER_KINDS = {"next": _l("the binding's next deadline"), "invitation_ttl": _l("invitation validity"),
               "attempt": _l("face-verification attempt %(n)s")}
TIMER_EVENTS = {"expire": _l("expire"), "verification_timeout": _l("face verification times out")}
PROVIDER_STATUS = {"queued": _l("session request queued"), "requested": _l("session requested"),
                   "opened": _l("session opened"), "error": _l("session request failed")}
VERIFICATION_STATUS = {"pending": _l("awaiting the result"), "passed": _l("passed"), "failed": _l("failed"),
                       "timed_out": _l("timed out"), "abandoned": _l("abandoned: the binding moved on")}
DELIVERY_STATUS = {"pending": _l("waiting to be sent"), "failing": _l("failing"), "delivered": _l("delivered"),
                   "dead": _l("dead-lettered")}
FILTERS = {"state": _l("State"), "region": _l("Region"), "platform": _l("Platform"), "stuck": _l("Stuck reason"),
           "older_than_s": _l("Unchanged for")}
HTTP_ERRORS = {400: _l("The request could not be understood."), 403: _l("You may not see or do this."),
               404: _l("There is no such page or record."), 405: _l("This page does not take that request."),
               409: _l("Something else is changing this data right now. Try again in a moment."),
               429: _l("Too many tries. Wait a minute and try again."),
               500: _l("Something failed on our side. Try again; if it keeps failing, tell the administrator."),
               503: _l("The database cannot be reached at the moment (a restart or a failover). Try again in a "
                       "few seconds.")}
HTTP_TITLES = {400: _l("Bad request"), 403: _l("Not allowed"), 404: _l("Not found"), 405: _l("Method not allowed"),
               409: _l("Busy"), 429: _l("Too many requests"), 500: _l("Server error"),
               503: _l("Temporarily unavailable")}


# event types, outbound (deliveries) and inbound (webhooks), as an operator reads them; the code on hover
TOPICS = {
    "binding.invited": _l("binding: invited"), "binding.verification_requested": _l("binding: face check asked"),
    "binding.verification_attempt_failed": _l("binding: a face check failed"),
    "binding.verification_failed": _l("binding: face checks used up"),
    "binding.face_verified": _l("binding: identity verified"), "binding.accepted": _l("binding: accepted"),
    "binding.declined": _l("binding: declined"), "binding.cancelled": _l("binding: cancelled"),
    "binding.expired": _l("binding: expired"), "binding.rejected": _l("binding: rejected"),
    "binding.authorized": _l("binding: authorized"), "binding.unbound": _l("binding: unbound"),
    "binding.relocated": _l("binding: followed a move"),
    "settlement.completed": _l("settlement: paid"), "settlement.reversed": _l("settlement: reversed"),
    "verification.completed": _l("face check result"), "person.updated": _l("person: registry change"),
    "person.deceased": _l("person: deceased"), "relationship.ended": _l("relationship ended"),
    "binding.unbind_requested": _l("unbind asked in the platform's app"),
}


def topic(code) -> str:
    """An event type in words (the code itself if it has none)."""
    return str(TOPICS.get(code, code)) if code else ""


def error(code: str) -> str:
    """An error code as an operator reads it (the code itself if it has no label)."""
    return str(ERRORS.get(code, code))


def outcome(code) -> str:
    return str(OUTCOMES[code]) if code in OUTCOMES else error(code) if code else ""


def filter_value(key: str, value) -> str:
    """One batch-filter value as shown: a state, stuck reason or age by its label, a region or platform as is."""
    if key == "state":
        return str(label(STATES, value))
    if key == "stuck":
        return str(label(REASONS, value))
    if key == "older_than_s":
        return str(dict(AGES).get(str(value), value))
    return str(value)


# settlements (web/dashboard/settlements.py, workflows/settlement_views.py and settlement_repair.py)
SETTLEMENT_STATUS = {"completed": _l("completed"), "reversed": _l("reversed")}
SETTLEMENT_CATEGORIES = {"outpatient": _l("outpatient"), "inpatient": _l("inpatient"), "pharmacy": _l("pharmacy")}
LEDGER_POSTINGS = {"settle": _l("settlement"), "reverse": _l("reversal")}
ACTIONS.update({"settlement_reverse": _l("reverse a settlement"),
                "find_settlements_by_id_number": _l("find a person's settlements by ID number")})
OUTCOMES.update({"already_reversed": _l("already reversed: nothing moved")})


def webhook_outcome(code) -> str:
    """An inbound webhook's outcome in words: a known outcome, the binding's new state, or the code as it is
    (`ignored_<status>`: the attempt had already ended)."""
    if not code:
        return ""
    if code in WEBHOOK_OUTCOMES:
        return str(WEBHOOK_OUTCOMES[code])
    if code in STATES:
        return str(_l("binding %(state)s", state=STATES[code]))
    if code.startswith("ignored_"):
        return str(_l("the attempt had already ended: ignored"))
    return code
