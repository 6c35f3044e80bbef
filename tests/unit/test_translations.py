"""The dashboard is Chinese first: every message the code and templates mark for translation has a zh_CN
translation, and the compiled catalog (.mo, what Flask-Babel loads) matches its source (.po)."""
from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "web" / "translations" / "zh_Hans_CN" / "LC_MESSAGES"  # Babel parses zh_CN as zh_Hans_CN
METHODS = [("web/**.py", "python"), ("web/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "_l": None, "ngettext": (1, 2)}


def _marked() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(ROOT, METHODS, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return {m for m in found if m}


def test_every_marked_message_has_a_chinese_translation():
    """Given the messages marked in web/, When the zh_CN catalog is read, Then each has a translation
    (run `make translations` after changing texts)."""
    catalog = read_po((CATALOG / "messages.po").open("rb"))
    missing = sorted(m for m in _marked() if not (catalog.get(m) and catalog.get(m).string))
    assert missing == []


def test_the_compiled_catalog_is_the_source_catalog():
    """Given messages.po, When it is compiled, Then the committed messages.mo holds the same translations."""
    source = read_po((CATALOG / "messages.po").open("rb"))
    compiled = read_mo((CATALOG / "messages.mo").open("rb"))
    assert {m.id: m.string for m in source if m.id} == {m.id: m.string for m in compiled if m.id}
    buffer = io.BytesIO()
    write_mo(buffer, source)
    assert buffer.getvalue() == (CATALOG / "messages.mo").read_bytes()
