"""What the API answers when something fails on our side or the database refuses a value: problem+json
with a stable code, never an HTML page or the exception's text (it may hold request values). Flask's test
client on the embedded default's SQLite file; the database refusal on PostgreSQL."""
from __future__ import annotations

import pytest

from models.seed import dev_credentials
from models.settings import Settings
from web.app import create_app

NUMBER = "32010219520505114X"


def _app(db, crypto_keys):
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=crypto_keys["pii_keys"],
                        pii_active_key=crypto_keys["active"], lookup_key=crypto_keys["lookup_key"],
                        secret_key="test-secret", dev_mode=True)
    app = create_app(settings, db=db, engine=None)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as under gunicorn: the error handler answers
    return app.test_client(), {"Authorization": f"Bearer {dev_credentials('jiangsu')[0]}"}


def test_an_unexpected_failure_is_a_problem_without_its_text(sqlite_db, crypto_keys, monkeypatch):
    """Given a look-up that fails inside with an error naming the ID number, when a platform asks, then the
    answer is 500 application/problem+json with code internal_error, and neither the error's text nor the
    number is in it."""
    from workflows import persons

    def broken(*_a, **_k):
        raise RuntimeError(f"boom while reading {NUMBER}")
    monkeypatch.setattr(persons, "lookup", broken)
    client, auth = _app(sqlite_db, crypto_keys)

    answer = client.post("/api/v1/persons/lookup", json={"id_number": NUMBER}, headers=auth)

    assert answer.status_code == 500 and answer.mimetype == "application/problem+json"
    assert answer.get_json()["code"] == "internal_error"
    assert "boom" not in answer.get_data(as_text=True) and NUMBER not in answer.get_data(as_text=True)


def test_a_method_a_resource_does_not_answer_is_405_with_allow(sqlite_db, crypto_keys):
    client, auth = _app(sqlite_db, crypto_keys)
    answer = client.delete("/api/v1/persons/lookup", headers=auth)
    assert answer.status_code == 405 and answer.get_json()["code"] == "method_not_allowed"
    assert "POST" in answer.headers["Allow"]


@pytest.mark.pg
def test_a_value_postgresql_cannot_store_is_422(pg_db, crypto_keys, monkeypatch):
    """Given PostgreSQL (its text holds no NUL character), when a binding id with a NUL in it gets past the
    check that answers it 404 (`workflows/characters.py`), then the database's refusal is 422
    validation_failed, not a 500; and on the dashboard, which has no such check, its 400 page."""
    from workflows import characters

    client, auth = _app(pg_db, crypto_keys)
    assert client.get("/api/v1/bindings/bnd_%00x", headers=auth).status_code == 404  # the check
    monkeypatch.setattr(characters, "refused", lambda *_a, **_k: False)
    answer = client.get("/api/v1/bindings/bnd_%00x", headers=auth)
    assert answer.status_code == 422 and answer.get_json()["code"] == "validation_failed"
    monkeypatch.undo()
    # and on the dashboard, its own 400 page
    from workflows import operators

    from .test_dashboard_web import signed_in
    operators.add(pg_db, "viewer", "correct horse battery", "viewer")
    browser, _ = signed_in(client.application, "viewer")
    page = browser.get("/dashboard/bindings/bnd_%00x")
    assert page.status_code == 400 and 'data-status="400"' in page.get_data(as_text=True)


def test_an_unexpected_failure_on_a_dashboard_page_is_a_page_not_json(sqlite_db, crypto_keys, monkeypatch):
    """Given the overview failing inside, when a signed-in viewer opens it, then 500 with the dashboard's
    error page (in Chinese, with the navigation), not the API's problem+json."""
    from workflows import operators, overview

    from .test_dashboard_web import signed_in

    def broken(*_a, **_k):
        raise RuntimeError("boom")
    operators.add(sqlite_db, "viewer", "correct horse battery", "viewer")
    client, auth = _app(sqlite_db, crypto_keys)
    monkeypatch.setattr(overview, "overview", broken)
    browser, _ = signed_in(client.application, "viewer")

    answer = browser.get("/dashboard/")

    page = answer.get_data(as_text=True)
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    assert 'data-status="500"' in page and "服务器出错" in page and "boom" not in page


class _LockNotAvailable(Exception):
    sqlstate = "55P03"  # what psycopg's LockNotAvailable carries


class _DeadlockDetected(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


class _OtherOperational(Exception):
    sqlstate = "57014"  # query_canceled (statement_timeout)


@pytest.mark.parametrize("orig, api_status, page_status", [(_LockNotAvailable, 409, 409),
                                                           (_DeadlockDetected, 409, 409),
                                                           (_OtherOperational, 500, 500)])
def test_a_lock_wait_past_the_timeout_outside_a_command_is_409(sqlite_db, crypto_keys, monkeypatch, orig,
                                                               api_status, page_status):
    """Given a read that meets a lock held past PostgreSQL's lock_timeout (e.g. behind a migration's ALTER),
    or a transaction the server aborts in a deadlock, when a platform or a viewer asks, then the API answers
    409 conflict (problem+json) and the dashboard its translated 409 page; any other operational error stays
    a 500."""
    import sqlalchemy as sa

    from workflows import operators, overview, persons

    from .test_dashboard_web import signed_in

    def locked(*_a, **_k):
        raise sa.exc.OperationalError("SELECT …", {}, orig("canceling statement due to lock timeout"))
    monkeypatch.setattr(persons, "lookup", locked)
    monkeypatch.setattr(overview, "overview", locked)
    operators.add(sqlite_db, "viewer", "correct horse battery", "viewer")
    client, auth = _app(sqlite_db, crypto_keys)

    answer = client.post("/api/v1/persons/lookup", json={"id_number": NUMBER}, headers=auth)
    browser, _ = signed_in(client.application, "viewer")
    page = browser.get("/dashboard/")

    assert answer.status_code == api_status and answer.mimetype == "application/problem+json"
    assert answer.get_json()["code"] == ("conflict" if api_status == 409 else "internal_error")
    assert page.status_code == page_status and f'data-status="{page_status}"' in page.get_data(as_text=True)
