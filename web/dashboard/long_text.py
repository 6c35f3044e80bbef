"""Long free text on the binding page: a reason a platform sent (up to 1,000 characters, perhaps without a
space), an exception text in a stuck detail.

Why: such text must neither run across the page (it wraps: `.long-text`, `overflow-wrap:anywhere` in
dashboard.css) nor be cut without a sign. A stuck detail is stored cut to `stuck.DETAIL_CHARS`; shown,
it ends with "…" where it was cut (at a word's end when one is near), and the whole text Gongji holds (a
delivery's last answer, a provider's error, up to 2,000 characters) is in its title and under a fold. A
long history reason shows its beginning, the rest under a fold."""
from __future__ import annotations

import re

from markupsafe import Markup, escape

from workflows import stuck
from workflows.id_in_text import mask_in_text

FOLD_AT = 240  # characters of a long reason shown before its fold
_BREAK = re.compile(r"[\s,;:.，；：。、)）\]]")


def clip(text, limit: int = FOLD_AT) -> str:
    """`text` cut to at most `limit` characters and "…", at the last break in its final fifth if there is one."""
    text = str(text or "")
    if len(text) <= limit:
        return text
    head = text[:limit]
    breaks = [m.end() for m in _BREAK.finditer(head, limit - limit // 5)]
    return (head[:breaks[-1]] if breaks else head).rstrip() + "…"


def folded(text) -> Markup:
    """A reason as it is when short; when long, its beginning (clipped) with the whole text under a fold."""
    text = str(text or "")
    if len(text) <= FOLD_AT:
        return Markup('<span class="long-text">{}</span>').format(text)
    return Markup('<details class="long-text"><summary>{}</summary><div>{}</div></details>').format(
        clip(text), text)


def fuller(case: dict, item: dict) -> str | None:
    """The whole error text the case file holds for a stuck item (its detail is cut to DETAIL_CHARS): the
    provider's error of its verification attempt, the last answer of its delivery; None for a worker's
    error (the case file does not carry the outbox's text)."""
    parts = item.get("parts") or {}
    if item["reason"] == "verification_request_failed":
        return next((v.get("provider_error") for v in case.get("verifications", [])
                     if v.get("attempt_no") == parts.get("attempt_no")), None)
    if item["reason"] in ("delivery_dead", "delivery_failing"):
        return next((d.get("last_error") for d in case.get("deliveries", [])
                     if d.get("platform_id") == item.get("platform_id")
                     and d.get("binding_version") == parts.get("version")), None)
    return None


def detail(shown, full=None) -> Markup:
    """A stuck detail's text: as it is when whole; cut (stored at DETAIL_CHARS, or shorter than the fuller
    text), clipped with "…", the whole text known in its title and, when longer, under a fold."""
    shown, full = mask_in_text(str(shown or "")), mask_in_text(str(full or ""))
    longer = full if len(full) > len(shown) and full.startswith(shown[:40]) else ""
    if not longer and len(shown) < stuck.DETAIL_CHARS:
        return escape(shown)
    whole = longer or shown
    short = clip(shown, stuck.DETAIL_CHARS - 1)
    if not short.endswith("…"):
        short += "…"
    if not longer:
        return Markup('<span class="detail-text cut" title="{}">{}</span>').format(whole, short)
    return Markup('<details class="long-text detail-text cut"><summary title="{}">{}</summary><div>{}</div>'
                  '</details>').format(whole, short, whole)
