"""`gongji pii status|rekey`: which encryption key seals the stored personal data, and re-encrypting it
under the active one (`workflows/rekey.py`), so a retired or leaked key can leave GONGJI_PII_KEYS.

To retire key k1: put a new key first (`GONGJI_PII_KEYS=k2:<new>,k1:<old>`), restart the processes (new
values are sealed with k2), run `gongji pii rekey` (it may run beside live traffic, and again after a stop),
check `gongji pii status` says nothing is left under k1, then drop k1 and restart again. Counts only: no value
is ever printed.

The look-up key the same way: the new one as GONGJI_LOOKUP_KEY and the old one as GONGJI_LOOKUP_KEY_RETIRED
(look-ups try both), restart, `gongji pii rekey` (it rewrites the digests too), `gongji pii status`, then
drop GONGJI_LOOKUP_KEY_RETIRED once the idempotency records made before the restart have expired
(GONGJI_IDEMPOTENCY_RETENTION_H, 24 h by default: a retry whose record holds the old key's digest would be
refused 422 `idempotency_key_reused`)."""
from __future__ import annotations

import click

from models.settings import Settings


def _db():
    from models import db as models_db
    return models_db.from_settings(Settings.from_env())[1]


@click.group()
def pii() -> None:
    """Encryption keys of personal data: what each seals, and re-encrypting under the active one."""


@pii.command("status")
def status() -> None:
    """Rows per encrypted column and key id; the active key; the keys nothing depends on any more."""
    from models.crypto import active_key_id
    from workflows import rekey

    settings, counts = Settings.from_env(), rekey.key_ids(_db())
    for column, by_key in counts.items():
        click.echo(f"{column:<36} " + (", ".join(f"{k} {n}" for k, n in sorted(by_key.items())) or "empty"))
    used = {k for by_key in counts.values() for k in by_key}
    click.echo(f"active key: {active_key_id()}; no longer needed: "
               f"{', '.join(sorted(set(settings.pii_keys) - used - {active_key_id()})) or 'none'}")
    _digests(rekey.rehash(_db(), dry_run=True), "to rewrite")


def _digests(counts: dict[str, int], verb: str) -> None:
    """The look-up digest counts of `rekey.rehash`."""
    from models.crypto import rotating_lookup_key

    for what, n in counts.items():
        click.echo(f"{what:<36} {n} {verb if not what.startswith('persons left') else ''}".rstrip())
    click.echo("look-up key: " + ("a retired one is configured (GONGJI_LOOKUP_KEY_RETIRED)" if rotating_lookup_key()
                                  else "the active one only"))


@pii.command("rekey")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="rows per transaction")
def rekey_command(batch: int) -> None:
    """Re-encrypt every value not sealed with the active key (safe beside live traffic; may run again)."""
    from tqdm import tqdm

    from models.crypto import active_key_id
    from workflows import rekey

    db = _db()
    with tqdm(unit="row", desc="re-encrypted", disable=None) as bar:
        done = rekey.rekey(db, batch=batch, progress=lambda _column, n: bar.update(n))
    for column, n in done.items():
        click.echo(f"{column:<36} {n} re-encrypted")
    with tqdm(unit="row", desc="look-up digests checked", disable=None) as bar:
        hashed = rekey.rehash(db, batch=batch, progress=lambda _what, n: bar.update(n))
    _digests(hashed, "rewritten")
    active = active_key_id()
    left = {c: sum(n for k, n in by_key.items() if k != active) for c, by_key in rekey.key_ids(db).items()}
    if any(left.values()):  # written meanwhile by a process still sealing with an older key
        raise click.ClickException("some values are still under an older key (a process not restarted with the "
                                   f"new GONGJI_PII_KEYS?): {', '.join(c for c, n in left.items() if n)}")
    click.echo("every value is sealed with the active key")
    left = {what: n for what, n in rekey.rehash(db, dry_run=True).items() if n}
    if left:  # written meanwhile by a process with the old look-up key, or one number held by two persons
        raise click.ClickException("some look-up digests are not the active key's (a process not restarted with "
                                   "the new GONGJI_LOOKUP_KEY, or a number two persons hold: merge them): "
                                   + ", ".join(f"{what} {n}" for what, n in left.items()))
    click.echo("every look-up digest is the active key's")
