"""`gongji serve` as `make run` starts it, simulator on: the fake face-verification provider opens sessions
and calls back by itself, and the fake platforms acknowledge every binding event."""
from __future__ import annotations

import re
import subprocess

from .support import Api, gongji_bin, poll, wait_state


def test_the_fake_provider_verifies_and_the_fake_platforms_acknowledge(simulated, dev_keys):
    """Given the embedded default with its simulator
    When a Jiangsu grantor invites and the beneficiary starts face verification, and nobody else calls back
    Then a worker opened a session at the fake provider (visible on the attempt), the provider's signed
    callback moved the binding to face_verified with the verifier as actor, and after accept the national
    and Jiangsu fake platforms acknowledged every version."""
    api = Api(simulated, dev_keys["jiangsu"][0])
    grantor, beneficiary = api.person("320100"), api.person("320500", insurance_type="resident")
    b = api.invited(grantor, beneficiary, "spouse")
    started = api.command(b["id"], "verification", beneficiary)
    assert started.status_code == 202, started.text

    wait_state(api, b["id"], "face_verified")
    # the worker records the provider's answer after the provider answered, and the provider calls back
    # 0.2 s after answering: on a loaded machine the callback can be applied first, so wait for both
    attempt = poll(lambda: next((a for a in api.binding(b["id"])["verifications"]
                                 if a["provider_status"] == "opened"), None),
                   timeout=30, what="the provider's answer recorded on the attempt")
    assert attempt["status"] == "passed" and attempt["verifier_id"] == "facecheck"
    assert attempt["provider_status"] == "opened" and attempt["provider_requests"] == 1
    assert attempt["provider_session_id"] == f"sess_{attempt['verification_id']}"
    assert api.history(b["id"])[2]["actor"] == {"kind": "verifier", "id": "facecheck"}

    accepted = api.ok(b["id"], "accept", beneficiary)
    poll(lambda: api.binding(b["id"])["sync"] == {"national": accepted["version"], "jiangsu": accepted["version"]},
         timeout=30, what="both platforms acknowledging the accepted version")


def test_gongji_simulate_drives_families_to_their_final_states(simulated, dev_keys):
    """Given the embedded default with its simulator
    When `gongji simulate --bindings 20` runs against it
    Then it exits 0 and its summary counts 20 families by final state (unbound, and the declined and
    cancelled share) with p50/p99 per step; each of the 18 authorized families settled a bill of 800.00
    yuan, 4 of them reversed, and the 14 kept were paid 200.00 each from the beneficiary's own account,
    500.00 from the grantor's (the authorization) and 100.00 in cash."""
    done = subprocess.run([gongji_bin(), "simulate", "--bindings", "20", "--url", simulated, "--seed", "11",
                           "--api-key", dev_keys["jiangsu"][0]], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = dict(re.findall(r"^(unbound|declined|cancelled)\s+(\d+)$", done.stdout, re.M))
    assert counts == {"unbound": "18", "declined": "1", "cancelled": "1"}, done.stdout
    assert re.search(r"^invite\s+20\s+[\d.]+\s+[\d.]+$", done.stdout, re.M), done.stdout
    assert ("settlements 18 (4 reversed); paid by those not reversed: own accounts 2800.00 yuan, family "
            "members' 7000.00 yuan, cash 1400.00 yuan") in done.stdout, done.stdout
    assert re.search(r"^settle\s+18\s", done.stdout, re.M) and re.search(r"^reverse\s+4\s", done.stdout, re.M)
