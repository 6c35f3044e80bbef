"""Dashboard pages that read: overview, the list (filters, keyset pages; the look-up by ID number is in
`lookup.py`), one binding, the audit log, the region policies, a batch job. Thin: parse, call `workflows`, render."""
from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from workflows import batches, casefile, diagram, finder, inbound, machine, operators, overview as overview_mod
from workflows import platforms, policy_admin, processes, repair, stuck
from workflows.errors import DomainError
from models.types import MAX_BIGINT

from . import bp, charts, labels
from .auth import db, requires
from .templating import local, region, region_names
from .forms import BATCH_ACTIONS, BatchForm, BindingActionForm, FindForm, LookupForm, RevealForm

PAGE = 50
# the actions a binding page offers, in order, with their button style; who may run each is repair.ROLE_FOR
BINDING_ACTIONS = (("retry", ""), ("verify_in_person", ""), ("expire", "danger"), ("unbind", "danger"))


def _queues() -> dict:
    """The broker's queue depth, read by the function the composition root (cli.py, wsgi.py) put in
    `app.extensions` (web does not import workers); unknown where none was given."""
    depth = current_app.extensions["gongji"].get("queue_depth")
    return depth() if depth else {"ready": None, "in_flight": None, "delayed": None, "dead": None}


@bp.get("/")
@requires("viewer")
def overview():
    o = overview_mod.overview(db())
    chart = charts.bars([(local(h["hour"], "HH:mm"), h["transitions"], h["failures"]) for h in o["hourly"]],
                        title=_("Transitions and failures per hour"), first=_("transitions"), second=_("failures"))
    return render_template("dashboard/overview.html", o=o, queues=_queues(), chart=chart,
                           inbound=inbound.backlog(db()), window_s=inbound.PROBLEM_WINDOW_S,
                           procs=processes.health(db(), o["as_of"]))


def _choices(form: FindForm) -> None:
    regions = [(code, region(code)) for code in region_names()]
    with db()() as s:
        plats = [(p.id, p.id) for p in platforms.all_platforms(s) if p.kind != "verifier"]
    def options(pairs, any_first: bool = True) -> list[SelectChoice]:
        return [SelectChoice(v, str(t)) for v, t in ([("", _("any"))] if any_first else []) + list(pairs)]
    form.state.choices = options((st, labels.STATES[st]) for st in machine.STATES if st != machine.NEW)
    form.region.choices = options(regions)
    form.platform.choices = options(plats)
    form.stuck.choices = options((r, labels.REASONS.get(r, r)) for r in stuck.REASONS)
    form.older_than_s.choices = options(labels.AGES, any_first=False)


def _filtered() -> tuple[FindForm, dict]:
    """The list's filters from the query string (values outside the choices are a 400)."""
    form = FindForm(request.args)
    _choices(form)
    if not form.validate():
        abort(400)
    return form, batches.clean({
        "state": form.state.data, "region": form.region.data, "platform": form.platform.data,
        "stuck": form.stuck.data, "older_than_s": int(form.older_than_s.data) if form.older_than_s.data else None})


@bp.get("/bindings")
@requires("viewer")
def bindings():
    form, filters = _filtered()
    try:
        page = finder.find(db(), **filters, after=request.args.get("after") or None, limit=PAGE)
    except DomainError:  # a cursor not made by this list
        abort(400)
    return render_template("dashboard/list.html", form=form, page=page, filters=filters, lookup=LookupForm())


@bp.get("/batches/new")
@requires("operator")
def new_batch():
    """The count first: what the filter matches now, then the confirmation form."""
    form, filters = _filtered()
    if not filters:
        return redirect(url_for("dashboard.bindings"))
    states = finder.count_by_state(db(), **filters)
    batch = BatchForm(formdata=None, data={**filters, "expected": sum(states.values())})
    batch.action.choices = batch_choices(filters, states)
    return render_template("dashboard/batch_new.html", batch=batch, filters=filters, form=form,
                           role_needed=batch_needs_role(filters, states))


def _batch_can_succeed(name: str, filters: dict, states) -> bool:
    """Retry only where the filter names a stuck reason (it refuses a binding that is not stuck); expire and
    unbind only where the state machine has that event from the filtered state, or, with no state filtered,
    from at least one state of the bindings the filter matches now (`states`: {state: count})."""
    if name == "retry":
        return bool(filters.get("stuck"))
    wanted = [filters["state"]] if filters.get("state") else list(states)
    return any(machine.allowed(state, name) for state in wanted)


def batch_choices(filters: dict, states) -> list[SelectChoice]:
    """The batch actions the signed-in operator may run that can succeed on what the filter matches."""
    return [SelectChoice(name, text) for name, text in BATCH_ACTIONS
            if current_user.can(repair.ROLE_FOR[name]) and _batch_can_succeed(name, filters, states)]


