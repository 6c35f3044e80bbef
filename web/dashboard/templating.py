"""Template helpers: dates in Asia/Shanghai (Flask-Babel's configured zone), labels, money in yuan."""
from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask_babel import format_datetime
from flask_login import current_user

from workflows.id_in_text import mask_in_text

from .forms import REASON_MAX

from . import LOCALES, labels, long_text, returning, select_locale, wording
from .forms import LanguageForm


def local(value, fmt: str = "yyyy-MM-dd HH:mm:ss") -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_datetime(value, fmt)


def show(value) -> str:
    """A detail value: datetimes in local time, anything else as text."""
    return local(value) if isinstance(value, datetime) else ("" if value is None else str(value))


def yuan(fen) -> str:
    return "" if fen is None else f"¥{fen // 100:,}.{fen % 100:02d}"


def masked(value) -> str:
    """Free text from outside (a platform's answer, an error): no whole ID number in it."""
    return mask_in_text(str(value)) if value else ""


def register(app: Flask) -> None:
    app.jinja_env.filters.update(local=local, show=show, yuan=yuan, masked=masked, reason=wording.reason,
                                 duration=wording.duration, joined=wording.joined)
    app.jinja_env.globals["REASON_MAX"] = REASON_MAX  # the reason textareas' maxlength (what the forms accept)

    @app.context_processor
    def helpers():
        return {"L": labels, "W": wording, "label": labels.label, "locales": LOCALES, "locale": select_locale(),
                "language_form": LanguageForm, "language_next": returning.language_next, "T": long_text,
                "can": lambda role: current_user.is_authenticated and current_user.can(role)}
