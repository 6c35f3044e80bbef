"""Resident ID numbers (GB 11643-1999): normalization, validation, birth date, age and masking; and how a
typed name is matched with the registry's (`same_name`).

`python-stdnum` gives the MOD 11-2 check digit and the date parse; we add the rules it lacks (a birth date
in the future or before 1900 is refused) and deliberately skip its birthplace-code check: a county code
retired after issuance would refuse a real citizen, and the insurance registry is the authority there."""
from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from zoneinfo import ZoneInfo

from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from .errors import DomainError

CHINA = ZoneInfo("Asia/Shanghai")  # the calendar of the birth dates in ID numbers (and of "today" for them)


def today_in_china(now: datetime) -> date:
    """The date in China at the aware instant `now`: a child born today (Beijing time) is valid from
    midnight there, not from 08:00 when the UTC date turns."""
    return now.astimezone(CHINA).date()


_SHAPE = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)  # ASCII only: str.isdigit() admits any Unicode digit


def normalize(raw: str) -> str:
    """Strip surrounding whitespace and upper-case a trailing x (an already clean number is returned as it
    is: stdnum's clean-up costs ~10 µs, and every API actor given by ID number passes here)."""
    if raw and _SHAPE.fullmatch(raw):
        return raw
    return ric.compact(raw or "")


def validate(raw: str, *, today: date) -> str:
    """The normalized number, or DomainError(invalid_id_number). The message never echoes the number."""
    number = normalize(raw)
    if not _SHAPE.fullmatch(number):
        raise DomainError("invalid_id_number", "an ID number has 17 digits and a digit or X")
    if number[17] != ric.calc_check_digit(number):
        raise DomainError("invalid_id_number", "the check digit does not match")
    try:
        born = ric.get_birth_date(number)
    except ValidationError:
        raise DomainError("invalid_id_number", "the birth date inside the number is not a real date") from None
    if born > today or born.year < 1900:
        raise DomainError("invalid_id_number", "the birth date inside the number is impossible")
    return number


def birth_date(number: str) -> date:
    return ric.get_birth_date(number)


def age_on(number: str, day: date) -> int:
    born = birth_date(number)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def mask(number: str) -> str:
    """`320***********123X`: the first three and last four characters."""
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


# Digits as people type and copy them: ASCII or full-width, in one run or grouped by up to three separators
# (spaces of any kind, hyphens and dashes, dots, slashes, underscores, middle dots): `320102 19800614 2974`,
# `320.102.19800614297X`, `３２０１０２…`. A run is what lies between anything else (a letter, a colon, a
# CJK character), so a number glued to a letter or inside a longer string of digits is still found.
SEPARATOR = r"[\s\-\u2010-\u2015\u2212._/\u00b7\u30fb]"
_WIDE = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789Xx")
_RUN = re.compile(rf"[0-9](?:{SEPARATOR}{{0,3}}[0-9])*(?:{SEPARATOR}{{0,3}}[Xx])?")
_SEPARATORS = re.compile(SEPARATOR)
_LATIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def compact(typed: str) -> str:
    """Typed digits as one run: full-width made ASCII, separators dropped (`３２０ １０２-…` → `320102…`)."""
    return _SEPARATORS.sub("", (typed or "").translate(_WIDE))


def _found(text: str):
    """(start, end, number) of every ID number in `text` (full-width already made ASCII): a run that is one's
    shape standing on its own (18 characters, the last may be X; or the first generation's 15 digits), the
    whole run; and, in a run glued to a Latin letter (`ab190744788743448c`, a hexadecimal reference) or
    longer than 18, each real number inside (18 characters whose check digit matches and whose birth date is
    real, from 1900 on), only its own characters: so references and serial numbers are not taken for one by
    their shape, and a mobile number written after an ID number is left to its own masking."""
    for m in _RUN.finditer(text):
        start, end = m.span()
        glued = (start and text[start - 1] in _LATIN) or (end < len(text) and text[end] in _LATIN)
        at = [start + i for i, ch in enumerate(m.group(0)) if ch.isalnum()]  # the run's characters in `text`
        run = "".join(text[i] for i in at)
        n = len(run)
        if not glued and (n == 18 or (n == 15 and run[-1] not in "Xx")):
            yield start, end, run
            continue
        i = 0
        while i <= n - 18:
            if _is_real(run[i:i + 18]):
                yield at[i], at[i + 17] + 1, run[i:i + 18]
                i += 18
            else:
                i += 1


def _is_real(candidate: str) -> bool:
    if not candidate[:17].isdigit() or candidate[17].upper() != ric.calc_check_digit(candidate):
        return False
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return False
    return 1900 <= born.year <= date.today().year


def holds_id_number(text: str) -> bool:
    """Whether text holds anything shaped like an ID number (what `mask_in_text` masks)."""
    return next(_found((text or "").translate(_WIDE)), None) is not None


def holds_long_number(text: str) -> bool:
    """Whether text holds a run of 15 or more digits: an ID number, a mistyped one, or a long serial. What
    may be a person's number stays out of URLs even when it is not a valid one."""
    return any(len(compact(m.group(0))) >= 15 for m in _RUN.finditer((text or "").translate(_WIDE)))


def mask_in_text(text: str) -> str:
    """Free text (an operator's reason, a platform's error answer) with every ID number in it masked (see
    `_found`), grouped or not, full-width or not: `320***********2974`, its separators dropped. Full-width
    digits come back as ASCII digits."""
    if not text:
        return text
    wide = text.translate(_WIDE)
    out, at = [], 0
    for start, end, number in _found(wide):
        out += [wide[at:start], mask(number)]
        at = end
    return "".join(out) + wide[at:]


# The separator of a name's parts (Uyghur, Kazakh and other names written in Chinese characters: 阿依古丽·买买提)
# is typed as any of these; the registry holds one of them, a platform's form may send another.
_NAME_DOTS = str.maketrans({c: "·" for c in "\u2022\u2027\u30fb\u22c5\u2219\u0387\u16eb\u2e31\uff0e."})


def same_name(given: str, held: str) -> bool:
    """Whether a typed name is the registry's: compared after Unicode NFKC (full-width letters), with the
    separator's variants as `·` and without spaces; otherwise character for character."""
    def key(name: str) -> str:
        return "".join(unicodedata.normalize("NFKC", name or "").translate(_NAME_DOTS).split())
    return key(given) == key(held)


def mask_name(name: str) -> str:
    """`张*`, `张**`: the first character only."""
    return name[:1] + "*" * max(len(name) - 1, 1)


def with_check_digit(first17: str) -> str:
    """Complete 17 digits with their check digit (used by seeds, the simulator and tests)."""
    return first17 + ric.calc_check_digit(first17 + "0")
