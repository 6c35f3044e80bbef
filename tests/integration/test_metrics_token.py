"""`/metrics` behind a bearer token when GONGJI_METRICS_TOKEN is set (Flask's test client on SQLite), and the
directory `gongji web` prepares for the gunicorn processes' request counts."""
from __future__ import annotations

import os

from models.settings import Settings
from web.app import create_app


def _client(db, crypto_keys, token):
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=crypto_keys["pii_keys"],
                        pii_active_key=crypto_keys["active"], lookup_key=crypto_keys["lookup_key"],
                        secret_key="test-secret", metrics_token=token)
    return create_app(settings, db=db, engine=None).test_client()


def test_metrics_need_the_token_when_one_is_set(sqlite_db, crypto_keys):
    """Given GONGJI_METRICS_TOKEN set, When /metrics is fetched without it, with another, and with it,
    Then 401, 401, and the Prometheus text; without a token set it is open"""
    client = _client(sqlite_db, crypto_keys, "s3cret-scrape")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert ok.status_code == 200 and b"gongji_http_requests_total" in ok.data
    assert ok.headers["Content-Type"].count("charset") == 1  # Prometheus' content type, as it gives it
    assert client.get("/metrics", headers={"Authorization": "bearer s3cret-scrape"}).status_code == 200  # RFC 7235:
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-scrape"}).status_code == 401  # any case
    assert _client(sqlite_db, crypto_keys, None).get("/metrics").status_code == 200


def test_gongji_web_starts_gunicorn_with_an_empty_counts_directory(tmp_path):
    """Given PROMETHEUS_MULTIPROC_DIR naming a directory with an earlier run's counts (and other files, one a
    SQLite database), When `gongji web` prepares it, Then the counts are gone, the other files stay, the
    variable is kept;
    Given no variable, Then a fresh empty directory is made and named in it (web/metrics.py)."""
    from web.metrics import prepare_multiprocess_dir

    (tmp_path / "counter_4242.db").write_bytes(b"stale")
    (tmp_path / "histogram_4242.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "gongji.db").write_bytes(b"an embedded database, if someone pointed the variable at var/")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert prepare_multiprocess_dir(env) == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gongji.db", "keep.txt"]
    env = {}
    made = prepare_multiprocess_dir(env)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == made and os.path.isdir(made) and os.listdir(made) == []
    os.rmdir(made)


SCRIPT = """
import json, os
from models.settings import Settings
from web.app import create_app
from models import db as mdb
settings = Settings.from_env(var_dir=os.environ["VAR_DIR"])
engine, db = mdb.from_settings(settings)
from models import migrate
migrate.upgrade(engine)
client = create_app(settings, db=db, engine=engine).test_client()
codes = [client.get("/healthz").status_code, client.get("/healthz").status_code]
metrics = client.get("/metrics")
print(json.dumps({"codes": codes + [metrics.status_code], "text": metrics.get_data(as_text=True)}))
"""


def test_a_counts_directory_that_does_not_exist_yet_is_made(tmp_path):
    """Given PROMETHEUS_MULTIPROC_DIR naming a directory nobody made (gunicorn started by hand, not by
    `gongji web`), When a fresh process serves two /healthz and one /metrics,
    Then all three are 200 (no request fails on the missing count file) and /metrics has the two /healthz."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    missing = tmp_path / "not" / "made"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GONGJI_", "PROMETHEUS_"))}
    env.update(PROMETHEUS_MULTIPROC_DIR=str(missing), VAR_DIR=str(tmp_path / "var"))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["codes"] == [200, 200, 200]
    assert 'gongji_http_requests_total{endpoint="/healthz",method="GET",status="200"} 2.0' in out["text"]
    assert any(p.name.startswith("counter_") for p in missing.iterdir())
