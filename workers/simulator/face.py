"""A fake face-verification provider: opens a session when Gongji asks (a signed
`verification.session_requested`), then after `latency_s` seconds calls back the `callback_url` with a
signed `verification.completed`, `passed` with probability `pass_rate` (seeded: repeatable runs). A callback
that gets no 2xx is sent again after 0.5, 1 and 2 s, as a real provider retries its webhooks; each failed
try is kept in `callback_failures` (verification id, HTTP status or None, error).

It inherits the fake platform's receiver (signature check, duplicate drop, fail/slow/down controls).
It is handed the person's ID number and name, as a real provider is; it never prints or keeps them."""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field

from workers import outbound

from .platform import FakePlatform


@dataclass
class FakeFaceProvider(FakePlatform):
    latency_s: float = 0.2
    pass_rate: float = 1.0
    seed: int | None = None
    callbacks: list[tuple[str, str, int | None]] = field(default_factory=list)  # (verification id, result, HTTP)
    callback_failures: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    retry_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0)

    def __post_init__(self):
        super().__post_init__()
        self._random = random.Random(self.seed)

    def _receive(self, environ, body: bytes):
        status, answer = super()._receive(environ, body)
        if status != 200 or answer.get("duplicate"):
            return status, answer
        data = json.loads(body).get("data") or {}
        with self._lock:
            passed = self._random.random() < self.pass_rate
        timer = threading.Timer(self.latency_s, self._call_back, args=(data, "passed" if passed else "failed"))
        timer.daemon = True
        timer.start()
        return 200, {"session_id": f"sess_{data.get('verification_id')}"}

    def keep(self, payload: dict) -> dict:
        """Keep no identity: drop the subject (ID number and name) from what is recorded."""
        data = {k: v for k, v in (payload.get("data") or {}).items() if k != "subject"}
        return {**payload, "data": data}

    def _call_back(self, data: dict, result: str) -> None:
        payload = {"type": "verification.completed",
                   "data": {"verification_id": data.get("verification_id"), "binding_id": data.get("binding_id"),
                            "result": result, **({"reason": "face_mismatch"} if result == "failed" else {})}}
        for delay in (*self.retry_delays_s, None):
            answer = outbound.post_signed(data["callback_url"], self.secrets[:1],
                                          f"msg_cb_{data.get('verification_id')}", payload)
            if answer.ok or delay is None:
                break
            with self._lock:
                self.callback_failures.append((data.get("verification_id"), answer.status_code, answer.error))
            time.sleep(delay)
        with self._lock:
            self.callbacks.append((data.get("verification_id"), result, answer.status_code))
