"""Connecting to PostgreSQL is bounded (`models.db.CONNECT_TIMEOUT_S`): a server that accepts the TCP
connection but never answers (overloaded, a half-done failover, a stuck proxy) makes a connection attempt
fail instead of holding its request, actor or tick for ever; the failure counts as the database being
unreachable (503 `unavailable`). Open connections carry TCP keepalives."""
from __future__ import annotations

import socket
import threading

import pytest
import sqlalchemy as sa

from models import db as mdb
from workflows.errors import database_unreachable


@pytest.fixture
def silent_server():
    """A TCP listener that accepts and never says a word (what a hung PostgreSQL looks like to libpq)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_that_never_answers_fails_the_connection_attempt_as_unreachable(silent_server):
    """Given a "PostgreSQL" that accepts TCP and then says nothing
    When an engine made by `make_engine` (connect timeout shortened to 1 s) is asked for a connection
    Then the attempt fails (it does not hang) with an error `database_unreachable` recognises."""
    engine = mdb.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/gongji", pool_size=1,
                             connect_timeout_s=1)
    outcome: list = []

    def attempt():
        try:
            engine.connect().close()
            outcome.append("connected")
        except Exception as exc:  # noqa: BLE001 - what the test reads
            outcome.append(exc)
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(60)  # a bound on the test, not its criterion: without the timeout it would wait for ever
    assert outcome, "the connection attempt was still waiting after 60 s"
    assert isinstance(outcome[0], sa.exc.OperationalError) and database_unreachable(outcome[0]), outcome
    engine.dispose()


def test_connections_carry_the_timeout_and_keepalives_unless_the_url_sets_its_own(pg_engine):
    """Given the test database's URL, once as it is and once with its own connect_timeout
    When a connection is opened through `make_engine`
    Then libpq holds CONNECT_TIMEOUT_S and the keepalive options, and the URL's own value wins over ours."""
    url = pg_engine.url.render_as_string(hide_password=False)
    for query, expected in (("", str(mdb.CONNECT_TIMEOUT_S)), ("?connect_timeout=3", "3")):
        engine = mdb.make_engine(url + query, pool_size=1)
        try:
            with engine.connect() as conn:
                held = conn.connection.dbapi_connection.info.get_parameters()
        finally:
            engine.dispose()
        assert held["connect_timeout"] == expected
        assert {k: held.get(k) for k in ("keepalives_idle", "keepalives_interval", "keepalives_count")} == {
            k: str(v) for k, v in mdb.KEEPALIVE.items() if k != "keepalives"}
