"""Dashboard forms (Flask-WTF): every POST form carries a CSRF token; the list filter is a GET form
without one (it changes nothing). Length limits are the columns' (reason: audit_log.reason, 1000)."""
from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, DateField, HiddenField, IntegerField, PasswordField, SelectField, StringField,
                     TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from workflows import characters, id_in_text, repair

ID_TYPED_MAX = 40  # an ID number as typed or pasted: 18 characters with room for spaces between its groups
REASON_MAX = 1000  # characters of an operator's reason (also the textareas' maxlength)


def _printable(_form, field):
    """No control or direction-formatting character (workflows/characters.py; lines are allowed), as the API
    refuses them: the same on SQLite and PostgreSQL, which cannot store a NUL."""
    if field.data and characters.refused(field.data, lines=True):
        raise ValidationError(_l("The reason holds a control or direction-formatting character."))


REASON = [DataRequired(message=_l("Give a reason.")),
          Length(max=REASON_MAX, message=_l("A reason is at most %(max)d characters.")), _printable]


def reason_problem(form) -> str:
    """Why an action's form was refused, in the reader's language: the reason's own message (missing, too
    long), then the confirmation's, then a page too old (no version), else "Give a reason." (what the
    hand-written forms' one field needs)."""
    for name in ("reason", "confirm"):
        errors = getattr(form, name).errors if hasattr(form, name) else ()
        if errors:
            return str(errors[0])
    if getattr(form, "seen", None) is not None and form.seen.errors:  # missing, or not a number
        return str(STALE_FORM)
    return str(_l("Give a reason."))


class SignInForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class LanguageForm(FlaskForm):
    lang = HiddenField()


class ActionForm(FlaskForm):
    """An action with a reason (a webhook's retry, a platform's replay, a settlement's reversal)."""
    reason = TextAreaField(_l("Reason"), validators=REASON)


STALE_FORM = _l("The page is out of date: load it again.")


def _confirmation() -> BooleanField:
    """The box an operator ticks before an action that cannot be undone (the pages render it as required)."""
    return BooleanField(_l("I understand this cannot be undone"),
                        validators=[DataRequired(message=_l("Tick the box to confirm."))])


class ReversalForm(ActionForm):
    """A settlement's reversal: the money goes back, for good."""
    confirm = _confirmation()


class BindingActionForm(ActionForm):
    """retry on one binding, as the page showed it (`seen`: its version; `workflows.repair`)."""
    seen = IntegerField(validators=[InputRequired(), NumberRange(min=0)])


class EndingForm(BindingActionForm):
    """expire, unbind: they end the binding for good, so the operator ticks a box first."""
    confirm = _confirmation()


class RevealForm(FlaskForm):
    side = HiddenField(validators=[DataRequired()])
    reason = TextAreaField(_l("Reason"), validators=REASON)


BATCH_ACTIONS = (("retry", _l("Retry the stuck step")), ("expire", _l("Expire now")), ("unbind", _l("Unbind")))


def binding_form(action: str) -> type[BindingActionForm]:
    """The form of an action on one binding: one that ends it asks for the confirmation."""
    return EndingForm if action in repair.ENDS_BINDING else BindingActionForm


class BatchForm(FlaskForm):
    action = SelectField(_l("Action"), choices=[SelectChoice(v, text) for v, text in BATCH_ACTIONS])
    expected = IntegerField(validators=[NumberRange(min=1)])
    reason = TextAreaField(_l("Reason"), validators=REASON)
    confirm = BooleanField(_l("I have checked the count and the filter"), validators=[DataRequired()])
    state = HiddenField(validators=[Optional()])
    region = HiddenField(validators=[Optional()])
    platform = HiddenField(validators=[Optional()])
    stuck = HiddenField(validators=[Optional()])
    older_than_s = HiddenField(validators=[Optional()])


