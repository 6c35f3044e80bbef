"""Unit tests for workflows.idnumbers (DESIGN §3 `invalid_id_number`, §6 masking).

Every expected check digit is cross-checked against an independent MOD 11-2 implementation written here
(GB 11643-1999 weights), so a wrong `with_check_digit` cannot make a wrong test pass."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows import id_in_text, idnumbers
from workflows.errors import DomainError

TODAY = date(2025, 6, 1)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def mod11_2(first17: str) -> str:
    """Independent GB 11643-1999 check digit (ISO 7064 MOD 11-2)."""
    assert len(first17) == 17 and first17.isascii() and first17.isdigit()
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS)) % 11]


def make(yyyymmdd: str, area: str = "320102", seq: str = "123") -> str:
    """A number with a correct check digit for the given birth date (the date may be impossible)."""
    first17 = area + yyyymmdd + seq
    number = idnumbers.with_check_digit(first17)
    assert number == first17 + mod11_2(first17)
    return number


VALID = "320102199003071239"          # 1990-03-07, check digit 9
VALID_X = "11010519491231002X"        # the GB 11643-1999 sample number, check digit X
VALID_X_320 = "32010219890307123X"    # the DESIGN §6 mask sample shape `320***********123X`


def refused(raw, today=TODAY) -> DomainError:
    with pytest.raises(DomainError) as info:
        idnumbers.validate(raw, today=today)
    assert info.value.code == "invalid_id_number"
    assert info.value.status == 422
    return info.value


# --- the fixtures of this file are themselves right ------------------------------------------------

def test_sample_numbers_have_the_independently_computed_check_digit():
    """Given the sample numbers used below, when their check digit is recomputed independently,
    then it matches their 18th character (so the other tests start from truly valid numbers)."""
    for number in (VALID, VALID_X, VALID_X_320):
        assert number[17] == mod11_2(number[:17])


def test_with_check_digit_completes_seventeen_digits():
    """Given 17 digits, when with_check_digit is called, then it appends the MOD 11-2 check character."""
    assert idnumbers.with_check_digit("32010219900307123") == "320102199003071239"
    assert idnumbers.with_check_digit("11010519491231002") == "11010519491231002X"


# --- validate: accepted ----------------------------------------------------------------------------

def test_valid_number_is_returned_normalized():
    """Given a valid number, when validated, then the same 18 characters come back."""
    assert idnumbers.validate(VALID, today=TODAY) == VALID


def test_surrounding_whitespace_is_stripped():
    """Given a valid number with surrounding whitespace, when validated, then the bare number comes back."""
    assert idnumbers.validate(f"  {VALID}\t\n", today=TODAY) == VALID


@pytest.mark.parametrize("raw", ["11010519491231002x", "11010519491231002X", " 11010519491231002x "])
def test_lowercase_x_check_digit_is_accepted_and_upper_cased(raw):
    """Given a number whose check digit is X, written with a lowercase x, when validated,
    then it is accepted and normalized to an upper-case X."""
    assert idnumbers.validate(raw, today=TODAY) == VALID_X
    assert idnumbers.normalize(raw) == VALID_X


def test_birth_date_equal_to_today_is_accepted():
    """Given a number born exactly on `today`, when validated, then it is accepted (not in the future)."""
    number = make("20250601")
    assert idnumbers.validate(number, today=TODAY) == number


def test_first_of_january_1900_is_accepted():
    """Given a number born 1900-01-01 (the earliest allowed year), when validated, then it is accepted."""
    number = make("19000101")
    assert idnumbers.validate(number, today=TODAY) == number


def test_leap_day_in_a_leap_year_is_accepted():
    """Given a number born 2000-02-29 (a real leap day), when validated, then it is accepted."""
    number = make("20000229")
    assert idnumbers.validate(number, today=TODAY) == number


# --- validate: refused -----------------------------------------------------------------------------

def test_bad_check_digit_is_refused():
    """Given a valid number with its check digit changed, when validated, then invalid_id_number."""
    wrong = VALID[:17] + ("0" if VALID[17] != "0" else "1")
    err = refused(wrong)
    assert "check digit" in err.detail


def test_x_where_a_digit_is_due_is_refused():
    """Given a number whose correct check digit is a digit but which ends in X, when validated, then refused."""
    refused(VALID[:17] + "X")


@pytest.mark.parametrize("yyyymmdd", ["19900230", "19990229", "19901301", "19900001", "19900100", "00000101"])
def test_impossible_birth_date_with_correct_check_digit_is_refused(yyyymmdd):
    """Given a number with a correct check digit but an impossible birth date (Feb 30, Feb 29 of a common
    year, month 13, month 0, day 0, year 0), when validated, then invalid_id_number about the date."""
    err = refused(make(yyyymmdd))
    assert "date" in err.detail


def test_future_birth_date_is_refused_relative_to_the_given_today():
    """Given a number born the day after `today`, when validated against that `today`, then refused;
    when validated against a later `today`, then accepted (the check uses the `today` passed in)."""
    tomorrow = TODAY + timedelta(days=1)
    number = make(tomorrow.strftime("%Y%m%d"))
    err = refused(number, today=TODAY)
    assert "date" in err.detail
    assert idnumbers.validate(number, today=tomorrow) == number


def test_birth_year_before_1900_is_refused():
    """Given a number born 1899-12-31 with a correct check digit, when validated, then refused."""
    err = refused(make("18991231"))
    assert "date" in err.detail


@pytest.mark.parametrize("raw", [
    "",
    None,
    VALID[:17],                 # 17 characters
    VALID + "0",                # 19 characters
    "320102900307123",          # a 15-digit first-generation number
])
def test_wrong_length_is_refused(raw):
    """Given an empty, missing, too short or too long number, when validated, then invalid_id_number."""
    refused(raw)


@pytest.mark.parametrize("raw", [
    "32010A199003071239",       # a letter among the first 17
    "3201021990030712A9",       # A is a base-13 digit: must still be refused
    "X20102199003071239",       # X anywhere but last
    "32010219900307123Y",       # a check character that is neither digit nor X
    "320102-19900307-1239",     # inner separators are not removed
    "32010219900307123 9",      # an inner space is not removed
])
def test_letters_and_symbols_inside_are_refused(raw):
    """Given a number with a non-digit among its first 17 characters or a bad 18th character,
    when validated, then invalid_id_number."""
    refused(raw)


# --- the message never echoes the number ----------------------------------------------------------

@pytest.mark.parametrize("raw", [
    VALID[:17] + "0",           # bad check digit
    make("19900230"),           # impossible date
    make("20990101"),           # future date
    make("18991231"),           # before 1900
    VALID[:17],                 # wrong length
    "32010A199003071239",       # a letter inside
])
def test_error_message_never_contains_the_number(raw):
    """Given an invalid number, when validation refuses it, then neither str(exc), exc.detail, exc.title nor
    the extra fields contain the number (or its 17-digit body), and no chained exception carries it."""
    err = refused(raw)
    texts = [str(err), repr(err), err.detail, err.title, repr(err.extra), repr(err.args)]
    for text in texts:
        assert raw not in text
        assert raw[:17] not in text
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


# --- non-ASCII digits (bugs) -------------------------------------------------------------------------

_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_fullwidth_digits_are_normalized_to_ascii():
    """Given a valid number typed in full-width digits (a common IME artefact), when validated,
    then the ASCII number comes back."""
    fullwidth = VALID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert idnumbers.validate(fullwidth, today=TODAY) == VALID


@pytest.mark.parametrize("raw", [
    VALID_X[:17].translate(_ARABIC_INDIC) + "X",     # every digit Arabic-Indic, check digit X
    VALID[:5] + "٢" + VALID[6:],                     # one Arabic-Indic digit inside a valid number
], ids=["all-arabic-indic", "one-arabic-indic"])
def test_non_ascii_digits_are_refused_or_normalized_to_ascii(raw):
    """Given a number whose digits are non-ASCII decimal digits (Arabic-Indic), when validated,
    then it is either refused with invalid_id_number or returned as the canonical ASCII number —
    never returned with non-ASCII characters."""
    try:
        result = idnumbers.validate(raw, today=TODAY)
    except DomainError as err:
        assert err.code == "invalid_id_number"
    else:
        assert result.isascii(), f"validate returned a non-ASCII number {result!r}"


def test_superscript_digit_is_refused_with_invalid_id_number():
    """Given a number with a superscript digit ('²') among its first 17 characters, when validated,
    then DomainError(invalid_id_number) whose message does not contain the number."""
    raw = VALID[:16] + "²" + VALID[17]
    err = refused(raw)
    assert raw not in str(err)


# --- properties ------------------------------------------------------------------------------------

_birthdays = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
_areas = st.from_regex(r"\A[1-8][0-9]{5}\Z", fullmatch=True)
_seqs = st.from_regex(r"\A[0-9]{3}\Z", fullmatch=True)


@settings(max_examples=200, deadline=None, database=None)
@given(born=_birthdays, area=_areas, seq=_seqs)
def test_any_number_completed_by_with_check_digit_validates(born, area, seq):
    """Given any area code, real birth date in [1900, today] and sequence, when completed with
    with_check_digit and validated, then it is accepted, its check digit is the independent MOD 11-2 one,
    and birth_date returns the date inside it."""
    number = idnumbers.with_check_digit(area + born.strftime("%Y%m%d") + seq)
    assert number[17] == mod11_2(number[:17])
    assert idnumbers.validate(number, today=TODAY) == number
    assert idnumbers.birth_date(number) == born


@settings(max_examples=200, deadline=None, database=None)
@given(born=_birthdays, area=_areas, seq=_seqs, position=st.integers(0, 17), delta=st.integers(1, 9))
def test_any_single_character_substitution_is_refused(born, area, seq, position, delta):
    """Given a valid number, when one character is replaced by a different digit (or X/digit swapped),
    then validation refuses it (MOD 11-2 detects every single substitution)."""
    number = idnumbers.with_check_digit(area + born.strftime("%Y%m%d") + seq)
    old = number[position]
    if old == "X":
        new = str(delta)
    else:
        new = str((int(old) + delta) % 10)
    mutated = number[:position] + new + number[position + 1:]
    with pytest.raises(DomainError) as info:
        idnumbers.validate(mutated, today=TODAY)
    assert info.value.code == "invalid_id_number"


# --- birth date and age --------------------------------------------------------------------------------

def test_birth_date_reads_the_eight_digits():
    """Given a valid number, when birth_date is called, then it is the date in characters 7–14."""
    assert idnumbers.birth_date(VALID) == date(1990, 3, 7)
    assert idnumbers.birth_date(VALID_X) == date(1949, 12, 31)


def test_age_on_turns_16_on_the_16th_birthday():
    """Given a person born 2009-06-01, when age_on is asked the day before and on 2025-06-01,
    then 15 and 16 (the guardian-path boundary: under 16 the day before, 16 on the birthday)."""
    number = make("20090601")
    assert idnumbers.age_on(number, date(2025, 5, 31)) == 15
    assert idnumbers.age_on(number, date(2025, 6, 1)) == 16
    assert idnumbers.age_on(number, date(2025, 6, 2)) == 16


def test_age_on_across_a_year_end_birthday():
    """Given a person born 2008-12-31, when age_on is asked on 2024-12-30 and 2024-12-31,
    then 15 and 16 (the month/day comparison, not the year difference alone)."""
    number = make("20081231")
    assert idnumbers.age_on(number, date(2024, 12, 30)) == 15
    assert idnumbers.age_on(number, date(2024, 12, 31)) == 16
    assert idnumbers.age_on(number, date(2025, 1, 1)) == 16


def test_age_on_for_a_leap_day_birthday_in_a_common_year():
    """Given a person born 2008-02-29, when age_on is asked in common year 2025 on Feb 28 and Mar 1,
    then 16 and 17 (the birthday counts as passed from March 1)."""
    number = make("20080229")
    assert idnumbers.age_on(number, date(2025, 2, 28)) == 16
    assert idnumbers.age_on(number, date(2025, 3, 1)) == 17


def test_age_on_the_birth_day_is_zero():
    """Given a person born on `today`, when age_on is asked on `today`, then 0."""
    assert idnumbers.age_on(make("20250601"), TODAY) == 0


# --- masking -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("number, masked", [
    (VALID, "320***********1239"),
    (VALID_X_320, "320***********123X"),
    (VALID_X, "110***********002X"),
])
def test_mask_keeps_first_three_and_last_four(number, masked):
    """Given a valid number, when masked, then the first 3 and last 4 characters stay and the 11 between
    are stars (DESIGN §6 `320***********123X`); the birth date never shows."""
    result = idnumbers.mask(number)
    assert result == masked
    assert len(result) == 18
    assert number[6:14] not in result


@pytest.mark.parametrize("name, masked", [
    ("张", "张*"),
    ("张三", "张*"),
    ("欧阳娜", "欧**"),
    ("司马相如", "司***"),
])
def test_mask_name_keeps_only_the_first_character(name, masked):
    """Given a name of 1–4 characters, when masked, then only its first character shows, followed by
    at least one star (a two-character name `张三` → `张*`, DESIGN §6)."""
    result = idnumbers.mask_name(name)
    assert result == masked
    assert name[1:] == "" or name[1:] not in result


def test_today_is_the_date_in_china():
    """Given 2026-11-24T23:30 UTC (07:30 on the 25th in Beijing), when a child born on the 25th is
    registered, then the number is valid: its birth date is not in the future there."""
    from datetime import datetime, timezone

    now = datetime(2026, 11, 24, 23, 30, tzinfo=timezone.utc)
    assert idnumbers.today_in_china(now) == date(2026, 11, 25)
    born_today = idnumbers.with_check_digit("32010220261125001")
    assert idnumbers.validate(born_today, today=idnumbers.today_in_china(now)) == born_today


@pytest.mark.parametrize("typed", ["阿依古丽·买买提", "阿依古丽•买买提", "阿依古丽・买买提", "阿依古丽･买买提",
                                   "阿依古丽.买买提", "阿依古丽．买买提", " 阿依古丽 · 买买提 ", "阿依古丽‧买买提"])
def test_a_name_typed_with_any_separator_is_the_registrys(typed):
    """Given the registry's 阿依古丽·买买提 (a Uyghur name; its separator is typed many ways), When a platform
    sends it with another separator, full-width, or spaces around, Then it is the same name."""
    assert idnumbers.same_name(typed, "阿依古丽·买买提")


@pytest.mark.parametrize("typed, held", [("阿依古丽买买提", "阿依古丽·买买提"), ("张三", "张四"), ("", "张三"),
                                         ("张三丰", "张三"), ("阿依古丽·买买提", "阿依古丽·买买")])
def test_another_name_is_not_the_registrys(typed, held):
    """A missing separator, another character, or another length is another name."""
    assert not idnumbers.same_name(typed, held)


# --- finding a number in text (`holds_id_number`, `mask_in_text`) -----------------------------------------

_WIDE = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
_glue = st.text(alphabet="0123456789abcXYZ:#", max_size=6)
_separators = st.sampled_from(["", " ", "  ", "-", ".", "/", "_", " - ", "\u3000", "\u00a0", "·"])


@settings(max_examples=300, deadline=None, database=None)
@given(born=_birthdays, area=_areas, seq=_seqs, before=_glue, after=_glue, sep=_separators,
       wide=st.booleans())
def test_a_real_number_is_found_and_masked_however_it_is_typed_or_glued(born, area, seq, before, after, sep,
                                                                         wide):
    """Given a valid number, typed in ASCII or full-width digits, grouped 6-8-4 by any separator, and glued
    to anything (letters, digits, punctuation) on either side,
    When text holding it is checked and masked,
    Then it is found, and no 15 of its digits in a row are left in the masked text."""
    number = idnumbers.with_check_digit(area + born.strftime("%Y%m%d") + seq)
    typed = sep.join((number[:6], number[6:14], number[14:]))
    text = f"reason {before}{typed.translate(_WIDE) if wide else typed}{after} end"
    assert id_in_text.holds_id_number(text)
    shown = id_in_text.compact(id_in_text.mask_in_text(text))
    assert not any(number[i:i + 15] in shown for i in range(4)), shown


@pytest.mark.parametrize("text", [
    "JS-2026-000123", "2026112532010200001234", "H32010200001", "320102198001011234567890 1",
    "金额 100.00 元, 2026-11-25 08:39:25", "13812345678", "1234567890123456", "32010219850202234",
    "sim-ba190744788743448c09d47b", "ref-ab123456789012345678cd", "JS_20261125_0000012345", "PO.20261125.0000123",
    "RX_202611_250000123", "金额 100.00 200.00 300.00", "JS-2026-1125-000012345"])
def test_a_reference_or_a_serial_without_a_real_number_inside_is_not_one(text):
    """Given a reference, a long serial (no 18 characters in it with a matching check digit and a real birth
    date), an amount and time, a mobile number, 16 and 17 digits (neither shape), hexadecimal references
    whose 15 and 18 digits in a row are glued to letters (only a real number inside counts there), references
    whose digit groups are joined by underscores or dots (grouping by shape is by spaces and hyphens only),
    and amounts in a row,
    Then none holds an ID number, and masking leaves each as it was."""
    assert not id_in_text.holds_id_number(text)
    assert id_in_text.mask_in_text(text) == text


def test_a_long_number_is_any_run_of_15_digits_or_more():
    """`holds_long_number`: what may be a number, or a mistyped one, and so stays out of URLs."""
    assert id_in_text.holds_long_number("32010219850202234") and id_in_text.holds_long_number("１２３４５６７８９０１２３４５")
    assert not id_in_text.holds_long_number("JS-2026-000123") and not id_in_text.holds_long_number("13812345678")


@pytest.mark.parametrize("text, shown", [
    ("320102800614297 13812345678", "320********4297 13812345678"),  # first generation, a mobile after it
    ("旧证 320102800614297 2 人", "旧证 320********4297 2 人"),
    ("320102198006142975 1", "320***********2975 1"),  # a wrong check digit: still a number's shape
    ("320102198006142975_1", "320***********2975_1"),
    ("３２０１０２－１９８５０２０２－２３４９", "320***********2349"),  # full-width digits and hyphens
    ("320102,19850202,2349", "320***********2349"),  # commas: found by being real
    ("320102    19850202    2349", "320***********2349"),  # four spaces: by being real
    ("身份证３２０１０２１９８５０２０２２３４９，电话", "身份证320***********2349，电话"),  # the comma kept
])
def test_numbers_beside_other_digits_or_typed_full_width_are_masked_and_the_rest_kept(text, shown):
    """Given an ID number beside other digits, mistyped, or typed with full-width digits and separators,
    When the text is masked, Then the number is masked, what is around it is kept as it was."""
    assert id_in_text.holds_id_number(text)
    assert id_in_text.mask_in_text(text) == shown
