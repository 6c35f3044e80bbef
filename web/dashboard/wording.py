"""Values an operator reads as words rather than the codes Gongji stores: the reasons the system and
verifiers write into history and verification attempts (`amount_fen=123456`, `whole_balance`,
`face_mismatch`, `grantor_region 320100→320500`), durations in seconds (`90000` → 1 day 1 hour), and the
policy fields a published version changed (`cross_province=False`). A reason that is not a known code
(a person's or an operator's own words) is shown as it is."""
from __future__ import annotations

import re

from flask import has_request_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from workflows import face_sessions

from . import labels

_SIDE = {"grantor": _l("grantor"), "beneficiary": _l("beneficiary")}
# reasons written by Gongji itself (workflows: invite, commands.authorize, timers, verification,
# consequences) and the codes a face-verification provider is documented to send
REASONS = {
    "guardian_path": labels.VERIFICATION_METHODS["guardian"],
    "whole_balance": _l("whole balance"),
    "invitation_ttl": _l("the invitation's validity ran out"),
    "verification_timeout": _l("no face-verification result in time"),
    "no result in time": _l("no face-verification result in time"),
    "verification_failed": _l("face verification failed"),
    "face_mismatch": _l("the face does not match the photo on record"),
    "liveness_failed": _l("the liveness check failed"),
    "grantor_left_employee_insurance": _l("the grantor no longer has employee medical insurance"),
    "region_not_allowed": labels.ERRORS["region_not_allowed"],
    "relationship_ended": _l("the registry says the relationship has ended"),
    face_sessions.NO_PROVIDER: _l("no face-verification provider serves this region"),
}
_SIDE_REASONS = {
    "deceased": _l("the %(side)s has died"),
    "insurance_ended": _l("the %(side)s's insurance has ended"),
    "insurance_suspended": _l("the %(side)s's insurance is suspended"),
}
_AMOUNT = re.compile(r"amount_fen=(\d+)")
_SIDE_REASON = re.compile(r"(grantor|beneficiary)_(deceased|insurance_ended|insurance_suspended)")
_MOVE = re.compile(r"(grantor|beneficiary)_region (\S+)→(\S+)")


def reason(text) -> str:
    """A history or verification reason as words: a known code translated, anything else as it is."""
    if not text:
        return ""
    text = str(text)
    if text in REASONS:
        return str(REASONS[text])
    if text in labels.EVENTS:  # an attempt abandoned by the event that moved its binding on (expire, cancel…)
        return str(labels.EVENTS[text])
    if m := _AMOUNT.fullmatch(text):
        from .templating import yuan
        return _("authorized amount %(amount)s", amount=yuan(int(m.group(1))))
    if m := _SIDE_REASON.fullmatch(text):
        return str(_SIDE_REASONS[m.group(2)]) % {"side": _SIDE[m.group(1)]}
    moves = [_MOVE.fullmatch(part.strip()) for part in text.split(";")]
    if all(moves):
        return joined((_("the %(side)s moved from region %(old)s to %(new)s", side=_SIDE[m.group(1)],
                         old=m.group(2), new=m.group(3)) for m in moves), zh="；", en="; ")
    return text


def actor(who: dict, binding: dict) -> str:
    """Who made a history transition, named as the Parties box names the persons: the grantor or the
    beneficiary (with the masked name) when the actor is one of the two; anyone else (an operator, the
    system, a verifier, another person) by kind and id. Why: the page shows no person ids, so a raw
    `psn_…` would not tell the operator which side acted."""
    kind, who_id = who.get("kind"), who.get("id")
    if kind == "person" and who_id:
        for side in ("grantor", "beneficiary"):
            party = binding.get(side) or {}
            if party.get("id") == who_id:
                return " ".join(str(part) for part in (_SIDE[side], party.get("name_masked")) if part)
    if kind == "system" and who_id:  # `timer`, `registry:<platform>`: words, the platform's id kept
        base, _sep, platform = str(who_id).partition(":")
        who_id = " ".join(str(p) for p in (labels.label(labels.SYSTEM_ACTORS, base), platform) if p)
    return " ".join(str(part) for part in (labels.label(labels.ACTORS, kind), who_id) if part)


def duration(seconds) -> str:
    """Seconds as days, hours, minutes and seconds, largest first, zero parts left out (90000: 1 day 1 hour)."""
    if seconds is None:
        return ""
    left, parts = int(seconds), []
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        n, left = divmod(left, size)
        if n:
            parts.append(_UNITS[unit](n))
    return " ".join(parts) if parts else _UNITS["second"](0)


_UNITS = {  # one gettext per form (not ngettext: tests/unit/test_translations.py reads plain messages only)
    "day": lambda n: _("%(n)s day", n=n) if n == 1 else _("%(n)s days", n=n),
    "hour": lambda n: _("%(n)s hour", n=n) if n == 1 else _("%(n)s hours", n=n),
    "minute": lambda n: _("%(n)s minute", n=n) if n == 1 else _("%(n)s minutes", n=n),
    "second": lambda n: _("%(n)s second", n=n) if n == 1 else _("%(n)s seconds", n=n),
}
POLICY_FIELDS = {
    "commitment_version": _l("commitment letter"), "allowed_relationships": _l("relationships"),
    "deduction_order_policy": _l("deduction order"), "intra_province": _l("within the province"),
    "cross_province": _l("across provinces"), "invitation_ttl_s": _l("invitation valid for"),
    "verification_timeout_s": _l("face-check session time"),
    "max_verification_attempts": _l("face-check attempts"),
    "max_beneficiaries_per_grantor": _l("beneficiaries per grantor"),
    "max_grantors_per_beneficiary": _l("grantors per beneficiary"),
    "frequency_max_changes": _l("changes per window"), "frequency_window_s": _l("change window"),
    "in_person_verification": _l("identity check in person at the service hall"),
}


def joined(words, *, zh: str = "、", en: str = ", ") -> str:
    """Words in a list as the reader's language joins them (、 in Chinese, a comma in English)."""
    from . import select_locale
    chinese = not has_request_context() or select_locale().startswith("zh")
    return (zh if chinese else en).join(str(w) for w in words)


def relationships(codes) -> str:
    return joined(labels.label(labels.RELATIONSHIPS, r) for r in codes or ())


def policy_value(field: str, value) -> str:
    if isinstance(value, bool):
        return _("allowed") if value else _("not allowed")
    if field.endswith("_s") and isinstance(value, int):
        return duration(value)
    if field == "allowed_relationships" and isinstance(value, list):
        return relationships(value)
    if field == "deduction_order_policy":
        return str(labels.label(labels.DEDUCTION_ORDERS, value))
    return str(value)


def policy_change(field: str, value) -> str:
    """One changed policy field as `name: value` in words (`cross_province=False` → across provinces: not allowed)."""
    return f"{labels.label(POLICY_FIELDS, field)}: {policy_value(field, value)}"


def http_answer(status_code, error) -> str:
    """A receiver's answer, its status named once: the error text already starts `HTTP 500: …` when the
    receiver answered, so the code is added only when the text does not say it (or there is no text)."""
    error = str(error or "")
    if not status_code or error.startswith(f"HTTP {status_code}"):
        return error
    return f"HTTP {status_code}" + (f" · {error}" if error else "")
