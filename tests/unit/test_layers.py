"""Dependencies point one way (README "Where things live"): `web → workflows → models`,
`workers → workflows → models`. `workflows` never sees Flask or dramatiq, `models` no other layer, and only
the composition roots (the command line, `web/wsgi.py`) wire the workers in. Read from the source (every
import, also those inside functions), so a shortcut taken anywhere fails here rather than in a review."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLASK = ("flask", "flask_babel", "flask_limiter", "flask_login", "flask_wtf", "werkzeug", "gunicorn")
# layer → the top-level packages none of its modules may import
FORBIDDEN = {
    "models": ("workflows", "web", "workers", "dramatiq", *FLASK),
    "workflows": ("web", "workers", "dramatiq", *FLASK),
    "web": ("workers", "dramatiq"),
    "workers": ("web", *FLASK),
}
# they wire the broker and the in-process worker in: the production processes and the scheduler (cli.py), the
# embedded default (cli_serve.py), a console replay that sends at once (cli_platforms.py), gunicorn's app (wsgi.py)
COMPOSITION_ROOTS = {"web/cli.py", "web/cli_serve.py", "web/cli_platforms.py", "web/wsgi.py"}
ALLOWED = {("workers/simulator/platform.py", "werkzeug"),  # a fake platform is a small HTTP server of its own
           ("workflows/operators.py", "werkzeug")}  # werkzeug.security: operators' password hashes, no web


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_lies_beneath_it(layer):
    """Given every module of a layer, When its imports are read, Then none reaches a layer above it or a
    framework that belongs to another layer."""
    wrong = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in COMPOSITION_ROOTS:
            continue
        for line, module in imports(path):
            top = module.split(".")[0]
            if top in FORBIDDEN[layer] and (name, top) not in ALLOWED:
                wrong.append(f"{name}:{line} imports {module}")
    assert wrong == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    """Given a module that imports Flask inside a function, When its imports are read, Then that one is seen."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flask import g\n    import dramatiq.brokers\n")
    assert imports(module) == [(2, "flask"), (3, "dramatiq.brokers")]
