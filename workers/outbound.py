"""Signed HTTP to platforms: Standard Webhooks headers over the exact bytes sent, one signature per secret
(during a secret rotation the receiver may know only the old or only the new one).

Timeouts are seconds: `CONNECT_S` to connect, `READ_S` for the answer; redirects are not followed (a
platform answers where it registered); a broken connection is tried once more at once (`_RETRY`).
urllib3 pools keep connections alive (thread-safe, shared by the worker's threads); `requests` cost
~0.25 ms of CPU more a delivery, mostly re-reading proxy settings from the environment each time. Those
settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, credentials in the proxy URL) are honoured: looked up once per
scheme and host."""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import urllib3
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

CONNECT_S, READ_S = 3.0, 10.0
log = logging.getLogger(__name__)
MAX_BODY = 65536  # bytes of an answer kept (the face provider's session id; an error's first words)
# One more try when the connection breaks (a keep-alive connection the server closed just as it was reused
# surfaces as a broken read): the event id is the same, so a receiver that did get the first drops the second.
# Status codes are answers, never retried here: the delivery schedule decides.
class BrokenConnectionRetry(urllib3.Retry):
    """A read timeout is an answer (the receiver may be working on it): only a broken connection counts."""

    def _is_read_error(self, err: Exception) -> bool:
        return isinstance(err, urllib3.exceptions.ProtocolError)


_RETRY = BrokenConnectionRetry(total=1, connect=1, read=1, status=0, other=0, redirect=0, allowed_methods=None,
                                raise_on_redirect=False, raise_on_status=False)
_OPTIONS = dict(num_pools=64, maxsize=16, retries=_RETRY, timeout=urllib3.Timeout(connect=CONNECT_S, read=READ_S))
_direct = urllib3.PoolManager(**_OPTIONS)
_routes: dict[tuple[str, str], urllib3.PoolManager] = {}
_routes_lock = threading.Lock()


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no HTTP answer (refused, reset, timed out)
    error: str | None
    duration_ms: int
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign_headers(secrets: tuple[str, ...] | list[str], msg_id: str, body: str, at: datetime | None = None) -> dict:
    """Standard Webhooks headers with a signature by each secret; one that is not base64 (stored before
    `workflows/platform_checks.py` refused such secrets) signs nothing, the other one of a rotation still
    does (none at all: ValueError, the delivery's attempt records it)."""
    at = at or datetime.now(timezone.utc)
    signatures = []
    for secret in secrets:
        try:
            signatures.append(Webhook(secret).sign(msg_id, at, body))
        except (ValueError, EmptyWebhookSecretError):
            log.error("a webhook secret of a platform is not base64; it signs nothing")
    if not signatures:
        raise ValueError("no usable webhook secret to sign with")
    signature = " ".join(signatures)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature,
            "content-type": "application/json"}


def encode(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _pool_for(url: str) -> urllib3.PoolManager:
    """The direct pools, or a proxy's when the environment names one for this scheme and host."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.hostname or "")
    if key not in _routes:
        with _routes_lock:
            proxy = urllib.request.getproxies().get(parts.scheme)
            bypass = not proxy or urllib.request.proxy_bypass(parts.hostname or "")
            if bypass:
                _routes[key] = _direct
            else:  # credentials in the proxy URL go in Proxy-Authorization; an unknown scheme raises ValueError
                auth = urllib3.util.parse_url(proxy).auth
                _routes[key] = urllib3.ProxyManager(
                    proxy, proxy_headers=urllib3.make_headers(proxy_basic_auth=auth) if auth else None, **_OPTIONS)
    return _routes[key]


def _bounded(r) -> bytes:
    """At most MAX_BODY bytes of an answer: the rest is never read (a receiver's answer of any size cannot
    fill the worker's memory); a connection with an answer left unread is closed, not reused."""
    try:
        content = r.read(MAX_BODY)
        more = bool(r.read(1))
    except BaseException:
        r.close()
        raise
    if more:
        r.close()
    else:
        r.release_conn()
    return content


def post_signed(url: str, secrets, msg_id: str, payload: dict) -> Answer:
    """POST `payload` signed; never raises for network trouble (it is an answer like any other)."""
    body = encode(payload)
    started = time.monotonic()
    try:
        r = _pool_for(url).request("POST", url, body=body.encode("utf-8"),
                                   headers=sign_headers(secrets, msg_id, body), redirect=False,
                                   preload_content=False)
        content = _bounded(r)
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500], int((time.monotonic() - started) * 1000))
    ms = int((time.monotonic() - started) * 1000)
    error = None if 200 <= r.status < 300 else f"HTTP {r.status}: {content[:300].decode('utf-8', 'replace')}"
    return Answer(r.status, error, ms, content)
