"""`gongji platform add` and `rotate-secret` refuse a slip with a message that names it, before anything is
written (`workflows/platform_checks.py`); an update keeps what it does not name; a secret stored before these
checks makes its platform's webhooks a 401, not a 500. Through the command line (click's runner) on a fresh
embedded SQLite database in a temporary directory."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from models import Platform
from web.cli import main

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()


@pytest.fixture
def gongji(tmp_path, monkeypatch, crypto_keys):
    """Run `gongji …` against an embedded database of the test's own; (exit code, output). The command
    configures this process's encryption with the embedded default's keys: the test keys come back after."""
    for name in [k for k in os.environ if k.startswith("GONGJI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GONGJI_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("GONGJI_LOG_LEVEL", "WARNING")

    def run(*args: str) -> tuple[int, str]:
        done = CliRunner().invoke(main, list(args), catch_exceptions=False)
        return done.exit_code, done.output
    yield run
    from models import crypto
    crypto.configure(crypto_keys["pii_keys"], crypto_keys["active"], crypto_keys["lookup_key"])


def _row(tmp_path, platform_id: str) -> dict | None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'gongji.db'}")
    with engine.connect() as c:
        row = c.execute(sa.select(Platform.kind, Platform.webhook_url, Platform.provinces, Platform.previous_secret_expires_at)
                        .where(Platform.id == platform_id)).mappings().first()
    engine.dispose()
    return dict(row) if row else None


@pytest.mark.parametrize("args, says", [
    (["p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", "whsec_%%%", "--regions", "32"],
     "not base64"),
    (["p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", "whsec_AAAA", "--regions", "32"],
     "24 to 64 random bytes"),
    (["p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET, "--regions", "320100"],
     "province codes are 2 digits"),
    (["p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET, "--regions", "99"],
     "no province 99"),
    (["p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET],
     "names the provinces it serves"),
    (["p1", "--kind", "national", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET, "--regions", "32"],
     "give it no --regions"),
    (["p1", "--kind", "province", "--api-key", "x", "--webhook-secret", SECRET, "--regions", "32"],
     "at least 12 characters"),
    (["", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET, "--regions", "32"],
     "a platform id is"),
    (["p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET, "--regions", "32",
      "--webhook-url", "notaurl"], "http:// or https://"),
    # a face-verification provider is sent ID numbers and names: plain http only on this machine
    (["fc", "--kind", "verifier", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET,
      "--webhook-url", "http://face.example/sessions"], "its URL is https://"),
])
def test_a_slip_in_a_registration_is_refused_by_name_and_nothing_is_written(gongji, tmp_path, args, says):
    """Given a fresh database
    When a platform is added with a secret that is not base64 or too short, a pooling region or an unknown
    code for a province, a province platform serving nothing, a national one given provinces, a one-letter
    API key, an empty id, a webhook URL that is not one, or a face provider's on plain http:// elsewhere
    Then the command exits 1 with a message naming the slip (no traceback), and no platform is written."""
    code, out = gongji("platform", "add", *args)
    assert code == 1 and says in out and "Traceback" not in out, out
    assert _row(tmp_path, args[0] or "p1") is None


@pytest.mark.parametrize("url", ["https://face.example/sessions", "http://127.0.0.1:9100/sessions",
                                 "http://localhost:9100/sessions", "http://[::1]:9100/sessions"])
def test_a_face_provider_is_registered_on_https_or_on_this_machine(gongji, tmp_path, url):
    """Given a fresh database, When a face-verification provider is added on https:// or on plain http:// to
    this machine (the simulator's fake provider), Then it is registered with that URL."""
    code, out = gongji("platform", "add", "fc", "--kind", "verifier", "--api-key", "gk_long_enough_1",
                       "--webhook-secret", SECRET, "--webhook-url", url)
    assert code == 0, out
    assert _row(tmp_path, "fc")["webhook_url"] == url


def test_a_platform_made_a_face_provider_keeps_no_plain_http_url_it_had(gongji, tmp_path):
    """Given a platform registered on plain http://face.example, When it is registered again as a verifier
    without --webhook-url (which keeps the stored URL), Then it is refused: the URL it would keep is checked
    as if given; with an https:// URL it is registered."""
    base = ["platform", "add", "fc", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET]
    assert gongji(*base, "--kind", "province", "--regions", "32", "--webhook-url", "http://face.example/s")[0] == 0
    code, out = gongji(*base, "--kind", "verifier")
    assert code == 1 and "its URL is https://" in out, out
    assert _row(tmp_path, "fc")["kind"] == "province"
    assert gongji(*base, "--kind", "verifier", "--webhook-url", "https://face.example/s")[0] == 0


def test_an_update_keeps_the_url_and_refuses_another_secret_or_anothers_key(gongji, tmp_path):
    """Given a province platform with a webhook URL, and a second platform
    When `platform add` runs again for the first to add a province, without --webhook-url; then with another
    secret; then with the second platform's API key; then with --webhook-url ''
    Then the first keeps its URL and secret and now serves both provinces; another secret is refused (it
    changes only by rotation, which keeps the old one valid); the other's key is refused; '' removes the URL."""
    base = ["platform", "add", "p1", "--kind", "province", "--api-key", "gk_long_enough_1", "--webhook-secret", SECRET]
    assert gongji(*base, "--regions", "32", "--webhook-url", "https://p1.example/hooks")[0] == 0
    assert gongji("platform", "add", "p2", "--kind", "province", "--api-key", "gk_long_enough_2",
                  "--webhook-secret", OTHER, "--regions", "65")[0] == 0

    code, out = gongji(*base, "--regions", "32,65")
    assert (code, out.strip()) == (0, "platform p1 updated")
    row = _row(tmp_path, "p1")
    assert row["webhook_url"] == "https://p1.example/hooks" and row["provinces"] == ["32", "65"]

    code, out = gongji(*base[:-1], OTHER, "--regions", "32")
    assert code == 1 and "rotate-secret" in out, out
    code, out = gongji(*base[:6], "gk_long_enough_2", *base[7:], "--regions", "32")
    assert code == 1 and "another platform's" in out and "Traceback" not in out, out
    assert gongji(*base, "--regions", "32", "--webhook-url", "")[0] == 0
    assert _row(tmp_path, "p1")["webhook_url"] is None


@pytest.mark.parametrize("secret, hours, says", [
    ("whsec_%%%", "24", "not base64"), (OTHER, "-5", "0 to 720 hours"), (OTHER, "1e12", "0 to 720 hours"),
    (OTHER, "nan", "0 to 720 hours")])
def test_a_rotation_with_a_bad_secret_or_overlap_is_refused_and_the_secret_kept(gongji, tmp_path, secret, hours, says):
    """Given a registered platform
    When its secret is rotated to one that is not base64, or with an overlap that is negative, huge or NaN
    Then the command exits 1 naming the slip (no traceback) and the platform keeps its secret."""
    assert gongji("platform", "add", "p1", "--kind", "province", "--api-key", "gk_long_enough_1",
                  "--webhook-secret", SECRET, "--regions", "32")[0] == 0
    code, out = gongji("platform", "rotate-secret", "p1", "--new-secret", secret, "--overlap-hours", hours)
    assert code == 1 and says in out and "Traceback" not in out, out
    assert _row(tmp_path, "p1")["previous_secret_expires_at"] is None  # no rotation happened


def test_a_replay_that_names_nothing_real_says_so(gongji, tmp_path):
    """Given a fresh database with the seeded regions and a platform, no dead delivery anywhere
    When `gongji deliveries replay` names an unknown platform, an unknown binding, a delivery id that is not
    dead, or the real platform (nothing dead)
    Then each exits 1 saying what is wrong (no "replayed" that reads as success), audited as a refusal:
    not_found for what does not exist, nothing_to_replay (as the dashboard's) for the real platform."""
    assert gongji("platform", "add", "p1", "--kind", "province", "--api-key", "gk_long_enough_1",
                  "--webhook-secret", SECRET, "--regions", "32")[0] == 0
    for args, says in ((["--platform", "nope"], "no platform nope"), (["--binding", "bnd_nope"], "no binding bnd_nope"),
                       (["--id", "99999"], "no dead delivery matches"), (["--platform", "p1"], "no dead delivery matches")):
        code, out = gongji("deliveries", "replay", *args)
        assert code == 1 and says in out and "Traceback" not in out, (args, out)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'gongji.db'}")
    with engine.connect() as c:  # each refusal audited as such, none as a replay that happened
        outcomes = c.execute(sa.text("select action, outcome from audit_log where action in ('deliveries_replay', "
                                     "'delivery_replay') order by id")).all()
        named = c.execute(sa.text("select detail from audit_log where action = 'delivery_replay'")).scalar_one()
    engine.dispose()
    assert [tuple(o) for o in outcomes] == [("deliveries_replay", "not_found")] * 2 + [  # one --id: that delivery's
        ("delivery_replay", "not_found"), ("deliveries_replay", "nothing_to_replay")]  # p1 exists: as the dashboard
    assert json.loads(named)["ids"] == [99999]  # the refusal names what was asked for


