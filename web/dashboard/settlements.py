"""Dashboard pages for settlements: the list (filters, keyset pages), the look-up box, one settlement, and an
operator's reversal. Thin: parse, call `workflows.settlement_views` to read and `settlement_repair` to act,
map refusals to a flash or an error page.

The look-up box is POSTed, so nothing typed into it lands in a URL: a settlement id (`stl_…`) opens that
settlement; a reference (never an ID number: `settlements._check`) opens the list filtered by it; anything
shaped like an ID number is the beneficiary's, looked up through the keyed hash, audited and limited per
operator as the bindings' look-up is (`lookup.py`: any viewer may use it, and a sweep of guessed numbers
would tell who was treated). The reversal is a POST with CSRF, a reason and the operator role
(`settlement_repair.ROLE_FOR`, checked again and audited by the workflow); a viewer sees no button."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import get_timezone
from flask_babel import gettext as _
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from workflows import id_in_text, idnumbers, operators, platforms, settlement_repair, settlement_views
from workflows.errors import DomainError
from models.money import CATEGORIES, SETTLEMENT_STATUSES

from . import bp, labels, limiter, lookup
from .actions import _refused
from .auth import db, requires
from .forms import ActionForm, ReversalForm, SettlementFilterForm, SettlementLookupForm, is_settlement_id, reason_problem

PAGE = 50
REVERSE = settlement_repair.REVERSE_ACTION
FIND_ACTION = "find_settlements_by_id_number"


def _zone() -> ZoneInfo:
    return ZoneInfo(str(get_timezone()))  # the dashboard's (Asia/Shanghai); Babel hands out a pytz zone


NO_EARLIER, NO_LATER = date(2000, 1, 1), date(9000, 1, 1)


def _start_of(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=_zone())


def _filters() -> tuple[SettlementFilterForm, dict, dict]:
    """The form, the query string's filters (to build page links) and the workflow's arguments; a value
    outside the choices, a bad date or a reference holding an ID number is a 400."""
    form = SettlementFilterForm(request.args)
    with db()() as s:
        ids = [p.id for p in platforms.all_platforms(s) if p.kind != "verifier"]
    any_ = [SelectChoice("", _("any"))]
    form.platform.choices = any_ + [SelectChoice(p, p) for p in ids]
    form.status.choices = any_ + [SelectChoice(v, str(labels.SETTLEMENT_STATUS[v])) for v in SETTLEMENT_STATUSES]
    form.category.choices = any_ + [SelectChoice(v, str(labels.SETTLEMENT_CATEGORIES[v])) for v in CATEGORIES]
    reference = request.args.get("reference") or None  # checked by the workflow (a 400 from `settlements`)
    if not form.validate():
        abort(400)
    since, until = form.since.data, form.until.data  # a day before 2000 or after 8999 means "no bound"
    since = since if since and since > NO_EARLIER else None  # (9999-12-31 is what operators type for it;
    until = until if until and until < NO_LATER else None  # at those ends the day's UTC bounds overflow)
    args = {"reference": reference, "platform": form.platform.data or None, "status": form.status.data or None,
            "category": form.category.data or None, "since": _start_of(since) if since else None,
            "until": _start_of(until + timedelta(days=1)) if until else None}  # the whole last day
    shown = {k: v for k, v in (("reference", reference), ("platform", form.platform.data),
                               ("status", form.status.data), ("category", form.category.data),
                               ("since", since and since.isoformat()), ("until", until and until.isoformat())) if v}
    return form, shown, args


@bp.get("/settlements")
@requires("viewer")
def settlements():
    form, filters, args = _filters()
    try:
        page = settlement_views.find(db(), **args, after=request.args.get("after") or None, limit=PAGE)
    except DomainError:  # a cursor not made by this list, a reference holding an ID number
        abort(400)
    return render_template("dashboard/settlements.html", form=form, page=page, filters=filters,
                           lookup=SettlementLookupForm(formdata=None))


def _not_a_number() -> bool:
    return not id_in_text.holds_id_number((request.form.get("q") or "").strip())


@bp.post("/settlements")  # the list's URL: a sign-in after the session ended comes back to the list
@requires("viewer")  # signed in before the limit is counted: it is kept per operator
@limiter.shared_limit(lookup.FIND_LIMIT, lookup.FIND_SCOPE, key_func=lookup._per_operator,
                      exempt_when=_not_a_number)
def find_settlements():
    box = SettlementLookupForm()
    if not box.validate_on_submit():
        flash(_("Type a reference, an ID number or a settlement id."), "error")
        return redirect(url_for("dashboard.settlements"), code=303)
    typed = box.q.data
    if is_settlement_id(typed):
        return redirect(url_for("dashboard.settlement", settlement_id=typed.lower()), code=303)
    if not id_in_text.holds_long_number(typed):  # no 15 digits in a row: a reference, safe in a URL
        return redirect(url_for("dashboard.settlements", reference=typed), code=303)
    page, error, by_number = {"items": [], "next": None}, None, id_in_text.holds_id_number(typed)
    if not by_number:  # a long reference or a mistyped number: looked up as a reference (one a platform at
        # most) on this answer, neither put into a URL nor shown back (the rows show their references)
        page = settlement_views.find(db(), reference=typed, limit=settlement_views.PERSON_MAX)
        page["next"] = None
    else:
        number = id_in_text.compact(typed)  # as copied: `320102 19800614 2974`, `320-102-…`, full-width
        try:
            page = settlement_views.of_beneficiary(db(), number, limit=settlement_views.PERSON_MAX)
        except DomainError as exc:
            error = exc.code
        _audit(error, page, number)
    form, _shown, _args = _filters()
    return render_template("dashboard/settlements.html", form=form, page=page, filters={},
                           lookup=SettlementLookupForm(formdata=None), lookup_error=error, looked_up=by_number)


def _audit(error: str | None, page: dict, typed: str) -> None:
    """One audit row per look-up by number, in its own transaction, as `lookup._audit` writes the bindings'
    look-up: the count found and, for a valid number, its masked form; nothing of a refused one."""
    detail = {"found": len(page["items"]), **({"more": True} if page.get("more") else {})}
    if error is None:
        detail["id_number_masked"] = idnumbers.mask(idnumbers.normalize(typed))
    with db().begin() as s:
        operators.record(s, current_user.info, FIND_ACTION, reason=None, outcome=error or "ok", detail=detail)


@bp.get("/settlements/<settlement_id>")
@requires("viewer")
def settlement(settlement_id: str):
    try:
        st = settlement_views.detail(db(), settlement_id)
    except DomainError:
        abort(404)
    return render_template("dashboard/settlement.html", st=st, action=ActionForm(formdata=None),
                           may_reverse=current_user.can(settlement_repair.ROLE_FOR[REVERSE]))


@bp.post("/settlements/<settlement_id>/reversal")
@requires(settlement_repair.ROLE_FOR[REVERSE])
def reverse_settlement(settlement_id: str):
    form = ReversalForm()
    if not form.validate_on_submit():
        flash(reason_problem(form), "error")
    else:
        try:
            done = settlement_repair.reverse(db(), current_user.info, settlement_id, form.reason.data)
            if done["reversed_now"]:
                flash(_("Done: %(action)s.", action=labels.label(labels.ACTIONS, REVERSE)), "ok")
            else:
                flash(_("It was reversed already: nothing moved."), "message")
        except DomainError as exc:
            _refused(exc)
    return redirect(url_for("dashboard.settlement", settlement_id=settlement_id), code=303)


@bp.context_processor
def settlements_today():
    """For the overview's card: today's settlements (since midnight in the dashboard's zone) per status,
    read only when a template calls it."""
    def counts() -> dict:
        day = datetime.now(_zone()).date()
        return {"since": day.isoformat(), **settlement_views.counts(db(), since=_start_of(day))}
    return {"settlements_today": counts}
