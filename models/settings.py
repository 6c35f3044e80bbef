"""Process settings, all from the environment (`GONGJI_…`) with the embedded default when absent.

Lives in `models` because every layer needs it and `models` is the layer everyone may import."""
from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _dev_key(label: str) -> str:
    """A deterministic development key, only used when the matching env var is absent (embedded mode)."""
    return base64.b64encode(hashlib.sha256(b"gongji-dev:" + label.encode()).digest()).decode()


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    # AES-256-GCM keys for ID numbers and names: {key_id: base64 key}; the first id encrypts new values.
    pii_keys: dict[str, str]
    pii_active_key: str
    # HMAC-SHA256 key of the look-up columns (separate from the encryption key).
    lookup_key: str
    secret_key: str
    sweep_interval_s: float = 1.0
    sweep_batch: int = 500
    dev_mode: bool = False
    # where platforms and the face-verification provider reach this deployment (callback URLs)
    public_url: str = "http://127.0.0.1:8000"
    # reverse proxies in front of `gongji web` whose X-Forwarded-For/-Proto to trust (sign-in rate limits)
    proxy_hops: int = 0
    # a bearer token `/metrics` then asks for (Prometheus' `authorization` setting); None: open (loopback, dev)
    metrics_token: str | None = None
    extra: dict = field(default_factory=dict)

    @staticmethod
    def from_env(*, var_dir: str | Path | None = None) -> "Settings":
        var = Path(var_dir or _env("GONGJI_VAR_DIR", "var")).resolve()
        db = _env("GONGJI_DATABASE_URL")
        dev = db is None
        if db is None:
            db = f"sqlite:///{var / 'gongji.db'}"
        keys_spec = _env("GONGJI_PII_KEYS")  # "k2:base64,k1:base64" — first one encrypts
        if keys_spec:
            pairs = [part.split(":", 1) for part in keys_spec.split(",") if part.strip()]
            keys = {k.strip(): v.strip() for k, v in pairs}
            active = pairs[0][0].strip()
        else:
            if not dev:
                raise RuntimeError("GONGJI_PII_KEYS is required when GONGJI_DATABASE_URL is set")
            keys, active = {"dev1": _dev_key("pii")}, "dev1"
        lookup = _env("GONGJI_LOOKUP_KEY") or (_dev_key("lookup") if dev else None)
        secret = _env("GONGJI_SECRET_KEY") or (_dev_key("secret") if dev else None)
        if lookup is None or secret is None:
            raise RuntimeError("GONGJI_LOOKUP_KEY and GONGJI_SECRET_KEY are required in production")
        return Settings(
            database_url=db,
            redis_url=_env("GONGJI_REDIS_URL"),
            pii_keys=keys,
            pii_active_key=active,
            lookup_key=lookup,
            secret_key=secret,
            sweep_interval_s=float(_env("GONGJI_SWEEP_INTERVAL_S", "1.0")),
            sweep_batch=int(_env("GONGJI_SWEEP_BATCH", "500")),
            dev_mode=dev,
            public_url=_env("GONGJI_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            proxy_hops=int(_env("GONGJI_PROXY_HOPS", "0")),
            metrics_token=_env("GONGJI_METRICS_TOKEN", "") or None,
        )


def log_level() -> str:
    """GONGJI_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR, CRITICAL; default INFO), upper case; a name logging
    does not know stops the process at start instead of leaving it silent."""
    level = (_env("GONGJI_LOG_LEVEL", "INFO") or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise RuntimeError(f"GONGJI_LOG_LEVEL={level!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    return level


def configure_logging() -> str:
    """Every Gongji process's logging: GONGJI_LOG_LEVEL on the root logger, one line a record on stderr.
    Where a host already set a handler (dramatiq's worker processes log through a pipe to their parent),
    only the level is set. Returns the level."""
    level = log_level()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=LOG_FORMAT)
    root.setLevel(level)
    return level
