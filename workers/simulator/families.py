"""`gongji simulate`: drive N families through a binding's whole life against a running Gongji, over HTTP
only, as a provincial platform would: register both persons, invite, start face verification (the
simulator's fake provider calls back; a failed attempt is retried up to the region's maximum), accept,
authorize, unbind. One family in ten declines instead, one in twenty is cancelled by the grantor, so the
summary shows several final states. Latencies are per API call, in milliseconds (every call, the look-ups
before registering included); `face_verified` is not a call but the wait from starting verification to the
state being visible: it includes the provider's latency and the polling (GET after 50 ms, then backing off by
half each time, up to 400 ms between polls, as a considerate client does)."""
from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date

import requests
from stdnum.cn import ric
from tqdm import tqdm

COMMITMENT = {"32": "JS-2024-01", "65": "XJ-2023-02"}
POLL_FIRST_S, POLL_MAX_S = 0.05, 0.4  # seconds between polls of a binding under verification


class Driver:
    def __init__(self, base: str, api_key: str, *, region: str = "320100", seed: int = 0, timeout_s: float = 30.0):
        self.base, self.region, self.timeout_s = base.rstrip("/"), region, timeout_s
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.outcomes: Counter = Counter()
        self.errors: Counter = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._local = threading.local()

    def _http(self) -> requests.Session:
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def request(self, step: str, method: str, path: str, body=None) -> requests.Response:
        """One API call, its latency counted under `step`."""
        started = time.perf_counter()
        r = self._http().request(method, self.base + path, json=body, headers=self.headers, timeout=self.timeout_s)
        ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self.latencies[step].append(ms)
        return r

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
                    "balance_fen": 300_000}
            found = self.request("lookup", "POST", "/api/v1/persons/lookup", {"id_number": number})
            if found.status_code == 404:
                self.call("register", "POST", "/api/v1/persons", body)
                return {"kind": "person", "id_number": number, "name": name}
        raise RuntimeError("no free ID number found")

    def family(self, i: int) -> str:
        g, b = self.person("grantor", "张三"), self.person("beneficiary", "李四")
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
        self.call("authorize", "PUT", f"/api/v1/bindings/{bid}/authorization", {**actor_g, "amount_fen": 50_000})
        return self.call("unbind", "POST", f"/api/v1/bindings/{bid}/unbind",
                         {**actor_g, "reason": "simulated"})["state"]

    def verify(self, bid: str, actor_b: dict) -> str:
        """Start verification until the fake provider passes it or the attempts run out."""
        while True:
            started = time.perf_counter()
            self.call("start_verification", "POST", f"/api/v1/bindings/{bid}/verification", actor_b)
            deadline, pause = time.monotonic() + self.timeout_s, POLL_FIRST_S
            while time.monotonic() < deadline:
                b = self.call("poll", "GET", f"/api/v1/bindings/{bid}")
                statuses = {v["status"] for v in b.get("verifications") or ()}
                # done when verified, or when no attempt is open (it failed or timed out: start another)
                if b["state"] != "invited" or not statuses & {"pending", "passed"}:
                    break
                time.sleep(pause)
                pause = min(pause * 1.5, POLL_MAX_S)
            else:
                raise RuntimeError("no verification result in time (is the simulator's face provider on?)")
            if b["state"] != "invited":
                with self._lock:
                    self.latencies["face_verified"].append((time.perf_counter() - started) * 1000)
                return b["state"]

    def run(self, n: int, concurrency: int) -> None:
        with ThreadPoolExecutor(concurrency) as pool, tqdm(total=n, unit="family") as bar:
            for done in as_completed([pool.submit(self.family, i) for i in range(n)]):
                try:
                    self.outcomes[done.result()] += 1
                except Exception as exc:  # counted and shown; the run goes on
                    self.errors[str(exc)[:120]] += 1
                bar.update()

    def summary(self) -> str:
        lines = ["final state          families"]
        lines += [f"{state:<20} {count:>8}" for state, count in sorted(self.outcomes.items())]
        lines += [f"error: {e} ×{c}" for e, c in self.errors.items()]
        lines.append(f"{'step':<20} {'calls':>7} {'p50 ms':>9} {'p99 ms':>9}")
        for step, values in sorted(self.latencies.items()):
            p99 = statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]
            lines.append(f"{step:<20} {len(values):>7} {statistics.median(values):>9.1f} {p99:>9.1f}")
        return "\n".join(lines)
