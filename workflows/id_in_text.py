"""Finding resident ID numbers in text: to mask them in free text (a reason, a platform's error answer, a
webhook body shown to an operator) and to refuse them in fields that travel to every platform concerned (a
settlement's reference and institution code).

Why two ways of looking: people write a number grouped (`320102 19800614 2974`, `320-102-…`), full-width
(`３２０１０２…`), dotted or slashed, glued to other text; and the same fields carry references and serial
numbers made of digits (`JS_20261125_0000012345`, `PO.20261125.0000123`, a hexadecimal id) that must not be
taken for one. So:
1. By shape: digits grouped only by spaces or hyphens (up to 3 between two groups: how a number is grouped),
   whose consecutive groups add up to 18 characters (the last may be X) or the first generation's 15 digits,
   not glued to a Latin letter or digit at either end. Only those groups are masked, so a mobile number
   written after an ID number is left to its own masking, and a mistyped number is still masked.
2. By being real: digits joined by any separator people copy numbers with (spaces, hyphens, dots, slashes,
   underscores, commas; up to 8), where 18 consecutive characters have a matching check digit and a real
   birth date (1900 until today in China): whatever surrounds them, glued or not.
Full-width digits and separators are read as their ASCII forms; masked text keeps them as they were."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone

from .idnumbers import mask, today_in_china, why_invalid

_WIDE = str.maketrans("０１２３４５６７８９Ｘｘ－．／＿，\u3000", "0123456789Xx-./_, ")
GROUPING = r"[ \t\u00a0\-\u2010-\u2015\u2212]"  # how a number is grouped: spaces and hyphens
SEPARATOR = r"[\s\-\u2010-\u2015\u2212._/,\u00b7\u30fb\u3001]"  # what a number may be copied with
_GROUPED = re.compile(rf"[0-9]+(?:{GROUPING}{{1,3}}[0-9]+)*(?:{GROUPING}{{0,3}}[Xx])?")
_LOOSE = re.compile(rf"[0-9](?:{SEPARATOR}{{0,8}}[0-9])*(?:{SEPARATOR}{{0,8}}[Xx])?")
_GROUP = re.compile(r"[0-9]+(?:[ \t\u00a0\-\u2010-\u2015\u2212]{0,3}[Xx])?")
_SEPARATORS = re.compile(SEPARATOR)
_GLUE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def compact(typed: str) -> str:
    """Typed digits as one run: full-width made ASCII, separators dropped (`３２０ １０２-…` → `320102…`)."""
    return _SEPARATORS.sub("", (typed or "").translate(_WIDE))


def _is_real(candidate: str, today: date) -> bool:
    return why_invalid(candidate.upper(), today=today) is None


def _by_shape(text: str):
    for m in _GROUPED.finditer(text):
        groups = [(m.start() + g.start(), m.start() + g.end(), re.sub(r"[^0-9Xx]", "", g.group(0)))
                  for g in _GROUP.finditer(m.group(0))]
        i = 0
        while i < len(groups):
            total, hit = 0, None
            for j in range(i, len(groups)):
                total += len(groups[j][2])
                if total > 18:
                    break
                number = "".join(g[2] for g in groups[i:j + 1])
                start, end = groups[i][0], groups[j][1]
                glued = (start and text[start - 1] in _GLUE) or (end < len(text) and text[end] in _GLUE)
                if not glued and ((total == 18 and number[:17].isdigit()) or (total == 15 and number.isdigit())):
                    hit = (start, end, number, j)
            if hit:
                yield hit[:3]
                i = hit[3] + 1
            else:
                i += 1


def _by_being_real(text: str):
    today = today_in_china(datetime.now(timezone.utc))
    for m in _LOOSE.finditer(text):
        at = [m.start() + i for i, ch in enumerate(m.group(0)) if ch.isalnum()]  # its characters in `text`
        run = "".join(text[i] for i in at)
        i = 0
        while i <= len(run) - 18:
            if _is_real(run[i:i + 18], today):
                yield at[i], at[i + 17] + 1, run[i:i + 18]
                i += 18
            else:
                i += 1


def _found(text: str) -> list[tuple[int, int, str]]:
    """(start, end, number) of every ID number in `text` (already ASCII), not overlapping, in order."""
    spans, out, end = sorted(list(_by_shape(text)) + list(_by_being_real(text)), key=lambda s: (s[0], -s[1])), [], -1
    for span in spans:
        if span[0] >= end:
            out.append(span)
            end = span[1]
    return out


def holds_id_number(text: str) -> bool:
    """Whether text holds an ID number, by shape or by being real (what `mask_in_text` masks)."""
    return bool(_found((text or "").translate(_WIDE)))


def holds_long_number(text: str) -> bool:
    """Whether text holds 15 or more digits joined by any separator: an ID number, a mistyped one, a long
    serial. What may be a person's number stays out of URLs even when it is not a valid one."""
    return any(len(compact(m.group(0))) >= 15 for m in _LOOSE.finditer((text or "").translate(_WIDE)))


def mask_in_text(text: str) -> str:
    """Free text with every ID number in it masked, grouped or not, full-width or not: `320***********2974`,
    its separators dropped; the rest exactly as it was (found in an ASCII reading of the same length)."""
    if not text:
        return text
    out, at = [], 0
    for start, end, number in _found(text.translate(_WIDE)):
        out += [text[at:start], mask(number)]
        at = end
    return "".join(out) + text[at:]
