"""The dashboard's long-text and actor wording without a database or a request (English, the untranslated
source): where a clip cuts, when a stuck detail counts as cut, and how a history actor is named."""
from __future__ import annotations

from markupsafe import escape

from web.dashboard import long_text, wording
from workflows import stuck

BINDING = {"grantor": {"id": "psn_g", "name_masked": "王*"}, "beneficiary": {"id": "psn_b", "name_masked": None}}


def test_a_clip_ends_at_a_word_with_an_ellipsis_and_short_text_stays_whole():
    """Given words longer than the limit, a run without breaks and a short text, When clipped to 50,
    Then the words end at a whole word with "…", the run is cut at the limit with "…", the short text is as is."""
    words = " ".join(f"word{i}" for i in range(30))
    assert long_text.clip(words, 50) == "word0 word1 word2 word3 word4 word5 word6 word7…"
    assert long_text.clip("x" * 80, 50) == "x" * 50 + "…"
    assert long_text.clip("short", 50) == "short"


def test_a_stuck_detail_is_cut_only_when_stored_cut_or_shorter_than_the_whole_text():
    """Given a short detail, a detail stored at DETAIL_CHARS, and one with a fuller text known
    When shown
    Then the short one is as is; the stored-cut one ends with "…" and keeps itself in its title; the other
    folds the fuller text, which an ID number in it is masked in."""
    assert long_text.detail("HTTP 503") == escape("HTTP 503")
    stored = ("error " * 50)[:stuck.DETAIL_CHARS]
    shown = str(long_text.detail(stored))
    assert shown.startswith('<span class="detail-text cut" title="error error') and shown.endswith("error…</span>")
    fuller = stored + " and 320102198001011237 and more"
    folded = str(long_text.detail(stored, fuller))
    assert "<details" in folded and "320***********1237 and more</div>" in folded and "320102198001011237" not in folded


def test_a_history_actor_is_named_by_side_when_it_is_one_of_the_two_persons():
    """Given a binding's grantor (with a masked name) and beneficiary (without), When each, an operator, and
    another person act, Then the sides are named (with the masked name when there is one) and others by kind and id."""
    assert wording.actor({"kind": "person", "id": "psn_g"}, BINDING) == "grantor 王*"
    assert wording.actor({"kind": "person", "id": "psn_b"}, BINDING) == "beneficiary"
    assert wording.actor({"kind": "operator", "id": "admin"}, BINDING) == "staff admin"
    assert wording.actor({"kind": "person", "id": "psn_other"}, BINDING) == "person psn_other"
    assert wording.actor({"kind": "system", "id": None}, BINDING) == "system"
