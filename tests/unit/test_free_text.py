"""Free text from outside as it is stored and shown (`workflows.free_text`): ID numbers, mobile numbers and
the binding's persons' names masked, the rest kept."""
from __future__ import annotations

import pytest

from workflows import free_text


@pytest.mark.parametrize("given, shown", [
    ("身份证 32010219520505114X 要求解除", "身份证 320***********114X 要求解除"),
    ("id 32010219520505114x.", "id 320***********114x."),
    ("电话13812345678，或 +86 19912345678", "电话138****5678，或 +86 199****5678"),
    ("+8613812345678 / 138 1234 5678 / 138-1234-5678", "+86138****5678 / 138****5678 / 138****5678"),
    ("１３８１２３４５６７８", "138****5678"),  # full-width digits
    ("order 1381234567890 and 12345678901", "order 1381234567890 and 12345678901"),  # not a mobile number
    ("  plain words  ", "plain words"),
    # ID numbers grouped as people copy them, and the first generation's 15 digits
    ("身份证 320102 19800614 2974 请解绑", "身份证 320***********2974 请解绑"),
    ("320-102-19800614297X", "320***********297X"),
    ("320 102 198 006 142 974", "320***********2974"),
    ("旧证 320102800614297。", "旧证 320********4297。"),
    ("1234567890123456", "1234567890123456"),  # 16 digits: neither shape
    # glued to a letter or a digit, grouped by dots or several spaces, full-width: found all the same
    ("a:320102198502022349A b:320102.19850202.2349 c:320102  19850202  2349",
     "a:320***********2349A b:320***********2349 c:320***********2349"),
    ("x9320102198502022349", "x9320***********2349"),  # a longer run holding a real number: that number
    ("320102198502022349 13812345678", "320***********2349 138****5678"),  # each its own
    ("３２０１０２１９８５０２０２２３４９", "320***********2349"),
    ("serial 2026112532010200001234", "serial 2026112532010200001234"),  # no real number inside: kept
    ("电话138.1234.5678 或 138  1234  5678", "电话138****5678 或 138****5678"),
    ("", None), (None, None), ("   ", None),
])
def test_id_and_mobile_numbers_are_masked_and_the_rest_kept(given, shown):
    """Given a reason someone wrote, when it is cleaned, then ID- and mobile-number-shaped runs are masked
    (never a longer run of digits), the text is trimmed, and nothing at all becomes None."""
    assert free_text.clean(given) == shown


def test_the_persons_names_are_masked_longest_first():
    """Given a reason naming the grantor 欧阳修 and the beneficiary 欧阳修远, when it is cleaned with their
    names, then each is masked (the longer one first, so it is not half-masked by the shorter), and a
    one-character "name" is left alone (it would mask every such character)."""
    text = "欧阳修远和欧阳修都同意；王"
    assert free_text.clean(text, ("欧阳修", "欧阳修远", "王")) == "欧***和欧**都同意；王"


def test_the_text_is_cut_to_its_limit():
    assert free_text.clean("a" * 5000) == "a" * free_text.MAX_CHARS
    assert free_text.clean("错误" * 10, limit=3) == "错误错"


@pytest.mark.parametrize("start", [980, 990, 999])
def test_a_huge_text_is_masked_up_to_its_cut_and_no_further(start, monkeypatch):
    """Given a 1 MB text with an ID number (with separators) that begins just before the cut at 1,000
    When it is cleaned, Then what is kept is masked (no digit run of the number survives the cut) and the
    masking read a bounded prefix: the text after the number is never searched (a mobile number there
    would be masked in vain)."""
    number = "320102 19800101 123X"
    text = "说" * start + number + "话" * 1_000_000
    searched = []
    real = free_text.mask_in_text
    monkeypatch.setattr(free_text, "mask_in_text", lambda t: searched.append(len(t)) or real(t))
    out = free_text.clean(text)
    assert searched == [free_text.MAX_CHARS + 64]  # not the megabyte (1.3-1.9 s of a worker's CPU)
    assert free_text.MAX_CHARS - 64 <= len(out) <= free_text.MAX_CHARS
    assert "19800101" not in out and "320102" not in out


def test_no_part_of_a_number_the_cut_split_is_kept_when_masking_shortened_the_text():
    """Given 20 mobile numbers written with separators (masking shortens each), then an ID number that
    begins 17 characters before the masking's cut (so the cut splits it and it is not recognised)
    When the text is cleaned, Then no run of the ID number's digits survives (before: the masks pulled its
    first 17 digits inside the limit, and the 18th is a check digit)."""
    mobiles = "+86 - 138 - 1234 - 5678 " * 20
    pad = "说" * (free_text.MAX_CHARS + 64 - 17 - len(mobiles))
    text = mobiles + pad + "11010519491231002X" + "话" * 500
    out = free_text.clean(text)
    assert "1101051949" not in out and "19491231" not in out and len(out) <= free_text.MAX_CHARS
