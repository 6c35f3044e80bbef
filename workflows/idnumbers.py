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


def why_invalid(number: str, *, today: date) -> str | None:
    """What is wrong with a normalized number (None: it is a valid one): shape, check digit, birth date real
    and from 1900 to `today`. The one rule for `validate` and for finding numbers in text (`id_in_text`)."""
    if not _SHAPE.fullmatch(number):
        return "an ID number has 17 digits and a digit or X"
    if number[17] != ric.calc_check_digit(number):
        return "the check digit does not match"
    try:
        born = ric.get_birth_date(number)
    except ValidationError:
        return "the birth date inside the number is not a real date"
    if born > today or born.year < 1900:
        return "the birth date inside the number is impossible"
    return None


def validate(raw: str, *, today: date) -> str:
    """The normalized number, or DomainError(invalid_id_number). The message never echoes the number."""
    number = normalize(raw)
    problem = why_invalid(number, today=today)
    if problem is not None:
        raise DomainError("invalid_id_number", problem)
    return number


def birth_date(number: str) -> date:
    return ric.get_birth_date(number)


def age_on(number: str, day: date) -> int:
    born = birth_date(number)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def mask(number: str) -> str:
    """`320***********123X`: the first three and last four characters."""
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


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
