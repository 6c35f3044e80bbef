"""Dashboard actions (POST only, CSRF-checked, each with a reason): retry the stuck step, expire now,
unbind (admin), reveal an identity (admin), start a batch. Each calls one `workflows.repair` /
`workflows.batches` command, which writes the audit row in the same transaction; a refusal is shown
with its error code and audited too."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from workflows import batches, finder, operators, repair
from workflows.errors import DomainError

from . import bp, labels
from .auth import db, requires
from .forms import BatchForm, RevealForm, binding_form, reason_problem
from .views import batch_choices, batch_needs_role, render_binding

def _refused(exc: DomainError) -> None:
    """The reason in the reader's language and the code after it; on hover the workflow's detail, which is
    English, in the English dashboard only (base.html)."""
    flash({"text": _("Not done: %(reason)s.", reason=labels.error(exc.code)), "code": exc.code,
           "detail": exc.detail}, "error")


def _act(name: str):
    @requires(repair.ROLE_FOR[name])  # the workflow's table; it checks again itself
    def view(binding_id: str):
        form = binding_form(name)()
        if not form.validate_on_submit():
            flash(reason_problem(form), "error")
        else:
            try:
                done = repair.ACTIONS[name](db(), current_user.info, binding_id, form.reason.data,
                                            seen=form.seen.data)
                flash(_("Done: %(action)s.", action=labels.label(labels.ACTIONS, name)), "ok")
                if done and done.get("idle"):  # a retry that could do nothing for some of the reasons
                    flash(_("Nothing was left to try again for: %(reasons)s.", reasons="; ".join(
                        str(labels.label(labels.REASONS, r)) for r in done["idle"])), "error")
            except DomainError as exc:
                _refused(exc)
        return redirect(url_for("dashboard.binding", binding_id=binding_id), code=303)
    view.__name__ = f"act_{name}"
    bp.add_url_rule(f"/bindings/<binding_id>/{name}", view.__name__, view, methods=["POST"])
    return view


for _name in repair.ACTIONS:
    _act(_name)


@bp.post("/bindings/<binding_id>/reveal")
@requires(repair.ROLE_FOR["reveal"])
def reveal(binding_id: str):
    """The identity is shown once, in this answer only (never stored in the session or a URL)."""
    form = RevealForm()
    if not form.validate_on_submit():
        flash(reason_problem(form), "error")
        return redirect(url_for("dashboard.binding", binding_id=binding_id), code=303)
    try:
        shown = repair.reveal(db(), current_user.info, binding_id, form.side.data, form.reason.data)
    except DomainError as exc:
        _refused(exc)
        return redirect(url_for("dashboard.binding", binding_id=binding_id), code=303)
    return render_binding(binding_id, revealed={"side": form.side.data, **shown}), 200, {"Cache-Control": "no-store"}


@bp.post("/batches")
@requires("operator")
def start_batch():
    form = BatchForm()
    filters = batches.clean({k: getattr(form, k).data for k in batches.FILTER_KEYS})
    if "older_than_s" in filters:
        try:
            filters["older_than_s"] = int(filters["older_than_s"])
        except ValueError:
            filters.pop("older_than_s")  # a forged value: the count and the job see the filter without it
    form.action.choices = batch_choices(filters, finder.count_by_state(db(), **filters))
    action = str(form.action.data or "")[:40]
    if action not in {c.value for c in form.action.choices}:  # one the form did not offer: refused, audited
        exc = DomainError("forbidden", f"your role may not run {action}") \
            if action in repair.ROLE_FOR and not current_user.can(repair.ROLE_FOR[action]) \
            else DomainError("illegal_transition", f"{action} cannot succeed on this filter")
        operators.record_refusal(db(), current_user.info, f"batch_{action}"[:48], exc,
                                 reason=repair.clean_reason(form.reason.data))
        _refused(exc)
        return redirect(url_for("dashboard.new_batch", **filters), code=303)
    if not form.validate_on_submit():
        return _batch_again(form, filters, reason_problem(form) if form.reason.errors
                            else _("Confirm the count and give a reason."))
    try:
        job_id = batches.start(db(), current_user.info, form.action.data, filters, form.reason.data,
                               expected=form.expected.data)
    except DomainError as exc:
        if exc.code == "conflict":  # the count changed since it was shown: show the new one
            states = finder.count_by_state(db(), **filters)
            return _batch_again(form, filters, _("The filter now matches %(now)s bindings, not the %(then)s you "
                                                 "confirmed: check the count and confirm again.",
                                                 now=f"{sum(states.values()):,}", then=f"{form.expected.data or 0:,}"),
                                states)
        _refused(exc)
        return redirect(url_for("dashboard.new_batch", **filters), code=303)
    return redirect(url_for("dashboard.batch", batch_id=job_id), code=303)


def _batch_again(form: BatchForm, filters: dict, message: str, states: dict | None = None):
    """The batch form again, as the operator filled it in (action and reason kept, the confirmation not), with
    the count as it is now (`states`, when the caller counted them) and why it was not started; 409."""
    states = finder.count_by_state(db(), **filters) if states is None else states
    again = BatchForm(formdata=None, data={**filters, "expected": sum(states.values()), "action": form.action.data,
                                           "reason": form.reason.data})
    again.action.choices = batch_choices(filters, states)
    flash(message, "error")
    return render_template("dashboard/batch_new.html", batch=again, filters=filters,
                           role_needed=batch_needs_role(filters, states)), 409
