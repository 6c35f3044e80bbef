"""Free text from outside, as it is stored, delivered and shown: a reason a platform, a person or an operator
gives, a verifier's reason, a provider's or a receiver's error answer.

Why: such text lands in the history, in the events every concerned platform receives, on the dashboard
every viewer reads and in the API. People write what they know into it ("王大明 要求解除，身份证 …"), and
ID numbers and names are shown masked everywhere (DESIGN §6). What is masked:
- anything shaped like an ID number (`320***********123X`);
- anything shaped like a mainland mobile number, with or without +86 and separators (`138****5678`);
- the binding's own persons' names (`王**`), when the text has a Chinese character in it: a name cannot
  be recognised in general, but those two are the names the text is about. Reading them costs one query
  and two decryptions, only for such a text.
The text is trimmed and cut to `limit` characters."""
from __future__ import annotations

import re

import sqlalchemy as sa

from models import Binding, Person

from .id_in_text import SEPARATOR, mask_in_text
from .idnumbers import mask_name

MAX_CHARS = 1000
REASON_CHARS = 500  # a reason a platform sends for a person or a verifier, by the API or a webhook (longer: 422)
# masking reads at most this much past the limit: an ID or mobile number that begins before the cut ends
# inside it, and a megabyte of text costs what a page does (the regexes' time grows with the text); the
# margin itself is never kept (`clean`)
_MARGIN = 64
# 13812345678, +86 138 1234 5678, 86-138-1234-5678, 138.1234.5678 (full-width digits are made ASCII first;
# the groups' separators are an ID number's, `id_in_text.SEPARATOR`)
_MOBILE = re.compile(rf"(?<![0-9])((?:\+?86{SEPARATOR}{{0,3}})?)(1[3-9][0-9]){SEPARATOR}{{0,3}}([0-9]{{4}})"
                     rf"{SEPARATOR}{{0,3}}([0-9]{{4}})(?![0-9])")
_WIDE = str.maketrans("０１２３４５６７８９＋", "0123456789+")
_HAN = re.compile(r"[\u3400-\u9fff]")
_NAMES = sa.select(Person.name).where(Person.id.in_(sa.bindparam("ids", expanding=True)))
_B = Binding.__table__
_NAMES_OF_BINDING = sa.select(Person.name).where(sa.or_(
    Person.id == sa.select(_B.c.grantor_id).where(_B.c.id == sa.bindparam("b")).scalar_subquery(),
    Person.id == sa.select(_B.c.beneficiary_id).where(_B.c.id == sa.bindparam("b")).scalar_subquery()))


def clean(text: str | None, names: tuple[str, ...] = (), *, limit: int = MAX_CHARS) -> str | None:
    """`text` with ID numbers, mobile numbers and `names` masked, trimmed and cut; None when empty."""
    out = (text or "").replace("\x00", "").translate(_WIDE).strip()  # NUL: no database text holds it
    cut = len(out) > limit + _MARGIN
    out = _MOBILE.sub(lambda m: f"{m.group(1)}{m.group(2)}****{m.group(4)}", mask_in_text(out[:limit + _MARGIN]))
    for name in sorted({n for n in names if n and len(n) >= 2}, key=len, reverse=True):
        out = out.replace(name, mask_name(name))
    if cut:  # a number the cut split is not recognised: its part is in the last _MARGIN characters, which
        out = out[:len(out) - _MARGIN]  # masking may have pulled inside the limit (a mask can be shorter)
    return out[:limit] or None


def clean_about(conn, text: str | None, person_ids: tuple[str, ...], *, limit: int = MAX_CHARS) -> str | None:
    """`clean`, also masking the names of `person_ids` (a binding's grantor and beneficiary) when the text
    could hold one; `conn` is a Connection or Session."""
    names: tuple[str, ...] = ()
    if text and _HAN.search(text):
        names = tuple(conn.execute(_NAMES, {"ids": list(person_ids)}).scalars())
    return clean(text, names, limit=limit)


def clean_about_binding(conn, text: str | None, binding_id: str | None, *, limit: int = MAX_CHARS) -> str | None:
    """`clean_about` the persons of a stored binding (by id; None: no names to mask)."""
    names: tuple[str, ...] = ()
    if text and binding_id and _HAN.search(text):
        names = tuple(conn.execute(_NAMES_OF_BINDING, {"b": binding_id}).scalars())
    return clean(text, names, limit=limit)
