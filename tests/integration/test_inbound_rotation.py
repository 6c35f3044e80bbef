"""Inbound webhook signatures across a secret rotation, over real HTTP to the app on PostgreSQL: during the
overlap either secret verifies, afterwards only the new one; any other secret never does."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import requests
from werkzeug.serving import make_server

from models import Platform, seed
from models.settings import Settings
from models.types import utcnow
from workers.outbound import sign_headers
from workflows import platforms

NEW = "whsec_" + "cm90YXRlZC1zZWNyZXQtZm9yLWluYm91bmQtdGVzdHMhIQ=="
OTHER = "whsec_" + "c29tZW9uZS1lbHNlcy1zZWNyZXQtbm90LW91cnMtISEhIQ=="


@pytest.fixture
def server(pg_db, pg_engine):
    from web.app import create_app
    app = create_app(Settings.from_env(var_dir="/tmp/gongji-unused"), db=pg_db, engine=pg_engine)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _post(base: str, secret: str, n: int) -> requests.Response:
    body = json.dumps({"type": "relationship.ended", "data": {"grantor_id_number": "x", "beneficiary_id_number": "y"}})
    return requests.post(f"{base}/webhooks/jiangsu", data=body.encode(), timeout=30,
                         headers=sign_headers([secret], f"msg_rot_{n}", body))


def test_either_secret_verifies_during_the_overlap_and_only_the_new_one_after(pg_db, server):
    with pg_db.begin() as s:
        old = seed.seed_dev_platforms(s)["jiangsu"][1]
    # Given Jiangsu rotated to a new secret with a one-hour overlap
    platforms.rotate_secret(pg_db, "jiangsu", NEW, overlap_s=3600)
    # Then during the overlap both secrets verify, a stranger's does not
    assert _post(server, old, 1).status_code == 202
    assert _post(server, NEW, 2).status_code == 202
    refused = _post(server, OTHER, 3)
    assert refused.status_code == 401 and refused.json()["code"] == "bad_signature"
    # And once the overlap is over, the old secret is refused
    with pg_db.begin() as s:
        s.get(Platform, "jiangsu").previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    platforms.clear_cache()
    assert _post(server, old, 4).status_code == 401
    assert _post(server, NEW, 5).status_code == 202


def test_a_secret_stored_before_the_checks_that_is_not_base64_verifies_nothing_and_breaks_nothing(pg_db, server):
    """Given Jiangsu whose current secret was stored before `platform_checks` existed and is not base64
    (`whsec_%%%`), its previous one still in its overlap
    When webhooks come signed with the previous secret and with a stranger's
    Then the first is accepted (202) and the second refused (401 bad_signature): the unusable secret is
    skipped and logged, never a 500 for every webhook of the platform."""
    with pg_db.begin() as s:
        old = seed.seed_dev_platforms(s)["jiangsu"][1]
        p = s.get(Platform, "jiangsu")
        p.previous_webhook_secret, p.webhook_secret = old, "whsec_%%%"
        p.previous_secret_expires_at = utcnow() + timedelta(hours=1)
    platforms.clear_cache()
    assert _post(server, old, 6).status_code == 202
    refused = _post(server, OTHER, 7)
    assert refused.status_code == 401 and refused.json()["code"] == "bad_signature", refused.text
