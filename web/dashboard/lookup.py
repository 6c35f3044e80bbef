"""The list's look-up box: a person's bindings by ID number, or one binding by its id.

An ID number is POSTed (never in a URL), looked up through the keyed hash and shown masked. Why each
look-up is audited and limited: any viewer may use the box, and a sweep of guessed numbers would tell who
holds bindings. So every look-up by number writes an audit row (who, when, how many bindings it found, the
number masked as the persons' masked column shows it, never whole) and an operator may make FIND_LIMIT of
them (Flask-Limiter, as sign-in; a 429 is the dashboard's translated page), one budget with the settlements'
look-up by number (`FIND_SCOPE`), so two boxes do not double it. A binding id (`bnd_…`) opens
that binding's page instead: it names no person, so it is neither audited nor counted."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import current_user

from workflows import finder, idnumbers, operators
from workflows.errors import DomainError

from . import bp, limiter
from .auth import db, requires
from .forms import FindForm, LookupForm, _no_whitespace, is_binding_id
from .views import _choices

FIND_LIMIT = "20 per minute;200 per hour"  # look-ups by ID number per operator, in every box together
FIND_SCOPE = "find_by_id_number"  # the limit's shared scope (Flask-Limiter `shared_limit`)
PERSON_MAX = 1000  # a person's bindings, all on one page (member caps and change limits keep it far smaller)
AUDIT_ACTION = "find_by_id_number"


def _per_operator() -> str:
    return f"find|{current_user.id}"


def _opens_a_binding() -> bool:
    return is_binding_id(_no_whitespace(request.form.get("id_number", ""))[:60])


@bp.post("/find")
@requires("viewer")  # signed in before the limit is counted: it is kept per operator
@limiter.shared_limit(FIND_LIMIT, FIND_SCOPE, key_func=_per_operator, exempt_when=_opens_a_binding)
def find_person():
    form = LookupForm()
    find = FindForm(formdata=None)
    page = {"items": [], "next": None}
    error = None
    valid = form.validate_on_submit()
    if valid and is_binding_id(form.id_number.data):
        return redirect(url_for("dashboard.binding", binding_id=form.id_number.data.lower()), code=303)
    if valid:
        try:
            page = _every_binding_of(form.id_number.data)
        except DomainError as exc:
            error = exc.code
    else:
        error = "invalid_id_number"
    _audit(error, page, form.id_number.data)
    _choices(find)
    return render_template("dashboard/list.html", form=find, page=page, filters={},
                           lookup=LookupForm(formdata=None), lookup_error=error, looked_up=True)


def _audit(error: str | None, page: dict, typed: str | None) -> None:
    """One audit row per look-up by number, in its own transaction: the count found and, for a valid
    number, its masked form; a refused number's outcome is its error code, and nothing of it is kept."""
    detail = {"found": len(page["items"])}
    if page.get("more"):
        detail["more"] = True
    if error is None:
        detail["id_number_masked"] = idnumbers.mask(idnumbers.normalize(typed))
    with db().begin() as s:
        operators.record(s, current_user.info, AUDIT_ACTION, reason=None, outcome=error or "ok", detail=detail)


def _every_binding_of(id_number: str) -> dict:
    """All of one person's bindings on one page: a next-page link would have to carry the person, and the
    ID number never goes into a URL. "next" stays None; "more" is set if PERSON_MAX cut the list short."""
    items, after = [], None
    while True:
        page = finder.find(db(), id_number=id_number, after=after, limit=finder.MAX_LIMIT)
        items += page["items"]
        after = page["next"]
        if after is None or len(items) >= PERSON_MAX:
            return {"items": items[:PERSON_MAX], "next": None, "more": after is not None}
