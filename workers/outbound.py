"""Signed HTTP to platforms: Standard Webhooks headers over the exact bytes sent, one signature per secret
(during a secret rotation the receiver may know only the old or only the new one).

Timeouts are seconds: `CONNECT_S` to connect, `READ_S` for the answer; redirects are not followed (a
platform answers where it registered). A thread-local `requests.Session` keeps connections alive."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import requests
from standardwebhooks.webhooks import Webhook

CONNECT_S, READ_S = 3.0, 10.0
_local = threading.local()


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
    at = at or datetime.now(timezone.utc)
    signature = " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature,
            "content-type": "application/json"}


def encode(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def post_signed(url: str, secrets, msg_id: str, payload: dict) -> Answer:
    """POST `payload` signed; never raises for network trouble (it is an answer like any other)."""
    body = encode(payload)
    started = time.monotonic()
    try:
        r = _session().post(url, data=body.encode("utf-8"), headers=sign_headers(secrets, msg_id, body),
                            timeout=(CONNECT_S, READ_S), allow_redirects=False)
    except requests.RequestException as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500], int((time.monotonic() - started) * 1000))
    ms = int((time.monotonic() - started) * 1000)
    error = None if 200 <= r.status_code < 300 else f"HTTP {r.status_code}: {r.text[:300]}"
    return Answer(r.status_code, error, ms, r.content[:65536])
