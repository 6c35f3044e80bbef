"""Which characters a text from outside may hold: every field of the API's bodies, a webhook's person fields
and reasons, a path value.

Why: a NUL cannot be stored in PostgreSQL, which refused such a value (422 after the fact) while the embedded
default's SQLite stored it (201): one contract on one backend and another on the other. Other controls (a
newline in a name, a bell, C1 codes) and the direction-formatting characters (U+202E turns `张三` around
on the dashboard, the "Trojan Source" trick) have no place in a name, a reference, a code or an id; they
would be stored and shown to every operator and platform. So they are refused up front, the same on both
backends, with the field named and the value never echoed. A reason may span lines (tab, line feed,
carriage return); nothing else differs. Lone surrogates never reach here: the JSON parser refuses them."""
from __future__ import annotations

import re

# C0 controls but tab, LF and CR; DEL; C1 controls; the Arabic letter mark, LRM/RLM, the embeddings and
# overrides (U+202A–U+202E) and the isolates (U+2066–U+2069); the noncharacters U+FFFE and U+FFFF
_REFUSED_IN_LINES = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff"
_REFUSED = re.compile(f"[{_REFUSED_IN_LINES}\t\n\r]")
_REFUSED_MULTILINE = re.compile(f"[{_REFUSED_IN_LINES}]")
WHAT = "holds a control or direction-formatting character"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}|[0-9]{1,4}")  # a field's name, an array's index


def refused(text: str, *, lines: bool = False) -> bool:
    """Does `text` hold a character no field may hold (`lines`: a text that may span lines, a reason)?"""
    return (_REFUSED_MULTILINE if lines else _REFUSED).search(text) is not None


def as_named(key) -> str:
    """A key of a body or a webhook's data as an answer or a record may name it: a field's name or an array's
    index as it is, anything else `…` (a key is text from outside too, and may be an ID number)."""
    return str(key) if _NAME.fullmatch(str(key)) else "…"


def without(text: str) -> str:
    """`text` with the refused characters of a multi-line text taken out (a face provider's reason: cut, not
    refused, as its length is: a refusal would lose the result it came with)."""
    return _REFUSED_MULTILINE.sub("", text)


def first_refused(data) -> str | None:
    """Where in a webhook's `data` (objects and arrays, any depth: walked without recursion) the first text with
    a refused character is (`actor.id`), or None; a `reason` may span lines."""
    stack = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if refused(value, lines=path.rpartition(".")[2] == "reason"):
                return path
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        named = [(f"{path}.{as_named(k)}" if path else as_named(k), v) for k, v in items]
        stack.extend(reversed(named))  # in document order
    return None
