"""`gongji simulate`: drive N families through a binding's whole life against a running Gongji, over HTTP
only, as a provincial platform would. First both persons of every family are registered (looked up, then
registered: a number already held by someone else is drawn again); then each family is invited, starts
face verification (the simulator's fake provider calls back; a failed attempt is retried up to the
region's maximum), accepts, authorizes 500.00 yuan, settles a medical bill of 800.00 yuan (the
beneficiary's own account holds 200.00: it pays that, the grantor's authorization 500.00, the rest is
cash), and unbinds; one settlement in four is reversed before the unbind (the money goes back). One family
in ten declines instead, one in twenty is cancelled by the grantor, so the summary shows several final
states, and what was paid from whose account. `settle=False` leaves the money out (bench/webhooks.py,
whose figures count transitions only). Latencies are per API call, in
milliseconds; `face_verified` is not a call but the wait from starting verification to the result: it
includes the provider's latency and either the polling (GET after 50 ms, then backing off by half each
time, up to 400 ms between polls, as a considerate client does) or, when the driver is given the platform
that receives Gongji's events (`events=`, as bench/webhooks.py does), the event's delivery, which is how a
platform learns of a result in production."""
from __future__ import annotations

import json
import queue
import random
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date
from typing import Protocol

import urllib3
from stdnum.cn import ric
from tqdm import tqdm

from workers.outbound import BrokenConnectionRetry

COMMITMENT = {"32": "JS-2024-01", "65": "XJ-2023-02"}
# fen: the grantor's and the beneficiary's balances, the authorization and the bill (see the docstring)
GRANTOR_BALANCE, OWN_BALANCE, AUTHORIZED, BILL = 300_000, 20_000, 50_000, 80_000
CATEGORIES = ("outpatient", "inpatient", "pharmacy")
PAID = ("acct_pay", "acct_mulaid_pay", "psn_cash_pay")
POLL_FIRST_S, POLL_MAX_S = 0.05, 0.4  # seconds between polls of a binding under verification
VERIFIED, RETRY, FAILED = "binding.face_verified", "binding.verification_attempt_failed", "binding.verification_failed"
RETRY_BROKEN = BrokenConnectionRetry(total=1, connect=1, read=1, status=0, other=0, redirect=0, allowed_methods=None,
                                     raise_on_status=False)


class Events(Protocol):
    """Where the driver hears a binding's events (a fake platform Gongji delivers to)."""

    def watch(self, binding_id: str) -> "queue.SimpleQueue[str]": ...

    def unwatch(self, binding_id: str) -> None: ...


class Answer:
    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes):
        self.status_code, self.content = status_code, content

    def json(self):
        return json.loads(self.content)


