"""A fake platform (national or provincial) receiving Gongji's outbound webhooks.

It verifies every signature with the secrets it knows (401 otherwise, as a real receiver should), drops
a duplicate `webhook-id` (answering 2xx again, per Standard Webhooks), keeps what it received in order,
and can be told to fail (an HTTP status), slow down (it records the event, then waits `delay_s` seconds
before answering) or go away (the port closes:
connection refused) and come back on the same port. Control: methods here, or `POST /_control`
`{"mode": "ok"|"fail"|"slow", "status": 503, "delay_s": 0.5}` on a running one."""
from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # a fake platform does not log every request
        pass


@dataclass
class Received:
    webhook_id: str
    type: str
    payload: dict
    binding_id: str | None = None
    version: int | None = None


@dataclass
class FakePlatform:
    secrets: list[str]
    host: str = "127.0.0.1"
    port: int = 0
    mode: str = "ok"
    fail_status: int = 503
    delay_s: float = 0.0
    events: list[Received] = field(default_factory=list)  # first receipt of each webhook-id, in order
    duplicates: int = 0
    refused_signatures: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._watchers: dict[str, queue.SimpleQueue] = {}
        self._server = None
        self._thread = None

    # --- control -------------------------------------------------------------------------------------
    def start(self) -> "FakePlatform":
        self._server = make_server(self.host, self.port, self._app, threaded=True, request_handler=_Quiet)
        self.port = self._server.server_port  # keep the port so `up()` comes back on it
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-platform-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    down = stop

    def up(self) -> "FakePlatform":
        return self.start() if self._server is None else self

    def set_mode(self, mode: str, *, status: int = 503, delay_s: float = 0.0) -> None:
        self.mode, self.fail_status, self.delay_s = mode, status, delay_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhooks/gongji"

    def watch(self, binding_id: str) -> "queue.SimpleQueue[str]":
        """A queue that gets the type of every event of this binding received from now on (the driver of
        bench/webhooks.py waits on it as a platform's app would wait for our webhook)."""
        with self._lock:
            return self._watchers.setdefault(binding_id, queue.SimpleQueue())

    def unwatch(self, binding_id: str) -> None:
        with self._lock:
            self._watchers.pop(binding_id, None)

    def versions(self, binding_id: str) -> list[int]:
        with self._lock:
            return [e.version for e in self.events if e.binding_id == binding_id]

    # --- the receiver --------------------------------------------------------------------------------
    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if environ.get("PATH_INFO") == "/_control":
            status, answer = self._control(body)
        else:
            status, answer = self._receive(environ, body)
        data = json.dumps(answer).encode()
        start_response(f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _control(self, body: bytes):
        try:
            c = json.loads(body or b"{}")
            self.set_mode(c.get("mode", "ok"), status=int(c.get("status", 503)), delay_s=float(c.get("delay_s", 0)))
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        return 200, {"mode": self.mode}

    def _receive(self, environ, body: bytes):
        if self.mode == "fail":
            return self.fail_status, {"error": "told to fail"}
        headers = {k: environ.get("HTTP_" + k.upper().replace("-", "_"), "")
                   for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        if not any(self._verifies(secret, body, headers) for secret in self.secrets):
            with self._lock:
                self.refused_signatures += 1
            return 401, {"error": "bad signature"}
        payload = json.loads(body)
        binding = (payload.get("data") or {}).get("binding") or {}
        with self._lock:
            if headers["webhook-id"] in self._seen:
                self.duplicates += 1
                return 200, {"duplicate": True}
            self._seen.add(headers["webhook-id"])
            self.events.append(Received(headers["webhook-id"], payload.get("type"), self.keep(payload),
                                        binding.get("id"), binding.get("version")))
            watcher = self._watchers.get(binding.get("id"))
        if watcher is not None:
            watcher.put(payload.get("type"))
        if self.delay_s:  # slow: it has the event, the sender waits for the answer
            time.sleep(self.delay_s)
        return 200, {"received": headers["webhook-id"]}

    def keep(self, payload: dict) -> dict:
        """What of a received payload is kept in `events` (all of it, here)."""
        return payload

    @staticmethod
    def _verifies(secret: str, body: bytes, headers: dict) -> bool:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
            return True
        except (WebhookVerificationError, ValueError):
            return False