def test_a_bad_setting_or_a_database_without_schema_is_a_message_not_a_traceback(gongji, monkeypatch):
    """Given GONGJI_SWEEP_BATCH=0, then a fresh database no command has prepared
    When an admin command runs
    Then it exits 1 with the setting's name; then with "run `gongji db upgrade` first"."""
    monkeypatch.setenv("GONGJI_SWEEP_BATCH", "0")
    code, out = gongji("deliveries", "status")
    assert code == 1 and "GONGJI_SWEEP_BATCH" in out and "Traceback" not in out, out
    monkeypatch.delenv("GONGJI_SWEEP_BATCH")
    code, out = gongji("deliveries", "status")
    assert code == 1 and "gongji db upgrade" in out and "Traceback" not in out, out


@pytest.mark.parametrize("command, env, names", [
    (["web", "--port", "1"], {"GONGJI_DATABASE_URL": "postgresql+psycopg://gongji@127.0.0.1:1/gongji"},
     "GONGJI_PII_KEYS"),
    (["worker"], {"GONGJI_REDIS_URL": "redis://127.0.0.1:1/0", "GONGJI_DELIVERY_SCHEDULE_S": "5,soon"},
     "GONGJI_DELIVERY_SCHEDULE_S")])
def test_the_production_processes_refuse_a_bad_setting_in_one_line_before_they_start(tmp_path, command, env, names):
    """Given a production setting missing (the encryption keys) or a workflow's own setting malformed (read
    when its module loads), When `gongji web` or `gongji worker` starts, Then it exits 1 naming the setting
    in one line, before gunicorn or dramatiq would have printed a traceback from each of its processes."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GONGJI_")}
    done = subprocess.run([sys.executable, "-c", "from web.cli import main; main()", *command],
                          env={**clean, "GONGJI_VAR_DIR": str(tmp_path / "var"), **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and names in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
