"""Helpers shared by the e2e tests: an HTTP client for one platform key, valid ID numbers, people,
invitations, signed Standard Webhooks, polling, and server processes.

Everything here speaks real HTTP to a real server process; nothing imports the application except
`workflows.idnumbers.with_check_digit` (to build valid numbers) and `models.seed.dev_credentials`."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import requests
from standardwebhooks.webhooks import Webhook

from workflows.idnumbers import with_check_digit

ROOT = Path(__file__).resolve().parents[2]
PROBLEM_JSON = "application/problem+json"
# the README walk's fixed numbers: never hand them out to anything else
WALK_NUMBERS = frozenset({"320102198001011238", "320102198502022349"})
HTTP_TIMEOUT = 30  # seconds per request; generous, never a pass/fail criterion

_used: set[str] = set(WALK_NUMBERS)
_used_lock = threading.Lock()
_rng = random.Random()  # numbers must differ between runs against a kept database too


# --- ID numbers and people ---------------------------------------------------------------------------

def id_number(birth: date | None = None, *, prefix: str = "320102") -> str:
    """A fresh, valid 18-character ID number; an adult born 1960-01-01..1999-01-01 unless `birth` is given."""
    while True:
        if birth is None:
            day = date(1960, 1, 1) + timedelta(days=_rng.randrange((date(1999, 1, 1) - date(1960, 1, 1)).days + 1))
        else:
            day = birth
        number = with_check_digit(f"{prefix}{day:%Y%m%d}{_rng.randrange(1000):03d}")
        with _used_lock:
            if number not in _used:
                _used.add(number)
                return number


def issued_numbers() -> set[str]:
    """Every ID number handed out in this test process (and the README walk's two)."""
    with _used_lock:
        return set(_used)


def child_birth(year: int = 2015) -> date:
    """A birth date in `year` (default 2015: under 16 on any day of 2026)."""
    return date(year, 1, 1) + timedelta(days=_rng.randrange(365))


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def chinese_name() -> str:
    return _rng.choice(_SURNAMES) + "".join(_rng.choice(_GIVEN) for _ in range(_rng.choice((1, 2))))


@dataclass
class Person:
    id_number: str
    name: str
    region_code: str
    id: str | None = None
    view: dict = field(default_factory=dict)

    def actor(self) -> dict:
        return {"actor": {"kind": "person", "id_number": self.id_number}}


# --- HTTP --------------------------------------------------------------------------------------------

class Api:
    """A platform's view of the JSON API (one bearer key). Every answer's text is recorded in `seen`."""

    def __init__(self, base: str, key: str | None):
        self.base = base.rstrip("/")
        self.key = key
        self.http = requests.Session()
        self.seen: list[str] = []
        self.answers: list[tuple[str, str, requests.Response]] = []  # (method, path, answer) of every request

    def headers(self, extra: dict | None = None) -> dict:
        h = {"Accept": "application/json"}
        if self.key is not None:
            h["Authorization"] = f"Bearer {self.key}"
        h.update(extra or {})
        return h

    def request(self, method: str, path: str, *, json_body: Any = None, data: str | bytes | None = None,
                headers: dict | None = None) -> requests.Response:
        kw: dict = {"headers": self.headers(headers), "timeout": HTTP_TIMEOUT}
        if data is not None:
            kw["data"] = data.encode() if isinstance(data, str) else data
            kw["headers"].setdefault("Content-Type", "application/json")
        elif json_body is not None:
            kw["data"] = json.dumps(json_body, ensure_ascii=False).encode()
            kw["headers"].setdefault("Content-Type", "application/json")
        resp = self.http.request(method, self.base + path, **kw)
        self.seen.append(resp.text)
        self.answers.append((method, path, resp))
        return resp

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> requests.Response:
        return self.request("POST", path, json_body=body, **kw)

    def put(self, path: str, body: Any = None, **kw) -> requests.Response:
        return self.request("PUT", path, json_body=body, **kw)

    # -- domain helpers --

    def upsert(self, person: Person, *, insurance_type: str = "employee", insurance_status: str = "active",
               real_name_verified: bool = True, balance_fen: int | None = 1_000_000, expect: int | None = None
               ) -> Person:
        body = {"id_number": person.id_number, "name": person.name, "insurance_type": insurance_type,
                "insurance_status": insurance_status, "region_code": person.region_code,
                "real_name_verified": real_name_verified}
        if balance_fen is not None:
            body["balance_fen"] = balance_fen
        resp = self.post("/api/v1/persons", body)
        assert resp.status_code in ((expect,) if expect else (200, 201)), (resp.status_code, resp.text)
        person.view = resp.json()
        person.id = person.view["id"]
        return person

    def person(self, region_code: str = "320100", *, birth: date | None = None, **kw) -> Person:
        """Register a fresh person (an active, real-name verified employee unless told otherwise)."""
        return self.upsert(Person(id_number(birth), chinese_name(), region_code), **kw)

    def invite_body(self, grantor: Person, beneficiary: Person, relationship: str = "spouse",
                    commitment_version: str | None = "JS-2024-01", **overrides) -> dict:
        body = {"grantor_id_number": grantor.id_number, "beneficiary_id_number": beneficiary.id_number,
                "beneficiary_name": beneficiary.name, "relationship": relationship,
                "commitment_version": commitment_version, "channel": "app"}
        body.update(overrides)
        return body

    def invite(self, grantor: Person, beneficiary: Person, relationship: str = "spouse",
               commitment_version: str | None = "JS-2024-01", *, headers: dict | None = None,
               **overrides) -> requests.Response:
        return self.post("/api/v1/bindings", self.invite_body(grantor, beneficiary, relationship,
                                                              commitment_version, **overrides), headers=headers)

    def invited(self, grantor: Person, beneficiary: Person, relationship: str = "spouse",
                commitment_version: str | None = "JS-2024-01") -> dict:
        resp = self.invite(grantor, beneficiary, relationship, commitment_version)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def binding(self, binding_id: str) -> dict:
        resp = self.get(f"/api/v1/bindings/{binding_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def history(self, binding_id: str) -> list[dict]:
        resp = self.get(f"/api/v1/bindings/{binding_id}/history")
        assert resp.status_code == 200, resp.text
        return resp.json()["transitions"]

    def family(self, person: Person) -> dict:
        resp = self.get(f"/api/v1/persons/{person.id}/bindings")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def command(self, binding_id: str, name: str, actor: Person, **body) -> requests.Response:
        if name == "authorization":
            return self.put(f"/api/v1/bindings/{binding_id}/authorization", {**actor.actor(), **body})
        return self.post(f"/api/v1/bindings/{binding_id}/{name}", {**actor.actor(), **body})

    def ok(self, binding_id: str, name: str, actor: Person, status: int = 200, **body) -> dict:
        resp = self.command(binding_id, name, actor, **body)
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        return resp.json()


# --- webhooks ----------------------------------------------------------------------------------------

def signed_headers(secret: str, body: str, *, msg_id: str | None = None, at: datetime | None = None) -> dict:
    """Standard Webhooks headers for `body` signed with `secret` (`whsec_…`) at `at` (default now)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body), "Content-Type": "application/json"}


def post_webhook(base: str, platform: str, secret: str, payload: dict | str, *, msg_id: str | None = None,
                 at: datetime | None = None, headers: dict | None = None, seen: list | None = None
                 ) -> requests.Response:
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    h = signed_headers(secret, body, msg_id=msg_id, at=at)
    h.update(headers or {})
    resp = requests.post(f"{base.rstrip('/')}/webhooks/{platform}", data=body.encode(), headers=h,
                         timeout=HTTP_TIMEOUT)
    if seen is not None:
        seen.append(resp.text)
    return resp


def verification_completed(verification_id: str, binding_id: str, result: str = "passed") -> dict:
    return {"type": "verification.completed",
            "data": {"verification_id": verification_id, "binding_id": binding_id, "result": result}}


# --- polling and problems -----------------------------------------------------------------------------

def poll(probe: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Call `probe` until it returns something truthy; fail after `timeout` s (a bound, never a pass
    criterion: a healthy system answers within milliseconds)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
        time.sleep(interval)


def wait_state(api: Api, binding_id: str, state: str, timeout: float = 30.0) -> dict:
    def probe():
        b = api.binding(binding_id)
        return b if b["state"] == state else None
    return poll(probe, timeout=timeout, what=f"binding {binding_id} in state {state}")


def assert_problem(resp: requests.Response, status: int, code: str) -> dict:
    """An RFC 9457 answer with Gongji's stable code."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == PROBLEM_JSON, resp.headers
    body = resp.json()
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert body["type"].endswith(f"/problems/{code}"), body
    assert body["title"] and body["detail"], body
    return body


# --- the life of one binding (used by several tiers of tests) ----------------------------------------

def full_life(api: Api, base: str, verifier: str, verifier_secret: str, *, amount_fen: int = 50_000,
              poll_timeout: float = 30.0) -> tuple[dict, list[dict]]:
    """invite → start_verification → signed callback → face_verified → accept → authorize → unbind,
    in Jiangsu (320100); returns (final binding, history)."""
    grantor = api.person("320100")
    beneficiary = api.person("320500", insurance_type="resident")
    b = api.invited(grantor, beneficiary, "spouse")
    assert b["state"] == "invited" and b["verification_method"] == "face"
    started = api.command(b["id"], "verification", beneficiary)
    assert started.status_code == 202, started.text
    vid = started.json()["verification_id"]
    hook = post_webhook(base, verifier, verifier_secret, verification_completed(vid, b["id"]), seen=api.seen)
    assert hook.status_code == 202, hook.text
    wait_state(api, b["id"], "face_verified", timeout=poll_timeout)
    assert api.ok(b["id"], "accept", beneficiary)["state"] == "accepted"
    auth = api.ok(b["id"], "authorization", grantor, amount_fen=amount_fen)
    assert auth["state"] == "authorized" and auth["authorized_amount_fen"] == amount_fen
    assert api.ok(b["id"], "unbind", grantor, reason="家庭成员变动")["state"] == "unbound"
    return api.binding(b["id"]), api.history(b["id"])


LIFE_EVENTS = [(None, "invited", "invite", "person"), ("invited", "invited", "start_verification", "person"),
               ("invited", "face_verified", "verification_passed", "verifier"),
               ("face_verified", "accepted", "accept", "person"), ("accepted", "authorized", "authorize", "person"),
               ("authorized", "unbound", "unbind", "person")]


def life_events(history: list[dict]) -> list[tuple]:
    return [(t["from"], t["to"], t["event"], t["actor"]["kind"]) for t in history]


# --- processes ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gongji_bin() -> str:
    here = Path(sys.executable).parent / "gongji"  # the venv running the tests
    return str(here if here.exists() else ROOT / ".venv" / "bin" / "gongji")


class Proc:
    """One server process in its own session (so its children are signalled with it), logging to a file."""

    def __init__(self, name: str, args: list[str], *, cwd: Path, env: dict, log: Path):
        self.name, self.args, self.log = name, args, log
        self._fh = open(log, "wb")
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 200) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM this process's group (it was started in its own session: pgid == pid), then SIGKILL."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        else:  # the leader is gone; make sure no child of its group lingers
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._fh.close()
        return self.popen.returncode


def wait_http(url: str, procs: list[Proc], *, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail early if a process died."""
    def probe():
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False
    try:
        poll(probe, timeout=timeout, interval=0.1, what=f"{url} answering 200")
    except AssertionError as exc:
        logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in procs)
        raise AssertionError(f"{exc}\n{logs}") from None
