"""Where the worker's signed POSTs go: straight to the platform, or through the proxy the environment names
(HTTP_PROXY / HTTPS_PROXY, with NO_PROXY exceptions), decided once per scheme and host."""
from __future__ import annotations

import pytest
import urllib3

from workers import outbound


def test_a_proxy_from_the_environment_is_used_except_where_no_proxy_says(monkeypatch):
    """Given HTTPS_PROXY and NO_PROXY=127.0.0.1, When routes are chosen, Then a platform host goes through
    the proxy, the loopback host and plain-HTTP hosts (no HTTP_PROXY) go direct."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.bureau.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(outbound, "_routes", {})

    via = outbound._pool_for("https://hook.jiangsu.example/gongji")
    assert isinstance(via, urllib3.ProxyManager) and via.proxy.host == "proxy.bureau.example"
    assert outbound._pool_for("https://127.0.0.1:8443/hook") is outbound._direct
    assert outbound._pool_for("http://hook.jiangsu.example/gongji") is outbound._direct
    assert outbound._pool_for("https://hook.jiangsu.example/other") is via  # decided once per host


def test_no_answer_is_an_answer_not_an_exception(monkeypatch):
    """Given a URL nothing can be sent to, When a delivery is posted, Then it is recorded as no answer."""
    monkeypatch.setattr(outbound, "_routes", {})
    answer = outbound.post_signed("http://[::1", ["whsec_" + "A" * 44], "msg_1", {"type": "x"})
    assert answer.status_code is None and answer.error and not answer.ok


def test_credentials_in_the_proxy_url_are_sent_to_the_proxy(monkeypatch):
    """Given HTTPS_PROXY with a user and password, Then the proxy route carries Proxy-Authorization."""
    for name in ("https_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://gongji:s3cret@proxy.bureau.example:3128")
    monkeypatch.setattr(outbound, "_routes", {})
    via = outbound._pool_for("https://hook.jiangsu.example/gongji")
    assert via.proxy_headers["proxy-authorization"] == "Basic Z29uZ2ppOnMzY3JldA=="


def test_only_a_broken_connection_is_tried_again_not_a_read_timeout():
    """A connection that broke is tried once more; a read timeout (the receiver may be at work) is not."""
    from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError
    again = outbound._RETRY.increment(method="POST", url="/hook", error=ProtocolError("Connection aborted."))
    assert again.total == 0
    with pytest.raises(MaxRetryError):
        outbound._RETRY.increment(method="POST", url="/hook", error=ReadTimeoutError(None, "/hook", "read timed out"))


def test_an_unusable_secret_signs_nothing_and_the_other_one_still_signs():
    """Given a platform mid-rotation whose current secret was stored before the checks and is not base64
    When an event is signed, Then it carries the previous secret's signature only (which verifies); with no
    usable secret at all, signing raises ValueError (the delivery's attempt records it), never a bad header."""
    import base64

    from standardwebhooks.webhooks import Webhook

    from workers.outbound import sign_headers
    good = "whsec_" + base64.b64encode(b"g" * 32).decode()
    headers = sign_headers(("whsec_%%%", good), "msg_1", '{"a":1}')
    assert len(headers["webhook-signature"].split(" ")) == 1
    Webhook(good).verify('{"a":1}', headers)
    with pytest.raises(ValueError):
        sign_headers(("whsec_%%%",), "msg_2", "{}")
