"""`workflows/characters.py`: which characters a text from outside may hold, and where in a webhook's data
the first refused one is. No I/O."""
from __future__ import annotations

import pytest

from workflows import characters


@pytest.mark.parametrize("text, in_a_line, in_lines", [
    ("张三", False, False), ("阿依古丽·买买提", False, False), ("O'Brien-Smith", False, False),
    ("a\nb", True, False), ("a\tb\r\n", True, False),  # lines: a reason only
    ("\x00", True, True), ("a\x07b", True, True), ("\x1b[31m", True, True), ("\x7f", True, True),
    ("\x85", True, True), ("\u202e张三", True, True), ("\u2067x", True, True), ("\u200f", True, True),
    ("\u061c", True, True), ("\ufffe", True, True), ("\u200d", False, False),  # a joiner: emoji, some scripts
])
def test_what_a_text_may_hold(text, in_a_line, in_lines):
    """Given a text, Then a line refuses every control and direction-formatting character, a reason lines too."""
    assert characters.refused(text) is in_a_line
    assert characters.refused(text, lines=True) is in_lines


def test_a_providers_reason_loses_only_the_refused_characters():
    assert characters.without("活体\x00通过\u202e\n第二行") == "活体通过\n第二行"


def test_a_key_is_named_only_when_it_is_a_fields_name_or_an_index():
    """Given keys from outside, Then a field's name or an index is named, anything else (an ID number, a
    Chinese word, a long or odd one) is `…`."""
    assert [characters.as_named(k) for k in ("actor", "id_number", 3, "320102198001011238", "姓名", "a" * 41,
                                             "a b")] == ["actor", "id_number", "3", "…", "…", "…", "…"]


def test_the_first_refused_text_in_a_webhooks_data():
    """Given data with objects, arrays and reasons, Then the first refused text in document order is named by
    its path, a reason's line break is not refused, a key that is not a name is `…`, and data nested far
    deeper than Python's recursion limit is walked."""
    assert characters.first_refused({"reason": "a\nb", "actor": {"kind": "person", "id": "psn_1"}}) is None
    assert characters.first_refused({"a": "ok", "actor": {"id": "p\x00"}, "z": "\x00"}) == "actor.id"
    assert characters.first_refused({"list": ["ok", "b\u202e"]}) == "list.1"
    assert characters.first_refused({"320102198001011238": "\x00"}) == "…"
    assert characters.first_refused({"actor": {"reason": "x\ny"}, "name": "x\ny"}) == "name"
    deep: object = "\x00"
    for _ in range(5000):
        deep = [deep]
    assert characters.first_refused({"deep": deep}) == "deep" + ".0" * 5000
    assert characters.first_refused(None) is None and characters.first_refused(12) is None