def batch_needs_role(filters: dict, states) -> list[tuple[str, str]]:
    """The batch actions that can succeed on the filter but the signed-in operator's role may not run, each
    with the role it needs: when the form offers nothing, the page names that reason, not the state."""
    return [(name, repair.ROLE_FOR[name]) for name, _text in BATCH_ACTIONS
            if not current_user.can(repair.ROLE_FOR[name]) and _batch_can_succeed(name, filters, states)]


def _can_succeed(name: str, state: str, stuck_reasons: list, in_person: bool = False) -> bool:
    """Retry while the binding is stuck; an identity check in person where the binding's policy allows it
    (`in_person`: the casefile's); expire and unbind only where the state machine has that event."""
    if name == "retry":
        return bool(stuck_reasons)
    return in_person if name == "verify_in_person" else machine.allowed(state, name)


def offered_actions(state: str, stuck_reasons: list, in_person: bool = False) -> list[tuple[str, str]]:
    """The actions the signed-in operator may run on a binding in `state` that can succeed."""
    return [(name, style) for name, style in BINDING_ACTIONS
            if current_user.can(repair.ROLE_FOR[name]) and _can_succeed(name, state, stuck_reasons, in_person)]


def withheld_actions(state: str, stuck_reasons: list, in_person: bool = False) -> list[tuple[str, str]]:
    """The actions that could succeed on the binding but need a role the signed-in operator lacks, each with
    that role: the page says so instead of showing nothing (a viewer is never told: it acts on nothing)."""
    if not current_user.can("operator"):
        return []
    return [(name, repair.ROLE_FOR[name]) for name, _style in BINDING_ACTIONS
            if not current_user.can(repair.ROLE_FOR[name]) and _can_succeed(name, state, stuck_reasons, in_person)]


@bp.get("/bindings/<binding_id>")
@requires("viewer")
def binding(binding_id: str):
    return render_binding(binding_id)


def render_binding(binding_id: str, revealed: dict | None = None):
    try:
        case = casefile.casefile(db(), binding_id)
    except DomainError as exc:
        if exc.code == "not_found":
            abort(404)
        raise
    svg = diagram.svg(current=case["binding"]["state"], path=case["path"],
                      labels={k: str(v) for k, v in labels.STATES.items()},
                      event_labels={k: str(v) for k, v in labels.EVENTS.items()})
    return render_template("dashboard/binding.html", case=case, b=case["binding"], svg=svg,
                           offered=offered_actions(case["binding"]["state"], case["stuck"], case["in_person"]),
                           withheld=withheld_actions(case["binding"]["state"], case["stuck"], case["in_person"]),
                           ends=repair.ENDS_BINDING,
                           webhooks=inbound.of_binding(db(), binding_id),
                           action=BindingActionForm(formdata=None), reveal=RevealForm(formdata=None), revealed=revealed)


@bp.get("/audit")
@requires("viewer")
def audit():
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before <= MAX_BIGINT:  # an audit id is a BIGINT: a forged one is a 400
        abort(400)
    batch = (request.args.get("batch") or "")[:32] or None  # a batch job's rows (its page links here)
    # who, what and how it ended; the values as stored (an action's code, `ok`), longer ones than the columns
    # hold match nothing and are a 400, as an outcome other than done or refused
    shown = {k: (request.args.get(k) or "").strip() for k in ("operator", "action", "outcome")}
    if len(shown["operator"]) > 64 or len(shown["action"]) > 48 or shown["outcome"] not in ("", "ok", "refused"):
        abort(400)
    log = operators.audit_log(db(), batch_id=batch, before=before, limit=PAGE, operator=shown["operator"] or None,
                              action=shown["action"] or None,
                              refused={"": None, "ok": False, "refused": True}[shown["outcome"]])
    return render_template("dashboard/audit.html", batch=batch, log=log, shown=shown,
                           actions=sorted(labels.ACTIONS.items(), key=lambda kv: str(kv[1])))


@bp.get("/policies")
@requires("viewer")
def policies():
    """Each pooling region's policy versions: in force, pending, older (published with `gongji policy`)."""
    return render_template("dashboard/policies.html", regions=policy_admin.every_region(db()))


@bp.get("/batches/<batch_id>")
@requires("viewer")
def batch(batch_id: str):
    try:
        job = batches.get(db(), batch_id)
    except DomainError:
        abort(404)
    return render_template("dashboard/batch.html", job=job)


@bp.get("")
@requires("viewer")
def root():
    return redirect(url_for("dashboard.overview"))

