"""Template helpers: dates in Asia/Shanghai (Flask-Babel's configured zone), labels, money in yuan."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import Flask, g
from flask_babel import format_datetime
from flask_login import current_user

from models import Region
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


def region_names() -> dict[str, str]:
    """Every pooling region's name by code, read once a request, on first use (a few hundred rows at
    national scale): the list's filter and its rows, the binding page."""
    names = g.get("_region_names")
    if names is None:
        from .auth import db  # the app's database, bound at request time
        with db()() as s:
            names = g._region_names = dict(s.execute(sa.select(Region.code, Region.name).order_by(Region.code)).all())
    return names


def region(code) -> str:
    """A pooling region as operators know it, `320100 南京市` (the code alone if unknown)."""
    if not code:
        return ""
    names = region_names()
    return f"{code} {names[code]}" if code in names else str(code)


def register(app: Flask) -> None:
    app.jinja_env.filters.update(local=local, show=show, yuan=yuan, masked=masked, region=region,
                                 reason=wording.reason, duration=wording.duration, joined=wording.joined)
    app.jinja_env.globals["REASON_MAX"] = REASON_MAX  # the reason textareas' maxlength (what the forms accept)

    @app.context_processor
    def helpers():
        locale = select_locale()
        return {"L": labels, "W": wording, "label": labels.label, "locales": LOCALES, "locale": locale,
                "COLON": "：" if locale == "zh_CN" else ": ",  # after a label: full-width in Chinese text
                "language_form": LanguageForm, "language_next": returning.language_next, "T": long_text,
                "can": lambda role: current_user.is_authenticated and current_user.can(role)}
