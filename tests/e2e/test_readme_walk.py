"""The README's curl walk, run verbatim against the embedded default and against the production shape."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from .support import ROOT

HISTORY = [
    "1 None -> invited invite person",
    "2 invited -> invited start_verification person",
    "3 invited -> face_verified verification_passed verifier",
    "4 face_verified -> accepted accept person",
    "5 accepted -> authorized authorize person",
    "6 authorized -> unbound unbind person",
]


def walk_script() -> str:
    """The bash block between `<!-- walk:start -->` and `<!-- walk:end -->`, without its fences."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- walk:start -->\s*```bash\n(.*?)```\s*<!-- walk:end -->", readme, re.S)
    assert found, "README.md has no ```bash block between <!-- walk:start --> and <!-- walk:end -->"
    return found.group(1)


def run_walk(base: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGJI")}
    env["GONGJI"] = base
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", walk_script()], env=env, capture_output=True,
                          text=True, timeout=120)


def test_readme_documents_the_history_the_walk_prints():
    """Given the README
    When its "history it prints" block is read
    Then it is exactly the six lines this test expects from the walk."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"The history it prints:\s*```\n(.*?)```", readme, re.S)
    assert block, "README.md lost its printed-history block"
    assert block.group(1).strip().splitlines() == HISTORY


@pytest.mark.parametrize("server", ["simulated", "production"])
def test_readme_walk(server, request):
    """Given a running server (the embedded default, or gunicorn + dramatiq worker + scheduler on PostgreSQL
    and Redis with jiangsu and facecheck registered under the development credentials)
    When the README's walk runs with `bash -e -o pipefail` and GONGJI=<its base URL>
    Then it exits 0 and prints the six history lines of one binding's life, in order; walked again on the
    same server, it passes again with a new binding; and the server's logs carry no ID number."""
    target = request.getfixturevalue(server)
    base = target if isinstance(target, str) else target.base
    done = run_walk(base)
    assert done.returncode == 0, f"walk failed ({done.returncode})\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = [ln.strip() for ln in done.stdout.splitlines()]
    at = [lines.index(h) if h in lines else -1 for h in HISTORY]
    assert -1 not in at, f"missing history lines {[h for h, i in zip(HISTORY, at) if i < 0]}\n{done.stdout}"
    assert at == sorted(at) and at == list(range(at[0], at[0] + 6)), done.stdout
    assert re.search(r"binding bnd_\w+\n", done.stdout), done.stdout
    # the walk prints the three commands' resulting states along the way (curl output has no newlines,
    # so a state may follow the webhook's answer on the same line)
    assert re.findall(r"(accepted|authorized|unbound)\n", done.stdout) == ["accepted", "authorized", "unbound"]
    assert "verification passed\n" in done.stdout  # the provider read its webhook's outcome
    assert "authorized\n12000\nunbound\n" in done.stdout  # the settlement, paid by the grantor's authorization
    # and no answer carried either unmasked ID number
    assert "320102198001011238" not in done.stdout and "320102198502022349" not in done.stdout
    # and it can be walked again on the same server (the first binding ended; a new invitation is a new
    # binding, under an Idempotency-Key of its own)
    again = run_walk(base)
    assert again.returncode == 0, f"second walk failed\nstdout:\n{again.stdout}\nstderr:\n{again.stderr}"
    ids = re.findall(r"binding (bnd_\w+)\n", done.stdout + again.stdout)
    assert len(ids) == 2 and ids[0] != ids[1], ids
    # and no log line of the server's processes (gunicorn's access log, the worker, the scheduler, or
    # `gongji serve`) carries an ID number: the walk's, or any other this test run has issued so far
    from .conftest import _RUNNING
    from .support import issued_numbers
    logs = {p.name: p.log.read_text(encoding="utf-8", errors="replace") for p in _RUNNING[server]}
    assert logs and all(logs.values()), "the server's processes left no log to check"
    numbers = issued_numbers() | {"320102198001011238", "320102198502022349"}
    leaked = {(name, n) for name, text in logs.items() for n in numbers if n in text or n.lower() in text}
    assert not leaked, f"ID numbers in the logs: {sorted(leaked)}"
