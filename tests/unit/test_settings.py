"""Settings from the environment (`models.settings`): a missing or malformed value stops the process with a
message naming the variable, never echoing a key; the numbers are bounded (a batch of 0 fired nothing, an
interval of 0 spun, `inf` overflowed at purge time)."""
from __future__ import annotations

import base64

import pytest

from models.settings import Settings, SettingsError, number, schedule

KEY = base64.b64encode(b"\x01" * 32).decode()
PRODUCTION = {"GONGJI_DATABASE_URL": "postgresql+psycopg://gongji:pw@db:5432/gongji", "GONGJI_PII_KEYS": f"k1:{KEY}",
              "GONGJI_LOOKUP_KEY": KEY, "GONGJI_SECRET_KEY": "s" * 32, "GONGJI_PUBLIC_URL": "https://gongji.example",
              "GONGJI_METRICS_TOKEN": "m" * 24}


@pytest.fixture
def env(monkeypatch):
    import os
    for name in [k for k in os.environ if k.startswith("GONGJI_")]:
        monkeypatch.delenv(name)

    def set_(**values):
        for k, v in values.items():
            monkeypatch.setenv(k, v)
    return set_


def test_a_complete_production_environment_is_read(env):
    """Given the production variables, Then the settings carry them, the first PII key encrypting."""
    env(**{**PRODUCTION, "GONGJI_PII_KEYS": f"k2:{KEY},k1:{KEY}"}, GONGJI_SWEEP_BATCH="200", GONGJI_PROXY_HOPS="1")
    s = Settings.from_env()
    assert (s.pii_active_key, list(s.pii_keys), s.sweep_batch, s.proxy_hops, s.dev_mode) == ("k2", ["k2", "k1"], 200, 1, False)
    assert s.lookup_retired is None


def test_a_retired_lookup_key_is_read_beside_the_active_one(env):
    """Given GONGJI_LOOKUP_KEY_RETIRED (a look-up key being retired), Then the settings carry it."""
    retired = base64.b64encode(b"\x02" * 32).decode()
    env(**PRODUCTION, GONGJI_LOOKUP_KEY_RETIRED=retired)
    assert (Settings.from_env().lookup_key, Settings.from_env().lookup_retired) == (KEY, retired)


@pytest.mark.parametrize("change, names", [
    ({"GONGJI_PII_KEYS": None}, "GONGJI_PII_KEYS is required"),
    ({"GONGJI_LOOKUP_KEY": None}, "GONGJI_LOOKUP_KEY and GONGJI_SECRET_KEY are required"),
    ({"GONGJI_PUBLIC_URL": None}, "GONGJI_PUBLIC_URL is required"),
    ({"GONGJI_PII_KEYS": "badformat"}, "GONGJI_PII_KEYS part 1"),
    ({"GONGJI_PII_KEYS": "k1:c2hvcnQ="}, "GONGJI_PII_KEYS part 1"),  # 5 bytes: not AES-256
    ({"GONGJI_PII_KEYS": f"k1:{KEY},k2:!!"}, "GONGJI_PII_KEYS part 2"),
    ({"GONGJI_LOOKUP_KEY": "x"}, "GONGJI_LOOKUP_KEY is the base64 of 32"),
    ({"GONGJI_SECRET_KEY": "short"}, "GONGJI_SECRET_KEY has at least 16"),
    ({"GONGJI_METRICS_TOKEN": None}, "GONGJI_METRICS_TOKEN is required"),  # /metrics is never open in production
    ({"GONGJI_METRICS_TOKEN": "short"}, "GONGJI_METRICS_TOKEN has at least 16"),
    ({"GONGJI_DATABASE_URL": "notaurl"}, "GONGJI_DATABASE_URL is not a URL"),
    ({"GONGJI_SWEEP_BATCH": "0"}, "GONGJI_SWEEP_BATCH is an integer from 1"),
    ({"GONGJI_SWEEP_INTERVAL_S": "0"}, "GONGJI_SWEEP_INTERVAL_S is a number from 0.05"),
    ({"GONGJI_SWEEP_INTERVAL_S": "abc"}, "GONGJI_SWEEP_INTERVAL_S"),
    ({"GONGJI_PROXY_HOPS": "-1"}, "GONGJI_PROXY_HOPS"),
    ({"GONGJI_PII_KEYS": f"k1:{KEY},k1:{KEY}"}, "names key id 'k1' twice"),
    ({"GONGJI_PUBLIC_URL": "gongji.example"}, "GONGJI_PUBLIC_URL is an http"),
    ({"GONGJI_DATABASE_URL": "postgres://gongji:pw@db/gongji"}, "GONGJI_DATABASE_URL is a PostgreSQL URL"),
    ({"GONGJI_LOOKUP_KEY_RETIRED": "short"}, "GONGJI_LOOKUP_KEY_RETIRED is the look-up key being retired"),
    ({"GONGJI_LOOKUP_KEY_RETIRED": KEY}, "GONGJI_LOOKUP_KEY_RETIRED is the previous look-up key, not the active"),
])
def test_a_missing_or_malformed_setting_is_refused_by_name_without_its_secret(env, change, names):
    """Given the production variables with one missing or malformed
    Then reading them raises SettingsError naming the variable, and the message holds no key material."""
    values = {**PRODUCTION, **change}
    env(**{k: v for k, v in values.items() if v is not None})
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert names in str(refused.value)
    assert all(str(v) not in str(refused.value) for k, v in change.items() if v and "KEY" in k)
    assert KEY not in str(refused.value)


@pytest.mark.parametrize("raw", ["inf", "nan", "-5", "1e400", "x"])
def test_a_number_outside_its_bounds_or_not_finite_is_refused(env, raw):
    env(GONGJI_MESSAGE_RETENTION_DAYS=raw)
    with pytest.raises(SettingsError, match="GONGJI_MESSAGE_RETENTION_DAYS"):
        number("GONGJI_MESSAGE_RETENTION_DAYS", 90, minimum=0, maximum=3650)


def test_a_schedule_is_seconds_each_within_bounds(env):
    """Given GONGJI_DELIVERY_SCHEDULE_S, Then "5,30" reads as (5.0, 30.0), and a negative, zero or empty
    entry is refused; unset, the default."""
    assert schedule("GONGJI_DELIVERY_SCHEDULE_S", (1,), minimum=0.1, maximum=100) == (1,)
    env(GONGJI_DELIVERY_SCHEDULE_S="5,30")
    assert schedule("GONGJI_DELIVERY_SCHEDULE_S", (1,), minimum=0.1, maximum=100) == (5.0, 30.0)
    for raw in ("-5,0", "5,,30", "5,1000"):
        env(GONGJI_DELIVERY_SCHEDULE_S=raw)
        with pytest.raises(SettingsError, match="GONGJI_DELIVERY_SCHEDULE_S"):
            schedule("GONGJI_DELIVERY_SCHEDULE_S", (1,), minimum=0.1, maximum=100)