class Driver:
    def __init__(self, base: str, api_key: str, *, region: str = "320100", seed: int = 0, timeout_s: float = 30.0,
                 events: Events | None = None, settle: bool = True):
        self.base, self.region, self.timeout_s, self.events = base.rstrip("/"), region, timeout_s, events
        self.settle = settle
        self.money: Counter = Counter()  # settlements, reversed, and fen paid per part (not reversed)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.outcomes: Counter = Counter()
        self.errors: Counter = Counter()
        self.persons: list[tuple[dict, dict]] = []  # (grantor, beneficiary) per family, from `prepare`
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        # a keep-alive connection the server closes just as it is reused is tried once more (not a timeout):
        # every write carries an Idempotency-Key, so a command the server did get is answered, not repeated
        self._http = urllib3.PoolManager(maxsize=64, timeout=urllib3.Timeout(total=timeout_s),
                                         retries=RETRY_BROKEN)

    def request(self, step: str, method: str, path: str, body=None) -> Answer:
        """One API call, its latency counted under `step`."""
        writes = method != "GET" and not path.endswith("/lookup")  # a look-up is a read sent as POST
        headers = {**self.headers, "Idempotency-Key": uuid.uuid4().hex} if writes else self.headers
        started = time.perf_counter()
        r = self._http.request(method, self.base + path, headers=headers,
                               body=None if body is None else json.dumps(body).encode())
        ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self.latencies[step].append(ms)
        return Answer(r.status, r.data)

    def call(self, step: str, method: str, path: str, body=None, ok=(200, 201, 202)) -> dict:
        r = self.request(step, method, path, body)
        if r.status_code not in ok:
            raise RuntimeError(f"{step}: HTTP {r.status_code} {r.json().get('code', '') if r.content else ''}")
        return r.json()

    def number(self, first_year: int) -> str:
        """A valid resident ID number: a district of the region, a birth date in a 15-year span, a serial."""
        with self._lock:
            born = date.fromordinal(date(first_year, 1, 1).toordinal() + self._random.randrange(15 * 365))
            serial = self._random.randrange(0, 1000)
        body = f"{self.region[:4]}02{born:%Y%m%d}{serial:03d}"
        return body + ric.calc_check_digit(body + "0")  # it wants a placeholder check digit

    def person(self, role: str, name: str) -> dict:
        for _ in range(20):  # a number already registered belongs to someone else: draw another
            number = self.number(1960 if role == "grantor" else 1980)
            body = {"id_number": number, "name": name, "region_code": self.region, "real_name_verified": True,
                    "insurance_type": "employee" if role == "grantor" else "resident", "insurance_status": "active",
                    "balance_fen": GRANTOR_BALANCE if role == "grantor" else OWN_BALANCE}
            found = self.request("lookup", "POST", "/api/v1/persons/lookup", {"id_number": number})
            if found.status_code == 404:
                self.call("register", "POST", "/api/v1/persons", body)
                return {"kind": "person", "id_number": number, "name": name}
        raise RuntimeError("no free ID number found")

    def family(self, i: int) -> str | None:
        if self.persons[i] is None:  # its registration failed (counted by `prepare`)
            return None
        g, b = self.persons[i]
        bid = self.call("invite", "POST", "/api/v1/bindings", {
            "grantor_id_number": g["id_number"], "beneficiary_id_number": b["id_number"], "beneficiary_name": b["name"],
            "relationship": "spouse", "commitment_version": COMMITMENT[self.region[:2]], "channel": "app"})["id"]
        actor_g, actor_b = {"actor": {k: g[k] for k in ("kind", "id_number")}}, \
            {"actor": {k: b[k] for k in ("kind", "id_number")}}
        if i % 20 == 19:
            return self.call("cancel", "POST", f"/api/v1/bindings/{bid}/cancel", actor_g)["state"]
        if i % 10 == 9:
            return self.call("decline", "POST", f"/api/v1/bindings/{bid}/decline", actor_b)["state"]
        state = self.verify(bid, actor_b)
        if state != "face_verified":
            return state
        self.call("accept", "POST", f"/api/v1/bindings/{bid}/accept", actor_b)
        self.call("authorize", "PUT", f"/api/v1/bindings/{bid}/authorization", {**actor_g, "amount_fen": AUTHORIZED})
        if self.settle:
            self.pay(i, b)
        return self.call("unbind", "POST", f"/api/v1/bindings/{bid}/unbind",
                         {**actor_g, "reason": "simulated"})["state"]

    def pay(self, i: int, b: dict) -> None:
        """Settle the family's bill as a hospital's platform would (its own reference); every fourth
        settlement is reversed (a bill charged by mistake)."""
        paid = self.call("settle", "POST", "/api/v1/settlements", {
            "reference": f"sim-{uuid.uuid4().hex[:24]}", "beneficiary_id_number": b["id_number"], "amount_fen": BILL,
            "category": CATEGORIES[i % len(CATEGORIES)], "institution_code": f"H{self.region}0001"})
        reversed_ = i % 4 == 3
        if reversed_:
            self.call("reverse", "POST", f"/api/v1/settlements/{paid['id']}/reversal")
        with self._lock:
            self.money["settled"] += 1
            self.money["reversed"] += reversed_
            if not reversed_:
                self.money.update({part: paid[part] for part in PAID})

    def verify(self, bid: str, actor_b: dict) -> str:
        """Start verification until the fake provider passes it or the attempts run out."""
        heard = self.events.watch(bid) if self.events is not None else None
        try:
            while True:
                started = time.perf_counter()
                self.call("start_verification", "POST", f"/api/v1/bindings/{bid}/verification", actor_b)
                state = self._result_event(heard) if heard is not None else self._poll_result(bid)
                if state != "invited":
                    with self._lock:
                        self.latencies["face_verified"].append((time.perf_counter() - started) * 1000)
                    return state
        finally:
            if heard is not None:
                self.events.unwatch(bid)

    def _result_event(self, heard: "queue.SimpleQueue[str]") -> str:
        """The state after this attempt, from the binding's events: invited when another attempt may start."""
        deadline = time.monotonic() + self.timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                topic = heard.get(timeout=left)
            except queue.Empty:
                break
            if topic in (VERIFIED, RETRY, FAILED):
                return {VERIFIED: "face_verified", RETRY: "invited", FAILED: "verification_failed"}[topic]
        raise RuntimeError("no verification result in time (is the simulator's face provider on?)")

    def _poll_result(self, bid: str) -> str:
        deadline, pause = time.monotonic() + self.timeout_s, POLL_FIRST_S
        while time.monotonic() < deadline:
            b = self.call("poll", "GET", f"/api/v1/bindings/{bid}")
            statuses = {v["status"] for v in b.get("verifications") or ()}
            # done when verified, or when no attempt is open (it failed or timed out: start another)
            if b["state"] != "invited" or not statuses & {"pending", "passed"}:
                return b["state"]
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX_S)
        raise RuntimeError("no verification result in time (is the simulator's face provider on?)")

    def prepare(self, n: int, concurrency: int) -> None:
        """Register both persons of n families (persons exist long before anyone invites); a family whose
        registration failed is counted in `errors` and not driven."""
        def pair(_):
            return self.person("grantor", "张三"), self.person("beneficiary", "李四")
        with ThreadPoolExecutor(concurrency) as pool, tqdm(total=n, unit="family", desc="persons") as bar:
            for done in [pool.submit(pair, i) for i in range(n)]:
                try:
                    self.persons.append(done.result())
                except Exception as exc:  # counted and shown; the run goes on
                    self.persons.append(None)
                    self.errors[f"register: {str(exc)[:110]}"] += 1
                bar.update()

    def run(self, n: int, concurrency: int) -> None:
        """Drive n families (registering their persons first unless `prepare` did)."""
        if len(self.persons) < n:
            self.prepare(n - len(self.persons), concurrency)
        with ThreadPoolExecutor(concurrency) as pool, tqdm(total=n, unit="family", desc="families") as bar:
            for done in as_completed([pool.submit(self.family, i) for i in range(n)]):
                try:
                    state = done.result()
                    if state is not None:
                        self.outcomes[state] += 1
                except Exception as exc:  # counted and shown; the run goes on
                    self.errors[str(exc)[:120]] += 1
                bar.update()

    def summary(self) -> str:
        lines = ["final state          families"]
        lines += [f"{state:<20} {count:>8}" for state, count in sorted(self.outcomes.items())]
        lines += [f"error: {e} ×{c}" for e, c in self.errors.items()]
        if self.money["settled"]:
            m = self.money
            lines.append(f"settlements {m['settled']} ({m['reversed']} reversed); paid by those not reversed: "
                         f"own accounts {m['acct_pay'] / 100:.2f} yuan, family members' {m['acct_mulaid_pay'] / 100:.2f}"
                         f" yuan, cash {m['psn_cash_pay'] / 100:.2f} yuan")
        lines.append(f"{'step':<20} {'calls':>7} {'p50 ms':>9} {'p99 ms':>9}")
        for step, values in sorted(self.latencies.items()):
            p99 = statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]
            lines.append(f"{step:<20} {len(values):>7} {statistics.median(values):>9.1f} {p99:>9.1f}")
        return "\n".join(lines)