class FindForm(FlaskForm):
    """The list's filters (GET). The ID number is POSTed to /dashboard/find instead, so it never sits in a URL."""
    class Meta:
        csrf = False

    state = SelectField(_l("State"), validators=[Optional()])
    region = SelectField(_l("Region"), validators=[Optional()])
    platform = SelectField(_l("Platform"), validators=[Optional()])
    stuck = SelectField(_l("Stuck reason"), validators=[Optional()])
    older_than_s = SelectField(_l("Unchanged for"), validators=[Optional()])


def _no_whitespace(value):
    """An ID number pasted with spaces or tabs around it or between its groups (`320102 19800101 123X`)."""
    return re.sub(r"\s+", "", value) if isinstance(value, str) else value


# a binding's id as typed into the look-up box (`bnd_` and its 26 characters; a wrong one opens the 404 page)
BINDING_ID = re.compile(r"bnd_[0-9a-z]{1,34}", re.ASCII | re.IGNORECASE)


def is_binding_id(value) -> bool:
    return isinstance(value, str) and BINDING_ID.fullmatch(value) is not None


def _typed_number(value):
    """What was typed into the look-up box: a binding id as it is (without whitespace), an ID number as one
    run (`id_in_text.compact`: grouped by spaces, hyphens or dots, full-width digits: `320-102-19800101-667X`)."""
    if not isinstance(value, str):
        return value
    bare = _no_whitespace(value)
    return bare if is_binding_id(bare) else id_in_text.compact(bare)


def _id_number_length(form, field):
    """15 to 18 characters once the whitespace is gone, or a binding id. Not wtforms' Length, which would
    also render maxlength="18" and let the browser cut a number pasted with spaces before they are stripped."""
    if not is_binding_id(field.data) and not 15 <= len(field.data or "") <= 18:
        raise ValidationError(_l("Enter an ID number of 15 to 18 characters."))


class LookupForm(FlaskForm):
    """One box for an ID number (POSTed: it never goes into a URL) or a binding id (`bnd_…`: opens the binding)."""
    id_number = StringField(_l("ID number"), validators=[DataRequired(), _id_number_length],
                            filters=[_typed_number], render_kw={"maxlength": ID_TYPED_MAX})


class WebhookFilterForm(FlaskForm):
    """The inbound webhooks' problem list filters (GET): platform, kind, received within."""
    class Meta:
        csrf = False

    platform = SelectField(_l("Platform"), validators=[Optional()])
    kind = SelectField(_l("Kind"), validators=[Optional()])
    within_s = SelectField(_l("Received within"), validators=[Optional()])


class SettlementFilterForm(FlaskForm):
    """The settlement list's filters (GET): choices and dates only. A reference or an ID number is typed into
    the POSTed box instead (`SettlementLookupForm`): a text field of a GET form puts whatever is typed into
    it, an ID number too, into the URL."""
    class Meta:
        csrf = False

    platform = SelectField(_l("Platform"), validators=[Optional()])
    status = SelectField(_l("Status"), validators=[Optional()])
    category = SelectField(_l("Category"), validators=[Optional()])
    since = DateField(_l("Created from"), validators=[Optional()])
    until = DateField(_l("Created until"), validators=[Optional()])


# a settlement's id as typed into its look-up box (`stl_` and its 26 characters; a wrong one opens the 404 page)
SETTLEMENT_ID = re.compile(r"stl_[0-9a-z]{1,34}", re.ASCII | re.IGNORECASE)


def is_settlement_id(value) -> bool:
    return isinstance(value, str) and SETTLEMENT_ID.fullmatch(value) is not None


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class SettlementLookupForm(FlaskForm):
    """One box, POSTed (nothing typed into it lands in a URL): a settlement's reference (the list filtered by
    it), the beneficiary's ID number (their settlements; audited and limited like the bindings' look-up), or
    a settlement id (`stl_…`: opens it). A reference never carries an ID number (`settlements._check`)."""
    q = StringField(_l("Reference, beneficiary's ID number or settlement id (stl_…)"),
                    validators=[DataRequired(), Length(max=64)], filters=[_strip])
