"""Where the worker's signed POSTs go: straight to the platform, or through the proxy the environment names
(HTTP_PROXY / HTTPS_PROXY, with NO_PROXY exceptions), decided once per scheme and host."""
from __future__ import annotations

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
