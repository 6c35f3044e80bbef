"""Encryption at rest for personal data (ID numbers, names) and the keyed hash used to look them up.

- Values are AES-256-GCM encrypted with a random 96-bit nonce; the stored text is
  `<key id>:<base64(nonce | ciphertext | tag)>`, so keys can be rotated (old ids still decrypt).
- The column name is bound as associated data: a ciphertext copied into another column fails to open.
- Look-up uses HMAC-SHA256 under a separate key: equal plaintexts give equal digests, nothing else leaks.
  That key can be rotated too: while a retired look-up key is configured beside the active one, every
  look-up tries both digests (`lookup_hashes`, always a pair so statements keep one shape) and new digests
  use the active key; `gongji pii rekey` rewrites the stored digests, after which the retired key can go.
The keys come from `Settings`; `configure()` is called once per process by whoever builds the engine."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.types import TypeDecorator

_state: dict = {"keys": None, "active": None, "lookup": None, "retired": None}


def configure(pii_keys: dict[str, str], active: str, lookup_key: str, lookup_retired: str | None = None) -> None:
    _state["keys"] = {kid: AESGCM(base64.b64decode(k)) for kid, k in pii_keys.items()}
    _state["active"] = active
    _state["lookup"] = _lookup_bytes(lookup_key)
    _state["retired"] = _lookup_bytes(lookup_retired) if lookup_retired else None


def _lookup_bytes(key: str) -> bytes:
    return base64.b64decode(key) if _looks_b64(key) else key.encode()


def active_key_id() -> str:
    """The key id new values are sealed with (the first of GONGJI_PII_KEYS)."""
    return _require()["active"]


def _looks_b64(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) >= 16
    except ValueError:
        return False


def _require():
    if _state["keys"] is None:
        raise RuntimeError("models.crypto.configure() was not called")
    return _state


def lookup_hash(value: str) -> str:
    """Keyed digest of a normalized value (hex) under the active look-up key: what is written."""
    return hmac.new(_require()["lookup"], value.encode(), hashlib.sha256).hexdigest()


def lookup_hashes(value: str) -> tuple[str, str]:
    """(active digest, retired-key digest): what a stored digest may be while a look-up key is being
    retired; the active digest twice when none is."""
    active = lookup_hash(value)
    retired = _state["retired"]
    return active, (hmac.new(retired, value.encode(), hashlib.sha256).hexdigest() if retired else active)


def rotating_lookup_key() -> bool:
    """Whether a retired look-up key is configured beside the active one."""
    return _require()["retired"] is not None


def keyed_digest(purpose: str, data: bytes) -> str:
    """Keyed digest (hex) of bytes that may hold personal data, e.g. a request body carrying an ID number:
    an unkeyed hash of such a body is reversed by trying ID numbers (some 10^11 valid ones, far fewer
    once the region or the age is known). `purpose` separates the uses of the one key (no digest of one use equals one of another)."""
    return hmac.new(_require()["lookup"], purpose.encode() + b"\x00" + data, hashlib.sha256).hexdigest()


def retired_keyed_digests(purpose: str, data: bytes) -> tuple[str, ...]:
    """`keyed_digest` under the look-up key being retired: one digest while one is configured, else none."""
    retired = _require()["retired"]
    return () if retired is None else (hmac.new(retired, purpose.encode() + b"\x00" + data, hashlib.sha256).hexdigest(),)


def encrypt(plaintext: str, context: str) -> str:
    st = _require()
    nonce = os.urandom(12)
    sealed = st["keys"][st["active"]].encrypt(nonce, plaintext.encode(), context.encode())
    return f"{st['active']}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(stored: str, context: str) -> str:
    kid, _, blob = stored.partition(":")
    raw = base64.b64decode(blob)
    return _require()["keys"][kid].decrypt(raw[:12], raw[12:], context.encode()).decode()


class Encrypted(TypeDecorator):
    """A text column holding AES-GCM ciphertext; Python sees the plaintext."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, context: str):
        super().__init__()
        self.context = context

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(value, self.context)

    def process_result_value(self, value, dialect):
        return None if value is None else decrypt(value, self.context)
