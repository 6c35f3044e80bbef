"""Dashboard pages for a platform's traffic: inbound webhooks (the problem list, one webhook, its retry) and
outbound deliveries per platform (counts, one platform's dead ones, their replay). Thin: parse, call
`workflows.inbound` / `delivery_views` to read and `platform_repair` to act, map refusals to a flash.

Every POST is CSRF-checked (Flask-WTF) and declares its role from `platform_repair.ROLE_FOR` (the
workflow checks it again and audits a refusal). Ids in URLs are Gongji's own row ids: a webhook-id is the
sender's text and is never put in a URL; no body is ever shown."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from models.types import MAX_BIGINT
from workflows import delivery_views, inbound, platform_repair, platforms
from workflows.errors import DomainError

from . import bp, labels
from .actions import _refused
from .auth import db, requires
from .forms import ActionForm, WebhookFilterForm, reason_problem

PAGE = 50


def _webhook_filters() -> tuple[WebhookFilterForm, dict]:
    """The list's filters from the query string (a value outside the choices is a 400)."""
    form = WebhookFilterForm(request.args)
    with db()() as s:
        ids = [p.id for p in platforms.all_platforms(s)]
    form.platform.choices = [SelectChoice("", _("any"))] + [SelectChoice(p, p) for p in ids]
    form.kind.choices = [SelectChoice("", _("any problem"))] + [
        SelectChoice(k, str(labels.WEBHOOK_KINDS[k])) for k in inbound.KINDS]
    form.within_s.choices = [SelectChoice(v, str(t)) for v, t in labels.WITHIN]
    if not form.validate():
        abort(400)
    return form, {k: v for k, v in (("platform", form.platform.data), ("kind", form.kind.data),
                                    ("within_s", form.within_s.data)) if v}


@bp.get("/webhooks")
@requires("viewer")
def webhooks():
    form, filters = _webhook_filters()
    try:
        page = inbound.problems(db(), platform=filters.get("platform"), kind=filters.get("kind"),
                                within_s=int(filters["within_s"]) if "within_s" in filters else None,
                                after=request.args.get("after") or None, limit=PAGE)
    except DomainError:  # a cursor not made by this list
        abort(400)
    return render_template("dashboard/webhooks.html", form=form, page=page, filters=filters)


@bp.get(f"/webhooks/<int(max={MAX_BIGINT}):received_id>")
@requires("viewer")
def webhook(received_id: int):
    try:
        w = inbound.detail(db(), received_id)
    except DomainError:
        abort(404)
    return render_template("dashboard/webhook.html", w=w, action=ActionForm(formdata=None),
                           may_retry=current_user.can(platform_repair.ROLE_FOR["webhook_retry"]))


@bp.post(f"/webhooks/<int(max={MAX_BIGINT}):received_id>/retry")
@requires(platform_repair.ROLE_FOR["webhook_retry"])
def retry_webhook(received_id: int):
    form = ActionForm()
    if not form.validate_on_submit():
        flash(reason_problem(form), "error")
    else:
        try:
            platform_repair.retry_webhook(db(), current_user.info, received_id, form.reason.data)
            flash(_("Done: %(action)s.", action=labels.label(labels.ACTIONS, "webhook_retry")), "ok")
        except DomainError as exc:
            _refused(exc)
    return redirect(url_for("dashboard.webhook", received_id=received_id), code=303)


@bp.get("/deliveries")
@requires("viewer")
def deliveries():
    platform = request.args.get("platform") or None
    counts = delivery_views.counts(db())
    if platform is not None and platform not in counts:
        abort(404)
    try:
        dead = delivery_views.dead(db(), platform, after=request.args.get("after") or None, limit=PAGE) \
            if platform else None
    except DomainError:
        abort(400)
    return render_template("dashboard/deliveries.html", counts=counts, platform=platform, dead=dead,
                           action=ActionForm(formdata=None),
                           may_replay=current_user.can(platform_repair.ROLE_FOR["deliveries_replay"]))


def _replay(platform_id: str, delivery_id: int | None):
    form = ActionForm()
    if not form.validate_on_submit():
        flash(reason_problem(form), "error")
    else:
        try:
            done = platform_repair.replay_dead(db(), current_user.info, platform_id, form.reason.data,
                                               delivery_id=delivery_id)
            if done["sent_now"] >= done["dead"]:  # nothing waits behind an earlier version
                flash(_("Replayed %(n)s dead deliveries to %(platform)s; all sent now.", n=done["dead"],
                        platform=platform_id), "ok")
            else:
                flash(_("Replayed %(n)s dead deliveries to %(platform)s; %(sent)s sent now, the rest follow "
                        "their predecessors.", n=done["dead"], platform=platform_id, sent=done["sent_now"]), "ok")
        except DomainError as exc:
            _refused(exc)
    return redirect(url_for("dashboard.deliveries", platform=platform_id), code=303)


@bp.post("/deliveries/<platform_id>/replay")
@requires(platform_repair.ROLE_FOR["deliveries_replay"])
def replay_platform(platform_id: str):
    """Every dead delivery to this platform, and no other platform's."""
    return _replay(platform_id, None)


@bp.post(f"/deliveries/<platform_id>/<int(max={MAX_BIGINT}):delivery_id>/replay")
@requires(platform_repair.ROLE_FOR["deliveries_replay"])
def replay_delivery(platform_id: str, delivery_id: int):
    return _replay(platform_id, delivery_id)
